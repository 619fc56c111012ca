//! The LiveKit server API: Twirp `livekit.RoomService`, JSON (the Node SDK)
//! and protobuf (the Python and Rust SDKs), answered in the request's
//! format, errors as Twirp `{code, msg}`. Grants are checked as LiveKit does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use livekit_protocol as proto;
use prost::Message;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::{bearer, VideoGrant};
use crate::error::Error;
use crate::ids::RoomName;
use crate::room::{AdminOp, AdminReply, RoomSettings};
use crate::AppState;

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Json,
    Protobuf,
}

/// A Twirp error.
struct TwirpError {
    code: &'static str,
    msg: String,
}

impl TwirpError {
    fn new(code: &'static str, msg: impl Into<String>) -> Self {
        TwirpError {
            code,
            msg: msg.into(),
        }
    }

    fn status(&self) -> StatusCode {
        match self.code {
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "not_found" | "bad_route" => StatusCode::NOT_FOUND,
            "invalid_argument" | "malformed" => StatusCode::BAD_REQUEST,
            "already_exists" => StatusCode::CONFLICT,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Error> for TwirpError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Unauthorized(_) => "unauthenticated",
            Error::Forbidden(_) => "permission_denied",
            Error::NotFound(_) => "not_found",
            Error::BadRequest(_) => "invalid_argument",
            Error::Conflict(_) => "already_exists",
            Error::TooLarge(_) | Error::RateLimited(_) => "resource_exhausted",
            Error::Unavailable(_) => "unavailable",
            Error::Internal(_) => "internal",
        };
        TwirpError::new(code, e.to_string())
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"code": self.code, "msg": self.msg});
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
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
            Err(e) => TwirpError::new("internal", e.to_string()).into_response(),
        },
    }
}

/// The caller's video grant, from `Authorization: Bearer`.
fn grant(state: &AppState, headers: &HeaderMap) -> Result<VideoGrant, TwirpError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer)
        .ok_or_else(|| TwirpError::new("unauthenticated", "authorization header missing"))?;
    let claims = state
        .keys
        .verify(token)
        .map_err(|e| TwirpError::new("unauthenticated", e.to_string()))?;
    Ok(claims.video())
}

fn need(ok: bool, what: &str) -> Result<(), TwirpError> {
    if ok {
        Ok(())
    } else {
        // LiveKit answers a missing grant with `unauthenticated`.
        Err(TwirpError::new(
            "unauthenticated",
            format!("permissions denied: {what}"),
        ))
    }
}

fn admin_of(g: &VideoGrant, room: &str) -> Result<RoomName, TwirpError> {
    if room.is_empty() {
        return Err(TwirpError::new("invalid_argument", "room is required"));
    }
    need(
        g.room_admin && g.room == room,
        "requires roomAdmin for this room",
    )?;
    Ok(RoomName::new(room))
}

/// `POST /twirp/livekit.RoomService/{method}`.
pub async fn room_service(
    State(state): State<Arc<AppState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match call(&state, &method, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn call(
    state: &Arc<AppState>,
    method: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, TwirpError> {
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
    let g = grant(state, headers)?;
    let rooms = &state.rooms;
    match method {
        "CreateRoom" => {
            need(g.room_create, "requires roomCreate")?;
            let r: proto::CreateRoomRequest = decode(format, &body)?;
            if r.name.is_empty() || r.name.len() > 256 {
                return Err(TwirpError::new(
                    "invalid_argument",
                    "room name must be 1 to 256 characters",
                ));
            }
            let name = RoomName::new(r.name.clone());
            let settings = RoomSettings {
                empty_timeout: (r.empty_timeout > 0).then_some(r.empty_timeout),
                departure_timeout: (r.departure_timeout > 0).then_some(r.departure_timeout),
                max_participants: Some(r.max_participants),
                metadata: Some(r.metadata),
            };
            rooms
                .create_room(&name, settings)
                .await
                .map_err(|e| match e {
                    // A node at its room limit: LiveKit's resource_exhausted.
                    Error::Unavailable(m) => TwirpError::new("resource_exhausted", m),
                    e => e.into(),
                })?;
            let snap = rooms
                .snapshot(&name)
                .await
                .ok_or_else(|| TwirpError::new("internal", "room closed while being created"))?;
            Ok(encode(format, &snap.room))
        }
        "ListRooms" => {
            need(g.room_list, "requires roomList")?;
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
            need(g.room_create, "requires roomCreate")?;
            let r: proto::DeleteRoomRequest = decode(format, &body)?;
            if !rooms.close_room(&RoomName::new(r.room.clone())).await {
                return Err(TwirpError::new(
                    "not_found",
                    "requested room does not exist",
                ));
            }
            Ok(encode(format, &proto::DeleteRoomResponse {}))
        }
        "UpdateRoomMetadata" => {
            let r: proto::UpdateRoomMetadataRequest = decode(format, &body)?;
            let name = admin_of(&g, &r.room)?;
            if !rooms.exists(&name) {
                return Err(TwirpError::new(
                    "not_found",
                    "requested room does not exist",
                ));
            }
            let settings = RoomSettings {
                metadata: Some(r.metadata),
                ..RoomSettings::default()
            };
            rooms.create_room(&name, settings).await?;
            let snap = rooms
                .snapshot(&name)
                .await
                .ok_or_else(|| TwirpError::new("not_found", "requested room does not exist"))?;
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
                _ => Err(TwirpError::new("internal", "unexpected reply")),
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
                _ => Err(TwirpError::new("internal", "unexpected reply")),
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
                _ => Err(TwirpError::new("internal", "unexpected reply")),
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
                _ => Err(TwirpError::new("internal", "unexpected reply")),
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
                return Err(TwirpError::new(
                    "invalid_argument",
                    "data is larger than 64 KiB",
                ));
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
