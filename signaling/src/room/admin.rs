//! Server-API operations on a room (Twirp RoomService), run inside the
//! room's actor so their effects are live: a removed participant is
//! disconnected, a muted track is muted for everyone, new permissions apply
//! at once.

// The protocol marks some fields the clients still read as deprecated.
#![allow(deprecated)]

use std::collections::HashMap;
use std::time::Instant;

use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_response::Message as Out;

use super::actor::RoomActor;
use super::participant::Participant;
use crate::error::Error;
use crate::ids::{ParticipantIdentity, ParticipantSid, TrackSid};

/// An operation of the server API.
#[derive(Debug, Clone)]
pub enum AdminOp {
    ListParticipants,
    GetParticipant(String),
    RemoveParticipant(String),
    Mute {
        identity: String,
        track_sid: String,
        muted: bool,
    },
    UpdateParticipant {
        identity: String,
        metadata: String,
        name: String,
        attributes: HashMap<String, String>,
        permission: Option<proto::ParticipantPermission>,
    },
    UpdateSubscriptions {
        identity: String,
        track_sids: Vec<String>,
        subscribe: bool,
    },
    SendData {
        data: Vec<u8>,
        reliable: bool,
        destination_identities: Vec<String>,
        topic: Option<String>,
    },
}

/// What a room answers to an [`AdminOp`].
#[derive(Debug, Clone)]
pub enum AdminReply {
    /// To `ListParticipants`.
    Participants(Vec<proto::ParticipantInfo>),
    /// To `GetParticipant` and `UpdateParticipant`: the participant as it is now.
    Participant(Box<proto::ParticipantInfo>),
    /// To `Mute`: the track as it is now.
    Track(Box<proto::TrackInfo>),
    /// To the other operations.
    Done,
}

impl AdminReply {
    /// The variant's name, for the log of a mismatched reply.
    pub fn name(&self) -> &'static str {
        match self {
            AdminReply::Participants(_) => "Participants",
            AdminReply::Participant(_) => "Participant",
            AdminReply::Track(_) => "Track",
            AdminReply::Done => "Done",
        }
    }
}

impl RoomActor {
    fn sid_of(&self, identity: &str) -> Result<ParticipantSid, Error> {
        self.find_identity(&ParticipantIdentity::new(identity))
            .ok_or_else(|| Error::ParticipantNotFound(identity.to_string()))
    }

    /// The participant with this identity, for an operation that changes it.
    fn participant_mut(
        &mut self,
        identity: &str,
    ) -> Result<(ParticipantSid, &mut Participant), Error> {
        let sid = self.sid_of(identity)?;
        let p = self
            .participants
            .get_mut(&sid)
            .ok_or_else(|| Error::ParticipantNotFound(identity.to_string()))?;
        Ok((sid, p))
    }

    pub(crate) fn on_admin(&mut self, op: AdminOp) -> Result<AdminReply, Error> {
        match op {
            AdminOp::ListParticipants => Ok(AdminReply::Participants(
                self.participants.values().map(|p| p.info.clone()).collect(),
            )),
            AdminOp::GetParticipant(identity) => {
                let (_, p) = self.participant_mut(&identity)?;
                Ok(AdminReply::Participant(Box::new(p.info.clone())))
            }
            AdminOp::RemoveParticipant(identity) => {
                let sid = self.sid_of(&identity)?;
                self.remove_participant(
                    &sid,
                    proto::DisconnectReason::ParticipantRemoved,
                    proto::leave_request::Action::Disconnect,
                );
                Ok(AdminReply::Done)
            }
            AdminOp::Mute {
                identity,
                track_sid,
                muted,
            } => self.admin_mute(&identity, &track_sid, muted),
            AdminOp::UpdateParticipant {
                identity,
                metadata,
                name,
                attributes,
                permission,
            } => self.admin_update(&identity, metadata, name, attributes, permission),
            AdminOp::UpdateSubscriptions {
                identity,
                track_sids,
                subscribe,
            } => {
                let sid = self.sid_of(&identity)?;
                for t in track_sids {
                    let track = TrackSid::new(&t);
                    if subscribe {
                        self.subscribe_permitted(&sid, &track)
                            .map_err(Error::Subscription)?;
                    } else {
                        self.unsubscribe(&sid, &track);
                    }
                }
                Ok(AdminReply::Done)
            }
            AdminOp::SendData {
                data,
                reliable,
                destination_identities,
                topic,
            } => {
                let pkt = proto::DataPacket {
                    kind: if reliable {
                        proto::data_packet::Kind::Reliable as i32
                    } else {
                        proto::data_packet::Kind::Lossy as i32
                    },
                    destination_identities: destination_identities.clone(),
                    value: Some(proto::data_packet::Value::User(proto::UserPacket {
                        payload: data,
                        topic,
                        destination_identities: destination_identities.clone(),
                        ..Default::default()
                    })),
                    ..Default::default()
                };
                let bytes = pkt.encode_to_vec();
                let targets: Vec<ParticipantSid> = self
                    .participants
                    .iter()
                    .filter(|(_, p)| {
                        destination_identities.is_empty()
                            || destination_identities.contains(&p.info.identity)
                    })
                    .map(|(s, _)| s.clone())
                    .collect();
                let now = Instant::now();
                for t in targets {
                    self.media.send_data(&t, reliable, &bytes, now);
                }
                Ok(AdminReply::Done)
            }
        }
    }

