//! Meetings (the seed LiveKit service's rooms): a named media room with
//! members and moderators. Moderators start and end it and get roomAdmin.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{FromRow, Row};

use super::calls::room_token_as;
use super::AuthUser;
use crate::error::Error;
use crate::ids::RoomName;
use crate::room::RoomSettings;
use crate::store::{iso8601, now_ms};
use crate::AppState;

#[derive(FromRow)]
pub struct MeetingRow {
    id: String,
    name: String,
    room_name: String,
    created_by: String,
    max_participants: i64,
    empty_timeout: i64,
    metadata: String,
    is_open: i64,
    created_at: i64,
    started_at: Option<i64>,
    ended_at: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Meeting {
    id: String,
    name: String,
    room_name: String,
    participants: Vec<String>,
    moderator_id: String,
    moderators: Vec<String>,
    open: bool,
    max_participants: i64,
    empty_timeout: i64,
    metadata: String,
    created_at: String,
    started_at: Option<String>,
    ended_at: Option<String>,
}

async fn load(state: &AppState, id: &str) -> Result<MeetingRow, Error> {
    sqlx::query_as::<_, MeetingRow>("SELECT * FROM meetings WHERE id = ?")
        .bind(id)
        .fetch_optional(state.chat.store.pool())
        .await?
        .ok_or_else(|| Error::NotFound("no such room".into()))
}

pub async fn by_room(state: &AppState, room: &str) -> Result<Option<MeetingRow>, Error> {
    Ok(
        sqlx::query_as::<_, MeetingRow>("SELECT * FROM meetings WHERE room_name = ?")
            .bind(room)
            .fetch_optional(state.chat.store.pool())
            .await?,
    )
}

async fn role_of(state: &AppState, meeting: &str, user: &str) -> Result<Option<String>, Error> {
    Ok(
        sqlx::query("SELECT role FROM meeting_members WHERE meeting_id = ? AND user_id = ?")
            .bind(meeting)
            .bind(user)
            .fetch_optional(state.chat.store.pool())
            .await?
            .map(|r| r.get::<String, _>(0)),
    )
}

/// The role `user` enters with: their membership, or `member` of an open room
/// (recorded on first entry); `Forbidden` otherwise.
pub async fn entry_role(state: &AppState, m: &MeetingRow, user: &str) -> Result<String, Error> {
    if let Some(r) = role_of(state, &m.id, user).await? {
        return Ok(r);
    }
    if m.is_open == 0 {
        return Err(Error::Forbidden("this room is for its members only".into()));
    }
    add_member(state, &m.id, user, "member").await?;
    Ok("member".into())
}

async fn add_member(state: &AppState, meeting: &str, user: &str, role: &str) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO meeting_members (meeting_id, user_id, role) VALUES (?, ?, ?) \
         ON CONFLICT(meeting_id, user_id) DO UPDATE SET role = CASE WHEN excluded.role = 'moderator' THEN 'moderator' ELSE role END",
    )
    .bind(meeting)
    .bind(user)
    .bind(role)
    .execute(state.chat.store.writer())
    .await?;
    Ok(())
}

async fn render(state: &AppState, m: MeetingRow) -> Result<Meeting, Error> {
    let rows = sqlx::query(
        "SELECT user_id, role FROM meeting_members WHERE meeting_id = ? ORDER BY user_id",
    )
    .bind(&m.id)
    .fetch_all(state.chat.store.pool())
    .await?;
    let participants = rows.iter().map(|r| r.get::<String, _>(0)).collect();
    let moderators = rows
        .iter()
        .filter(|r| r.get::<String, _>(1) == "moderator")
        .map(|r| r.get::<String, _>(0))
        .collect();
    Ok(Meeting {
        id: m.id,
        name: m.name,
        room_name: m.room_name,
        participants,
        moderator_id: m.created_by,
        moderators,
        open: m.is_open != 0,
        max_participants: m.max_participants,
        empty_timeout: m.empty_timeout,
        metadata: m.metadata,
        created_at: iso8601(m.created_at),
        started_at: m.started_at.map(iso8601),
        ended_at: m.ended_at.map(iso8601),
    })
}

async fn require_moderator(state: &AppState, m: &MeetingRow, user: &str) -> Result<(), Error> {
    match role_of(state, &m.id, user).await?.as_deref() {
        Some("moderator") => Ok(()),
        _ => Err(Error::Forbidden(
            "only a moderator of this room may do that".into(),
        )),
    }
}

