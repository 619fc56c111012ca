//! Meetings over REST, at `/rooms` (the seed frontends' path) and `/api/rooms`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AuthUser, Body};
use crate::error::{to_json, Error};
use crate::meetings::NewMeetingRequest;
use crate::App;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Create {
    name: String,
    max_participants: Option<u32>,
    empty_timeout: Option<u32>,
    metadata: Option<String>,
    #[serde(default)]
    open: bool,
    #[serde(default)]
    members: Vec<String>,
}

/// `POST /rooms` and `POST /api/rooms`: the creator is the moderator.
pub async fn create(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Body(c): Body<Create>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let meeting = app
        .meetings
        .create(
            &me,
            NewMeetingRequest {
                name: c.name,
                max_participants: c.max_participants,
                empty_timeout: c.empty_timeout,
                metadata: c.metadata,
                open: c.open,
                members: c.members,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(to_json(&meeting)?)))
}

/// `POST /rooms/:id/join`: `{token, url}` for a member or anyone in an open room.
pub async fn join(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(app.meetings.join(&me, &id, &headers).await?.to_json()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    user_id: String,
}

/// `POST /api/rooms/:id/moderators {userId}`: a moderator makes someone a moderator.
pub async fn add_moderator(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    Body(u): Body<UserRef>,
) -> Result<Json<Value>, Error> {
    let meeting = app.meetings.add_moderator(&me, &id, &u.user_id).await?;
    Ok(Json(to_json(&meeting)?))
}

/// `POST /api/rooms/:id/start`: opens the media room with the meeting's limits and metadata.
pub async fn start(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(to_json(&app.meetings.start(&me, &id).await?)?))
}

/// `POST /api/rooms/:id/end`: disconnects everyone and records the duration.
pub async fn end(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let (meeting, duration) = app.meetings.end(&me, &id).await?;
    Ok(Json(json!({"room": meeting, "duration": duration})))
}

/// `GET /api/rooms/:id/status`: read from the live SFU.
pub async fn status(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(to_json(&app.meetings.status(&me, &id).await?)?))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
}

/// `GET /api/rooms?limit=`: the caller's meetings, newest first, with live state.
pub async fn list(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Result<Json<Value>, Error> {
    let rooms = app.meetings.mine(&me, q.limit.unwrap_or(50)).await?;
    Ok(Json(json!({"rooms": rooms})))
}

/// `GET /api/rooms/:id`: one meeting, for its members (anyone, if open).
pub async fn get(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(json!({"room": app.meetings.get(&me, &id).await?})))
}