    fn admin_mute(
        &mut self,
        identity: &str,
        track_sid: &str,
        muted: bool,
    ) -> Result<AdminReply, Error> {
        let track = TrackSid::new(track_sid);
        let (sid, p) = self.participant_mut(identity)?;
        let t = p.track_mut(&track).ok_or_else(|| Error::TrackNotFound {
            track: track_sid.to_string(),
            identity: identity.to_string(),
        })?;
        t.muted = muted;
        let info = t.clone();
        p.touch();
        // The publisher's SDK mutes (or unmutes) its local track on this.
        p.send(Out::Mute(proto::MuteTrackRequest {
            sid: track_sid.to_string(),
            muted,
        }));
        let pinfo = p.info.clone();
        self.media.set_muted(&track, muted);
        self.broadcast_update(&pinfo, Some(&sid));
        Ok(AdminReply::Track(Box::new(info)))
    }

    fn admin_update(
        &mut self,
        identity: &str,
        metadata: String,
        name: String,
        attributes: HashMap<String, String>,
        permission: Option<proto::ParticipantPermission>,
    ) -> Result<AdminReply, Error> {
        let (sid, p) = self.participant_mut(identity)?;
        if !metadata.is_empty() {
            p.info.metadata = metadata;
        }
        if !name.is_empty() {
            p.info.name = name;
        }
        for (k, v) in attributes {
            if v.is_empty() {
                p.info.attributes.remove(&k);
            } else {
                p.info.attributes.insert(k, v);
            }
        }
        let mut revoke_publish = false;
        let mut revoke_subscribe = false;
        if let Some(perm) = permission {
            revoke_publish = p.grant.can_publish() && !perm.can_publish;
            revoke_subscribe = p.grant.can_subscribe() && !perm.can_subscribe;
            p.grant.can_publish = Some(perm.can_publish);
            p.grant.can_subscribe = Some(perm.can_subscribe);
            p.grant.can_publish_data = Some(perm.can_publish_data);
            p.grant.can_update_own_metadata = Some(perm.can_update_metadata);
            p.grant.hidden = perm.hidden;
            p.info.permission = Some(perm);
        }
        p.touch();
        let mut unpublished = Vec::new();
        let mut released = 0;
        if revoke_publish {
            released = p.info.tracks.len() + p.pending.len();
            unpublished = p
                .info
                .tracks
                .drain(..)
                .map(|t| TrackSid::new(&t.sid))
                .collect();
            p.pending.clear();
        }
        let info = p.info.clone();
        self.manager.release_tracks(released);
        for t in &unpublished {
            self.media.unpublish(t);
        }
        if revoke_subscribe {
            let tracks: Vec<TrackSid> = self
                .participants
                .values()
                .flat_map(|o| o.info.tracks.iter().map(|t| TrackSid::new(&t.sid)))
                .collect();
            for t in tracks {
                self.media.unsubscribe(&sid, &t);
            }
        }
        // Everyone, the participant included, learns the new info.
        self.broadcast_update(&info, None);
        for t in unpublished {
            for o in self.participants.values_mut() {
                o.send(Out::TrackUnpublished(proto::TrackUnpublishedResponse {
                    track_sid: t.to_string(),
                }));
            }
        }
        Ok(AdminReply::Participant(Box::new(info)))
    }
}
