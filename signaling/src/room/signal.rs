//! Handling of client signal requests inside the room actor.
// Clients still read several fields the protocol marks deprecated.
#![allow(deprecated)]

use std::time::Instant;

use livekit_protocol as proto;
use nodo_sfu::{Layer, LayerInfo, PeerRole, SubscriptionSettings, TrackKind};
use prost::Message as _;
use proto::signal_request::Message as In;
use proto::signal_response::Message as Out;

use super::actor::RoomActor;
use crate::ids::{ParticipantSid, TrackSid};

impl RoomActor {
    pub(crate) fn on_signal(&mut self, sid: &ParticipantSid, msg: In) {
        match msg {
            In::Offer(sd) => match self.media.answer_offer(sid, &sd.sdp, Instant::now()) {
                Ok(answer) => {
                    tracing::trace!(%sid, offer = %sd.sdp, answer = %answer.sdp, "publisher negotiation");
                    self.send_to(
                        sid,
                        Out::Answer(proto::SessionDescription {
                            r#type: "answer".into(),
                            sdp: answer.sdp,
                            id: sd.id,
                            mid_to_track_id: answer.mid_to_track,
                        }),
                    )
                }
                Err(e) => tracing::warn!(%sid, "publisher offer refused: {e}"),
            },
            In::Answer(sd) => {
                if let Err(e) = self.media.subscriber_answer(sid, &sd.sdp, Instant::now()) {
                    tracing::warn!(%sid, "subscriber answer refused: {e}");
                }
            }
            In::Trickle(t) => self.trickle(sid, &t),
            In::AddTrack(req) => self.add_track(sid, req),
            In::Mute(m) => self.mute(sid, &m),
            In::Subscription(s) => self.update_subscription(sid, s),
            In::TrackSetting(s) => self.track_settings(sid, &s),
            In::Leave(_) => self.remove_participant(
                sid,
                proto::DisconnectReason::ClientInitiated,
                proto::leave_request::Action::Disconnect,
            ),
            In::UpdateMetadata(m) => self.update_metadata(sid, m),
            In::SubscriptionPermission(p) => self.set_subscription_permission(sid, p),
            // Answered by the WebSocket session itself.
            In::Ping(_) | In::PingReq(_) => {}
            // Resume bookkeeping; the subscriber ICE restart already covers media.
            In::SyncState(_) => {}
            other => tracing::debug!(%sid, "unhandled signal request: {}", request_name(&other)),
        }
    }

    fn send_to(&mut self, sid: &ParticipantSid, msg: Out) {
        if let Some(p) = self.participants.get_mut(sid) {
            p.send(msg);
        }
    }

    fn trickle(&mut self, sid: &ParticipantSid, t: &proto::TrickleRequest) {
        #[derive(serde::Deserialize)]
        struct Init {
            #[serde(default)]
            candidate: String,
        }
        let Ok(init) = serde_json::from_str::<Init>(&t.candidate_init) else {
            tracing::debug!(%sid, "malformed trickle candidate");
            return;
        };
        if init.candidate.is_empty() {
            return; // end-of-candidates
        }
        let role = if t.target == proto::SignalTarget::Subscriber as i32 {
            PeerRole::Subscriber
        } else {
            PeerRole::Publisher
        };
        if let Err(e) = self
            .media
            .remote_candidate(sid, role, &init.candidate, Instant::now())
        {
            tracing::debug!(%sid, "candidate refused: {e}");
        }
    }

