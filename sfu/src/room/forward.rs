//! Forwarding: one publisher RTP packet to every subscription, simulcast
//! layer choice, keyframe requests and per-layer bitrates.

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::KeyframeRequestKind;
use str0m::rtp::{RtpPacket, RtpWrite, SeqNo};

use super::{MediaRoom, ACTIVE_LEVEL, LAYER_TICK};
use crate::ids::{Layer, PeerId, TrackKind, TrackSid};
use crate::keyframe::starts_keyframe;
use crate::rewrite::Rewriter;
use crate::track::Track;

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
        if let Some(s) = t.subscribers.iter_mut().find(|s| s.peer == peer) {
            s.rewriter = Some(Rewriter::new(clock));
            s.current = None;
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
        track.bytes[idx] += pkt.payload.len() as u64;
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
        }
        let codec = params.spec().codec;
        let is_video = track.kind == TrackKind::Video;
        let keyframe = is_video && starts_keyframe(codec, &pkt.payload);
        let seq: u64 = *pkt.seq_no;
        let ts = pkt.header.timestamp;
        let mut ext = pkt.header.ext_vals.clone();
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;
        ext.transport_cc = None;
        let mut wants_keyframe = None;

        for sub in track.subscribers.iter_mut() {
            let (Some(sub_mid), Some(rewriter)) = (sub.mid, sub.rewriter.as_mut()) else {
                continue;
            };
            if sub.settings.disabled {
                continue;
            }
            if track.simulcast {
                if sub.current != layer {
                    if layer == Some(sub.target) && keyframe {
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
            let Some((out_seq, out_ts)) = rewriter.rewrite(seq, ts, now) else {
                continue;
            };
            let Some(sub_peer) = self.peers.get_mut(&sub.peer) else {
                continue;
            };
            let out_pt = match sub
                .pt_map
                .iter()
                .find(|(a, _)| *a == pkt.header.payload_type)
            {
                Some((_, b)) => *b,
                None => {
                    let Some(b) = sub_peer
                        .rtc
                        .codec_config()
                        .match_params(params)
                        .map(|p| p.pt())
                    else {
                        continue;
                    };
                    sub.pt_map.push((pkt.header.payload_type, b));
                    b
                }
            };
            let mut api = sub_peer.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(sub_mid, None) else {
                continue;
            };
            tx.write_rtp(
                RtpWrite::new(
                    out_pt,
                    SeqNo::from(out_seq),
                    out_ts,
                    pkt.timestamp,
                    pkt.payload.clone(),
                )
                .marker(pkt.header.marker)
                .ext_vals(ext.clone())
                .nackable(is_video),
            );
            if !sub_peer.dirty {
                sub_peer.dirty = true;
                self.dirty.push(sub.peer);
            }
        }
        if let Some(l) = wants_keyframe {
            let sid = track_sid.clone();
            let layer = if track.simulcast { Some(l) } else { None };
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
            if sub.current != Some(target) && !sub.settings.disabled && sub.rewriter.is_some() {
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
            for i in 0..3 {
                let bps = (t.bytes[i] as f64 * 8.0 / elapsed) as u64;
                t.rate[i] = (t.rate[i] + bps) / 2;
                t.bytes[i] = 0;
            }
        }
        self.apply_bandwidth_caps();
        // Let each subscriber's pacer probe up to what its subscriptions could use.
        let mut desired: HashMap<PeerId, u64> = HashMap::new();
        for t in self.tracks.values() {
            let top = t.rate.iter().copied().max().unwrap_or(0);
            for s in &t.subscribers {
                *desired.entry(s.peer).or_default() += top;
            }
        }
        for (peer, bps) in desired {
            if let Some(p) = self.peers.get_mut(&peer) {
                let want = str0m::bwe::Bitrate::bps(bps.max(300_000) * 5 / 4);
                p.rtc
                    .bwe()
                    .set_bitrate(str0m::bwe::Bitrate::kbps(100), want);
                // It re-arms the pacer: the caller's drain picks up the new timeout.
                if !p.dirty {
                    p.dirty = true;
                    self.dirty.push(peer);
                }
            }
        }
        let sids: Vec<TrackSid> = self.tracks.keys().cloned().collect();
        for sid in sids {
            self.retarget(&sid, now);
        }
    }

    /// Bandwidth adaptation: caps each subscription's simulcast layer by the
    /// subscriber's downlink estimate (str0m's TWCC send-side estimate, which
    /// falls on both delay growth and loss). Audio comes first: what the
    /// subscriber's audio subscriptions use is set aside before the rest is
    /// shared among its video subscriptions, so video congestion never takes
    /// the room audio needs. Moving down happens at the first tick the layer
    /// no longer fits; moving up needs headroom, so the choice does not flap.
    fn apply_bandwidth_caps(&mut self) {
        let mut audio_bps: HashMap<PeerId, u64> = HashMap::new();
        let mut video_subs: HashMap<PeerId, u64> = HashMap::new();
        for t in self.tracks.values() {
            for s in &t.subscribers {
                if t.kind == TrackKind::Audio {
                    *audio_bps.entry(s.peer).or_default() += t.rate[0];
                } else if !s.settings.disabled {
                    *video_subs.entry(s.peer).or_default() += 1;
                }
            }
        }
        for t in self.tracks.values_mut().filter(|t| t.simulcast) {
            // Payload bytes plus RTP/SRTP/UDP/IP headers (~5 % at video packet sizes).
            let rates = t.rate.map(|r| r + r / 20);
            for s in t.subscribers.iter_mut() {
                let Some(est) = self.peers.get(&s.peer).and_then(|p| p.estimate) else {
                    continue;
                };
                let audio = audio_bps.get(&s.peer).copied().unwrap_or(0);
                let audio = audio + audio / 4; // headers are a large share of small packets
                let videos = video_subs.get(&s.peer).copied().unwrap_or(1).max(1);
                let share = est.as_u64().saturating_sub(audio) / videos;
                let fits = |l: Layer| {
                    let r = rates[l as usize];
                    // Upward moves need 15 % headroom.
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
                if cap != s.bwe_cap {
                    tracing::debug!(peer = ?s.peer, estimate = %est, share, audio, ?rates, ?cap, "bandwidth cap");
                }
                s.bwe_cap = cap;
            }
        }
    }
}
