//! Bandwidth adaptation for subscribers: the downlink estimate caps each
//! simulcast subscription's layer, a backed-up pacer moves it down at once,
//! and the estimator is told how far to probe.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::media::{Direction, KeyframeRequestKind, Mid};

use super::MediaRoom;
use crate::ids::{Layer, PeerId, TrackKind};
use crate::metrics::RoomMetrics;
use crate::peer::Peer;
use crate::rewrite::Rewriter;

/// How long a subscription's bandwidth cap stays down before it may go up
/// again: doubled each time a move up congests the link again within a
/// minute, up to `BWE_HOLD_MAX`.
pub(super) const BWE_HOLD: Duration = Duration::from_secs(5);
pub(super) const BWE_HOLD_MAX: Duration = Duration::from_secs(60);
/// Video waiting longer than this in a subscriber's pacer, while the estimate
/// agrees the layer no longer fits, means its downlink is congested now.
pub(super) const MAX_QUEUE_DELAY: Duration = Duration::from_millis(150);
/// Video waiting this long means congestion whatever the estimate says yet.
pub(super) const SEVERE_QUEUE_DELAY: Duration = Duration::from_millis(600);
/// How often the estimator is asked again to probe up to the next layer while
/// its estimate stays short of it.
pub(super) const PROBE_EVERY: Duration = Duration::from_secs(3);
/// Fewest time between two congestion reactions of one subscription.
pub(super) const CONGESTION_REACT: Duration = Duration::from_secs(1);

/// How long the oldest packet queued for one of a subscriber's m-lines has
/// waited in its pacer (zero when nothing waits, or before the pacer saw it).
pub(super) fn queue_delay(
    peers: &mut HashMap<PeerId, Box<Peer>>,
    peer: PeerId,
    mid: Mid,
    now: Instant,
) -> Duration {
    peers
        .get_mut(&peer)
        .and_then(|p| {
            let mut api = p.rtc.direct_api();
            let first = api
                .stream_tx_by_mid(mid, None)?
                .queue_info()?
                .first_unsent()?;
            Some(now.saturating_duration_since(first))
        })
        .unwrap_or(Duration::ZERO)
}
/// Drops the video waiting in a subscriber's pacer for one m-line, when the
/// subscription is taken off the layer it was queued for: sent late, it
/// would only hold back the keyframe of the layer that fits (on a 300 kbit/s
/// link, a second of it). str0m clears a stream's queue, resend cache and
/// pending resends when its m-line stops sending; the direction is put back
/// at once and the change is never applied, so nothing is negotiated. The
/// subscription's `rewriter` then goes on from the last packet that left
/// (as the peer saw it go), so the subscriber sees no gap in the sequence
/// numbers: the packets never went out, so they were not lost on its link,
/// and it could not have them resent (the cache is gone). str0m also emits a
/// `MediaChanged` with the unchanged direction, which the room ignores: a
/// subscriber's m-line is never in `track_by_mid`. The peer is marked dirty
/// (its pacer timeout changed). Counts, and returns, how many packets were
/// waiting, as the pacer last sampled its queue.
pub(super) fn drop_backlog(
    peers: &mut HashMap<PeerId, Box<Peer>>,
    dirty: &mut Vec<PeerId>,
    metrics: &RoomMetrics,
    peer: PeerId,
    mid: Mid,
    rewriter: Option<&mut Rewriter>,
) -> usize {
    let Some(p) = peers.get_mut(&peer) else {
        return 0;
    };
    let Some(dir) = p.rtc.media(mid).map(|m| m.direction()) else {
        return 0;
    };
    if !dir.is_sending() {
        return 0;
    }
    let (waiting, ssrc) = p
        .rtc
        .direct_api()
        .stream_tx_by_mid(mid, None)
        .map(|tx| {
            let waiting = tx.queue_info().map_or(0, |q| q.packet_count());
            (waiting, Some(*tx.ssrc()))
        })
        .unwrap_or((0, None));
    let mut sdp = p.rtc.sdp_api();
    sdp.set_direction(mid, Direction::Inactive);
    sdp.set_direction(mid, dir);
    // Nothing sent yet on the stream: the subscriber has no number to see a
    // gap after.
    if let (Some(rewriter), Some(sent)) = (rewriter, ssrc.and_then(|s| p.last_sent_seq(s))) {
        rewriter.dropped_after(sent);
    }
    if p.touch() {
        dirty.push(peer);
    }
    metrics.backlog_dropped(waiting);
    waiting
}

