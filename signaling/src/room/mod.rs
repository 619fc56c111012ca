//! LiveKit rooms: one actor task per room owns its participants' signaling
//! state and its media (`nodo_sfu::MediaRoom`); the [`RoomManager`] maps room
//! names to actor mailboxes. The actor reaches the network only through a
//! [`Transport`] (the node's sockets, or a fake in tests).

mod actor;
mod admin;
mod crash;
mod media_events;
mod participant;
mod permission;
mod signal;
mod streams;
#[cfg(test)]
mod tests;
mod updates;

pub use admin::{AdminOp, AdminReply};

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use livekit_protocol as proto;
use nodo_sfu::net::Transport;
use nodo_sfu::{DtlsIdentity, PeerIds, SfuMetrics};
use tokio::sync::{mpsc, oneshot};

use crate::auth::{Claims, KeyStore};
use crate::config::{LimitConfig, RoomDefaults};
use crate::error::Error;
use crate::ids::{ParticipantIdentity, ParticipantSid, RoomName, RoomSid};
use crate::metrics::SignalMetrics;

pub use participant::{JoinOptions, V1Join};

/// Messages a room's actor takes.
pub(crate) enum RoomCmd {
    Join {
        claims: Box<Claims>,
        options: Box<JoinOptions>,
        signal: SignalSink,
        reply: oneshot::Sender<Result<Joined, Error>>,
    },
    Signal {
        sid: ParticipantSid,
        session: u64,
        msg: Box<proto::signal_request::Message>,
    },
    SignalClosed {
        sid: ParticipantSid,
        session: u64,
    },
    Shutdown,
    /// Disconnects everyone (`ROOM_DELETED`) and closes the room; `done`
    /// fires once the room is gone from the table.
    Close {
        done: oneshot::Sender<()>,
    },
    /// Applies settings (limits, timeouts, metadata) to the room.
    Configure(RoomSettings),
    /// A server-API operation (Twirp RoomService).
    Admin {
        op: Box<AdminOp>,
        reply: oneshot::Sender<Result<AdminReply, Error>>,
    },
    Info {
        reply: oneshot::Sender<RoomSnapshot>,
    },
    /// Panics in the actor, as a bug would.
    #[cfg(test)]
    Crash,
    /// Makes the actor find a timer due at every turn for this long.
    #[cfg(test)]
    Busy(std::time::Duration),
}

/// Outgoing signal messages of one WebSocket session: its own messages, or
/// messages shared with other sessions (`Outgoing`). Its own are boxed: tokio's
/// channel allocates its slots 32 at a time, and an unboxed
/// `SignalResponse` (about 900 bytes, the size of its largest variant) made
/// each participant's queue cost ~29 KiB when empty and ~29 KiB more per 32
/// messages of backlog, which a join storm's participant updates reach.
pub(crate) type SignalSink = mpsc::Sender<Outgoing>;

/// A signal message on its way to one participant's socket.
pub(crate) enum Outgoing {
    /// A message of its own.
    One(Box<proto::SignalResponse>),
    /// The same message to many (a batch of participant updates), encoded
    /// once for all of them.
    Shared(Arc<SharedResponse>),
}

/// A message sent unchanged to many sockets, and its protobuf encoding,
/// made by the first socket that writes it.
pub(crate) struct SharedResponse {
    msg: proto::SignalResponse,
    binary: OnceLock<bytes::Bytes>,
}

impl SharedResponse {
    pub fn new(msg: proto::SignalResponse) -> Arc<SharedResponse> {
        Arc::new(SharedResponse {
            msg,
            binary: OnceLock::new(),
        })
    }

    /// The protobuf encoding, made once.
    pub fn binary(&self) -> bytes::Bytes {
        self.binary
            .get_or_init(|| prost::Message::encode_to_vec(&self.msg).into())
            .clone()
    }
}

impl Outgoing {
    pub fn response(&self) -> &proto::SignalResponse {
        match self {
            Outgoing::One(m) => m,
            Outgoing::Shared(s) => &s.msg,
        }
    }

