//! Who gets a token for which room: the one place the app decides it and
//! mints tokens. Every token is a LiveKit-format access token signed with the
//! node's first API key (`KeyStore::mint`):
//!
//! - a **session token** carries the identity only (no room grant), with
//!   `aud` = `nodo:session` and its session id as `jti`: the LiveKit side
//!   refuses it, and only it (or an app-minted token without grants) opens the
//!   API and the chat socket;
//! - a **room token** grants join, publish, subscribe and data for one room,
//!   only to a person of an active call that owns the room, or to a member
//!   of a meeting that owns it (anyone, for an open meeting); a meeting's
//!   moderators also get roomAdmin.

use std::time::Duration;

use axum::http::HeaderMap;
use nodo_signaling::auth::{Claims, KeyStore, VideoGrant};
use serde_json::{json, Value};

use crate::calls::Calls;
use crate::error::Error;
use crate::store::{Call, MeetingRecord, Role, Store, User};

/// A room token and the URL to use it at.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomToken {
    pub token: String,
    /// The node's WebSocket URL (`ws://` or `wss://`).
    pub url: String,
}

impl RoomToken {
    /// `{token, url}`, as every API answer carries it.
    pub fn to_json(&self) -> Value {
        json!({"token": self.token, "url": self.url})
    }
}

/// Lifetimes and the public address.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    /// How long a session token from register/login stays valid.
    pub session_ttl: Duration,
    /// How long a room token stays valid.
    pub room_ttl: Duration,
    /// The node's public base URL; empty: derived from each request's `Host`.
    pub public_url: String,
}

/// What a valid bearer token is to the app API and the chat socket.
#[derive(Debug, Clone)]
pub enum Bearer {
    /// One of the node's own session tokens, naming its session.
    Session { claims: Claims, session: String },
    /// A token an app minted for its own user (no grants).
    App(Claims),
}

impl Bearer {
    pub fn claims(&self) -> &Claims {
        match self {
            Bearer::Session { claims, .. } | Bearer::App(claims) => claims,
        }
    }

    pub fn identity(&self) -> &str {
        self.claims().identity()
    }
}

/// The access rules of the app.
pub struct Access {
    keys: KeyStore,
    store: Store,
    config: AccessConfig,
}

impl Access {
    pub fn new(keys: KeyStore, store: Store, config: AccessConfig) -> Access {
        Access {
            keys,
            store,
            config,
        }
    }

    /// Checks a bearer token for the API or the chat socket: a session
    /// token, or an app-minted token that grants nothing. A room token (which
    /// travels in `/rtc?access_token=` URLs and proxy logs) or a server API
    /// token is not a session. The identity must not be empty.
    pub fn verify(&self, token: &str) -> Result<Bearer, Error> {
        let claims = self.keys.verify_any(token)?;
        if claims.identity().is_empty() {
            return Err(Error::Unauthenticated("token has no identity"));
        }
        if claims.is_session() {
            if claims.jti.is_empty() {
                return Err(Error::Unauthenticated("session token has no session id"));
            }
            let session = claims.jti.clone();
            return Ok(Bearer::Session { claims, session });
        }
        let g = claims.video();
        if g.room_join
            || g.room_admin
            || g.room_create
            || g.room_list
            || g.room_record
            || g.ingress_admin
            || g.agent
            || g.recorder
        {
            return Err(Error::Unauthenticated(
                "a room or server API token is not a session: sign in, or use a token without grants",
            ));
        }
        Ok(Bearer::App(claims))
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> Duration {
        self.config.session_ttl
    }

    /// A session token for `user` in `session`: the identity, no grant.
    pub fn session_token(&self, user: &User, session: &str) -> Result<String, Error> {
        Ok(self
            .keys
            .mint_session(&user.id, &user.name, self.config.session_ttl, session)?)
    }

    /// The WebSocket URL clients should use: `public_url` (as ws/wss), else
    /// the request's host (and `X-Forwarded-Proto`).
    pub fn ws_url(&self, headers: &HeaderMap) -> String {
        let configured = self.config.public_url.trim_end_matches('/');
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

    /// A room token for one of the two people of an active call.
    pub fn call_token(
        &self,
        user: &User,
        call: &Call,
        headers: &HeaderMap,
    ) -> Result<RoomToken, Error> {
        Calls::party(call, &user.id)?;
        if !call.status.is_active() {
            return Err(Error::CallOver(call.status));
        }
        self.mint(user, &call.room_name, false, headers)
    }

    /// `{token, url, call}`: a call with one of its people's room token, as
    /// the REST and socket answers to starting or accepting a call carry it.
    pub fn call_with_token(
        &self,
        user: &User,
        call: &Call,
        headers: &HeaderMap,
    ) -> Result<Value, Error> {
        let mut out = self.call_token(user, call, headers)?.to_json();
        out["call"] = crate::error::to_json(call)?;
        Ok(out)
    }

    /// The role `user` enters a meeting with: their membership, or member of
    /// an open meeting (recorded on first entry); `Forbidden` otherwise.
    pub async fn entry_role(&self, meeting: &MeetingRecord, user: &str) -> Result<Role, Error> {
        if let Some(r) = self.store.meeting_role(&meeting.id, user).await? {
            return Ok(r);
        }
        if meeting.is_open == 0 {
            return Err(Error::Forbidden("this room is for its members only"));
        }
        self.store
            .add_meeting_member(&meeting.id, user, Role::Member)
            .await?;
        Ok(Role::Member)
    }

    /// A room token for a meeting's room; moderators get roomAdmin.
    pub async fn meeting_token(
        &self,
        user: &User,
        meeting: &MeetingRecord,
        headers: &HeaderMap,
    ) -> Result<RoomToken, Error> {
        if meeting.ended_at.is_some() {
            return Err(Error::conflict("this room has ended"));
        }
        let role = self.entry_role(meeting, &user.id).await?;
        self.mint(user, &meeting.room_name, role == Role::Moderator, headers)
    }

    /// A room token by room name or call id (`/livekit/token`): the meeting
    /// or the call that owns the room decides.
    pub async fn room_token(
        &self,
        user: &User,
        room_name: Option<&str>,
        call_id: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<RoomToken, Error> {
        let call = match (call_id, room_name) {
            (Some(id), _) => self.store.call(id).await?,
            (None, Some(room)) => {
                if let Some(meeting) = self.store.meeting_by_room(room).await? {
                    return self.meeting_token(user, &meeting, headers).await;
                }
                self.store.call_by_room(room).await?
            }
            (None, None) => return Err(Error::invalid("roomName or callId is required")),
        }
        .ok_or(Error::Forbidden(
            "no call or room you may enter has that name",
        ))?;
        self.call_token(user, &call, headers)
    }

    fn mint(
        &self,
        user: &User,
        room: &str,
        admin: bool,
        headers: &HeaderMap,
    ) -> Result<RoomToken, Error> {
        let grant = VideoGrant {
            room_join: true,
            room: room.to_string(),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            room_admin: admin,
            ..Default::default()
        };
        let token = self
            .keys
            .mint(&user.id, &user.name, self.config.room_ttl, Some(grant))?;
        Ok(RoomToken {
            token,
            url: self.ws_url(headers),
        })
    }
}