impl MediaRoom {
    /// Bandwidth adaptation: caps each subscription's simulcast layer by the
    /// subscriber's downlink estimate (str0m's TWCC send-side estimate, which
    /// falls on both delay growth and loss). Audio comes first: what the
    /// subscriber's audio subscriptions use is set aside before the rest is
    /// shared among its video subscriptions, so video congestion never takes
    /// the room audio needs. Moving down happens at the first tick the layer
    /// no longer fits; moving up needs 15 % headroom and waits out a hold
    /// after each move down (`BWE_HOLD`), so the choice does not flap between
    /// a layer the link can carry and one it cannot.
    pub(super) fn apply_bandwidth_caps(&mut self, now: Instant) {
        let mut audio_bps: HashMap<PeerId, u64> = HashMap::new();
        let mut video_subs: HashMap<PeerId, u64> = HashMap::new();
        // What each subscriber's video needs at the least: its lowest layers.
        let mut video_floor: HashMap<PeerId, u64> = HashMap::new();
        for t in self.tracks.values() {
            for s in &t.subscribers {
                if t.kind == TrackKind::Audio {
                    *audio_bps.entry(s.peer).or_default() += t.rates.rate[0];
                } else if !s.settings.disabled {
                    *video_subs.entry(s.peer).or_default() += 1;
                    let floor = if t.simulcast {
                        t.rates.rate[Layer::Low as usize]
                    } else {
                        t.rates.rate[0]
                    };
                    *video_floor.entry(s.peer).or_default() += floor;
                }
            }
        }
        self.set_red(&audio_bps, &video_floor);
        for t in self.tracks.values_mut().filter(|t| t.simulcast) {
            // Headers included (`rates::PACKET_OVERHEAD`).
            let rates = t.rates.rate;
            for s in t.subscribers.iter_mut() {
                let Some(est) = self.peers.get(&s.peer).and_then(|p| p.estimate) else {
                    continue;
                };
                let audio = audio_bps.get(&s.peer).copied().unwrap_or(0);
                let videos = video_subs.get(&s.peer).copied().unwrap_or(1).max(1);
                let share = est.as_u64().saturating_sub(audio) / videos;
                let held = s.bwe_hold_until.is_some_and(|t| now < t);
                let fits = |l: Layer| {
                    if l > s.bwe_cap && held {
                        return false;
                    }
                    let r = rates[l as usize];
                    let room = if l > s.bwe_cap {
                        share * 85 / 100
                    } else {
                        share
                    };
                    r == 0 || r <= room
                };
                let cap = Layer::ALL
                    .iter()
                    .rev()
                    .copied()
                    .find(|l| fits(*l))
                    .unwrap_or(Layer::Low);
                if cap < s.bwe_cap && s.bwe_decided {
                    s.bwe_hold_until = Some(now + s.bwe_hold.max(BWE_HOLD));
                }
                s.bwe_decided = true;
                // Up one layer at a time: a wrong guess then costs the least.
                let cap = if cap > s.bwe_cap {
                    Layer::ALL
                        .iter()
                        .copied()
                        .find(|l| *l > s.bwe_cap)
                        .unwrap_or(cap)
                } else {
                    cap
                };
                tracing::trace!(peer = ?s.peer, estimate = %est, share, audio, ?rates, ?cap, "bandwidth share");
                if cap != s.bwe_cap {
                    tracing::debug!(peer = ?s.peer, estimate = %est, share, audio, ?rates, ?cap, "bandwidth cap");
                }
                s.bwe_cap = cap;
            }
        }
        self.apply_bandwidth_pauses(now, &audio_bps, &video_subs);
    }

