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
use crate::placement::{self, Location};
use crate::room::{AdminOp, AdminReply, RoomSettings};
use crate::rtc::MAX_NAME_LEN;
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

/// The room a RoomService or AgentDispatchService call acts on, when it names one (`None` also for
/// a body that does not decode: the local call then reports it).
fn room_of(method: &str, format: Format, body: &Bytes) -> Option<String> {
    fn field<T: Message + Default + DeserializeOwned>(
        format: Format,
        body: &Bytes,
        get: fn(T) -> String,
    ) -> Option<String> {
        decode::<T>(format, body).ok().map(get)
    }
    match method {
        "CreateRoom" => field(format, body, |r: proto::CreateRoomRequest| r.name),
        "DeleteRoom" => field(format, body, |r: proto::DeleteRoomRequest| r.room),
        "UpdateRoomMetadata" => field(format, body, |r: proto::UpdateRoomMetadataRequest| r.room),
        "ListParticipants" => field(format, body, |r: proto::ListParticipantsRequest| r.room),
        "GetParticipant" | "RemoveParticipant" => {
            field(format, body, |r: proto::RoomParticipantIdentity| r.room)
        }
        "MutePublishedTrack" => field(format, body, |r: proto::MuteRoomTrackRequest| r.room),
        "UpdateParticipant" => field(format, body, |r: proto::UpdateParticipantRequest| r.room),
        "UpdateSubscriptions" => field(format, body, |r: proto::UpdateSubscriptionsRequest| r.room),
        "SendData" => field(format, body, |r: proto::SendDataRequest| r.room),
        "CreateDispatch" => field(format, body, |r: proto::CreateAgentDispatchRequest| r.room),
        "ListDispatch" => field(format, body, |r: proto::ListAgentDispatchRequest| r.room),
        "DeleteDispatch" => field(format, body, |r: proto::DeleteAgentDispatchRequest| r.room),
        _ => None,
    }
}

/// Re-sends a call for a room another node serves to that node; `None`
/// serves it here (one node, a room open here or placed here, or no room
/// named). A call handed over already is never sent on.
async fn route_call(
    state: &LiveKit,
    call: (&str, &str),
    grant: &VideoGrant,
    format: Format,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Option<Response>, Error> {
    let (service, method) = call;
    let Some(placement) = state.placement() else {
        return Ok(None);
    };
    let Some(room) = room_of(method, format, body).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    // The caller's rights and the name are checked before the cluster is
    // asked (or told) anything; the room's node checks them again.
    match method {
        "CreateRoom" | "DeleteRoom" => need(grant.room_create, "roomCreate")?,
        _ => {
            admin_of(grant, &room)?;
        }
    }
    if room.len() > MAX_NAME_LEN {
        return Err(Error::InvalidArgument(
            "room name must be 1 to 256 characters",
        ));
    }
    let room = RoomName::new(room);
    if state.rooms.exists(&room) {
        return Ok(None);
    }
    let opens = matches!(method, "CreateRoom" | "CreateDispatch");
    match placement.locate(&room, opens).await? {
        Location::Here => Ok(None),
        Location::There { node, .. } if placement::forwarded(headers) => {
            // Handed over by a node that saw this one as the owner.
            Err(Error::ClusterUnavailable(format!(
                "room {room} moved to node {node} during the call; retry"
            )))
        }
        Location::There { url, .. } => {
            let path = format!("/twirp/livekit.{service}/{method}");
            let handed =
                placement::proxy_call(&state.http, &url, &path, headers, body.clone()).await;
            state.rooms.metrics().handover("api", handed.is_ok());
            handed.map(Some)
        }
    }
}

/// The rooms the other nodes serve (each asked with the caller's token); a
/// node that does not answer is left out.
async fn remote_rooms(
    state: &LiveKit,
    headers: &HeaderMap,
    format: Format,
    body: &Bytes,
) -> Vec<proto::Room> {
    let Some(placement) = state.placement() else {
        return Vec::new();
    };
    if placement::forwarded(headers) {
        return Vec::new();
    }
    let peers = match placement.peers().await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("ListRooms: cannot list the other nodes: {e}");
            return Vec::new();
        }
    };
    let path = "/twirp/livekit.RoomService/ListRooms";
    // Asked in protobuf whatever the caller used: one decoder here.
    let mut h = headers.clone();
    h.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/protobuf"),
    );
    let req: proto::ListRoomsRequest = decode(format, body).unwrap_or_default();
    let body = Bytes::from(req.encode_to_vec());
    // Every node at once, each given a few seconds: one slow node delays
    // the answer by that much at most, and is left out of it.
    let asks = peers.into_iter().map(|url| {
        let (h, body) = (&h, body.clone());
        async move {
            let ask = placement::proxy_call(&state.http, &url, path, h, body);
            let resp = match tokio::time::timeout(PEER_LIST_TIMEOUT, ask).await {
                Ok(Ok(resp)) if resp.status().is_success() => resp,
                Ok(Ok(resp)) => {
                    tracing::warn!(node = %url, status = %resp.status(), "ListRooms refused");
                    return Vec::new();
                }
                Ok(Err(e)) => {
                    tracing::warn!(node = %url, "ListRooms: {e}");
                    return Vec::new();
                }
                Err(_) => {
                    tracing::warn!(node = %url, "ListRooms: no answer in time");
                    return Vec::new();
                }
            };
            let bytes = axum::body::to_bytes(resp.into_body(), 16 << 20)
                .await
                .unwrap_or_default();
            match proto::ListRoomsResponse::decode(bytes.as_ref()) {
                Ok(r) => r.rooms,
                Err(e) => {
                    tracing::warn!(node = %url, "ListRooms: bad answer: {e}");
                    Vec::new()
                }
            }
        }
    });
    futures_util::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// How long ListRooms waits for another node's rooms.
const PEER_LIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

async fn call(
    state: &Arc<LiveKit>,
    method: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, TwirpError> {
    let (format, g) = prelude(state, headers)?;
    if method != "ListRooms" {
        if let Some(resp) =
            route_call(state, ("RoomService", method), &g, format, headers, &body).await?
        {
            return Ok(resp);
        }
    }
    let rooms = &state.rooms;
    match method {
        "CreateRoom" => {
            need(g.room_create, "roomCreate")?;
            let r: proto::CreateRoomRequest = decode(format, &body)?;
            if r.name.is_empty() || r.name.len() > MAX_NAME_LEN {
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
                .map(|s| s.room)
                .chain(remote_rooms(state, headers, format, &body).await)
                .filter(|room| r.names.is_empty() || r.names.contains(&room.name))
                .collect();
            list.sort_by(|a, b| a.name.cmp(&b.name));
            list.dedup_by(|a, b| a.name == b.name);
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
    if let Some(resp) = route_call(
        state,
        ("AgentDispatchService", method),
        &g,
        format,
        headers,
        &body,
    )
    .await?
    {
        return Ok(resp);
    }
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
