//! Meetings (the seed LiveKit service's "rooms"): a named LiveKit room with
//! members and moderators. Moderators start and end it and join with
//! roomAdmin; who may enter is decided by [`Access`](crate::access::Access).

use std::sync::Arc;

use crate::fanout::Fanout;
use nodo_signaling::ids::RoomName;
use nodo_signaling::room::{RoomGate, RoomManager, RoomSettings};
use nodo_signaling::webhook::Webhooks;
use serde::Serialize;
use serde_json::{json, Value};

use crate::access::{Access, RoomToken};
use crate::error::{to_json, Error, Missing};
use crate::limits::{Limiter, Rate};
use crate::store::{iso8601, now_ms, MeetingRecord, NewMeeting, Role, Store, User};

/// Most members named when a meeting is created.
const MAX_MEMBERS: usize = 1000;

/// A meeting as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Meeting {
    pub id: String,
    pub name: String,
    pub room_name: String,
    /// Every member, moderators included.
    pub participants: Vec<String>,
    /// Who created it.
    pub moderator_id: String,
    pub moderators: Vec<String>,
    pub open: bool,
    pub max_participants: i64,
    pub empty_timeout: i64,
    pub metadata: String,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

/// What a new meeting asks for.
pub struct NewMeetingRequest {
    pub name: String,
    pub max_participants: Option<u32>,
    pub empty_timeout: Option<u32>,
    pub metadata: Option<String>,
    /// Anyone may enter (and becomes a member on first entry).
    pub open: bool,
    /// Members besides the creator.
    pub members: Vec<String>,
}

/// Live state of a meeting's room, read from the SFU.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeetingStatus {
    pub is_active: bool,
    pub participant_count: usize,
    pub started_at: Option<String>,
    pub room_name: String,
}

/// The meeting service.
pub struct Meetings {
    store: Store,
    rooms: Arc<RoomManager>,
    access: Arc<Access>,
    fanout: Arc<Fanout>,
    webhooks: Arc<Webhooks>,
    /// Meetings created per user.
    creations: Limiter<String>,
    /// Joins, starts, ends and moderator changes per user.
    actions: Limiter<String>,
}

/// The media room settings a meeting's record asks for.
fn settings_of(m: &MeetingRecord) -> RoomSettings {
    RoomSettings {
        empty_timeout: u32::try_from(m.empty_timeout).ok().filter(|t| *t > 0),
        max_participants: Some(u32::try_from(m.max_participants).unwrap_or(0)),
        metadata: Some(m.metadata.clone()),
        ..RoomSettings::default()
    }
}

/// The app's say over rooms a join would open: a meeting's room opens with
/// the meeting's limits (from its creation, started or not) and never again
/// once the meeting ended; a call's room only while the call is active.
struct AppRooms {
    store: Store,
}

impl AppRooms {
    async fn decide(&self, room: &RoomName) -> Result<Option<RoomSettings>, Error> {
        if let Some(m) = self.store.meeting_by_room(room.as_str()).await? {
            return match m.ended_at {
                Some(_) => Err(nodo_signaling::Error::RoomNotFound(room.clone()).into()),
                None => Ok(Some(settings_of(&m))),
            };
        }
        if let Some(c) = self.store.call_by_room(room.as_str()).await? {
            if !c.status.is_active() {
                return Err(nodo_signaling::Error::RoomNotFound(room.clone()).into());
            }
            // A call is private: no agent is sent into it unasked (an
            // assistant's call dispatches its own).
            return Ok(Some(RoomSettings {
                agents: Some(Vec::new()),
                ..RoomSettings::default()
            }));
        }
        Ok(None)
    }
}

impl RoomGate for AppRooms {
    fn admit<'a>(
        &'a self,
        room: &'a RoomName,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<Option<RoomSettings>, nodo_signaling::Error>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            self.decide(room).await.map_err(|e| match e {
                Error::LiveKit(e) => e,
                other => {
                    // A store failure: logged here, the join refused as unavailable.
                    other.log_if_internal();
                    nodo_signaling::Error::RoomClosing
                }
            })
        })
    }
}

