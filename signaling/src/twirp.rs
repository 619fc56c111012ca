//! The LiveKit server API: Twirp `livekit.RoomService`, JSON (the Node SDK)
//! and protobuf (the Python and Rust SDKs), answered in the request's
//! format, errors as Twirp `{code, msg}`. Grants are checked as LiveKit does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use livekit_protocol as proto;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{bearer, VideoGrant};
use crate::error::{Error, TwirpError};
use crate::ids::RoomName;
use crate::room::{AdminOp, AdminReply, RoomSettings};
use crate::LiveKit;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Protobuf,
}

fn decode<T: Message + Default + DeserializeOwned>(
    format: Format,
    body: &Bytes,
) -> Result<T, TwirpError> {
    match format {
        Format::Protobuf => T::decode(body.as_ref())
            .map_err(|e| TwirpError::new("malformed", format!("protobuf: {e}"))),
        Format::Json => {
            let body: &[u8] = if body.is_empty() { b"{}" } else { body };
            serde_json::from_slice(body)
                .map_err(|e| TwirpError::new("malformed", format!("json: {e}")))
        }
    }
}

fn encode<T: Message + Serialize>(format: Format, msg: &T) -> Response {
    match format {
        Format::Protobuf => (
            [(header::CONTENT_TYPE, "application/protobuf")],
            msg.encode_to_vec(),
        )
            .into_response(),
        Format::Json => match serde_json::to_vec(msg) {
            Ok(b) => ([(header::CONTENT_TYPE, "application/json")], b).into_response(),
            Err(e) => TwirpError::from(Error::Serialize(e)).into_response(),
        },
    }
}

/// The caller's video grant, from `Authorization: Bearer`.
fn grant(state: &LiveKit, headers: &HeaderMap) -> Result<VideoGrant, Error> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer)
        .ok_or(Error::MissingAuthorization)?;
    Ok(state.keys.verify(token)?.video())
}

fn need(ok: bool, grant: &'static str) -> Result<(), Error> {
    if ok {
        Ok(())
    } else {
        Err(Error::MissingGrant(grant))
    }
}

fn admin_of(g: &VideoGrant, room: &str) -> Result<RoomName, Error> {
    if room.is_empty() {
        return Err(Error::InvalidArgument("room is required"));
    }
    need(g.room_admin && g.room == room, "roomAdmin for this room")?;
    Ok(RoomName::new(room))
}

