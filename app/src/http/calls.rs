//! Calls and room tokens over REST.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{cursor, AuthUser, Body};
use crate::calls::machine::{Action, Status};
use crate::error::Error;
use crate::App;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Initiate {
    recipient_id: Option<String>,
    to_user_id: Option<String>,
    call_type: Option<String>,
}

/// `POST /api/calls/initiate` and `POST /calls`: `{call, token, url}` for the caller
/// (no token when the callee is busy).
pub async fn initiate(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    AuthUser(me): AuthUser,
    Body(r): Body<Initiate>,
) -> Result<Json<Value>, Error> {
    let recipient = r.recipient_id.or(r.to_user_id);
    let call = app
        .calls
        .start_call(&me, recipient.as_deref(), r.call_type.as_deref())
        .await?;
    if call.status == Status::Busy {
        return Ok(Json(json!({"call": call})));
    }
    Ok(Json(app.access.call_with_token(&me, &call, &headers)?))
}

/// `POST /api/calls/:id/accept`: the callee's `{call, token, url}`.
pub async fn accept(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let call = app.calls.act_as(&id, Action::Accept, &me.id).await?;
    Ok(Json(app.access.call_with_token(&me, &call, &headers)?))
}

async fn act(app: &App, id: &str, action: Action, me: &str) -> Result<Json<Value>, Error> {
    Ok(Json(
        json!({"call": app.calls.act_as(id, action, me).await?}),
    ))
}

pub async fn reject(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    act(&app, &id, Action::Reject, &me.id).await
}

pub async fn cancel(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    act(&app, &id, Action::Cancel, &me.id).await
}

/// `POST /calls/:id/end`: either person hangs up; the media room closes.
pub async fn end(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    act(&app, &id, Action::End, &me.id).await
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
    before: Option<String>,
}

/// `GET /api/calls?limit&before`.
pub async fn history(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, Error> {
    let (calls, next) = app
        .calls
        .history(&me.id, q.limit.unwrap_or(20), cursor(&q.before)?)
        .await?;
    Ok(Json(json!({"calls": calls, "nextCursor": next})))
}

/// `GET /api/calls/:id`: one call, to its caller and callee.
pub async fn one(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(json!({"call": app.calls.of_user(&me.id, &id).await?})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    room_name: Option<String>,
    call_id: Option<String>,
    identity: Option<String>,
}

/// `POST /livekit/token {roomName | callId}` and `POST /api/livekit/get-token {roomName, identity}`:
/// a token for the caller only, for a room they may enter (decided by `Access`).
pub async fn token(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    AuthUser(me): AuthUser,
    Body(r): Body<TokenRequest>,
) -> Result<Json<Value>, Error> {
    if r.identity.as_deref().is_some_and(|i| i != me.id) {
        return Err(Error::Forbidden(
            "tokens are only issued for your own identity",
        ));
    }
    app.calls.throttle(&me.id)?;
    let token = app
        .access
        .room_token(&me, r.room_name.as_deref(), r.call_id.as_deref(), &headers)
        .await?;
    Ok(Json(token.to_json()))
}