async fn tell_members(
    state: &AppState,
    meeting: &str,
    event: &'static str,
    data: Value,
) -> Result<(), Error> {
    let members: Vec<String> =
        sqlx::query("SELECT user_id FROM meeting_members WHERE meeting_id = ?")
            .bind(meeting)
            .fetch_all(state.chat.store.pool())
            .await?
            .into_iter()
            .map(|r| r.get::<String, _>(0))
            .collect();
    let _ = state.io.to(members).emit(event, &data).await;
    Ok(())
}

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
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Json(c): Json<Create>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let name = c.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(Error::BadRequest("name must be 1 to 100 characters".into()));
    }
    if c.metadata.as_ref().is_some_and(|m| m.len() > 64 * 1024) {
        return Err(Error::BadRequest("metadata is larger than 64 KiB".into()));
    }
    for u in &c.members {
        if state.chat.store.user(u).await?.is_none() {
            return Err(Error::NotFound(format!("no user {u}")));
        }
    }
    let id = crate::ids::new_sid("MT_");
    let room_name = format!("meeting-{id}");
    sqlx::query(
        "INSERT INTO meetings (id, name, room_name, created_by, max_participants, empty_timeout, metadata, is_open, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(name)
    .bind(&room_name)
    .bind(&me.id)
    .bind(i64::from(c.max_participants.unwrap_or(0)))
    .bind(i64::from(c.empty_timeout.unwrap_or(0)))
    .bind(c.metadata.unwrap_or_default())
    .bind(c.open)
    .bind(now_ms())
    .execute(state.chat.store.writer())
    .await?;
    add_member(&state, &id, &me.id, "moderator").await?;
    for u in c.members.iter().filter(|u| **u != me.id) {
        add_member(&state, &id, u, "member").await?;
    }
    let meeting = render(&state, load(&state, &id).await?).await?;
    let data = crate::error::to_json(&meeting)?;
    tell_members(&state, &id, "room.created", json!({"data": data})).await?;
    state
        .webhooks
        .app_event("room_created", json!({"room": data}));
    Ok((StatusCode::CREATED, Json(data)))
}

/// `POST /rooms/:id/join`: `{token, url}` for a member or anyone in an open room.
pub async fn join(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let m = load(&state, &id).await?;
    if m.ended_at.is_some() {
        return Err(Error::Conflict("this room has ended".into()));
    }
    let role = entry_role(&state, &m, &me.id).await?;
    let out = room_token_as(&state, &headers, &me, &m.room_name, role == "moderator")?;
    tell_members(
        &state,
        &id,
        "room.joined",
        json!({"data": {"roomId": id, "roomName": m.room_name, "userId": me.id}}),
    )
    .await?;
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserRef {
    user_id: String,
}

/// `POST /api/rooms/:id/moderators {userId}`: a moderator makes someone a moderator.
pub async fn add_moderator(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    Json(u): Json<UserRef>,
) -> Result<Json<Value>, Error> {
    let m = load(&state, &id).await?;
    require_moderator(&state, &m, &me.id).await?;
    if state.chat.store.user(&u.user_id).await?.is_none() {
        return Err(Error::NotFound(format!("no user {}", u.user_id)));
    }
    add_member(&state, &id, &u.user_id, "moderator").await?;
    Ok(Json(crate::error::to_json(&render(&state, m).await?)?))
}

/// `POST /api/rooms/:id/start`: opens the media room with the meeting's limits and metadata.
pub async fn start(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let m = load(&state, &id).await?;
    require_moderator(&state, &m, &me.id).await?;
    let settings = RoomSettings {
        empty_timeout: (m.empty_timeout > 0).then_some(m.empty_timeout as u32),
        max_participants: Some(m.max_participants as u32),
        metadata: Some(m.metadata.clone()),
        ..RoomSettings::default()
    };
    state
        .rooms
        .create_room(&RoomName::new(m.room_name.clone()), settings)
        .await?;
    sqlx::query("UPDATE meetings SET started_at = ?, ended_at = NULL WHERE id = ?")
        .bind(now_ms())
        .bind(&id)
        .execute(state.chat.store.writer())
        .await?;
    Ok(Json(crate::error::to_json(
        &render(&state, load(&state, &id).await?).await?,
    )?))
}

/// `POST /api/rooms/:id/end`: disconnects everyone and records the duration.
pub async fn end(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let m = load(&state, &id).await?;
    require_moderator(&state, &m, &me.id).await?;
    state
        .rooms
        .close_room(&RoomName::new(m.room_name.clone()))
        .await;
    let now = now_ms();
    sqlx::query("UPDATE meetings SET ended_at = ? WHERE id = ?")
        .bind(now)
        .bind(&id)
        .execute(state.chat.store.writer())
        .await?;
    let duration = m.started_at.map(|s| (now - s).max(0) / 1000);
    let meeting = render(&state, load(&state, &id).await?).await?;
    Ok(Json(json!({"room": meeting, "duration": duration})))
}

/// `GET /api/rooms/:id/status`: read from the live SFU.
pub async fn status(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, Error> {
    let m = load(&state, &id).await?;
    if m.is_open == 0 && role_of(&state, &id, &me.id).await?.is_none() {
        return Err(Error::Forbidden("this room is for its members only".into()));
    }
    let room = RoomName::new(m.room_name.clone());
    let active = state.rooms.exists(&room);
    let count = state.rooms.identities(&room).await.len();
    Ok(Json(json!({
        "isActive": active,
        "participantCount": count,
        "startedAt": m.started_at.map(iso8601),
        "roomName": m.room_name,
    })))
}
