//! Sequence-number and timestamp rewriting for one outgoing stream, so a
//! subscriber sees one continuous RTP stream across simulcast layer switches.

use std::time::Instant;

/// Maps incoming (extended sequence number, RTP timestamp) to outgoing ones.
#[derive(Debug)]
pub struct Rewriter {
    clock_rate: u32,
    seq_offset: u64,
    ts_offset: u32,
    /// First incoming sequence number of the current source; older ones are dropped.
    source_start: u64,
    last: Option<Last>,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    seq: u64,
    ts: u32,
    at: Instant,
}

/// Sequence numbers start low so the receiver needs no out-of-band rollover counter.
const FIRST_SEQ: u64 = 1000;

impl Rewriter {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            seq_offset: 0,
            ts_offset: 0,
            source_start: 0,
            last: None,
        }
    }

    /// Starts a new source (first packet, or a layer switch) at this packet.
    pub fn switch_source(&mut self, seq: u64, ts: u32, now: Instant) {
        let (next_seq, next_ts) = match self.last {
            None => (FIRST_SEQ, ts),
            Some(last) => {
                let elapsed = now.saturating_duration_since(last.at);
                let ticks = (elapsed.as_secs_f64() * f64::from(self.clock_rate)) as u32;
                (last.seq + 1, last.ts.wrapping_add(ticks.max(1)))
            }
        };
        self.seq_offset = next_seq.wrapping_sub(seq);
        self.ts_offset = next_ts.wrapping_sub(ts);
        self.source_start = seq;
    }

    /// Rewrites one packet of the current source. `None` for packets that
    /// predate the current source (late packets from before a switch).
    pub fn rewrite(&mut self, seq: u64, ts: u32, now: Instant) -> Option<(u64, u32)> {
        if seq < self.source_start {
            return None;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        match self.last {
            Some(last) if out_seq <= last.seq => {}
            _ => {
                self.last = Some(Last {
                    seq: out_seq,
                    ts: out_ts,
                    at: now,
                })
            }
        }
        Some((out_seq, out_ts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn continuous_across_switch() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch_source(70_000, 5_000, t0);
        assert_eq!(r.rewrite(70_000, 5_000, t0), Some((FIRST_SEQ, 5_000)));
        assert_eq!(r.rewrite(70_001, 8_000, t0), Some((FIRST_SEQ + 1, 8_000)));
        // Switch to another layer with unrelated numbering 33 ms later.
        let t1 = t0 + Duration::from_millis(33);
        r.switch_source(10, 900_000, t1);
        let (s, ts) = r.rewrite(10, 900_000, t1).expect("current source");
        assert_eq!(s, FIRST_SEQ + 2);
        assert_eq!(ts, 8_000 + 2_970);
        // A late packet of the new source from before the switch is dropped.
        assert_eq!(r.rewrite(9, 897_000, t1), None);
        // Retransmitted (older) packets of the current source keep their mapping.
        assert_eq!(
            r.rewrite(11, 903_000, t1),
            Some((FIRST_SEQ + 3, 11_000 + 2_970))
        );
        assert_eq!(
            r.rewrite(10, 900_000, t1),
            Some((FIRST_SEQ + 2, 8_000 + 2_970))
        );
    }

    #[test]
    fn timestamp_wraps() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000);
        r.switch_source(1, u32::MAX - 10, t0);
        r.rewrite(1, u32::MAX - 10, t0);
        assert_eq!(r.rewrite(2, 50, t0), Some((FIRST_SEQ + 1, 50)));
    }
}
