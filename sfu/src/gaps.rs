//! Losses on a publisher's uplink that retransmission did not repair.
//!
//! str0m NACKs a gap in a publisher stream a few times (5, a round trip
//! apart) and then gives up without telling anyone. A video packet lost for
//! good leaves every subscriber of that stream unable to decode until the
//! next keyframe, and a subscriber's own decoder only asks for one after
//! seconds without a decodable frame (libwebrtc waits 3 s), longer when its
//! request is lost on the way. `Gaps` watches the sequence numbers the room
//! forwards so the room can ask the publisher for a keyframe as soon as a
//! gap outlives the repair window.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Gaps tracked at once; str0m NACKs within the last 100 packets, so a jump
/// past this is beyond repair from the moment it is seen.
const MAX_TRACKED: u64 = 100;

/// The sequence numbers still missing in one publisher stream.
#[derive(Debug, Default)]
pub(crate) struct Gaps {
    highest: Option<u64>,
    /// Missing sequence numbers, ascending, each with when it went missing.
    missing: VecDeque<(u64, Instant)>,
    /// A loss was found beyond repair and not yet reported by `take_lost`.
    lost: bool,
}

impl Gaps {
    /// Records a packet of the stream (its extended sequence number).
    pub fn packet(&mut self, seq: u64, now: Instant) {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            return;
        };
        if seq > highest {
            let gap = seq - highest - 1;
            if gap > MAX_TRACKED {
                self.missing.clear();
                self.lost = true;
            } else {
                self.missing.extend((highest + 1..seq).map(|s| (s, now)));
            }
            self.highest = Some(seq);
        } else if let Ok(i) = self.missing.binary_search_by_key(&seq, |(s, _)| *s) {
            // A retransmission filled it.
            self.missing.remove(i);
        }
        while self.missing.len() as u64 > MAX_TRACKED {
            self.missing.pop_front();
            self.lost = true;
        }
    }

    /// Whether a packet went missing for longer than `give_up` (or further
    /// back than can be repaired) since the last call; forgets those gaps.
    pub fn take_lost(&mut self, now: Instant, give_up: Duration) -> bool {
        while let Some((_, at)) = self.missing.front() {
            if now.saturating_duration_since(*at) < give_up {
                break;
            }
            self.missing.pop_front();
            self.lost = true;
        }
        std::mem::take(&mut self.lost)
    }

    /// Starts over (a new stream, or a keyframe that makes the old gaps moot).
    pub fn reset(&mut self) {
        self.missing.clear();
        self.lost = false;
    }
}

/// How long a gap may stay open before it counts as lost: str0m's five NACK
/// rounds (a round trip and 5 ms apart) and the last retransmission's way
/// back, bounded so a bad RTT sample neither fires early nor waits for the
/// subscriber's own timeout.
pub(crate) fn give_up_after(rtt: Option<Duration>) -> Duration {
    let rtt = rtt.unwrap_or(Duration::from_millis(100));
    (rtt * 6 + Duration::from_millis(50)).clamp(Duration::from_millis(250), Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVE_UP: Duration = Duration::from_millis(300);

    #[test]
    fn a_gap_filled_in_time_is_not_a_loss() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        g.packet(10, t0);
        g.packet(13, t0); // 11 and 12 missing
        g.packet(12, t0 + Duration::from_millis(50));
        g.packet(11, t0 + Duration::from_millis(100));
        assert!(!g.take_lost(t0 + Duration::from_secs(5), GIVE_UP));
    }

    #[test]
    fn a_gap_left_open_is_reported_once() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        g.packet(10, t0);
        g.packet(12, t0);
        assert!(!g.take_lost(t0 + Duration::from_millis(200), GIVE_UP));
        assert!(g.take_lost(t0 + Duration::from_millis(300), GIVE_UP));
        assert!(!g.take_lost(t0 + Duration::from_millis(400), GIVE_UP));
        // Late retransmission of the forgotten packet: nothing to report.
        g.packet(11, t0 + Duration::from_millis(500));
        assert!(!g.take_lost(t0 + Duration::from_secs(2), GIVE_UP));
    }

    #[test]
    fn a_jump_past_the_nack_window_is_lost_at_once() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        g.packet(10, t0);
        g.packet(10 + MAX_TRACKED + 2, t0);
        assert!(g.take_lost(t0, GIVE_UP));
    }

    #[test]
    fn too_many_open_gaps_count_as_lost() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        g.packet(0, t0);
        // Every other packet lost, more than the NACK window holds.
        for s in (2..=2 * (MAX_TRACKED + 10)).step_by(2) {
            g.packet(s, t0);
        }
        assert!(g.take_lost(t0, GIVE_UP));
    }

    #[test]
    fn reordering_and_duplicates_are_not_gaps() {
        let t0 = Instant::now();
        let mut g = Gaps::default();
        for s in [1, 3, 2, 2, 4, 3, 5] {
            g.packet(s, t0);
        }
        assert!(!g.take_lost(t0 + Duration::from_secs(1), GIVE_UP));
    }

    #[test]
    fn the_give_up_time_follows_the_round_trip_within_bounds() {
        assert_eq!(give_up_after(None), Duration::from_millis(650));
        assert_eq!(
            give_up_after(Some(Duration::from_millis(1))),
            Duration::from_millis(250)
        );
        assert_eq!(
            give_up_after(Some(Duration::from_millis(80))),
            Duration::from_millis(530)
        );
        assert_eq!(
            give_up_after(Some(Duration::from_secs(2))),
            Duration::from_secs(1)
        );
    }
}
