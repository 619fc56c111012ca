//! SDP negotiation: the client's offers (a v0 publisher connection, a v1
//! single connection) answered, and the server's offers to v0 subscriber
//! connections, one at a time, with their answers; trickled candidates and
//! ICE restarts.

use std::collections::HashMap;
use std::time::Instant;

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::channel::{ChannelConfig, Reliability};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::Candidate;

use super::{MediaRoom, OfferAnswer, SfuEvent};
use crate::error::SfuError;
use crate::ids::{ParticipantSid, PeerId, PeerRole, TrackKind, TrackSid};

impl MediaRoom {
    /// Answers a publisher offer. What accepting it made the publisher
    /// connection send is queued on return.
    pub fn publisher_offer(
        &mut self,
        sid: &ParticipantSid,
        sdp: &str,
        now: Instant,
    ) -> Result<String, SfuError> {
        self.answer_offer(sid, sdp, now).map(|a| a.sdp)
    }

    /// Answers a client's offer: on a v0 publisher connection, or on a
    /// single connection, whose send sections the answer fills with the
    /// participant's subscriptions (see `single`). What accepting it made the
    /// connection send is queued on return.
    pub fn answer_offer(
        &mut self,
        sid: &ParticipantSid,
        sdp: &str,
        now: Instant,
    ) -> Result<OfferAnswer, SfuError> {
        self.advance(now);
        let answer = self.accept_publisher_offer(sid, sdp, now).map(|(id, sdp)| {
            if self
                .peers
                .get(&id)
                .is_some_and(|p| p.role == PeerRole::Single)
            {
                self.single_answer(id, sdp, now)
            } else {
                OfferAnswer {
                    sdp,
                    mid_to_track: HashMap::new(),
                }
            }
        });
        self.drive(now);
        answer
    }

