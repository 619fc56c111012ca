//! The drain machinery: every `Rtc` mutation is followed by a full drain of
//! its `poll_output` (str0m's run-loop contract), peer timers, and what the
//! room does with each str0m event.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::media::{MediaKind, Mid};
use str0m::{Event, IceConnectionState, Output};

use super::{MediaRoom, SfuEvent};
use crate::ids::{PeerId, TrackKind};
use crate::track::Track;

impl MediaRoom {
    /// Records an input time: `self.now` is the latest instant any input carried.
    pub(super) fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    pub(super) fn mark_dirty(&mut self, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            if p.touch() {
                self.dirty.push(id);
            }
        }
    }

    /// Makes sure a timer entry exists at or before `at` for the peer.
    pub(super) fn schedule(&mut self, id: PeerId, at: Instant) {
        if let Some(p) = self.peers.get_mut(&id) {
            if p.scheduled.is_none_or(|s| at < s) {
                p.scheduled = Some(at);
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    /// Drains every dirty peer until none has output left.
    pub(super) fn drive(&mut self, now: Instant) {
        while let Some(id) = self.dirty.pop() {
            if let Some(p) = self.peers.get_mut(&id) {
                p.dirty = false;
            }
            self.drain(id, now);
        }
        self.metrics.flush();
    }

    fn drain(&mut self, id: PeerId, now: Instant) {
        loop {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            if !peer.rtc.is_alive() {
                let participant = peer.participant.clone();
                let role = peer.role;
                peer.next_timeout = now + Duration::from_secs(3600);
                if peer.connected {
                    peer.connected = false;
                    self.events
                        .push_back(SfuEvent::Disconnected { participant, role });
                }
                return;
            }
            let out = match peer.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(peer = ?id, "peer failed: {e}");
                    peer.rtc.disconnect();
                    continue;
                }
            };
            match out {
                Output::Timeout(t) => {
                    let t = peer.wake_at(t, now);
                    peer.next_timeout = t;
                    self.schedule(id, t);
                    return;
                }
                Output::Transmit(t) => {
                    if crate::peer::is_rtp(&t.contents) {
                        peer.last_rtp = now;
                        peer.note_sent_rtp(&t.contents);
                    }
                    self.transmits.push_back(t)
                }
                Output::Event(e) => self.on_event(id, e, now),
            }
        }
    }

    fn on_event(&mut self, id: PeerId, event: Event, now: Instant) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let participant = peer.participant.clone();
        let role = peer.role;
        match event {
            Event::Connected => {
                peer.connected = true;
                self.events
                    .push_back(SfuEvent::Connected { participant, role });
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) if peer.connected => {
                peer.connected = false;
                self.events
                    .push_back(SfuEvent::Disconnected { participant, role });
            }
            // On a single connection, the client's recvonly sections are
            // ours to send on (see `single`), not tracks it publishes.
            Event::MediaAdded(m) if role.publishes() && m.direction.is_receiving() => {
                let simulcast = m
                    .simulcast
                    .as_ref()
                    .is_some_and(|s| s.recv.len() > 1 || s.send.len() > 1);
                self.publisher_media_added(id, m.mid, m.kind, simulcast);
            }
            Event::MediaChanged(m) if role.publishes() && !m.direction.is_receiving() => {
                if let Some(track) = self.track_by_mid.get(&(id, m.mid)).cloned() {
                    self.unpublish(&track);
                    self.events
                        .push_back(SfuEvent::TrackEnded { participant, track });
                }
            }
            Event::RtpPacket(pkt) if role.publishes() => {
                peer.last_rtp = now;
                self.forward(id, pkt, now);
            }
            Event::KeyframeRequest(req) if role.subscribes() => {
                if let Some(track) = peer.mid_to_track.get(&req.mid).cloned() {
                    let layer = self.tracks.get(&track).and_then(|t| {
                        t.subscribers
                            .iter()
                            .find(|s| s.peer == id)
                            .map(|s| s.current.unwrap_or(s.target))
                    });
                    tracing::debug!(%track, ?layer, kind = ?req.kind, "subscriber asked for a keyframe");
                    self.request_keyframe(&track, layer, req.kind, now);
                }
            }
            Event::ChannelOpen(cid, label) => peer.channel_opened(cid, label),
            Event::ChannelClose(cid) => peer.channel_closed(cid),
            Event::ChannelData(d) if role.publishes() => {
                let reliable = peer.channels.get(&d.id).is_none_or(|l| l != "_lossy");
                self.events.push_back(SfuEvent::Data {
                    participant,
                    reliable,
                    data: d.data,
                });
            }
            Event::EgressBitrateEstimate(str0m::bwe::BweKind::Twcc { estimate, .. }) => {
                peer.estimate = Some(estimate);
            }
            Event::MediaIngressStats(s) => {
                if let Some(loss) = s.loss {
                    peer.loss = peer.loss * 0.5 + loss * 0.5;
                    self.metrics.upstream_loss(loss);
                }
                peer.rtt = s.rtt.or(peer.rtt);
                let nacks = peer.repairs.ingress(s.mid, s.rid, s.nacks);
                self.metrics.repairs(0, 0, nacks, 0);
            }
            Event::MediaEgressStats(s) => {
                if let Some(loss) = s.loss {
                    peer.loss = peer.loss * 0.5 + loss * 0.5;
                }
                peer.rtt = s.rtt.or(peer.rtt);
                let lost = s.remote.as_ref().map_or(0, |r| r.packets_lost);
                let (nacks, plis, lost) =
                    peer.repairs
                        .egress(s.mid, s.rid, s.nacks, s.plis + s.firs, lost);
                self.metrics.repairs(nacks, plis, 0, lost);
            }
            _ => {}
        }
    }

    fn publisher_media_added(&mut self, id: PeerId, mid: Mid, kind: MediaKind, simulcast: bool) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let owner = peer.participant.clone();
        let Some(media) = peer.rtc.media(mid) else {
            return;
        };
        let msid_track = media.track_id().to_string();
        let kind = if kind == MediaKind::Audio {
            TrackKind::Audio
        } else {
            TrackKind::Video
        };
        let codecs: HashMap<_, _> = peer
            .rtc
            .codec_config()
            .params()
            .iter()
            // RED rides on the Opus params (their `red` number): both numbers
            // lead to them, and `forward` tells the two apart.
            .flat_map(|p| std::iter::once((p.pt(), *p)).chain(p.red().map(|r| (r, *p))))
            .collect();
        let pending = |t: &&mut Track| t.owner == owner && t.source.is_none() && t.kind == kind;
        let mut tracks = self.tracks.values_mut();
        let chosen = match tracks.find(|t| pending(t) && t.cid == msid_track) {
            Some(t) => Some(t),
            None => self
                .tracks
                .values_mut()
                .filter(|t| pending(t))
                .min_by(|a, b| a.sid.cmp(&b.sid)),
        };
        let Some(track) = chosen else {
            tracing::debug!(?mid, "publisher media without a matching add_track");
            return;
        };
        track.source = Some((id, mid));
        // Simulcast is what the SDP negotiated (rids), not what add_track listed:
        // SVC codecs announce several layers in one stream.
        track.simulcast = simulcast;
        track.codecs = codecs;
        let held_requests = track.pending_pli.iter().any(Option::is_some);
        let sid = track.sid.clone();
        if held_requests {
            // Requests made before the media existed go out at the next timeout.
            self.keyframe_retry = Some(self.now);
        }
        self.track_by_mid.insert((id, mid), sid.clone());
        self.events.push_back(SfuEvent::TrackMedia {
            participant: owner,
            track: sid,
        });
    }
}