    /// Pauses a video subscription whose subscriber allows it when the
    /// estimate, its audio set aside, cannot carry even the lowest layer, and
    /// resumes it (at a keyframe) once that layer fits with 15 % to spare and
    /// the hold after the pause is over. Probing goes on meanwhile (see
    /// `set_probe_targets`), so the estimate can find the room again.
    fn apply_bandwidth_pauses(
        &mut self,
        now: Instant,
        audio_bps: &HashMap<PeerId, u64>,
        video_subs: &HashMap<PeerId, u64>,
    ) {
        let mut keyframes = Vec::new();
        for t in self.tracks.values_mut() {
            if t.kind != TrackKind::Video {
                continue;
            }
            let floor = if t.simulcast {
                t.rates.rate[Layer::Low as usize]
            } else {
                t.rates.rate[0]
            };
            for s in t.subscribers.iter_mut() {
                let Some(p) = self.peers.get(&s.peer) else {
                    continue;
                };
                let est = p.estimate.map(|e| e.as_u64());
                let (Some(est), true, true) = (est, p.allow_pause, floor > 0) else {
                    if s.bwe_paused && !p.allow_pause {
                        s.bwe_paused = false;
                        s.current = None;
                        s.enabled_since = now;
                        keyframes.push((t.sid.clone(), s.target));
                    }
                    continue;
                };
                let audio = audio_bps.get(&s.peer).copied().unwrap_or(0);
                let videos = video_subs.get(&s.peer).copied().unwrap_or(1).max(1);
                let share = est.saturating_sub(audio) / videos;
                let held = s.bwe_hold_until.is_some_and(|h| now < h);
                if !s.bwe_paused && floor > share && !s.settings.disabled {
                    // A marginal link does not pause and resume in turn.
                    s.start_hold(now);
                    tracing::debug!(peer = ?s.peer, track = %t.sid, estimate = est, share, floor, hold = ?s.bwe_hold, "paused for bandwidth");
                    s.bwe_paused = true;
                    s.current = None;
                    if let Some(mid) = s.mid {
                        drop_backlog(
                            &mut self.peers,
                            &mut self.dirty,
                            &self.metrics,
                            s.peer,
                            mid,
                            s.rewriter.as_mut(),
                        );
                    }
                } else if s.bwe_paused && !held && floor <= share * 85 / 100 {
                    tracing::debug!(peer = ?s.peer, track = %t.sid, estimate = est, share, floor, "resumed after a bandwidth pause");
                    s.bwe_paused = false;
                    s.enabled_since = now;
                    if !s.settings.disabled {
                        keyframes.push((t.sid.clone(), s.target));
                    }
                }
            }
        }
        for (track, layer) in keyframes {
            self.request_keyframe(&track, Some(layer), KeyframeRequestKind::Pli, now);
        }
    }

    /// RED doubles what a subscriber's audio costs. Where the estimate leaves
    /// less than 15 % over its audio (counted in RED) and its lowest video
    /// layers, RED is held back and the primary Opus sent alone, until the
    /// estimate has 50 % to spare again: on a link that tight, redundancy
    /// would take the video's share and cause the losses it is meant to mend.
    fn set_red(&mut self, audio_bps: &HashMap<PeerId, u64>, video_floor: &HashMap<PeerId, u64>) {
        for (peer, audio) in audio_bps {
            let Some(p) = self.peers.get_mut(peer) else {
                continue;
            };
            let Some(est) = p.estimate.map(|e| e.as_u64()) else {
                continue;
            };
            let need = audio + video_floor.get(peer).copied().unwrap_or(0);
            let off = if p.red_off {
                est < need * 3 / 2
            } else {
                est < need * 115 / 100
            };
            if off != p.red_off {
                tracing::debug!(?peer, estimate = est, need, red = !off, "subscriber RED");
                p.red_off = off;
            }
        }
    }