    fn accept_publisher_offer(
        &mut self,
        sid: &ParticipantSid,
        sdp: &str,
        now: Instant,
    ) -> Result<(PeerId, String), SfuError> {
        self.peer_id(sid, PeerRole::Publisher)?;
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let id = self.publisher_peer(sid, now)?;
        // Drained whether or not str0m accepts the offer.
        self.mark_dirty(id);
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer)?;
        let old_ufrag = peer.local_ufrag();
        let answer = peer
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let ufrag = peer.local_ufrag();
        if ufrag != old_ufrag {
            self.events.push_back(SfuEvent::Ufrag { peer: id, ufrag });
        }
        let preferred: HashMap<String, String> = self
            .tracks
            .values()
            .filter(|t| &t.owner == sid)
            .filter_map(|t| Some((t.cid.clone(), t.codec.clone()?)))
            .collect();
        Ok((
            id,
            crate::sdp_order::follow_offer_order(sdp, &answer.to_sdp_string(), &preferred),
        ))
    }

    /// Applies the client's answer to our last subscriber offer. Keyframe
    /// requests for subscriptions it brings live are queued on return.
    pub fn subscriber_answer(
        &mut self,
        sid: &ParticipantSid,
        sdp: &str,
        now: Instant,
    ) -> Result<(), SfuError> {
        self.advance(now);
        let applied = self.accept_subscriber_answer(sid, sdp, now);
        self.drive(now);
        applied
    }

    fn accept_subscriber_answer(
        &mut self,
        sid: &ParticipantSid,
        sdp: &str,
        now: Instant,
    ) -> Result<(), SfuError> {
        let id = self.peer_id(sid, PeerRole::Subscriber)?;
        let answer =
            SdpAnswer::from_sdp_string(sdp).map_err(|e| SfuError::BadSdp(e.to_string()))?;
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer)?;
        let Some(pending) = peer.pending_offer.take() else {
            return Err(SfuError::NoPendingOffer);
        };
        // Drained whether or not str0m accepts the answer.
        self.mark_dirty(id);
        let Some(peer) = self.peers.get_mut(&id) else {
            return Err(SfuError::UnknownPeer);
        };
        peer.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| SfuError::BadSdp(e.to_string()))?;
        if peer.needs_offer {
            // Changes that arrived while this offer was out.
            self.negotiation_due = true;
        }
        // Subscriptions whose m-line is now live.
        let mids: Vec<(Mid, TrackSid)> = peer
            .mid_to_track
            .iter()
            .map(|(m, t)| (*m, t.clone()))
            .collect();
        for (mid, track) in mids {
            let live = self
                .tracks
                .get(&track)
                .and_then(|t| t.subscribers.iter().find(|s| s.peer == id))
                .is_some_and(|s| s.mid == Some(mid) && s.rewriter.is_none());
            if live {
                self.init_subscription(id, &track, now);
                self.events.push_back(SfuEvent::Subscribed {
                    participant: sid.clone(),
                    track,
                });
            }
        }
        Ok(())
    }

    /// A trickled remote ICE candidate (`candidate:…` SDP attribute value).
    /// What the new candidate pair makes the connection send is queued on return.
    pub fn remote_candidate(
        &mut self,
        sid: &ParticipantSid,
        role: PeerRole,
        candidate: &str,
        now: Instant,
    ) -> Result<(), SfuError> {
        self.advance(now);
        let id = self.peer_id(sid, role)?;
        let line = candidate.strip_prefix("a=").unwrap_or(candidate);
        let c =
            Candidate::from_sdp_string(line).map_err(|e| SfuError::BadCandidate(e.to_string()))?;
        if role == PeerRole::Publisher {
            // A candidate may come before the offer it belongs to.
            self.publisher_peer(sid, now)?;
        }
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer)?;
        peer.rtc.add_remote_candidate(c);
        self.mark_dirty(id);
        self.drive(now);
        Ok(())
    }

    /// Restarts ICE on the subscriber connection (signal resume) with a new
    /// offer, made at the next `poll_event`.
    pub fn restart_subscriber_ice(&mut self, sid: &ParticipantSid) -> Result<(), SfuError> {
        let id = self.peer_id(sid, PeerRole::Subscriber)?;
        let peer = self.peers.get_mut(&id).ok_or(SfuError::UnknownPeer)?;
        if peer.role == PeerRole::Single {
            // The client restarts ICE itself, in its next offer. What was
            // asked of it while the signal was down is asked again.
            peer.sections.forget_requests();
            peer.needs_offer = true;
            self.negotiation_due = true;
            return Ok(());
        }
        peer.pending_offer = None;
        peer.needs_offer = true;
        peer.ice_restart = true;
        self.negotiation_due = true;
        Ok(())
    }

    /// Creates offers for subscriber connections with pending changes.
    pub(super) fn negotiate_all(&mut self) {
        self.negotiation_due = false;
        let ids: Vec<(PeerId, PeerRole)> = self
            .peers
            .values()
            .filter(|p| p.needs_offer && p.pending_offer.is_none())
            .map(|p| (p.id, p.role))
            .collect();
        for (id, role) in ids {
            match role {
                PeerRole::Subscriber => self.negotiate(id),
                PeerRole::Single => self.request_sections(id),
                PeerRole::Publisher => {}
            }
        }
    }

    pub(super) fn negotiate(&mut self, id: PeerId) {
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.needs_offer = false;
        let mut new_subs = Vec::new();
        for t in self.tracks.values() {
            if t.source.is_none() {
                continue;
            }
            if let Some(s) = t
                .subscribers
                .iter()
                .find(|s| s.peer == id && s.mid.is_none())
            {
                new_subs.push((t.sid.clone(), t.owner.clone(), t.kind, s.subscriber.clone()));
            }
        }
        let first = peer.reliable.is_none();
        let restart = std::mem::take(&mut peer.ice_restart);
        let stops = std::mem::take(&mut peer.stop_mids);
        let mut api = peer.rtc.sdp_api();
        let mut channels = None;
        if first {
            let reliable = api.add_channel_with_config(ChannelConfig {
                label: "_reliable".into(),
                ordered: true,
                reliability: Reliability::Reliable,
                negotiated: None,
                protocol: String::new(),
            });
            let lossy = api.add_channel_with_config(ChannelConfig {
                label: "_lossy".into(),
                ordered: false,
                reliability: Reliability::MaxRetransmits { retransmits: 0 },
                negotiated: None,
                protocol: String::new(),
            });
            channels = Some((reliable, lossy));
        }
        for mid in stops {
            api.stop_media(mid);
        }
        let mut added = Vec::new();
        for (track, owner, kind, _) in &new_subs {
            let kind = match kind {
                TrackKind::Audio => MediaKind::Audio,
                TrackKind::Video => MediaKind::Video,
            };
            let stream_id = format!("{owner}|{track}");
            let mid = api.add_media(
                kind,
                Direction::SendOnly,
                Some(stream_id),
                Some(track.to_string()),
                None,
            );
            added.push((track.clone(), mid));
        }
        if restart {
            api.ice_restart(true);
        }
        let applied = api.apply();
        if let Some((r, l)) = channels {
            peer.reliable = Some((r, false));
            peer.lossy = Some((l, false));
        }
        for (track, mid) in &added {
            peer.mid_to_track.insert(*mid, track.clone());
        }
        if restart {
            let ufrag = peer.local_ufrag();
            self.events.push_back(SfuEvent::Ufrag { peer: id, ufrag });
        }
        let participant = peer.participant.clone();
        if let Some((offer, pending)) = applied {
            peer.pending_offer = Some(pending);
            self.events.push_back(SfuEvent::SubscriberOffer {
                participant,
                sdp: offer.to_sdp_string(),
            });
        }
        for (track, mid) in added {
            if let Some(s) = self
                .tracks
                .get_mut(&track)
                .and_then(|t| t.subscribers.iter_mut().find(|s| s.peer == id))
            {
                s.mid = Some(mid);
            }
        }
        self.mark_dirty(id);
    }
}