/// `POST /twirp/livekit.RoomService/{method}`.
pub async fn room_service(
    State(state): State<Arc<LiveKit>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match call(&state, &method, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The request's format (from its Content-Type) and the caller's grant.
fn prelude(state: &LiveKit, headers: &HeaderMap) -> Result<(Format, VideoGrant), TwirpError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let format = if ct.starts_with("application/json") {
        Format::Json
    } else if ct.starts_with("application/protobuf") {
        Format::Protobuf
    } else {
        return Err(TwirpError::new(
            "bad_route",
            format!("unexpected Content-Type: {ct:?}"),
        ));
    };
    Ok((format, grant(state, headers)?))
}

async fn call(
    state: &Arc<LiveKit>,
    method: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, TwirpError> {
    let (format, g) = prelude(state, headers)?;
    let rooms = &state.rooms;
    match method {
        "CreateRoom" => {
            need(g.room_create, "roomCreate")?;
            let r: proto::CreateRoomRequest = decode(format, &body)?;
            if r.name.is_empty() || r.name.len() > 256 {
                return Err(Error::InvalidArgument("room name must be 1 to 256 characters").into());
            }
            let name = RoomName::new(r.name.clone());
            let settings = RoomSettings {
                empty_timeout: (r.empty_timeout > 0).then_some(r.empty_timeout),
                departure_timeout: (r.departure_timeout > 0).then_some(r.departure_timeout),
                max_participants: Some(r.max_participants),
                metadata: Some(r.metadata),
                agents: (!r.agents.is_empty()).then_some(r.agents),
            };
            rooms.create_room(&name, settings).await?;
            // A room that closed between the two calls: the client retries.
            let snap = rooms.snapshot(&name).await.ok_or(Error::RoomClosing)?;
            Ok(encode(format, &snap.room))
        }
        "ListRooms" => {
            need(g.room_list, "roomList")?;
            let r: proto::ListRoomsRequest = decode(format, &body)?;
            let mut list: Vec<proto::Room> = rooms
                .snapshots()
                .await
                .into_iter()
                .filter(|s| r.names.is_empty() || r.names.iter().any(|n| n == s.name.as_str()))
                .map(|s| s.room)
                .collect();
            list.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(encode(format, &proto::ListRoomsResponse { rooms: list }))
        }
        "DeleteRoom" => {
            need(g.room_create, "roomCreate")?;
            let r: proto::DeleteRoomRequest = decode(format, &body)?;
            let name = RoomName::new(r.room);
            if !rooms.close_room(&name).await {
                return Err(Error::RoomNotFound(name).into());
            }
            Ok(encode(format, &proto::DeleteRoomResponse {}))
        }
        "UpdateRoomMetadata" => {
            let r: proto::UpdateRoomMetadataRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            if !rooms.exists(&name) {
                return Err(Error::RoomNotFound(name).into());
            }
            let settings = RoomSettings {
                metadata: Some(r.metadata),
                ..RoomSettings::default()
            };
            rooms.create_room(&name, settings).await?;
            let snap = rooms
                .snapshot(&name)
                .await
                .ok_or(Error::RoomNotFound(name))?;
            Ok(encode(format, &snap.room))
        }
        "ListParticipants" => {
            let r: proto::ListParticipantsRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            match rooms.admin(&name, AdminOp::ListParticipants).await? {
                AdminReply::Participants(participants) => Ok(encode(
                    format,
                    &proto::ListParticipantsResponse { participants },
                )),
                other => Err(unexpected(other)),
            }
        }
        "GetParticipant" => {
            let r: proto::RoomParticipantIdentity = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            match rooms
                .admin(&name, AdminOp::GetParticipant(r.identity))
                .await?
            {
                AdminReply::Participant(p) => Ok(encode(format, p.as_ref())),
                other => Err(unexpected(other)),
            }
        }
        "RemoveParticipant" => {
            let r: proto::RoomParticipantIdentity = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            rooms
                .admin(&name, AdminOp::RemoveParticipant(r.identity))
                .await?;
            Ok(encode(format, &proto::RemoveParticipantResponse {}))
        }
        "MutePublishedTrack" => {
            let r: proto::MuteRoomTrackRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            let op = AdminOp::Mute {
                identity: r.identity,
                track_sid: r.track_sid,
                muted: r.muted,
            };
            match rooms.admin(&name, op).await? {
                AdminReply::Track(t) => Ok(encode(
                    format,
                    &proto::MuteRoomTrackResponse { track: Some(*t) },
                )),
                other => Err(unexpected(other)),
            }
        }
        "UpdateParticipant" => {
            let r: proto::UpdateParticipantRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            let op = AdminOp::UpdateParticipant {
                identity: r.identity,
                metadata: r.metadata,
                name: r.name,
                attributes: r.attributes,
                permission: r.permission,
            };
            match rooms.admin(&name, op).await? {
                AdminReply::Participant(p) => Ok(encode(format, p.as_ref())),
                other => Err(unexpected(other)),
            }
        }
        "UpdateSubscriptions" => {
            let r: proto::UpdateSubscriptionsRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            let mut track_sids = r.track_sids;
            track_sids.extend(r.participant_tracks.into_iter().flat_map(|p| p.track_sids));
            let op = AdminOp::UpdateSubscriptions {
                identity: r.identity,
                track_sids,
                subscribe: r.subscribe,
            };
            rooms.admin(&name, op).await?;
            Ok(encode(format, &proto::UpdateSubscriptionsResponse {}))
        }
        "SendData" => {
            let r: proto::SendDataRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            if r.data.len() > 64 * 1024 {
                return Err(Error::InvalidArgument("data is larger than 64 KiB").into());
            }
            let op = AdminOp::SendData {
                data: r.data,
                reliable: r.kind != proto::data_packet::Kind::Lossy as i32,
                destination_identities: r.destination_identities,
                topic: r.topic,
            };
            rooms.admin(&name, op).await?;
            Ok(encode(format, &proto::SendDataResponse {}))
        }
        other => Err(TwirpError::new(
            "bad_route",
            format!("no method {other} on livekit.RoomService"),
        )),
    }
}

/// `POST /twirp/livekit.AgentDispatchService/{method}`.
pub async fn agent_dispatch_service(
    State(state): State<Arc<LiveKit>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dispatch_call(&state, &method, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Largest dispatch metadata accepted (LiveKit's default metadata limit).
const MAX_DISPATCH_METADATA: usize = 64 * 1024;

async fn dispatch_call(
    state: &Arc<LiveKit>,
    method: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, TwirpError> {
    let (format, g) = prelude(state, headers)?;
    let (rooms, agents) = (&state.rooms, &state.agents);
    match method {
        "CreateDispatch" => {
            let r: proto::CreateAgentDispatchRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            if r.agent_name.len() > 256 {
                return Err(Error::InvalidArgument("agent_name is longer than 256 bytes").into());
            }
            if proto::JobRestartPolicy::try_from(r.restart_policy).is_err() {
                return Err(Error::InvalidArgument("unknown restart_policy").into());
            }
            let attributes: usize = r.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
            if r.metadata.len() + attributes > MAX_DISPATCH_METADATA {
                return Err(Error::InvalidArgument("metadata and attributes exceed 64 KiB").into());
            }
            // Refused before the room is opened for it.
            if !agents.serves(&r.agent_name).await? {
                return Err(Error::NoAgentWorker(r.agent_name).into());
            }
            if !rooms.exists(&name) {
                if !rooms.defaults().auto_create {
                    return Err(Error::RoomNotFound(name).into());
                }
                rooms.create_room(&name, RoomSettings::default()).await?;
            }
            let snap = rooms.snapshot(&name).await.ok_or(Error::RoomClosing)?;
            let d = agents.create_dispatch(snap.room, r, None).await?;
            Ok(encode(format, &d))
        }
        "ListDispatch" => {
            let r: proto::ListAgentDispatchRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            if !rooms.exists(&name) {
                return Err(Error::RoomNotFound(name).into());
            }
            let agent_dispatches = agents.list(&name, &r.dispatch_id).await?;
            Ok(encode(
                format,
                &proto::ListAgentDispatchResponse { agent_dispatches },
            ))
        }
        "DeleteDispatch" => {
            let r: proto::DeleteAgentDispatchRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            if r.dispatch_id.is_empty() {
                return Err(Error::InvalidArgument("dispatch_id is required").into());
            }
            let d = agents.delete(&name, &r.dispatch_id).await?;
            Ok(encode(format, &d))
        }
        other => Err(TwirpError::new(
            "bad_route",
            format!("no method {other} on livekit.AgentDispatchService"),
        )),
    }
}

/// A room actor answered an operation with the reply of another: a bug.
fn unexpected(reply: AdminReply) -> TwirpError {
    Error::UnexpectedReply(reply.name()).into()
}
