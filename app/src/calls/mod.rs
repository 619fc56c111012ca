//! One-to-one calls: the state machine (`machine`), persisted through the
//! store, driven by REST, the chat socket, a ring timeout and media room
//! events. Every transition is guarded by the status it was decided from, so
//! racing actions (an accept against the ring timeout) resolve in the
//! database.

pub mod machine;

use std::sync::Arc;
use std::time::Duration;

use crate::fanout::Fanout;
use nodo_signaling::agents::Agents;
use nodo_signaling::ids::RoomName;
use nodo_signaling::room::{RoomEvent, RoomManager, RoomSettings};
use nodo_signaling::webhook::Webhooks;
use serde_json::{json, Value};

use crate::config::CallsConfig;
use crate::error::{Error, Missing};
use crate::limits::{Limiter, Rate};
use crate::push::{Priority, Push};
use crate::store::{AppUser, Call, CallTransition, NewCall, Store, User};
use machine::{Action, Party, Status};

/// The call service: one per node.
pub struct Calls {
    store: Store,
    fanout: Arc<Fanout>,
    rooms: Arc<RoomManager>,
    push: Arc<Push>,
    webhooks: Arc<Webhooks>,
    ring_timeout: Duration,
    /// An accepted call nobody connects within this ends.
    connect_timeout: Duration,
    /// Call actions per user.
    actions: Limiter<String>,
    /// Calls per (caller, callee).
    rings: Limiter<(String, String)>,
    /// Agent names called like people (`calls.assistants`).
    assistants: Vec<String>,
    /// Dispatches assistants into call rooms.
    agents: Agents,
}

/// How long a call waits for its assistant's agent to come back (another
/// worker taking the job over) before it ends.
const ASSISTANT_RETURN: Duration = Duration::from_secs(15);

/// On a shared database, how often calls left waiting by a lost node are
/// looked for, and how long past their timeouts they may wait.
const STALE_SWEEP: Duration = Duration::from_secs(30);
const STALE_MARGIN: Duration = Duration::from_secs(30);

/// Media rooms of calls are named with this prefix.
const ROOM_PREFIX: &str = "call-";

