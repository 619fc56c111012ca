//! One-to-one calls: the state machine (`machine`), persisted in SQLite,
//! driven by REST, the chat socket, a ring timeout and media room events.
//! Every transition is an `UPDATE … WHERE status = <expected>`, so racing
//! actions (an accept against the ring timeout) resolve in the database.

pub mod machine;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};
use socketioxide::SocketIo;
use sqlx::{FromRow, Row};

use crate::error::Error;
use crate::ids::RoomName;
use crate::room::{RoomEvent, RoomManager};
use crate::store::{iso8601, now_ms, Store};
use machine::{Action, Party, Status};

/// A call as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub id: String,
    /// The seed frontends' name for `id`.
    pub call_id: String,
    pub from_user_id: String,
    pub to_user_id: String,
    pub status: Status,
    pub room_name: String,
    pub call_type: String,
    pub start_time: String,
    pub answered_at: Option<String>,
    pub connected_at: Option<String>,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    /// Seconds between connecting and ending, for ended calls.
    pub duration: Option<i64>,
}

#[derive(FromRow)]
struct CallRow {
    seq: i64,
    id: String,
    from_user: String,
    to_user: String,
    call_type: String,
    status: String,
    room_name: String,
    created_at: i64,
    answered_at: Option<i64>,
    connected_at: Option<i64>,
    ended_at: Option<i64>,
    end_reason: Option<String>,
}

impl CallRow {
    fn into_call(self) -> Call {
        let duration = match (self.connected_at, self.ended_at) {
            (Some(c), Some(e)) => Some((e - c).max(0) / 1000),
            _ => None,
        };
        Call {
            call_id: self.id.clone(),
            id: self.id,
            from_user_id: self.from_user,
            to_user_id: self.to_user,
            status: Status::parse(&self.status).unwrap_or(Status::Ended),
            room_name: self.room_name,
            call_type: self.call_type,
            start_time: iso8601(self.created_at),
            answered_at: self.answered_at.map(iso8601),
            connected_at: self.connected_at.map(iso8601),
            ended_at: self.ended_at.map(iso8601),
            end_reason: self.end_reason,
            duration,
        }
    }
}