    fn add_track(&mut self, sid: &ParticipantSid, req: proto::AddTrackRequest) {
        let Some(p) = self.participants.get_mut(sid) else {
            return;
        };
        if let Err(why) = p.may_publish(req.source) {
            tracing::info!(%sid, "add_track refused: {why}");
            // Newer clients match the refusal to their pending publish by
            // the echoed request (cid); older ones time out waiting.
            p.send(Out::RequestResponse(proto::RequestResponse {
                request_id: 0,
                reason: proto::request_response::Reason::NotAllowed as i32,
                message: why,
                request: Some(proto::request_response::Request::AddTrack(req)),
            }));
            return;
        }
        if p.pending.iter().any(|(cid, _)| cid == &req.cid) {
            return; // duplicate request for the same client track
        }
        if !self.manager.reserve_track() {
            // Newer clients match the refusal by the echoed request; older ones time out.
            p.send(Out::RequestResponse(proto::RequestResponse {
                request_id: 0,
                reason: proto::request_response::Reason::LimitExceeded as i32,
                message: "this node is at its track limit".into(),
                request: Some(proto::request_response::Request::AddTrack(req)),
            }));
            return;
        }
        let kind = if req.r#type == proto::TrackType::Audio as i32 {
            TrackKind::Audio
        } else {
            TrackKind::Video
        };
        let track_sid = TrackSid::new(crate::ids::new_sid("TR_"));
        let layers: Vec<LayerInfo> = req
            .layers
            .iter()
            .filter_map(|l| {
                let layer = match proto::VideoQuality::try_from(l.quality).ok()? {
                    proto::VideoQuality::Low => Layer::Low,
                    proto::VideoQuality::Medium => Layer::Medium,
                    proto::VideoQuality::High => Layer::High,
                    proto::VideoQuality::Off => return None,
                };
                Some(LayerInfo {
                    layer,
                    width: l.width,
                    height: l.height,
                })
            })
            .collect();
        let mime = req
            .simulcast_codecs
            .first()
            .map(|c| c.codec.clone())
            .filter(|c| !c.is_empty())
            .map(|c| {
                if c.contains('/') {
                    c
                } else if kind == TrackKind::Audio {
                    format!("audio/{c}")
                } else {
                    format!("video/{}", c.to_uppercase())
                }
            })
            .unwrap_or_default();
        // The codec that goes first in the answer for the track's m-line:
        // the one asked for, or, for audio, RED (RFC 2198) unless the client
        // turned it off, as LiveKit does: a browser sends the first codec of
        // the answer, and offers RED after Opus. An offer without RED keeps
        // Opus.
        let codec = if kind == TrackKind::Audio && !req.disable_red {
            Some("red".to_string())
        } else {
            mime.split('/').nth(1).map(str::to_ascii_lowercase)
        };
        let info = proto::TrackInfo {
            sid: track_sid.to_string(),
            r#type: req.r#type,
            name: req.name.clone(),
            muted: req.muted,
            width: req.width,
            height: req.height,
            simulcast: layers.len() > 1,
            disable_dtx: req.disable_dtx,
            source: req.source,
            layers: req.layers.clone(),
            mime_type: mime,
            stereo: req.stereo,
            disable_red: req.disable_red,
            encryption: req.encryption,
            stream: req.stream.clone(),
            audio_features: req.audio_features.clone(),
            backup_codec_policy: req.backup_codec_policy,
            ..Default::default()
        };
        if let Err(e) =
            self.media
                .expect_track(sid, track_sid.clone(), req.cid.clone(), kind, layers, codec)
        {
            tracing::warn!(%sid, "add_track: {e}");
            self.manager.release_tracks(1);
            return;
        }
        if req.muted {
            self.media.set_muted(&track_sid, true);
        }
        let Some(p) = self.participants.get_mut(sid) else {
            return;
        };
        p.pending.push((req.cid.clone(), info.clone()));
        p.send(Out::TrackPublished(proto::TrackPublishedResponse {
            cid: req.cid,
            track: Some(info),
        }));
    }

    /// Media of an announced track arrived: publish it to the room.
    pub(crate) fn track_media(&mut self, owner: &ParticipantSid, track: &TrackSid) {
        let Some(p) = self.participants.get_mut(owner) else {
            return;
        };
        let Some(pos) = p.pending.iter().position(|(_, t)| t.sid == track.as_str()) else {
            return;
        };
        let (_, info) = p.pending.remove(pos);
        p.info.tracks.push(info.clone());
        p.info.is_publisher = true;
        p.touch();
        let track_info = info;
        let info = p.info.clone();
        let hidden = p.hidden();
        let room = self.room_info();
        self.manager.webhook(
            "track_published",
            room,
            Some(info.clone()),
            Some(track_info),
        );
        if !hidden {
            self.broadcast_update(&info, None);
        }
        let subscribers: Vec<ParticipantSid> = self
            .participants
            .iter()
            .filter(|(s, o)| *s != owner && o.options.auto_subscribe && o.grant.can_subscribe())
            .map(|(s, _)| s.clone())
            .collect();
        for s in subscribers {
            let _ = self.subscribe_permitted(&s, track);
        }
        tracing::info!(room = %self.name, participant = %info.identity, %track, "track published");
    }

    /// The publisher stopped a track (its offer turned the section
    /// inactive): unpublish it from the room.
    pub(crate) fn track_ended(&mut self, owner: &ParticipantSid, track: &TrackSid) {
        let Some(p) = self.participants.get_mut(owner) else {
            return;
        };
        let Some(pos) = p.info.tracks.iter().position(|t| t.sid == track.as_str()) else {
            return;
        };
        let track_info = p.info.tracks.remove(pos);
        p.touch();
        let info = p.info.clone();
        let hidden = p.hidden();
        self.manager.release_tracks(1);
        let room = self.room_info();
        self.manager.webhook(
            "track_unpublished",
            room,
            Some(info.clone()),
            Some(track_info),
        );
        for o in self.participants.values_mut() {
            o.withheld.remove(track);
        }
        if !hidden {
            self.broadcast_update(&info, None);
        }
        // The publisher unpublished it itself: no `track_unpublished` back
        // (that tells a client the server took its track away).
        tracing::info!(room = %self.name, participant = %info.identity, %track, "track unpublished");
    }

    fn mute(&mut self, sid: &ParticipantSid, m: &proto::MuteTrackRequest) {
        let track = TrackSid::new(&m.sid);
        let Some(p) = self.participants.get_mut(sid) else {
            return;
        };
        let Some(t) = p.track_mut(&track) else {
            if let Some((_, t)) = p.pending.iter_mut().find(|(_, t)| t.sid == m.sid) {
                t.muted = m.muted;
            }
            return;
        };
        if t.muted == m.muted {
            return;
        }
        t.muted = m.muted;
        p.touch();
        let info = p.info.clone();
        self.media.set_muted(&track, m.muted);
        self.broadcast_update(&info, None);
    }

    fn update_subscription(&mut self, sid: &ParticipantSid, s: proto::UpdateSubscription) {
        let allowed = self
            .participants
            .get(sid)
            .is_some_and(|p| p.grant.can_subscribe());
        let mut tracks: Vec<String> = s.track_sids;
        tracks.extend(
            s.participant_tracks
                .into_iter()
                .flat_map(|pt| pt.track_sids),
        );
        for t in tracks {
            let track = TrackSid::new(&t);
            let result = if !s.subscribe {
                self.unsubscribe(sid, &track);
                Ok(())
            } else if !allowed {
                Err("participant is not allowed to subscribe".to_string())
            } else {
                self.subscribe_permitted(sid, &track)
                    .map_err(|e| e.to_string())
            };
            if let Err(err) = result {
                self.send_to(
                    sid,
                    Out::SubscriptionResponse(proto::SubscriptionResponse {
                        track_sid: t,
                        err: proto::SubscriptionError::SeTrackNotfound as i32,
                    }),
                );
                tracing::debug!(%sid, "subscription refused: {err}");
            }
        }
    }

    fn track_settings(&mut self, sid: &ParticipantSid, s: &proto::UpdateTrackSettings) {
        // As LiveKit: a rendered size, when given, wins over `quality` (which
        // then reads as its zero value, LOW).
        let has_size = s.width > 0 || s.height > 0;
        let quality = proto::VideoQuality::try_from(s.quality).unwrap_or(proto::VideoQuality::High);
        let max_layer = match quality {
            _ if has_size => Layer::High,
            proto::VideoQuality::Low => Layer::Low,
            proto::VideoQuality::Medium => Layer::Medium,
            _ => Layer::High,
        };
        let settings = SubscriptionSettings {
            disabled: s.disabled || (!has_size && s.quality == proto::VideoQuality::Off as i32),
            max_layer,
            size: has_size.then_some((s.width, s.height)),
        };
        for t in &s.track_sids {
            self.media
                .update_subscription(sid, &TrackSid::new(t), settings, Instant::now());
        }
    }

    fn update_metadata(&mut self, sid: &ParticipantSid, m: proto::UpdateParticipantMetadata) {
        let Some(p) = self.participants.get_mut(sid) else {
            return;
        };
        if !p.grant.can_update_own_metadata() {
            p.send(Out::RequestResponse(proto::RequestResponse {
                request_id: m.request_id,
                reason: proto::request_response::Reason::NotAllowed as i32,
                message: "participant is not allowed to update its own metadata".into(),
                request: None,
            }));
            return;
        }
        if m.metadata.len() > MAX_METADATA || m.name.len() > MAX_NAME {
            p.send(Out::RequestResponse(proto::RequestResponse {
                request_id: m.request_id,
                reason: proto::request_response::Reason::LimitExceeded as i32,
                message: "metadata or name too large".into(),
                request: None,
            }));
            return;
        }
        if !m.metadata.is_empty() {
            p.info.metadata = m.metadata;
        }
        if !m.name.is_empty() {
            p.info.name = m.name;
        }
        for (k, v) in m.attributes {
            if v.is_empty() {
                p.info.attributes.remove(&k);
            } else {
                p.info.attributes.insert(k, v);
            }
        }
        p.touch();
        let info = p.info.clone();
        if m.request_id != 0 {
            p.send(Out::RequestResponse(proto::RequestResponse {
                request_id: m.request_id,
                reason: proto::request_response::Reason::Ok as i32,
                message: String::new(),
                request: None,
            }));
        }
        self.broadcast_update(&info, None);
    }

    /// Routes a data packet from a participant's publisher connection.
    pub(crate) fn route_data(&mut self, from: &ParticipantSid, reliable: bool, data: &[u8]) {
        let Some(p) = self.participants.get(from) else {
            return;
        };
        if !p.grant.can_publish_data() {
            return;
        }
        let Ok(mut pkt) = proto::DataPacket::decode(data) else {
            tracing::debug!(%from, "undecodable data packet");
            return;
        };
        use proto::data_packet::Value;
        match &pkt.value {
            Some(Value::Metrics(_)) | Some(Value::Transcription(_)) | None => return,
            _ => {}
        }
        let hidden = p.hidden();
        let (identity, sid) = if hidden {
            (String::new(), String::new())
        } else {
            (p.info.identity.clone(), p.info.sid.clone())
        };
        pkt.participant_identity = identity.clone();
        pkt.participant_sid = sid.clone();
        if let Some(Value::User(u)) = &mut pkt.value {
            u.participant_identity = identity;
            u.participant_sid = sid;
        }
        let dest: Vec<String> = pkt.destination_identities.clone();
        let targets: Vec<ParticipantSid> = self
            .participants
            .iter()
            .filter(|(s, o)| {
                *s != from && (dest.is_empty() || dest.iter().any(|d| d == &o.info.identity))
            })
            .map(|(s, _)| s.clone())
            .collect();
        // Receivers learn who sent it first, if that was still held.
        if !hidden {
            self.release_update(from);
        }
        let bytes = pkt.encode_to_vec();
        let now = Instant::now();
        for t in targets {
            self.media.send_data(&t, reliable, &bytes, now);
        }
    }
}

/// Largest participant metadata accepted from a client (LiveKit's limit).
pub(crate) const MAX_METADATA: usize = 512 * 1024;
const MAX_NAME: usize = 256;

fn request_name(m: &In) -> &'static str {
    match m {
        In::UpdateLayers(_) => "update_layers",
        In::Simulate(_) => "simulate",
        In::UpdateAudioTrack(_) => "update_audio_track",
        In::UpdateVideoTrack(_) => "update_video_track",
        _ => "other",
    }
}