impl Calls {
    /// The service, following the rooms' events so a call connects when both
    /// people joined its media room and ends when both left.
    pub fn start(
        store: Store,
        fanout: Arc<Fanout>,
        rooms: Arc<RoomManager>,
        push: Arc<Push>,
        webhooks: Arc<Webhooks>,
        agents: Agents,
        config: &CallsConfig,
    ) -> Arc<Calls> {
        let calls = Arc::new(Calls {
            store,
            fanout,
            rooms,
            push,
            webhooks,
            ring_timeout: Duration::from_secs(config.ring_timeout_secs),
            connect_timeout: Duration::from_secs(config.connect_timeout_secs),
            actions: Limiter::new("call actions", config.action_rate),
            rings: Limiter::new(
                "calls to this person",
                Rate::per_minute(config.rings_per_minute_per_callee),
            ),
            assistants: config.assistants.clone(),
            agents,
        });
        // Each assistant gets its user record now, so nobody can register
        // an account under its name later (registration finds it taken).
        let (store, assistants) = (calls.store.clone(), calls.assistants.clone());
        tokio::spawn(async move {
            for a in assistants {
                match store.ensure_app_user(&a, &a, true).await {
                    Ok(AppUser::Ready(..)) => {}
                    Ok(AppUser::HeldLocally) => tracing::warn!(
                        assistant = %a,
                        "an account holds this assistant's name: calls to it are refused; rename the assistant"
                    ),
                    Err(e) => e.log_if_internal(),
                }
            }
        });
        let mut events = calls.rooms.subscribe();
        // Weak: the rooms hold this task's sender, and the service holds the
        // rooms; a strong reference here would keep a dropped node alive.
        let c = Arc::downgrade(&calls);
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                let Some(c) = c.upgrade() else { break };
                if let Err(e) = c.on_room_event(ev).await {
                    // A refused transition (the call moved on) is expected.
                    e.log_if_internal();
                }
            }
        });
        calls
    }

    /// Ends the calls nobody will end: on a database of its own, those a
    /// previous run left active; on one other nodes share
    /// (`shared_with_nodes`), those left waiting by a node that is gone.
    pub fn sweep_calls_left(&self, shared_with_nodes: bool) {
        let store = self.store.clone();
        let started = crate::store::now_ms();
        if !shared_with_nodes {
            // Calls a previous run left active end now; those made from here on are not touched.
            tokio::spawn(async move {
                match store.end_calls_left_active(started).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!("ended {n} calls left active by the previous run"),
                    Err(e) => e.log_if_internal(),
                }
            });
        } else {
            // The database is shared: the other nodes' calls go on. Those
            // whose ring or connect timer died with its node end once they
            // are past both timeouts, whichever node sees them first.
            let waited = self.ring_timeout + self.connect_timeout + STALE_MARGIN;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(STALE_SWEEP);
                loop {
                    tick.tick().await;
                    let before = crate::store::now_ms() - waited.as_millis() as i64;
                    match store.end_calls_left_waiting(before).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!("ended {n} calls whose node was lost"),
                        Err(e) => e.log_if_internal(),
                    }
                }
            });
        }
    }

    /// A call by id.
    pub async fn get(&self, id: &str) -> Result<Option<Call>, Error> {
        self.store.call(id).await
    }

    /// The ringing call from `caller` to `callee`.
    pub async fn ringing_between(&self, caller: &str, callee: &str) -> Result<Option<Call>, Error> {
        self.store.ringing_call_between(caller, callee).await
    }

    /// The user's calls, newest first, with a cursor for older ones.
    pub async fn history(
        &self,
        user: &str,
        limit: i64,
        before: Option<i64>,
    ) -> Result<(Vec<Call>, Option<String>), Error> {
        self.store.call_history(user, limit, before).await
    }

    /// One call, to the two people in it (anyone else: not found).
    pub async fn of_user(&self, user: &str, id: &str) -> Result<Call, Error> {
        match self.store.call(id).await? {
            Some(c) if c.from_user_id == user || c.to_user_id == user => Ok(c),
            _ => Err(Error::NotFound(Missing::Call)),
        }
    }

    /// Starts a call from `me` (REST and the socket): the callee gets
    /// `incomingCall` and a push; a callee already in a call makes it `busy`.
    /// The callee is told who calls from the caller's stored profile.
    pub async fn start_call(
        self: &Arc<Self>,
        me: &User,
        recipient: Option<&str>,
        call_type: Option<&str>,
    ) -> Result<Call, Error> {
        let to = recipient
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error::invalid("recipientId is required"))?;
        if to.len() > crate::chat::MAX_ID_LEN {
            return Err(Error::invalid("recipientId is too long"));
        }
        self.throttle(&me.id)?;
        let info = json!({"id": me.id, "name": me.name, "avatar": me.avatar});
        self.initiate(me, to, call_type.unwrap_or("video"), info)
            .await
    }

    /// One call action of `user` (also a room token asked for), or `RateLimited`.
    pub fn throttle(&self, user: &str) -> Result<(), Error> {
        self.actions
            .check(&user.to_string())
            .map_err(Error::RateLimited)
    }

    async fn initiate(
        self: &Arc<Self>,
        caller: &User,
        callee: &str,
        call_type: &str,
        caller_info: Value,
    ) -> Result<Call, Error> {
        if caller.id == callee {
            return Err(Error::invalid("cannot call yourself"));
        }
        if !matches!(call_type, "audio" | "video") {
            return Err(Error::invalid("callType must be \"audio\" or \"video\""));
        }
        if self.is_assistant(callee) {
            return self.call_assistant(caller, callee, call_type).await;
        }
        if self.store.user(callee).await?.is_none() {
            return Err(Error::NotFound(Missing::User(callee.to_string())));
        }
        let call = self.record_call(caller, callee, call_type, true).await?;
        if call.status == Status::Busy {
            return Ok(call);
        }
        let payload = json!({
            "roomName": call.room_name, "callerId": caller.id, "callerInfo": caller_info,
            "callId": call.id, "callType": call.call_type,
        });
        self.fanout
            .emit(vec![callee.to_string()], "incomingCall", &payload)
            .await;
        // Rings the callee's devices even when the app is closed.
        self.push.notify(
            callee,
            &json!({"type": "incoming_call", "callId": call.id, "callerId": caller.id, "callerName": caller.name,
                    "callType": call.call_type, "roomName": call.room_name}),
            Priority::Ring,
        );
        self.ring_until_timeout(call.id.clone());
        Ok(call)
    }

    /// Counts the ring, refuses a caller already in a call and records the
    /// call: ringing, or busy when `callee_may_be_busy` and the callee is in
    /// a call. Counted once the call is otherwise valid: ringing someone
    /// over and over is refused, a mistyped request is not a ring.
    async fn record_call(
        &self,
        caller: &User,
        callee: &str,
        call_type: &str,
        callee_may_be_busy: bool,
    ) -> Result<Call, Error> {
        self.rings
            .check(&(caller.id.clone(), callee.to_string()))
            .map_err(Error::RateLimited)?;
        if self.store.active_call_of(&caller.id).await?.is_some() {
            return Err(Error::conflict("you are already in a call"));
        }
        let busy = callee_may_be_busy && self.store.active_call_of(callee).await?.is_some();
        let id = nodo_signaling::ids::new_sid("CA_");
        let room = format!("{ROOM_PREFIX}{id}");
        self.store
            .insert_call(NewCall {
                id: &id,
                caller: &caller.id,
                callee,
                call_type,
                room_name: &room,
                status: if busy { Status::Busy } else { Status::Ringing },
            })
            .await
    }

    /// Whether `id` is an assistant's (an agent called like a person).
    fn is_assistant(&self, id: &str) -> bool {
        self.assistants.iter().any(|a| a == id)
    }

    /// A call to an assistant: it rings while the agent is dispatched into
    /// the call's room under the assistant's id; the agent joining answers
    /// it (`on_room_event`). Nobody serving the agent refuses the call.
    /// An assistant takes any number of calls at once.
    async fn call_assistant(
        self: &Arc<Self>,
        caller: &User,
        assistant: &str,
        call_type: &str,
    ) -> Result<Call, Error> {
        if !self.agents.serves(assistant).await? {
            return Err(nodo_signaling::Error::NoAgentWorker(assistant.to_string()).into());
        }
        // The assistant is a user record of its own (calls and history
        // name it), never one a person's account holds.
        if let AppUser::HeldLocally = self
            .store
            .ensure_app_user(assistant, assistant, true)
            .await?
        {
            return Err(Error::conflict(
                "an account holds this assistant's name; rename the assistant",
            ));
        }
        let call = self
            .record_call(caller, assistant, call_type, false)
            .await?;
        let id = call.id.clone();
        let name = RoomName::new(call.room_name.clone());
        let dispatched = async {
            // Only the assistant: no unnamed agent into a private call.
            let settings = RoomSettings {
                agents: Some(Vec::new()),
                ..RoomSettings::default()
            };
            self.rooms.create_room(&name, settings).await?;
            let snap = self
                .rooms
                .snapshot(&name)
                .await
                .ok_or(nodo_signaling::Error::RoomClosing)?;
            let req = nodo_signaling::agents::dispatch_request(
                assistant,
                &name,
                json!({"callId": call.id, "callerId": caller.id, "callerName": caller.name,
                       "callType": call.call_type})
                .to_string(),
            );
            self.agents
                .create_dispatch(snap.room, req, Some(assistant.to_string()))
                .await
        };
        if let Err(e) = dispatched.await {
            // The worker went away meanwhile: the call ends as missed.
            let _ = self.act(&id, Action::RingTimeout, Party::System).await;
            return Err(e.into());
        }
        self.ring_until_timeout(id);
        Ok(call)
    }

    /// Ends the call as missed if it still rings after the ring timeout.
    fn ring_until_timeout(self: &Arc<Self>, id: String) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(me.ring_timeout).await;
            // A call answered or hung up meanwhile refuses the timeout (a
            // conflict, not logged); a store failure is.
            if let Err(e) = me.act(&id, Action::RingTimeout, Party::System).await {
                e.log_if_internal();
            }
        });
    }

    /// Which party `user` is in a call, or `Forbidden`.
    pub fn party(call: &Call, user: &str) -> Result<Party, Error> {
        if call.from_user_id == user {
            Ok(Party::Caller)
        } else if call.to_user_id == user {
            Ok(Party::Callee)
        } else {
            Err(Error::Forbidden("you are not in this call"))
        }
    }

    /// Applies `action` by `user` to call `id`.
    pub async fn act_as(
        self: &Arc<Self>,
        id: &str,
        action: Action,
        user: &str,
    ) -> Result<Call, Error> {
        self.throttle(user)?;
        let call = self.get(id).await?.ok_or(Error::NotFound(Missing::Call))?;
        let party = Self::party(&call, user)?;
        let call = self.act(id, action, party).await?;
        if call.status == Status::Accepted {
            self.end_unless_connected(call.id.clone());
        }
        Ok(call)
    }

    /// An assistant's agent left its call: the call ends unless an agent
    /// is back (a worker taking over the job) within [`ASSISTANT_RETURN`].
    fn end_unless_assistant_returns(self: &Arc<Self>, id: String, room: RoomName) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(ASSISTANT_RETURN).await;
            let Some(me) = me.upgrade() else { return };
            let Ok(Some(call)) = me.get(&id).await else {
                return;
            };
            let back = me.rooms.identities(&room).await.contains(&call.to_user_id);
            if call.status == Status::Connected && !back {
                if let Err(e) = me.act(&id, Action::End, Party::System).await {
                    e.log_if_internal();
                }
            }
        });
    }

    /// Ends an accepted call whose two people have not both joined its media
    /// room within the connect timeout, so neither stays busy forever.
    fn end_unless_connected(self: &Arc<Self>, id: String) {
        let me = Arc::downgrade(self);
        let wait = self.connect_timeout;
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let Some(me) = me.upgrade() else { return };
            // A call that connected or ended meanwhile refuses (a conflict, not logged).
            if let Err(e) = me.act(&id, Action::ConnectTimeout, Party::System).await {
                e.log_if_internal();
            }
        });
    }

    /// Applies a transition and tells the two people.
    pub async fn act(self: &Arc<Self>, id: &str, action: Action, by: Party) -> Result<Call, Error> {
        let call = self.get(id).await?.ok_or(Error::NotFound(Missing::Call))?;
        let to = machine::next(call.status, action, by).map_err(Error::conflict)?;
        let reason = match (to, by) {
            (Status::Ended, Party::Caller) => Some("caller_hangup"),
            (Status::Ended, Party::Callee) => Some("callee_hangup"),
            (Status::Ended, Party::System) if action == Action::ConnectTimeout => {
                Some("not_connected")
            }
            (Status::Ended, Party::System) => Some("room_closed"),
            (Status::Rejected, _) => Some("rejected"),
            (Status::Cancelled, _) => Some("cancelled"),
            (Status::Missed, _) => Some("missed"),
            _ => None,
        };
        let call = self
            .store
            .transition_call(CallTransition {
                id,
                from: call.status,
                to,
                reason,
            })
            .await?
            .ok_or_else(|| Error::conflict("the call changed meanwhile; try again"))?;
        self.announce(&call, by).await;
        if !to.is_active() {
            self.rooms
                .close_room(&RoomName::new(call.room_name.clone()))
                .await;
        }
        Ok(call)
    }

    /// The events of a transition, to the two people only.
    async fn announce(&self, call: &Call, by: Party) {
        match call.status {
            Status::Connected => self
                .webhooks
                .app_event("call_started", json!({"call": call})),
            s if !s.is_active() => self.webhooks.app_event("call_ended", json!({"call": call})),
            _ => {}
        }
        let both = vec![call.from_user_id.clone(), call.to_user_id.clone()];
        let emit = |to: Vec<String>, event: &'static str, data: Value| async move {
            self.fanout.emit(to, event, &data).await;
        };
        match call.status {
            Status::Accepted => {
                emit(vec![call.from_user_id.clone()], "callAccepted", json!({"roomName": call.room_name, "callId": call.id, "recipientId": call.to_user_id})).await;
                // The callee's other tabs and devices stop ringing.
                emit(
                    vec![call.to_user_id.clone()],
                    "call.answered",
                    json!({"callId": call.id}),
                )
                .await;
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
                let caller_name = match self.store.user(&call.from_user_id).await {
                    Ok(Some(u)) => u.name,
                    _ => call.from_user_id.clone(),
                };
                self.push.notify(
                    &call.to_user_id,
                    &json!({"type": "missed_call", "callId": call.id, "callerId": call.from_user_id,
                            "callerName": caller_name, "callType": call.call_type}),
                    Priority::Normal,
                );
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
            | RoomEvent::RoomClosed { room, .. } => room,
            RoomEvent::Webhook(_) | RoomEvent::Opened { .. } => return Ok(()),
        };
        if !room.as_str().starts_with(ROOM_PREFIX) {
            return Ok(());
        }
        let Some(call) = self.store.call_by_room(room.as_str()).await? else {
            return Ok(());
        };
        let present = self.rooms.identities(room).await;
        let has = |u: &str| present.iter().any(|p| p == u);
        let both_in = has(&call.from_user_id) && has(&call.to_user_id);
        // An assistant's agent stays in the room until told to go: its call
        // ends when the caller has left.
        let none_in = !has(&call.from_user_id)
            && (!has(&call.to_user_id) || self.is_assistant(&call.to_user_id));
        let mut call = call;
        if let RoomEvent::ParticipantLeft { identity, .. } = &ev {
            if identity.as_str() == call.to_user_id
                && self.is_assistant(&call.to_user_id)
                && call.status == Status::Connected
            {
                self.end_unless_assistant_returns(call.id.clone(), room.clone());
            }
        }
        if let RoomEvent::ParticipantJoined { identity, .. } = &ev {
            // An assistant answers by joining its call's room.
            if call.status == Status::Ringing
                && identity.as_str() == call.to_user_id
                && self.is_assistant(&call.to_user_id)
            {
                call = self.act(&call.id, Action::Accept, Party::Callee).await?;
                self.end_unless_connected(call.id.clone());
            }
        }
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
}
