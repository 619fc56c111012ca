//! Calls and room tokens over REST. A room token carries a grant for one
//! room only, and only after the permission check (a call the caller is in).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AuthUser;
use crate::calls::machine::{Action, Status};
use crate::calls::{mint_room_token, public_ws_url, Call, Calls};
use crate::error::Error;
use crate::store::User;
use crate::AppState;

/// `{token, url}` for `user` in `room`.
pub fn room_token(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    room: &str,
) -> Result<Value, Error> {
    room_token_as(state, headers, user, room, false)
}

/// `{token, url}`, with roomAdmin when `admin`.
pub fn room_token_as(
    state: &AppState,
    headers: &HeaderMap,
    user: &User,
    room: &str,
    admin: bool,
) -> Result<Value, Error> {
    let token = mint_room_token(&state.keys, state.chat.token_ttl, user, room, admin)?;
    Ok(json!({"token": token, "url": public_ws_url(&state.config.server.public_url, headers)}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Initiate {
    recipient_id: Option<String>,
    to_user_id: Option<String>,
    call_type: Option<String>,
    caller_info: Option<Value>,
}

/// Starts a call for `me`; shared by REST and the socket.
pub async fn start_call(
    calls: &Arc<Calls>,
    me: &User,
    recipient: Option<&str>,
    call_type: Option<&str>,
    caller_info: Option<Value>,
) -> Result<Call, Error> {
    let to = recipient
        .filter(|r| !r.is_empty())
        .ok_or_else(|| Error::BadRequest("recipientId is required".into()))?;
    let info =
        caller_info.unwrap_or_else(|| json!({"id": me.id, "name": me.name, "avatar": me.avatar}));
    calls
        .initiate(&me.id, to, call_type.unwrap_or("video"), Some(info))
        .await
}

/// `POST /api/calls/initiate` and `POST /calls`: `{call, token, url}` for the caller
/// (no token when the callee is busy).
pub async fn initiate(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AuthUser(me): AuthUser,
    Json(r): Json<Initiate>,
) -> Result<Json<Value>, Error> {
    let recipient = r.recipient_id.or(r.to_user_id);
    let call = start_call(
        &state.calls,
        &me,
        recipient.as_deref(),
        r.call_type.as_deref(),
        r.caller_info,
    )
    .await?;
    if call.status == Status::Busy {
        return Ok(Json(json!({"call": call})));
    }
    let mut out = room_token(&state, &headers, &me, &call.room_name)?;
    out["call"] = crate::error::to_json(&call)?;
    Ok(Json(out))
}

async fn act(state: &Arc<AppState>, id: &str, action: Action, me: &User) -> Result<Call, Error> {
    state.calls.act_as(id, action, &me.id).await
}

/// `POST /api/calls/:id/accept`: the callee's `{call, token, url}`.
pub async fn accept(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let call = act(&state, &id, Action::Accept, &me).await?;
    let mut out = room_token(&state, &headers, &me, &call.room_name)?;
    out["call"] = crate::error::to_json(&call)?;
    Ok(Json(out))
}

pub async fn reject(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(
        json!({"call": act(&state, &id, Action::Reject, &me).await?}),
    ))
}

pub async fn cancel(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(
        json!({"call": act(&state, &id, Action::Cancel, &me).await?}),
    ))
}

/// `POST /calls/:id/end`: either person hangs up; the media room closes.
pub async fn end(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(
        json!({"call": act(&state, &id, Action::End, &me).await?}),
    ))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
    before: Option<String>,
}

/// `GET /api/calls?limit&before`.
pub async fn history(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, Error> {
    let before = super::chats::cursor(&q.before)?;
    let (calls, next) = state
        .calls
        .history(&me.id, q.limit.unwrap_or(20), before)
        .await?;
    Ok(Json(json!({"calls": calls, "nextCursor": next})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    room_name: Option<String>,
    call_id: Option<String>,
    identity: Option<String>,
}

/// `POST /livekit/token {roomName | callId}` and `POST /api/livekit/get-token {roomName, identity}`:
/// a token for the caller only, for a room they may enter.
pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AuthUser(me): AuthUser,
    Json(r): Json<TokenRequest>,
) -> Result<Json<Value>, Error> {
    if r.identity.as_deref().is_some_and(|i| i != me.id) {
        return Err(Error::Forbidden(
            "tokens are only issued for your own identity".into(),
        ));
    }
    if let (None, Some(room)) = (&r.call_id, &r.room_name) {
        if let Some(meeting) = super::meetings::by_room(&state, room).await? {
            let role = super::meetings::entry_role(&state, &meeting, &me.id).await?;
            return Ok(Json(room_token_as(
                &state,
                &headers,
                &me,
                room,
                role == "moderator",
            )?));
        }
    }
    let call = match (&r.call_id, &r.room_name) {
        (Some(id), _) => state.calls.get(id).await?,
        (None, Some(room)) => state.calls.by_room(room).await?,
        (None, None) => return Err(Error::BadRequest("roomName or callId is required".into())),
    }
    .ok_or_else(|| Error::Forbidden("no call or room you may enter has that name".into()))?;
    Calls::party(&call, &me.id)?;
    if !call.status.is_active() {
        return Err(Error::Forbidden(format!(
            "the call is {}",
            call.status.as_str()
        )));
    }
    Ok(Json(room_token(&state, &headers, &me, &call.room_name)?))
}