    /// The message itself (a copy, for a shared one).
    #[cfg(test)]
    pub fn into_response(self) -> proto::SignalResponse {
        match self {
            Outgoing::One(m) => *m,
            Outgoing::Shared(s) => s.msg.clone(),
        }
    }
}

/// Frames one participant's WebSocket may have queued before it counts as stuck.
pub(crate) const SIGNAL_QUEUE: usize = 1024;

/// What a successful join hands to the WebSocket session.
pub(crate) struct Joined {
    pub sid: ParticipantSid,
    pub session: u64,
}

/// A read-only view of a room, for `/rtc/validate`, metrics and the API.
#[derive(Debug, Clone)]
pub struct RoomSnapshot {
    pub room: proto::Room,
    pub sid: RoomSid,
    pub name: RoomName,
    pub participants: Vec<proto::ParticipantInfo>,
}

/// A room actor's mailbox.
#[derive(Clone)]
pub(crate) struct RoomHandle {
    pub tx: mpsc::Sender<RoomCmd>,
    pub sid: RoomSid,
}

/// Settings a room is created or updated with; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoomSettings {
    pub empty_timeout: Option<u32>,
    pub departure_timeout: Option<u32>,
    pub max_participants: Option<u32>,
    pub metadata: Option<String>,
    /// Agents dispatched into the room when these settings create it
    /// (ignored for a room already open); `Some(empty)`: none. `None`: the
    /// token's `roomConfig.agents`, else every unnamed agent, as LiveKit.
    pub agents: Option<Vec<proto::RoomAgentDispatch>>,
}

/// What rooms report to the rest of the node (the app's calls, webhooks).
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    /// A room was created on this node, with the agents it asks for.
    Opened {
        room: Box<proto::Room>,
        /// `None`: every unnamed agent (LiveKit's default).
        agents: Option<Vec<proto::RoomAgentDispatch>>,
    },
    ParticipantJoined {
        room: RoomName,
        identity: ParticipantIdentity,
    },
    ParticipantLeft {
        room: RoomName,
        identity: ParticipantIdentity,
    },
    RoomClosed {
        room: RoomName,
        /// The closed room's sid: a room of the same name may already be
        /// open again when this arrives.
        sid: RoomSid,
    },
    /// A LiveKit webhook event (room_started, participant_joined, …).
    Webhook(Box<proto::WebhookEvent>),
}

/// The ICE servers (TURN) a participant is told about in its join and
/// reconnect answers, with credentials of its own. Implemented by the node's
/// TURN server; the LiveKit side only passes the values on.
pub trait IceServers: Send + Sync + 'static {
    /// Servers and short-lived credentials for one participant.
    fn for_participant(&self, participant: &ParticipantSid) -> Vec<proto::IceServer>;
}

/// Decides whether a join may open a room that is not open, and with which
/// settings. Implemented by the app (a meeting's limits from its creation; no
/// room for an ended meeting or a call that is over); without one, a join
/// opens any room the defaults or its token allow.
pub trait RoomGate: Send + Sync + 'static {
    /// `Ok(Some(settings))` to open the room with them, `Ok(None)` to open
    /// it with the defaults, `Err` to refuse the join.
    fn admit<'a>(
        &'a self,
        room: &'a RoomName,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Option<RoomSettings>, Error>> + Send + 'a>,
    >;
}

/// All live rooms of this node.
pub struct RoomManager {
    /// Who decides whether a join may open a room (set once by the app).
    gate: OnceLock<Arc<dyn RoomGate>>,
    /// The API keys participants' refreshed tokens are signed with (set
    /// once by the node); without them no `refresh_token` is sent.
    token_keys: OnceLock<KeyStore>,
    rooms: Mutex<HashMap<RoomName, RoomHandle>>,
    observers: Mutex<Vec<mpsc::UnboundedSender<RoomEvent>>>,
    /// The media sockets every room sends through and registers its peers with.
    transport: Arc<dyn Transport>,
    /// Node-wide peer ids, shared by every room's `MediaRoom`.
    peer_ids: PeerIds,
    /// TURN servers for join answers; none when the node runs no TURN.
    ice: Option<Arc<dyn IceServers>>,
    defaults: RoomDefaults,
    limits: LimitConfig,
    /// Published tracks across all rooms (for `limit.max_tracks`).
    tracks: AtomicUsize,
    node_id: String,
    /// Media counters every room reports to.
    media_metrics: SfuMetrics,
    /// The DTLS certificate of every peer connection of the node.
    dtls: DtlsIdentity,
    metrics: SignalMetrics,
}