/// The WebSocket URL clients should use: `public_url` (as ws/wss), else the request's host.
pub fn public_ws_url(public_url: &str, headers: &axum::http::HeaderMap) -> String {
    let configured = public_url.trim_end_matches('/');
    if !configured.is_empty() {
        return configured
            .replacen("https://", "wss://", 1)
            .replacen("http://", "ws://", 1);
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost:7880");
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    format!("{}://{host}", if tls { "wss" } else { "ws" })
}

/// A LiveKit-format token granting `user` to join (publish, subscribe, data)
/// `room` only; `admin` adds roomAdmin (meeting moderators).
pub fn mint_room_token(
    keys: &crate::auth::KeyStore,
    ttl: Duration,
    user: &crate::store::User,
    room: &str,
    admin: bool,
) -> Result<String, Error> {
    let key = keys
        .first_key()
        .ok_or_else(|| Error::Internal("no API key configured".into()))?;
    let grant = crate::auth::VideoGrant {
        room_join: true,
        room: room.to_string(),
        can_publish: Some(true),
        can_subscribe: Some(true),
        can_publish_data: Some(true),
        room_admin: admin,
        ..Default::default()
    };
    let mut claims = crate::auth::claims_for(key, &user.id, ttl, Some(grant));
    claims.name = user.name.clone();
    keys.sign(key, &claims)
}

/// The call service: one per node.
pub struct Calls {
    /// Webhooks, for the `call_started` and `call_ended` app events.
    pub webhooks: std::sync::OnceLock<Arc<crate::webhook::Webhooks>>,
    /// Web Push, for ringing and missed calls.
    pub push: std::sync::OnceLock<Arc<crate::push::Push>>,
    store: Store,
    io: SocketIo,
    rooms: Arc<RoomManager>,
    ring_timeout: Duration,
}

/// Media rooms of calls are named with this prefix.
const ROOM_PREFIX: &str = "call-";

impl Calls {
    pub fn new(
        store: Store,
        io: SocketIo,
        rooms: Arc<RoomManager>,
        ring_timeout: Duration,
    ) -> Arc<Calls> {
        let calls = Arc::new(Calls {
            push: std::sync::OnceLock::new(),
            webhooks: std::sync::OnceLock::new(),
            store,
            io,
            rooms,
            ring_timeout,
        });
        let mut events = calls.rooms.subscribe();
        let c = calls.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let Err(e) = c.on_room_event(ev).await {
                    tracing::warn!("call room event: {e}");
                }
            }
        });
        calls
    }

    async fn row(&self, sql: &'static str, arg: &str) -> Result<Option<Call>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(sql)
            .bind(arg)
            .fetch_optional(self.store.pool())
            .await?
            .map(CallRow::into_call))
    }

    pub async fn get(&self, id: &str) -> Result<Option<Call>, Error> {
        self.row("SELECT * FROM calls WHERE id = ?", id).await
    }

    pub async fn by_room(&self, room: &str) -> Result<Option<Call>, Error> {
        self.row("SELECT * FROM calls WHERE room_name = ?", room)
            .await
    }

    /// The caller's or callee's active call, if any.
    pub async fn active_of(&self, user: &str) -> Result<Option<Call>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(
            "SELECT * FROM calls WHERE (from_user = ?1 OR to_user = ?1) AND status IN ('ringing', 'accepted', 'connected') ORDER BY seq DESC LIMIT 1",
        )
        .bind(user)
        .fetch_optional(self.store.pool())
        .await?
        .map(CallRow::into_call))
    }

    /// The ringing call from `caller` to `callee`.
    pub async fn ringing_between(&self, caller: &str, callee: &str) -> Result<Option<Call>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(
            "SELECT * FROM calls WHERE from_user = ? AND to_user = ? AND status = 'ringing' ORDER BY seq DESC LIMIT 1",
        )
        .bind(caller)
        .bind(callee)
        .fetch_optional(self.store.pool())
        .await?
        .map(CallRow::into_call))
    }

    /// Starts a call. The callee gets `incomingCall`; a callee already in a
    /// call makes it `busy` at once.
    pub async fn initiate(
        self: &Arc<Self>,
        caller: &str,
        callee: &str,
        call_type: &str,
        caller_info: Option<Value>,
    ) -> Result<Call, Error> {
        if caller == callee {
            return Err(Error::BadRequest("cannot call yourself".into()));
        }
        if !matches!(call_type, "audio" | "video") {
            return Err(Error::BadRequest(
                "callType must be \"audio\" or \"video\"".into(),
            ));
        }
        if self.store.user(callee).await?.is_none() {
            return Err(Error::NotFound(format!("no user {callee}")));
        }
        if self.active_of(caller).await?.is_some() {
            return Err(Error::Conflict("you are already in a call".into()));
        }
        let busy = self.active_of(callee).await?.is_some();
        let id = crate::ids::new_sid("CA_");
        let room = format!("{ROOM_PREFIX}{id}");
        let status = if busy { Status::Busy } else { Status::Ringing };
        let now = now_ms();
        sqlx::query(
            "INSERT INTO calls (id, from_user, to_user, call_type, status, room_name, created_at, ended_at, end_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(caller)
        .bind(callee)
        .bind(call_type)
        .bind(status.as_str())
        .bind(&room)
        .bind(now)
        .bind(busy.then_some(now))
        .bind(busy.then_some("busy"))
        .execute(self.store.writer())
        .await?;
        let call = self
            .get(&id)
            .await?
            .ok_or_else(|| Error::Internal("call vanished".into()))?;
        if busy {
            return Ok(call);
        }
        let payload = json!({
            "roomName": call.room_name, "callerId": caller, "callerInfo": caller_info,
            "callId": call.id, "callType": call.call_type,
        });
        let _ = self
            .io
            .to(callee.to_string())
            .emit("incomingCall", &payload)
            .await;
        // Rings the callee's devices even when the app is closed.
        if let Some(push) = self.push.get() {
            let caller_name = self
                .store
                .user(caller)
                .await?
                .map(|u| u.name)
                .unwrap_or_default();
            push.notify(
                callee,
                &json!({"type": "incoming_call", "callId": call.id, "callerId": caller, "callerName": caller_name,
                        "callType": call.call_type, "roomName": call.room_name}),
                crate::push::Priority::Ring,
            );
        }
        let me = self.clone();
        let timeout_id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.ring_timeout).await;
            if let Err(e) = me
                .act(&timeout_id, Action::RingTimeout, Party::System)
                .await
            {
                tracing::trace!("ring timeout: {e}");
            }
        });
        Ok(call)
    }

    /// Which party `user` is in a call, or `Forbidden`.
    pub fn party(call: &Call, user: &str) -> Result<Party, Error> {
        if call.from_user_id == user {
            Ok(Party::Caller)
        } else if call.to_user_id == user {
            Ok(Party::Callee)
        } else {
            Err(Error::Forbidden("you are not in this call".into()))
        }
    }

    /// Applies `action` by `user` to call `id`.
    pub async fn act_as(
        self: &Arc<Self>,
        id: &str,
        action: Action,
        user: &str,
    ) -> Result<Call, Error> {
        let call = self
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound("no such call".into()))?;
        let party = Self::party(&call, user)?;
        self.act(id, action, party).await
    }

    /// Applies a transition and tells the two people.
    pub async fn act(self: &Arc<Self>, id: &str, action: Action, by: Party) -> Result<Call, Error> {
        let call = self
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound("no such call".into()))?;
        let to = machine::next(call.status, action, by).map_err(Error::Conflict)?;
        let now = now_ms();
        let reason = match (to, by) {
            (Status::Ended, Party::Caller) => Some("caller_hangup"),
            (Status::Ended, Party::Callee) => Some("callee_hangup"),
            (Status::Ended, Party::System) => Some("room_closed"),
            (Status::Rejected, _) => Some("rejected"),
            (Status::Cancelled, _) => Some("cancelled"),
            (Status::Missed, _) => Some("missed"),
            _ => None,
        };
        let done = !to.is_active();
        let updated = sqlx::query(
            "UPDATE calls SET status = ?, \
             answered_at = CASE WHEN ? THEN ? ELSE answered_at END, \
             connected_at = CASE WHEN ? THEN ? ELSE connected_at END, \
             ended_at = CASE WHEN ? THEN ? ELSE ended_at END, \
             end_reason = COALESCE(?, end_reason) \
             WHERE id = ? AND status = ?",
        )
        .bind(to.as_str())
        .bind(to == Status::Accepted)
        .bind(now)
        .bind(to == Status::Connected)
        .bind(now)
        .bind(done)
        .bind(now)
        .bind(reason)
        .bind(id)
        .bind(call.status.as_str())
        .execute(self.store.writer())
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(Error::Conflict(
                "the call changed meanwhile; try again".into(),
            ));
        }
        let call = self
            .get(id)
            .await?
            .ok_or_else(|| Error::Internal("call vanished".into()))?;
        self.announce(&call, by).await;
        if done {
            self.rooms
                .close_room(&RoomName::new(call.room_name.clone()))
                .await;
        }
        Ok(call)
    }

    /// The events of a transition, to the two people only.
    async fn announce(&self, call: &Call, by: Party) {
        if let Some(w) = self.webhooks.get() {
            match call.status {
                Status::Connected => w.app_event("call_started", json!({"call": call})),
                s if !s.is_active() => w.app_event("call_ended", json!({"call": call})),
                _ => {}
            }
        }
        let both = vec![call.from_user_id.clone(), call.to_user_id.clone()];
        let emit = |to: Vec<String>, event: &'static str, data: Value| async move {
            let _ = self.io.to(to).emit(event, &data).await;
        };
        match call.status {
            Status::Accepted => {
                emit(vec![call.from_user_id.clone()], "callAccepted", json!({"roomName": call.room_name, "callId": call.id, "recipientId": call.to_user_id})).await;
            }
            Status::Connected => emit(both, "call.started", json!({"data": call})).await,
            Status::Rejected => {
                emit(
                    vec![call.from_user_id.clone()],
                    "callRejected",
                    json!({"recipientId": call.to_user_id, "callId": call.id}),
                )
                .await;
                emit(both, "call.ended", json!({"data": call})).await;
            }
            Status::Cancelled => {
                emit(
                    vec![call.to_user_id.clone()],
                    "callCancelled",
                    json!({"callerId": call.from_user_id, "callId": call.id}),
                )
                .await;
                emit(both, "call.ended", json!({"data": call})).await;
            }
            Status::Missed => {
                if let Some(push) = self.push.get() {
                    push.notify(
                        &call.to_user_id,
                        &json!({"type": "missed_call", "callId": call.id, "callerId": call.from_user_id, "callType": call.call_type}),
                        crate::push::Priority::Normal,
                    );
                }
                emit(
                    both.clone(),
                    "callMissed",
                    json!({"callId": call.id, "callerId": call.from_user_id}),
                )
                .await;
                emit(both, "call.ended", json!({"data": call})).await;
            }
            Status::Ended => {
                emit(
                    both,
                    "call.ended",
                    json!({"data": call, "by": format!("{by:?}").to_lowercase()}),
                )
                .await
            }
            Status::Ringing | Status::Busy => {}
        }
    }

    /// Media room events: a call connects when both people joined its room,
    /// and ends when neither is left in it.
    async fn on_room_event(self: &Arc<Self>, ev: RoomEvent) -> Result<(), Error> {
        let room = match &ev {
            RoomEvent::ParticipantJoined { room, .. }
            | RoomEvent::ParticipantLeft { room, .. }
            | RoomEvent::RoomClosed { room } => room,
            RoomEvent::Webhook(_) => return Ok(()),
        };
        if !room.as_str().starts_with(ROOM_PREFIX) {
            return Ok(());
        }
        let Some(call) = self.by_room(room.as_str()).await? else {
            return Ok(());
        };
        let present = self.rooms.identities(room).await;
        let has = |u: &str| present.iter().any(|p| p == u);
        let both_in = has(&call.from_user_id) && has(&call.to_user_id);
        let none_in = !has(&call.from_user_id) && !has(&call.to_user_id);
        match ev {
            RoomEvent::ParticipantJoined { .. } if call.status == Status::Accepted && both_in => {
                self.act(&call.id, Action::BothJoined, Party::System)
                    .await?;
            }
            RoomEvent::ParticipantLeft { .. } | RoomEvent::RoomClosed { .. }
                if call.status == Status::Connected && none_in =>
            {
                self.act(&call.id, Action::End, Party::System).await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// The user's calls, newest first, with a cursor for older ones.
    pub async fn history(
        &self,
        user: &str,
        limit: i64,
        before: Option<i64>,
    ) -> Result<(Vec<Call>, Option<String>), Error> {
        let limit = limit.clamp(1, 100);
        let rows = sqlx::query_as::<_, CallRow>(
            "SELECT * FROM calls WHERE (from_user = ?1 OR to_user = ?1) AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
        )
        .bind(user)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        let oldest = rows.last().map(|r| r.seq);
        let more = match oldest {
            Some(seq) => sqlx::query(
                "SELECT 1 FROM calls WHERE (from_user = ?1 OR to_user = ?1) AND seq < ?2 LIMIT 1",
            )
            .bind(user)
            .bind(seq)
            .fetch_optional(self.store.pool())
            .await?
            .map(|r| r.get::<i64, _>(0))
            .is_some(),
            None => false,
        };
        let calls = rows.into_iter().map(CallRow::into_call).collect();
        Ok((
            calls,
            if more {
                oldest.map(|s| s.to_string())
            } else {
                None
            },
        ))
    }
}