    /// Tells each subscriber connection's estimator how far to probe: what
    /// its subscriptions use now, plus, for a simulcast subscription not held
    /// down by recent congestion, the next layer up. A subscriber that just
    /// moved down is not probed past what it receives, so probes do not cause
    /// the losses that moved it down again.
    pub(super) fn set_probe_targets(&mut self, now: Instant) {
        // Per subscriber connection: bits/s wanted, any subscription held
        // down, any congested lately, any paused for bandwidth.
        let mut desired: HashMap<PeerId, (u64, bool, bool, bool)> = HashMap::new();
        for t in self.tracks.values() {
            let top = t.rates.rate.iter().copied().max().unwrap_or(0);
            for s in t.subscribers.iter().filter(|s| !s.settings.disabled) {
                let held = s.bwe_hold_until.is_some_and(|h| now < h);
                if s.bwe_paused {
                    // Probe for the lowest layer, hold or not: nothing else
                    // would let the estimate grow back to it.
                    let low = if t.simulcast {
                        t.rates.rate[Layer::Low as usize]
                    } else {
                        t.rates.rate[0]
                    };
                    let e = desired.entry(s.peer).or_default();
                    e.0 += low;
                    e.3 = true;
                    continue;
                }
                let bps = if t.simulcast {
                    let wanted = s.settings.max_layer;
                    let layer = if held {
                        s.bwe_cap.min(wanted)
                    } else {
                        Layer::ALL
                            .iter()
                            .copied()
                            .find(|l| *l > s.bwe_cap)
                            .unwrap_or(s.bwe_cap)
                            .min(wanted)
                    };
                    match t.rates.rate[layer as usize] {
                        0 => top,
                        r => r,
                    }
                } else {
                    top
                };
                let e = desired.entry(s.peer).or_default();
                e.0 += bps;
                e.1 |= held;
                e.2 |= s
                    .congested_at
                    .is_some_and(|c| now.saturating_duration_since(c) < BWE_HOLD_MAX);
            }
        }
        for (peer, (bps, held, congested, paused)) in desired {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            // Unless held down, probe to at least 300 kbit/s, so a quiet start
            // still learns the link.
            let floor = if held { 0 } else { 300_000 };
            let want = bps.max(floor) * 23 / 20;
            // str0m probes (RTX padding at 1x and 2x the target) each time
            // the target rises above the estimate. Following every wobble of
            // the measured layer rates probed four times a second and flooded
            // capped links; never rising again left the estimate stuck below
            // the next layer (its growth is capped at 1.5x what is sent). So
            // the target moves on real changes, and while the estimate is
            // short of it and no congestion hold is on, it is re-raised every
            // `PROBE_EVERY`: dipped by 1 % for one tick, then restored. Not
            // after a congestion in the last minute: there the layer steps
            // up on the estimate alone, without probes that would hit the
            // same bottleneck again.
            let old = p.probe_target;
            let short = p.estimate.is_none_or(|e| e.as_u64() < want);
            let changed = old == 0 || want >= old * 5 / 4 || want <= old * 4 / 5;
            let set = if changed {
                p.probe_dip_at = None;
                want
            } else if p.probe_dip_at.is_some() {
                // The tick after a dip: back up, which is the probe.
                p.probe_dip_at = None;
                p.next_probe = Some(now + PROBE_EVERY);
                old
            } else if (paused || (!held && !congested))
                && short
                && p.next_probe.is_none_or(|t| now >= t)
            {
                p.probe_dip_at = Some(now);
                old - old / 100
            } else {
                continue;
            };
            if changed || p.probe_dip_at.is_none() {
                p.probe_target = set;
            }
            if changed {
                p.next_probe = Some(now + PROBE_EVERY);
            }
            let want = str0m::bwe::Bitrate::bps(set);
            p.rtc
                .bwe()
                .set_bitrate(str0m::bwe::Bitrate::kbps(100).min(want), want);
            // It re-arms the pacer: the caller's drain picks up the new timeout.
            if p.touch() {
                self.dirty.push(peer);
            }
        }
    }
}

impl crate::track::Subscription {
    /// Starts a hold after congestion or a bandwidth pause: no step up
    /// before it ends. One soon after the last (within `BWE_HOLD_MAX`) holds
    /// twice as long as that one did, up to `BWE_HOLD_MAX`.
    pub(super) fn start_hold(&mut self, now: Instant) {
        let again = self
            .congested_at
            .is_some_and(|c| now.saturating_duration_since(c) < BWE_HOLD_MAX);
        self.bwe_hold = if again {
            (self.bwe_hold * 2).clamp(BWE_HOLD, BWE_HOLD_MAX)
        } else {
            BWE_HOLD
        };
        self.congested_at = Some(now);
        self.bwe_hold_until = Some(now + self.bwe_hold);
    }
}