/// Room mailbox depth; senders wait when it is full.
const ROOM_QUEUE: usize = 1024;

impl RoomManager {
    /// An empty room table whose rooms use `transport` for their media.
    pub fn new(
        transport: Arc<dyn Transport>,
        defaults: RoomDefaults,
        limits: LimitConfig,
    ) -> Arc<RoomManager> {
        Self::with_ice_servers(
            transport,
            defaults,
            limits,
            None,
            SfuMetrics::default(),
            SignalMetrics::default(),
        )
    }

    /// As [`RoomManager::new`], telling participants about `ice` servers
    /// and counting into the node's metrics.
    pub fn with_ice_servers(
        transport: Arc<dyn Transport>,
        defaults: RoomDefaults,
        limits: LimitConfig,
        ice: Option<Arc<dyn IceServers>>,
        media_metrics: SfuMetrics,
        metrics: SignalMetrics,
    ) -> Arc<RoomManager> {
        Arc::new(RoomManager {
            gate: OnceLock::new(),
            token_keys: OnceLock::new(),
            rooms: Mutex::new(HashMap::new()),
            observers: Mutex::new(Vec::new()),
            transport,
            peer_ids: PeerIds::new(),
            ice,
            defaults,
            limits,
            tracks: AtomicUsize::new(0),
            node_id: crate::ids::new_sid("ND_"),
            media_metrics,
            metrics,
            dtls: DtlsIdentity::generate(),
        })
    }

    /// Signs participants' refreshed tokens with `keys`; only the first call counts.
    pub fn set_token_keys(&self, keys: KeyStore) {
        let _ = self.token_keys.set(keys);
    }

    pub(crate) fn token_keys(&self) -> Option<&KeyStore> {
        self.token_keys.get()
    }

    /// Installs the gate joins must pass to open a room; only the first counts.
    pub fn set_gate(&self, gate: Arc<dyn RoomGate>) {
        let _ = self.gate.set(gate);
    }

    /// The room table. A panic while it was held (a bug) leaves it consistent:
    /// every update is a single insert or remove, so its data is still used.
    fn table(&self) -> MutexGuard<'_, HashMap<RoomName, RoomHandle>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A stream of room events; dropped receivers are forgotten.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<RoomEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    /// The media sockets (for the room actors).
    pub(crate) fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// ICE servers for a participant's join or reconnect answer.
    pub(crate) fn ice_servers(&self, participant: &ParticipantSid) -> Vec<proto::IceServer> {
        self.ice
            .as_ref()
            .map(|i| i.for_participant(participant))
            .unwrap_or_default()
    }

    /// Media counters (for the room actors).
    pub(crate) fn media_metrics(&self) -> &SfuMetrics {
        &self.media_metrics
    }

    /// The node's DTLS certificate (for the room actors).
    pub(crate) fn dtls(&self) -> &DtlsIdentity {
        &self.dtls
    }

    /// LiveKit-side counters.
    pub(crate) fn metrics(&self) -> &SignalMetrics {
        &self.metrics
    }

    /// The node-wide peer id allocator (for the room actors).
    pub(crate) fn peer_ids(&self) -> &PeerIds {
        &self.peer_ids
    }

    /// Reports a webhook event for a room.
    pub(crate) fn webhook(
        &self,
        event: &str,
        room: proto::Room,
        participant: Option<proto::ParticipantInfo>,
        track: Option<proto::TrackInfo>,
    ) {
        let ev = proto::WebhookEvent {
            event: event.to_string(),
            room: Some(room),
            participant,
            track,
            id: crate::ids::new_sid("EV_"),
            created_at: crate::auth::unix_now() as i64,
            ..Default::default()
        };
        self.notify(RoomEvent::Webhook(Box::new(ev)));
    }

