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

    /// The packets written after the one sent last, `sent` (as the wire
    /// numbers it), were dropped unsent: the next source goes on from `sent`,
    /// so the subscriber sees no gap where nothing was lost on its link (a
    /// gap it would report as loss and ask to have resent, from a resend
    /// cache that the drop emptied). Call before the next `switch_source`.
    pub fn dropped_after(&mut self, sent: u16) {
        if let Some(last) = self.last.as_mut() {
            // Written numbers are at most a pacer queue ahead of the wire.
            let back = u64::from((last.seq as u16).wrapping_sub(sent));
            if back < 0x8000 && back <= last.seq {
                last.seq -= back;
            }
        }
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
    fn a_dropped_backlog_leaves_no_gap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000);
        r.switch_source(500, 0, t0);
        for i in 0..20 {
            r.rewrite(500 + i, 0, t0);
        }
        // Written up to FIRST_SEQ + 19; the wire got up to FIRST_SEQ + 11.
        r.dropped_after((FIRST_SEQ + 11) as u16);
        let t1 = t0 + Duration::from_millis(10);
        r.switch_source(40, 9_000, t1);
        assert_eq!(r.rewrite(40, 9_000, t1).map(|x| x.0), Some(FIRST_SEQ + 12));
        // Across the 16-bit wrap of the wire numbers.
        let mut w = Rewriter::new(90_000);
        w.switch_source(0, 0, t0);
        let first = FIRST_SEQ;
        let top = 65_536 - first + 5; // written up to 65_541 (wire 5)
        for i in 0..=top {
            w.rewrite(i, 0, t0);
        }
        w.dropped_after(65_530);
        w.switch_source(7, 0, t1);
        assert_eq!(w.rewrite(7, 0, t1).map(|x| x.0), Some(65_531));
        // Nothing unsent (the wire has the last written): nothing moves.
        let mut n = Rewriter::new(90_000);
        n.switch_source(1, 0, t0);
        n.rewrite(1, 0, t0);
        n.dropped_after(FIRST_SEQ as u16);
        n.switch_source(9, 0, t1);
        assert_eq!(n.rewrite(9, 0, t1).map(|x| x.0), Some(FIRST_SEQ + 1));
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