impl Meetings {
    /// The service; installs the app's gate on `rooms` (see [`RoomGate`]).
    pub fn new(
        store: Store,
        rooms: Arc<RoomManager>,
        access: Arc<Access>,
        fanout: Arc<Fanout>,
        webhooks: Arc<Webhooks>,
        create_rate: Rate,
        action_rate: Rate,
    ) -> Arc<Meetings> {
        rooms.set_gate(Arc::new(AppRooms {
            store: store.clone(),
        }));
        Arc::new(Meetings {
            store,
            rooms,
            access,
            fanout,
            webhooks,
            creations: Limiter::new("new rooms", create_rate),
            actions: Limiter::new("room actions", action_rate),
        })
    }

    /// One room action of `user`, or `RateLimited`.
    fn throttle(&self, user: &str) -> Result<(), Error> {
        self.actions
            .check(&user.to_string())
            .map_err(Error::RateLimited)
    }

    async fn load(&self, id: &str) -> Result<MeetingRecord, Error> {
        self.store
            .meeting(id)
            .await?
            .ok_or(Error::NotFound(Missing::Meeting))
    }

    async fn render(&self, m: MeetingRecord) -> Result<Meeting, Error> {
        let members = self.store.meeting_members(&m.id).await?;
        let moderators = members
            .iter()
            .filter(|(_, r)| *r == Role::Moderator)
            .map(|(u, _)| u.clone())
            .collect();
        Ok(Meeting {
            participants: members.into_iter().map(|(u, _)| u).collect(),
            moderators,
            id: m.id,
            name: m.name,
            room_name: m.room_name,
            moderator_id: m.created_by,
            open: m.is_open != 0,
            max_participants: m.max_participants,
            empty_timeout: m.empty_timeout,
            metadata: m.metadata,
            created_at: iso8601(m.created_at),
            started_at: m.started_at.map(iso8601),
            ended_at: m.ended_at.map(iso8601),
        })
    }

    async fn require_moderator(&self, m: &MeetingRecord, user: &str) -> Result<(), Error> {
        match self.store.meeting_role(&m.id, user).await? {
            Some(Role::Moderator) => Ok(()),
            _ => Err(Error::Forbidden(
                "only a moderator of this room may do that",
            )),
        }
    }

    /// Sends `event` to every member of a meeting.
    async fn tell_members(
        &self,
        meeting: &str,
        event: &'static str,
        data: Value,
    ) -> Result<(), Error> {
        let members: Vec<String> = self
            .store
            .meeting_members(meeting)
            .await?
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        self.fanout.emit(members, event, &data).await;
        Ok(())
    }