    pub(crate) fn notify(&self, ev: RoomEvent) {
        self.observers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|tx| tx.send(ev.clone()).is_ok());
    }

    /// Opens a room (if needed) with these settings.
    pub async fn create_room(
        self: &Arc<Self>,
        name: &RoomName,
        settings: RoomSettings,
    ) -> Result<(), Error> {
        let h = self.get_or_create(name, settings.agents.clone())?;
        h.tx.send(RoomCmd::Configure(settings))
            .await
            .map_err(|_| Error::RoomClosing)
    }

    /// Closes a room: everyone is disconnected with `ROOM_DELETED`. Returns
    /// once the room is closed (its name free for a new room); false when it
    /// was not open.
    pub async fn close_room(&self, name: &RoomName) -> bool {
        let Some(h) = self.get(name) else {
            return false;
        };
        let (done, closed) = oneshot::channel();
        if h.tx.send(RoomCmd::Close { done }).await.is_err() {
            return false;
        }
        // Fired, or dropped with the actor: either way the room is gone.
        let _ = closed.await;
        true
    }

    /// Runs a server-API operation in a room's actor.
    pub async fn admin(&self, name: &RoomName, op: AdminOp) -> Result<AdminReply, Error> {
        let gone = || Error::RoomNotFound(name.clone());
        let h = self.get(name).ok_or_else(gone)?;
        let (reply, rx) = oneshot::channel();
        h.tx.send(RoomCmd::Admin {
            op: Box::new(op),
            reply,
        })
        .await
        .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// A room's snapshot, if open.
    pub async fn snapshot(&self, name: &RoomName) -> Option<RoomSnapshot> {
        let h = self.get(name)?;
        let (reply, rx) = oneshot::channel();
        h.tx.send(RoomCmd::Info { reply }).await.ok()?;
        rx.await.ok()
    }

    /// Identities connected to a room (empty when it is not open).
    pub async fn identities(&self, name: &RoomName) -> Vec<String> {
        let Some(h) = self.get(name) else {
            return Vec::new();
        };
        let (reply, rx) = oneshot::channel();
        if h.tx.send(RoomCmd::Info { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await
            .map(|s| s.participants.into_iter().map(|p| p.identity).collect())
            .unwrap_or_default()
    }

    /// Reserves room for one more published track; false at `limit.max_tracks`.
    pub(crate) fn reserve_track(&self) -> bool {
        let max = self.limits.max_tracks as usize;
        self.tracks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (max == 0 || n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives back reserved tracks.
    pub(crate) fn release_tracks(&self, n: usize) {
        let _ = self
            .tracks
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| {
                Some(c.saturating_sub(n))
            });
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn defaults(&self) -> &RoomDefaults {
        &self.defaults
    }

    pub(crate) fn get(&self, name: &RoomName) -> Option<RoomHandle> {
        self.table().get(name).cloned()
    }

    /// Whether a room is open.
    pub fn exists(&self, name: &RoomName) -> bool {
        self.get(name).is_some()
    }

    pub fn room_count(&self) -> usize {
        self.table().len()
    }

    /// The names of the rooms open on this node.
    pub fn room_names(&self) -> Vec<RoomName> {
        self.table().keys().cloned().collect()
    }

    /// The room, created (and its actor started) if needed.
    pub(crate) fn get_or_create(
        self: &Arc<Self>,
        name: &RoomName,
        agents: Option<Vec<proto::RoomAgentDispatch>>,
    ) -> Result<RoomHandle, Error> {
        let mut rooms = self.table();
        if let Some(h) = rooms.get(name) {
            return Ok(h.clone());
        }
        if self.limits.max_rooms > 0 && rooms.len() >= self.limits.max_rooms as usize {
            return Err(Error::RoomLimit(self.limits.max_rooms));
        }
        let (tx, rx) = mpsc::channel(ROOM_QUEUE);
        let sid = RoomSid::generate();
        let handle = RoomHandle {
            tx,
            sid: sid.clone(),
        };
        rooms.insert(name.clone(), handle.clone());
        drop(rooms);
        let room = proto::Room {
            sid: sid.as_str().to_string(),
            name: name.as_str().to_string(),
            creation_time: crate::auth::unix_now() as i64,
            creation_time_ms: crate::auth::unix_now_ms(),
            ..Default::default()
        };
        let actor = actor::RoomActor::new(name.clone(), sid, self.clone());
        tokio::spawn(actor.run(rx));
        tracing::info!(room = %name, "room created");
        self.notify(RoomEvent::Opened {
            room: Box::new(room),
            agents,
        });
        Ok(handle)
    }

    /// Called by a closing room actor.
    fn remove(&self, name: &RoomName, sid: &RoomSid) {
        let mut rooms = self.table();
        if rooms.get(name).is_some_and(|h| &h.sid == sid) {
            rooms.remove(name);
        }
    }

    /// Snapshots of every room.
    pub async fn snapshots(&self) -> Vec<RoomSnapshot> {
        let handles: Vec<RoomHandle> = self.table().values().cloned().collect();
        let mut out = Vec::new();
        for h in handles {
            let (reply, rx) = oneshot::channel();
            if h.tx.send(RoomCmd::Info { reply }).await.is_ok() {
                if let Ok(s) = rx.await {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Tells every participant the server is going away, then waits (bounded) for rooms to close.
    pub async fn shutdown(&self, grace: Duration) {
        let handles: Vec<RoomHandle> = self.table().values().cloned().collect();
        for h in &handles {
            let _ = h.tx.send(RoomCmd::Shutdown).await;
        }
        let deadline = tokio::time::Instant::now() + grace;
        while self.room_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Joins a participant: creates the room if allowed and needed, retries once
    /// when the room closed in the meantime.
    pub(crate) async fn join(
        self: &Arc<Self>,
        room: &RoomName,
        claims: Claims,
        options: JoinOptions,
        signal: SignalSink,
    ) -> Result<(RoomHandle, Joined), Error> {
        for _ in 0..2 {
            let handle = match self.get(room) {
                Some(h) => h,
                None if self.defaults.auto_create || claims.video().room_create => {
                    let settings = match self.gate.get() {
                        Some(g) => g.admit(room).await?,
                        None => None,
                    };
                    let agents = match settings.as_ref().and_then(|s| s.agents.clone()) {
                        Some(agents) => Some(agents),
                        None => token_agents(&claims),
                    };
                    let h = self.get_or_create(room, agents)?;
                    if let Some(settings) = settings {
                        // Queued before the join, so the limits hold for it.
                        let _ = h.tx.send(RoomCmd::Configure(settings)).await;
                    }
                    h
                }
                None => return Err(Error::RoomNotFound(room.clone())),
            };
            let (reply, rx) = oneshot::channel();
            let cmd = RoomCmd::Join {
                claims: Box::new(claims.clone()),
                options: Box::new(options.clone()),
                signal: signal.clone(),
                reply,
            };
            if handle.tx.send(cmd).await.is_err() {
                // The actor is gone (closed, or died on a bug): forget it and
                // retry with a fresh room.
                self.remove(room, &handle.sid);
                continue;
            }
            match rx.await {
                Ok(Ok(j)) => return Ok((handle, j)),
                Ok(Err(Error::RoomClosing)) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_) => continue,
            }
        }
        Err(Error::RoomClosing)
    }

    /// Looks a participant up by identity across the room (for resume).
    pub async fn participant(
        &self,
        room: &RoomName,
        identity: &ParticipantIdentity,
    ) -> Option<proto::ParticipantInfo> {
        let h = self.get(room)?;
        let (reply, rx) = oneshot::channel();
        h.tx.send(RoomCmd::Info { reply }).await.ok()?;
        let snap = rx.await.ok()?;
        snap.participants
            .into_iter()
            .find(|p| p.identity == identity.as_str())
    }
}

/// The agents a join token's `roomConfig` asks for (`None`: it names none).
fn token_agents(claims: &Claims) -> Option<Vec<proto::RoomAgentDispatch>> {
    let agents: Vec<_> = claims
        .room_config
        .iter()
        .flat_map(|c| &c.agents)
        .map(|a| proto::RoomAgentDispatch {
            agent_name: a.agent_name.clone(),
            metadata: a.metadata.clone(),
            ..Default::default()
        })
        .collect();
    (!agents.is_empty()).then_some(agents)
}
