//! Keyframe requests towards publishers: throttled per publisher layer, and
//! never lost. A request that cannot go out now (inside the throttle window,
//! or for a layer whose stream the publisher has not started yet) is kept and
//! sent at the first moment it can, so a subscriber waiting for a keyframe
//! always gets one, whatever order the requests and the media arrive in.
//! A request that went out but was not answered (a PLI lost on a lossy
//! link, or a keyframe the publisher never started) is sent again until a
//! keyframe starts on the layer.

use std::time::{Duration, Instant};

use str0m::media::KeyframeRequestKind;

use super::MediaRoom;
use crate::ids::{Layer, TrackKind, TrackSid};
use crate::track::Track;

/// How long a keyframe request waits for the keyframe's first packet before
/// it is sent again: a round trip and a frame on the links calls survive,
/// with room for the publisher's pacer.
const KEYFRAME_RETRY: Duration = Duration::from_millis(600);

/// How long an unanswered request is repeated. A layer that does not answer
/// in this time has most likely stopped, and the layer choice moves its
/// subscribers off it.
const KEYFRAME_PATIENCE: Duration = Duration::from_secs(3);

impl MediaRoom {
    /// Asks the publisher of `track` for a keyframe on `layer` (ignored for
    /// audio and for non-simulcast tracks' layer).
    pub(super) fn request_keyframe(
        &mut self,
        track: &TrackSid,
        layer: Option<Layer>,
        kind: KeyframeRequestKind,
        now: Instant,
    ) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        if t.kind == TrackKind::Audio {
            return;
        }
        let layer = if t.simulcast { layer } else { None };
        let idx = Track::layer_index(layer);
        // FIR is the stronger request (a decoder reset): it wins a merge.
        let kind = match t.pending_pli[idx] {
            Some(KeyframeRequestKind::Fir) => KeyframeRequestKind::Fir,
            _ => kind,
        };
        t.pending_pli[idx] = Some(kind);
        self.send_keyframe_request(track, idx, now);
    }

    /// Sends the pending request of one layer if the throttle allows and the
    /// publisher's stream exists; otherwise it stays pending.
    fn send_keyframe_request(&mut self, track: &TrackSid, idx: usize, now: Instant) {
        let throttle = self.config.pli_throttle;
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        let Some(kind) = t.pending_pli[idx] else {
            return;
        };
        if let Some(last) = t.last_pli[idx] {
            let due = last + throttle;
            if now < due {
                self.keyframe_retry = Some(self.keyframe_retry.map_or(due, |r| r.min(due)));
                return;
            }
        }
        let Some((pub_id, mid)) = t.source else {
            return; // sent once the media is negotiated (`flush_keyframe_requests`)
        };
        let rid = if t.simulcast {
            Layer::ALL.get(idx).map(|l| l.rid().into())
        } else {
            None
        };
        let Some(p) = self.peers.get_mut(&pub_id) else {
            return;
        };
        let mut api = p.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, rid) else {
            // The layer's stream is not known yet: retry at the next tick.
            let due = now + throttle;
            self.keyframe_retry = Some(self.keyframe_retry.map_or(due, |r| r.min(due)));
            return;
        };
        rx.request_keyframe(kind);
        tracing::debug!(track = %t.sid, layer = idx, ?kind, "keyframe requested from the publisher");
        t.pending_pli[idx] = None;
        t.last_pli[idx] = Some(now);
        t.awaiting_keyframe[idx].get_or_insert(now);
        let retry = now + KEYFRAME_RETRY;
        self.keyframe_retry = Some(self.keyframe_retry.map_or(retry, |r| r.min(retry)));
        self.metrics.keyframe_request_sent();
        if p.touch() {
            self.dirty.push(pub_id);
        }
    }

    /// Sends every pending keyframe request that may go out now, and again
    /// the unanswered ones that are due.
    pub(super) fn flush_keyframe_requests(&mut self, now: Instant) {
        if self.keyframe_retry.is_none_or(|at| now < at) {
            return;
        }
        self.keyframe_retry = None;
        let mut next: Option<Instant> = None;
        let mut pending: Vec<(TrackSid, usize)> = Vec::new();
        for t in self.tracks.values_mut() {
            for i in 0..3 {
                if let Some(first) = t.awaiting_keyframe[i] {
                    let due = t.last_pli[i].map_or(now, |last| last + KEYFRAME_RETRY);
                    if now.saturating_duration_since(first) >= KEYFRAME_PATIENCE {
                        t.awaiting_keyframe[i] = None;
                    } else if now >= due {
                        t.pending_pli[i].get_or_insert(KeyframeRequestKind::Pli);
                    } else {
                        next = Some(next.map_or(due, |n| n.min(due)));
                    }
                }
                if t.pending_pli[i].is_some() {
                    pending.push((t.sid.clone(), i));
                }
            }
        }
        if let Some(n) = next {
            self.keyframe_retry = Some(self.keyframe_retry.map_or(n, |r| r.min(n)));
        }
        for (track, idx) in pending {
            self.send_keyframe_request(&track, idx, now);
        }
    }
}