    /// Creates a meeting; the creator is its moderator. Members hear `room.created`.
    pub async fn create(&self, me: &User, r: NewMeetingRequest) -> Result<Meeting, Error> {
        let name = r.name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(Error::invalid("name must be 1 to 100 characters"));
        }
        if r.metadata.as_ref().is_some_and(|m| m.len() > 64 * 1024) {
            return Err(Error::too_large("metadata is larger than 64 KiB"));
        }
        if r.members.len() > MAX_MEMBERS {
            return Err(Error::too_large(format!(
                "a room has at most {MAX_MEMBERS} members at creation"
            )));
        }
        if r.members.iter().any(|u| u.len() > crate::chat::MAX_ID_LEN) {
            return Err(Error::invalid("a member id is too long"));
        }
        self.creations.check(&me.id).map_err(Error::RateLimited)?;
        for u in &r.members {
            if self.store.user(u).await?.is_none() {
                return Err(Error::NotFound(Missing::User(u.clone())));
            }
        }
        let id = nodo_signaling::ids::new_sid("MT_");
        let room_name = format!("meeting-{id}");
        let record = self
            .store
            .create_meeting(
                NewMeeting {
                    id: &id,
                    name,
                    room_name: &room_name,
                    created_by: &me.id,
                    max_participants: r.max_participants.unwrap_or(0),
                    empty_timeout: r.empty_timeout.unwrap_or(0),
                    metadata: r.metadata.as_deref().unwrap_or_default(),
                    open: r.open,
                },
                &r.members,
            )
            .await?;
        let meeting = self.render(record).await?;
        let data = to_json(&meeting)?;
        self.tell_members(&id, "room.created", json!({"data": data}))
            .await?;
        self.webhooks
            .app_event("room_created", json!({"room": data}));
        Ok(meeting)
    }

    /// A token for a meeting that has not ended; members hear `room.joined`.
    pub async fn join(
        &self,
        me: &User,
        id: &str,
        headers: &axum::http::HeaderMap,
    ) -> Result<RoomToken, Error> {
        self.throttle(&me.id)?;
        let m = self.load(id).await?;
        if m.ended_at.is_some() {
            return Err(Error::conflict("this room has ended"));
        }
        let token = self.access.meeting_token(me, &m, headers).await?;
        self.tell_members(
            id,
            "room.joined",
            json!({"data": {"roomId": id, "roomName": m.room_name, "userId": me.id}}),
        )
        .await?;
        Ok(token)
    }

    /// A moderator makes someone a moderator.
    pub async fn add_moderator(&self, me: &User, id: &str, user: &str) -> Result<Meeting, Error> {
        self.throttle(&me.id)?;
        let m = self.load(id).await?;
        self.require_moderator(&m, &me.id).await?;
        if self.store.user(user).await?.is_none() {
            return Err(Error::NotFound(Missing::User(user.to_string())));
        }
        self.store
            .add_meeting_member(id, user, Role::Moderator)
            .await?;
        self.render(m).await
    }

    /// Opens the media room with the meeting's limits and metadata.
    pub async fn start(&self, me: &User, id: &str) -> Result<Meeting, Error> {
        self.throttle(&me.id)?;
        let m = self.load(id).await?;
        self.require_moderator(&m, &me.id).await?;
        if m.ended_at.is_some() {
            return Err(Error::conflict("this room has ended"));
        }
        self.rooms
            .create_room(&RoomName::new(m.room_name.clone()), settings_of(&m))
            .await?;
        self.store.meeting_started(id).await?;
        self.render(self.load(id).await?).await
    }

    /// Disconnects everyone; returns the meeting and how long it ran (seconds).
    pub async fn end(&self, me: &User, id: &str) -> Result<(Meeting, Option<i64>), Error> {
        self.throttle(&me.id)?;
        let m = self.load(id).await?;
        self.require_moderator(&m, &me.id).await?;
        self.rooms
            .close_room(&RoomName::new(m.room_name.clone()))
            .await;
        let now = now_ms();
        self.store.meeting_ended(id, now).await?;
        let duration = m.started_at.map(|s| (now - s).max(0) / 1000);
        let ended = self.render(self.load(id).await?).await?;
        // Members not inside hear it too (those inside are disconnected by the room).
        self.tell_members(
            id,
            "room.ended",
            json!({"data": to_json(&ended)?, "endedBy": me.id}),
        )
        .await?;
        Ok((ended, duration))
    }

    /// One meeting, for its members (anyone, for an open meeting).
    pub async fn get(&self, me: &User, id: &str) -> Result<Meeting, Error> {
        let m = self.load(id).await?;
        if m.is_open == 0 && self.store.meeting_role(id, &me.id).await?.is_none() {
            return Err(Error::Forbidden("this room is for its members only"));
        }
        self.render(m).await
    }

    /// The meetings `me` is a member of, newest first, each with its live state.
    pub async fn mine(&self, me: &User, limit: u32) -> Result<Vec<Value>, Error> {
        let mut out = Vec::new();
        for m in self.store.meetings_of(&me.id, limit.clamp(1, 200)).await? {
            let room = RoomName::new(m.room_name.clone());
            let active = self.rooms.exists(&room);
            let count = if active {
                self.rooms.identities(&room).await.len()
            } else {
                0
            };
            let mut v = to_json(&self.render(m).await?)?;
            v["isActive"] = json!(active);
            v["participantCount"] = json!(count);
            out.push(v);
        }
        Ok(out)
    }

    /// Live state, for members (anyone, for an open meeting).
    pub async fn status(&self, me: &User, id: &str) -> Result<MeetingStatus, Error> {
        let m = self.load(id).await?;
        if m.is_open == 0 && self.store.meeting_role(id, &me.id).await?.is_none() {
            return Err(Error::Forbidden("this room is for its members only"));
        }
        let room = RoomName::new(m.room_name.clone());
        Ok(MeetingStatus {
            is_active: self.rooms.exists(&room),
            participant_count: self.rooms.identities(&room).await.len(),
            started_at: m.started_at.map(iso8601),
            room_name: m.room_name,
        })
    }
}
