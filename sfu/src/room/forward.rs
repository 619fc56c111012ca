//! Forwarding: one publisher RTP packet to every subscription, simulcast
//! layer choice, keyframe requests and per-layer bitrates.

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequestKind, Pt};
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo};

use super::bandwidth::{
    drop_backlog, queue_delay, CONGESTION_REACT, MAX_QUEUE_DELAY, SEVERE_QUEUE_DELAY,
};
use super::{MediaRoom, ACTIVE_LEVEL, LAYER_TICK};
use crate::gaps::give_up_after;
use crate::ids::{Layer, PeerId, TrackKind, TrackSid};
use crate::keyframe::starts_keyframe;
use crate::peer::{RTX_MAX_AGE, RTX_RATIO_CAP, SEND_BUFFER_VIDEO};
use crate::rewrite::Rewriter;
use crate::track::{OutPt, Track};

impl MediaRoom {
    pub(super) fn init_subscription(&mut self, peer: PeerId, track: &TrackSid, now: Instant) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        let clock = if t.kind == TrackKind::Audio {
            48_000
        } else {
            90_000
        };
        let mut mid = None;
        if let Some(s) = t.subscribers.iter_mut().find(|s| s.peer == peer) {
            s.rewriter = Some(Rewriter::new(clock));
            s.current = None;
            mid = s.mid;
        }
        if let (Some(mid), Some(p)) = (mid, self.peers.get_mut(&peer)) {
            if let Some(tx) = p.rtc.direct_api().stream_tx_by_mid(mid, None) {
                if t.kind == TrackKind::Video {
                    // str0m keeps sent packets 3 s for NACKs by default; the
                    // buffer grows to what that window holds and never shrinks
                    // (a few hundred bytes per slot per subscriber stream).
                    tx.set_rtx_cache(SEND_BUFFER_VIDEO, RTX_MAX_AGE, Some(RTX_RATIO_CAP));
                } else {
                    // Audio is written not nackable: nothing of it is kept or
                    // resent, so no resend ratio is capped either. Without a
                    // cap str0m does not log every packet sent in the last
                    // second (24 bytes each, ~1.5 KB per audio stream).
                    tx.set_rtx_cache(0, Duration::ZERO, None);
                }
            }
        }
        let layer = if t.simulcast { Some(Layer::High) } else { None };
        self.request_keyframe(track, layer, KeyframeRequestKind::Pli, now);
    }

    /// Forwards one publisher RTP packet to every subscriber of its track.
    pub(super) fn forward(&mut self, pub_id: PeerId, pkt: RtpPacket, now: Instant) {
        let Some(peer) = self.peers.get_mut(&pub_id) else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let Some((mid, rid)) = peer
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|rx| (rx.mid(), rx.rid()))
        else {
            return;
        };
        let Some(track_sid) = self.track_by_mid.get(&(pub_id, mid)) else {
            return;
        };
        let Some(track) = self.tracks.get_mut(track_sid) else {
            return;
        };
        let layer = rid.and_then(|r| Layer::from_rid(&r));
        let idx = Track::layer_index(layer);
        track.last_packet[idx] = Some(now);
        let counts = &mut self.metrics.counts;
        if track.kind == TrackKind::Audio {
            counts.audio_in += 1;
            counts.audio_in_bytes += pkt.payload.len() as u64;
        } else {
            counts.video_in += 1;
            counts.video_in_bytes += pkt.payload.len() as u64;
        }
        if track.kind == TrackKind::Audio {
            if let Some(level) = pkt.header.ext_vals.audio_level {
                let level = level.unsigned_abs().min(127) as i8;
                track.audio_packets += 1;
                if level <= ACTIVE_LEVEL {
                    track.audio_active_packets += 1;
                }
                track.audio_level_sum += 1.0 - f32::from(level) / 127.0;
            }
        }
        let Some(params) = track.codecs.get(&pkt.header.payload_type).copied() else {
            let ts = pkt.header.timestamp;
            track.rates.packet(idx, pkt.payload.len(), ts, false);
            return;
        };
        if track.nack_ssrc[idx] != Some(ssrc) && params.fb_nack() {
            // Uplink recovery. str0m NACKs a receive stream only when RTX was
            // negotiated for it; the LiveKit SDKs that pin one codec (the Rust
            // SDK behind the Python `livekit` package) offer video without
            // RTX, and their losses on the way to Nodo were never repaired.
            // A publisher that accepted `nack` feedback retransmits on the
            // media SSRC itself (RFC 4585), so Nodo turns NACK on for every
            // video stream whose codec has it; str0m then tracks the gaps,
            // sends and retries the NACKs, and de-wraps RTX when there is RTX.
            if let Some(rx) = peer.rtc.direct_api().stream_rx(&ssrc) {
                rx.suppress_nack(false);
            }
            track.nack_ssrc[idx] = Some(ssrc);
            // A new stream numbers its packets afresh.
            track.gaps[idx] = Default::default();
        }
        let red_in = params.red() == Some(pkt.header.payload_type);
        // The primary block of a RED packet, made once for the subscribers
        // without RED; `Err` until needed.
        let mut unred: Option<Option<std::sync::Arc<[u8]>>> = None;
        // The RED payload renumbered for a subscriber's Opus number, made
        // once per packet and number.
        let mut renumbered: Option<(Pt, Option<std::sync::Arc<[u8]>>)> = None;
        let codec = params.spec().codec;
        let is_video = track.kind == TrackKind::Video;
        if is_video && track.codec.is_none() {
            // Named in dynacast updates; a client that did not say gets the
            // one its media arrives in.
            track.codec = Some(codec.to_string().to_ascii_lowercase());
        }
        let keyframe = is_video && starts_keyframe(codec, &pkt.payload);
        let seq: u64 = *pkt.seq_no;
        let ts = pkt.header.timestamp;
        track.rates.packet(idx, pkt.payload.len(), ts, keyframe);
        if keyframe {
            tracing::debug!(track = %track_sid, ?layer, seq, "keyframe from the publisher");
            track.awaiting_keyframe[idx] = None;
        }
        // An uplink loss beyond repair leaves every subscriber of the stream
        // unable to decode until the next keyframe: one is asked for now, not
        // seconds later when the subscribers' decoders time out.
        let mut lost_for_good = false;
        if is_video && params.fb_nack() {
            let gaps = &mut track.gaps[idx];
            gaps.packet(seq, now);
            if keyframe {
                gaps.reset();
            } else if gaps.take_lost(now, give_up_after(peer.rtt)) {
                // A keyframe already asked for repairs this loss too: under
                // sustained loss, every keyframe losing a packet must not
                // bring another.
                lost_for_good = track.awaiting_keyframe[idx].is_none()
                    && track
                        .subscribers
                        .iter()
                        .any(|s| s.current.is_some() && (!track.simulcast || s.current == layer));
            }
        }
        let mut ext = pkt.header.ext_vals.clone();
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        let mut wants_keyframe = None;
        // Audio lost on the publisher's uplink that RED brought along, for
        // the subscribers that get the primary Opus alone.
        let recovered = if track.kind == TrackKind::Audio {
            let opus = red_in.then(|| *params.pt());
            track.red_recover(seq, ts, &pkt.payload, opus)
        } else {
            Vec::new()
        };

        for sub in track.subscribers.iter_mut() {
            let (Some(sub_mid), Some(rewriter)) = (sub.mid, sub.rewriter.as_mut()) else {
                continue;
            };
            if sub.settings.disabled || sub.bwe_paused {
                continue;
            }
            if track.simulcast {
                if sub.current != layer {
                    if layer == Some(sub.target) && keyframe {
                        // Moving down: what still waits of the upper layer
                        // would hold this keyframe back.
                        if sub.current > layer
                            && queue_delay(&mut self.peers, sub.peer, sub_mid, now)
                                > MAX_QUEUE_DELAY
                        {
                            let dropped = drop_backlog(
                                &mut self.peers,
                                &mut self.dirty,
                                &self.metrics,
                                sub.peer,
                                sub_mid,
                                Some(&mut *rewriter),
                            );
                            tracing::debug!(subscriber = %sub.subscriber, dropped, ?layer, "backlog dropped at a move down");
                        }
                        rewriter.switch_source(seq, ts, now);
                        sub.current = layer;
                    } else {
                        if sub.current.is_none() || sub.current != Some(sub.target) {
                            wants_keyframe = Some(sub.target);
                        }
                        continue;
                    }
                }
            } else if sub.current.is_none() {
                if is_video && !keyframe {
                    wants_keyframe = Some(Layer::High);
                    continue;
                }
                rewriter.switch_source(seq, ts, now);
                sub.current = Some(Layer::High);
            }
            // Only a subscription that can move down reacts: at the lowest
            // layer a keyframe would only add to the backlog. The pacer queue
            // is looked at once per frame (its last packet), not per packet:
            // this is the forwarding hot path.
            if pkt.header.marker && track.simulcast && sub.current.is_some_and(|l| l > Layer::Low) {
                let delay = queue_delay(&mut self.peers, sub.peer, sub_mid, now);
                let react = sub
                    .congested_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= CONGESTION_REACT);
                // A keyframe alone can hold the queue for a moment on a good
                // link: a backlog counts when the estimate also says the layer
                // no longer fits, or when it is long whatever the estimate says.
                let estimate_agrees = sub.current.is_some_and(|l| sub.bwe_cap < l);
                let backed_up =
                    (delay > MAX_QUEUE_DELAY && estimate_agrees) || delay > SEVERE_QUEUE_DELAY;
                if backed_up && react {
                    // The subscriber's pacer holds more than its link drains:
                    // stop feeding it this layer now (a stale backlog is worse
                    // than a short pause) and resume at a keyframe of the low
                    // layer, the one most likely to fit; the estimate takes it
                    // back up once the hold is over. Audio is not paced and
                    // keeps flowing.
                    sub.start_hold(now);
                    sub.current = None;
                    sub.bwe_cap = Layer::Low;
                    sub.target = Layer::Low;
                    let dropped = drop_backlog(
                        &mut self.peers,
                        &mut self.dirty,
                        &self.metrics,
                        sub.peer,
                        sub_mid,
                        sub.rewriter.as_mut(),
                    );
                    tracing::debug!(subscriber = %sub.subscriber, ?delay, dropped, target = ?sub.target, "subscriber congested");
                    wants_keyframe = Some(sub.target);
                    continue;
                }
            }
            let Some((out_seq, out_ts)) = rewriter.rewrite(seq, ts, now) else {
                continue;
            };
            let Some(sub_peer) = self.peers.get_mut(&sub.peer) else {
                continue;
            };
            let out = match sub
                .pt_map
                .iter()
                .find(|(a, _)| *a == pkt.header.payload_type)
            {
                Some((_, b)) => *b,
                None => {
                    let Some(theirs) = sub_peer.rtc.codec_config().match_params(params) else {
                        continue;
                    };
                    let b = match (red_in, theirs.red()) {
                        (false, _) => OutPt::Plain(theirs.pt()),
                        (true, Some(red)) => OutPt::Red {
                            red,
                            opus_from: params.pt(),
                            opus_to: theirs.pt(),
                        },
                        (true, None) => OutPt::Unred {
                            opus_from: params.pt(),
                            opus_to: theirs.pt(),
                        },
                    };
                    tracing::debug!(track = %track_sid, subscriber = %sub.subscriber, from = *pkt.header.payload_type, to = ?b, "payload type mapped");
                    sub.pt_map.push((pkt.header.payload_type, b));
                    b
                }
            };
            // RED held back from a subscriber on a tight link (`set_red`).
            let out = match out {
                OutPt::Red {
                    opus_from, opus_to, ..
                } if sub_peer.red_off => OutPt::Unred { opus_from, opus_to },
                other => other,
            };
            let (out_pt, payload) = match out {
                OutPt::Plain(pt) => (pt, pkt.payload.clone()),
                OutPt::Red {
                    red,
                    opus_from,
                    opus_to,
                } if opus_from == opus_to => (red, pkt.payload.clone()),
                OutPt::Red {
                    red,
                    opus_from,
                    opus_to,
                } => {
                    if renumbered.as_ref().is_none_or(|(pt, _)| *pt != opus_to) {
                        let p = crate::red::renumber(&pkt.payload, *opus_from, *opus_to);
                        renumbered = Some((opus_to, p.map(Into::into)));
                    }
                    match renumbered.as_ref().and_then(|(_, p)| p.clone()) {
                        Some(p) => (red, p),
                        None => continue,
                    }
                }
                OutPt::Unred { opus_from, opus_to } => {
                    let primary = unred.get_or_insert_with(|| {
                        crate::red::primary(&pkt.payload, *opus_from).map(std::sync::Arc::from)
                    });
                    match primary {
                        Some(p) => (opus_to, p.clone()),
                        None => continue,
                    }
                }
            };
            let mut api = sub_peer.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(sub_mid, None) else {
                continue;
            };
            if matches!(out, OutPt::Unred { .. }) {
                // Before the packet that brought them, in order, each at its
                // own media time.
                for (r_seq, r_ts, r_payload) in &recovered {
                    let Some((s, t)) = rewriter.rewrite(*r_seq, *r_ts, now) else {
                        continue;
                    };
                    let back = u64::from(ts.wrapping_sub(*r_ts)) * 1_000_000 / 48_000;
                    let at = pkt
                        .timestamp
                        .checked_sub(std::time::Duration::from_micros(back))
                        .unwrap_or(pkt.timestamp);
                    tx.write_rtp(
                        RtpWrite::new(out_pt, SeqNo::from(s), t, at, r_payload.clone())
                            .ext_vals(ext.clone()),
                    );
                    self.metrics.counts.forwarded += 1;
                    self.metrics.counts.forwarded_bytes += r_payload.len() as u64;
                }
            }
            tx.write_rtp(
                RtpWrite::new(out_pt, SeqNo::from(out_seq), out_ts, pkt.timestamp, payload)
                    .marker(pkt.header.marker)
                    .ext_vals(ext.clone())
                    .nackable(is_video),
            );
            self.metrics.counts.forwarded += 1;
            self.metrics.counts.forwarded_bytes += pkt.payload.len() as u64;
            if sub_peer.touch() {
                self.dirty.push(sub.peer);
            }
        }
        let simulcast = track.simulcast;
        let sid = track_sid.clone();
        if lost_for_good {
            tracing::debug!(track = %sid, ?layer, "uplink loss beyond repair: keyframe requested");
            self.metrics.uplink_loss_unrepaired();
            self.request_keyframe(&sid, layer, KeyframeRequestKind::Pli, now);
        }
        if let Some(l) = wants_keyframe {
            let layer = if simulcast { Some(l) } else { None };
            self.request_keyframe(&sid, layer, KeyframeRequestKind::Pli, now);
        }
    }

    /// Re-evaluates layer targets of every subscription of one track.
    pub(super) fn retarget(&mut self, track: &TrackSid, now: Instant) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        if !t.simulcast {
            return;
        }
        let mut want_keyframes = Vec::new();
        let targets: Vec<Layer> = t
            .subscribers
            .iter()
            .map(|s| t.choose_layer(s, now))
            .collect();
        for (sub, target) in t.subscribers.iter_mut().zip(targets) {
            if sub.target != target {
                tracing::debug!(track = %t.sid, subscriber = %sub.subscriber, ?target, settings = ?sub.settings, cap = ?sub.bwe_cap, "layer target");
            }
            sub.target = target;
            if sub.current != Some(target)
                && !sub.settings.disabled
                && !sub.bwe_paused
                && sub.rewriter.is_some()
            {
                want_keyframes.push(target);
            }
        }
        want_keyframes.dedup();
        for l in want_keyframes {
            self.request_keyframe(track, Some(l), KeyframeRequestKind::Pli, now);
        }
    }

    pub(super) fn layer_tick(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.last_layer_tick)
            .as_secs_f64()
            .max(0.001);
        self.last_layer_tick = now;
        self.next_layer_tick = now + LAYER_TICK;
        // Bitrates per layer.
        for t in self.tracks.values_mut() {
            t.rates.tick(elapsed);
        }
        self.apply_bandwidth_caps(now);
        self.set_probe_targets(now);
        let sids: Vec<TrackSid> = self.tracks.keys().cloned().collect();
        for sid in sids {
            self.retarget(&sid, now);
            self.dynacast_track(&sid, now);
        }
        self.stream_state_tick(now);
    }
}
