//! Subscriber-side SDP negotiation: the server offers, one offer at a time.

use str0m::channel::{ChannelConfig, Reliability};
use str0m::media::{Direction, MediaKind};

use super::{MediaRoom, SfuEvent};
use crate::ids::{PeerId, PeerRole, TrackKind};

impl MediaRoom {
    /// Creates offers for subscriber connections with pending changes.
    pub(super) fn negotiate_all(&mut self) {
        self.negotiation_due = false;
        let ids: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| {
                p.role == PeerRole::Subscriber && p.needs_offer && p.pending_offer.is_none()
            })
            .map(|p| p.id)
            .collect();
        for id in ids {
            self.negotiate(id);
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
