//! LiveKit Agents: workers register over `/agent` ([`worker`]) and are
//! dispatched into rooms: every unnamed agent when a room opens (or the
//! agents its creator's token or settings name), and explicitly through the
//! Twirp `AgentDispatchService`. One actor owns the [`hub::Hub`] state
//! machine; connections and the API reach it through [`Agents`].

pub mod hub;
pub mod peers;
pub(crate) mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use tokio::sync::{mpsc, oneshot};

use crate::auth::KeyStore;
use crate::error::Error;
use crate::ids::{RoomName, WorkerId};
use crate::room::{AdminOp, RoomEvent, RoomManager};
use hub::{Action, Hub};
pub use peers::AgentPeers;

/// The other nodes' workers, once the node joined a cluster.
type Peers = Arc<OnceLock<Arc<dyn AgentPeers>>>;

/// Mailbox depth of the dispatcher; worker connections wait when it is full.
const QUEUE: usize = 1024;
/// How often offers and lost jobs are looked at.
const TICK: Duration = Duration::from_millis(250);

pub(crate) enum Cmd {
    Register {
        id: WorkerId,
        /// The API key the worker's token was signed with.
        key: String,
        req: Box<proto::RegisterWorkerRequest>,
        out: mpsc::Sender<Box<proto::ServerMessage>>,
        /// `None`: refused, the node has [`hub::MAX_WORKERS`] already.
        reply: oneshot::Sender<Option<proto::RegisterWorkerResponse>>,
    },
    Message {
        from: WorkerId,
        msg: Box<proto::worker_message::Message>,
    },
    Gone {
        id: WorkerId,
    },
    Serves {
        agent_name: String,
        reply: oneshot::Sender<bool>,
    },
    Served {
        reply: oneshot::Sender<Vec<String>>,
    },
    Create {
        room: Box<proto::Room>,
        req: Box<proto::CreateAgentDispatchRequest>,
        identity: Option<String>,
        /// Only to this node's workers (a dispatch another node forwarded).
        here_only: bool,
        reply: oneshot::Sender<Result<proto::AgentDispatch, Error>>,
    },
    ClosedElsewhere {
        room: RoomName,
        sid: String,
    },
    List {
        room: RoomName,
        id: String,
        reply: oneshot::Sender<Vec<proto::AgentDispatch>>,
    },
    Delete {
        room: RoomName,
        id: String,
        reply: oneshot::Sender<Result<proto::AgentDispatch, Error>>,
    },
}

/// The handle to the agent dispatcher (cheap to clone).
#[derive(Clone)]
pub struct Agents {
    tx: mpsc::Sender<Cmd>,
    peers: Peers,
}

impl Agents {
    /// Starts the dispatcher for the rooms of `rooms`; job tokens are signed
    /// with `keys`' first key.
    pub fn start(rooms: Arc<RoomManager>, keys: KeyStore) -> Agents {
        let (tx, rx) = mpsc::channel(QUEUE);
        let events = rooms.subscribe();
        let peers = Peers::default();
        let actor = Actor {
            hub: Hub::new(keys.clone()),
            rooms,
            outs: HashMap::new(),
            peers: peers.clone(),
            keys,
            http: reqwest::Client::new(),
            forwarded: HashMap::new(),
        };
        tokio::spawn(actor.run(rx, events));
        Agents { tx, peers }
    }

    /// Joins a cluster: dispatches no worker here serves go to the other
    /// nodes' workers. Set once.
    pub fn set_peers(&self, peers: Arc<dyn AgentPeers>) {
        if self.peers.set(peers).is_err() {
            tracing::warn!("agent peers were already set");
        }
    }

    /// The agent names this node's workers serve (what the cluster's
    /// registry says of this node).
    pub async fn served(&self) -> Result<Vec<String>, Error> {
        self.ask(|reply| Cmd::Served { reply }).await
    }

    /// A dispatch another node forwarded, for this node's workers only.
    pub(crate) async fn create_dispatch_here(
        &self,
        room: proto::Room,
        req: proto::CreateAgentDispatchRequest,
        identity: Option<String>,
    ) -> Result<proto::AgentDispatch, Error> {
        self.create(room, req, identity, true).await
    }

    async fn create(
        &self,
        room: proto::Room,
        req: proto::CreateAgentDispatchRequest,
        identity: Option<String>,
        here_only: bool,
    ) -> Result<proto::AgentDispatch, Error> {
        let (room, req) = (Box::new(room), Box::new(req));
        self.ask(|reply| Cmd::Create {
            room,
            req,
            identity,
            here_only,
            reply,
        })
        .await?
    }

    /// The room of dispatches another node forwarded closed there.
    pub(crate) async fn room_closed_elsewhere(&self, room: RoomName, sid: String) {
        let _ = self.tx.send(Cmd::ClosedElsewhere { room, sid }).await;
    }

    async fn ask<T>(&self, cmd: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(cmd(reply))
            .await
            .map_err(|_| Error::AgentsDown)?;
        rx.await.map_err(|_| Error::AgentsDown)
    }

    pub(crate) fn sender(&self) -> &mpsc::Sender<Cmd> {
        &self.tx
    }

    /// Whether a registered worker serves `agent_name`.
    pub async fn serves(&self, agent_name: &str) -> Result<bool, Error> {
        let agent_name = agent_name.to_string();
        self.ask(|reply| Cmd::Serves { agent_name, reply }).await
    }

    /// Dispatches an agent into an open room (`room`: its current info).
    /// With `identity`, the agent joins under it (an assistant called like
    /// a person); else under the identity its worker picks.
    pub async fn create_dispatch(
        &self,
        room: proto::Room,
        req: proto::CreateAgentDispatchRequest,
        identity: Option<String>,
    ) -> Result<proto::AgentDispatch, Error> {
        self.create(room, req, identity, false).await
    }

    /// A room's dispatches (`id` empty: all of them).
    pub async fn list(
        &self,
        room: &RoomName,
        id: &str,
    ) -> Result<Vec<proto::AgentDispatch>, Error> {
        let (room, id) = (room.clone(), id.to_string());
        self.ask(|reply| Cmd::List { room, id, reply }).await
    }

    /// Deletes a dispatch; its jobs are terminated.
    pub async fn delete(&self, room: &RoomName, id: &str) -> Result<proto::AgentDispatch, Error> {
        let (room, id) = (room.clone(), id.to_string());
        self.ask(|reply| Cmd::Delete { room, id, reply }).await?
    }
}

/// A `CreateDispatch` of `agent_name` into `room`.
pub fn dispatch_request(
    agent_name: &str,
    room: &RoomName,
    metadata: String,
) -> proto::CreateAgentDispatchRequest {
    proto::CreateAgentDispatchRequest {
        agent_name: agent_name.to_string(),
        room: room.as_str().to_string(),
        metadata,
        ..Default::default()
    }
}

struct Actor {
    hub: Hub,
    rooms: Arc<RoomManager>,
    /// Each registered worker's connection.
    outs: HashMap<WorkerId, mpsc::Sender<Box<proto::ServerMessage>>>,
    peers: Peers,
    /// Signs node-to-node calls.
    keys: KeyStore,
    http: reqwest::Client,
    /// Rooms here whose dispatches went to other nodes: their URLs.
    forwarded: HashMap<RoomName, HashSet<String>>,
}

impl Actor {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut events: mpsc::UnboundedReceiver<RoomEvent>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.on_cmd(cmd),
                    None => return,
                },
                Some(ev) = events.recv() => self.on_room_event(ev),
                _ = tick.tick() => self.hub.tick(Instant::now()),
            }
            self.carry_out();
        }
    }

    fn on_cmd(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Register {
                id,
                key,
                req,
                out,
                reply,
            } => {
                if !self.hub.has_room_for_a_worker() {
                    let _ = reply.send(None);
                    return;
                }
                self.outs.insert(id.clone(), out);
                let mut resp = self.hub.register(id, &key, &req, now);
                resp.server_info = Some(proto::ServerInfo {
                    version: crate::LIVEKIT_COMPAT_VERSION.to_string(),
                    protocol: crate::PROTOCOL_VERSION,
                    node_id: self.rooms.node_id().to_string(),
                    ..Default::default()
                });
                let _ = reply.send(Some(resp));
            }
            Cmd::Message { from, msg } => self.hub.on_message(&from, *msg, now),
            Cmd::Gone { id } => {
                self.outs.remove(&id);
                self.hub.worker_gone(&id, now);
            }
            Cmd::Serves { agent_name, reply } => {
                let _ = reply
                    .send(self.hub.serves(&agent_name) || self.node_serving(&agent_name).is_some());
            }
            Cmd::Served { reply } => {
                let _ = reply.send(self.hub.served_names());
            }
            Cmd::Create {
                room,
                req,
                identity,
                here_only,
                reply,
            } => {
                let elsewhere = (!here_only && !self.hub.serves(&req.agent_name))
                    .then(|| self.node_serving(&req.agent_name))
                    .flatten();
                match elsewhere {
                    // Not to a room that closed meanwhile: nobody would tell
                    // that node it closed.
                    Some(_) if self.hub.is_closed(&room.sid) => {
                        let _ = reply.send(Err(Error::RoomClosing));
                    }
                    Some(url) => {
                        let name = RoomName::new(room.name.clone());
                        self.forwarded.entry(name).or_default().insert(url.clone());
                        let (http, keys) = (self.http.clone(), self.keys.clone());
                        let body = peers::Forwarded {
                            room: *room,
                            req: *req,
                            identity,
                        };
                        tokio::spawn(async move {
                            let _ = reply.send(peers::forward(&http, &keys, &url, body).await);
                        });
                    }
                    None => {
                        let _ = reply.send(self.hub.create_dispatch(*room, *req, identity, now));
                    }
                }
            }
            Cmd::ClosedElsewhere { room, sid } => self.hub.room_closed(&room, &sid),
            Cmd::List { room, id, reply } => {
                let _ = reply.send(self.hub.list(&room, &id));
            }
            Cmd::Delete { room, id, reply } => {
                let _ = reply.send(self.hub.delete(&room, &id));
            }
        }
    }

    /// Another node whose workers serve `agent_name`, if in a cluster.
    fn node_serving(&self, agent_name: &str) -> Option<String> {
        self.peers.get()?.node_serving(agent_name)
    }

    fn on_room_event(&mut self, ev: RoomEvent) {
        match ev {
            RoomEvent::Opened { room, agents } => {
                // Agents no worker here serves go to a node whose workers do.
                let asked = agents
                    .clone()
                    .unwrap_or_else(|| vec![proto::RoomAgentDispatch::default()]);
                let mut here = Vec::new();
                let closing = self.hub.is_closed(&room.sid);
                for a in asked {
                    let url = (!closing && !self.hub.serves(&a.agent_name))
                        .then(|| self.node_serving(&a.agent_name))
                        .flatten();
                    match url {
                        Some(url) => self.forward_opened(&room, a, url),
                        None => here.push(a),
                    }
                }
                let local = match agents {
                    None if here.len() == 1 => None,
                    _ => Some(here),
                };
                self.hub.room_opened(*room, local, Instant::now());
            }
            RoomEvent::RoomClosed { room, sid } => {
                if let Some(urls) = self.forwarded.remove(&room) {
                    for url in urls {
                        let (http, keys) = (self.http.clone(), self.keys.clone());
                        let body = peers::Closed {
                            room: room.as_str().to_string(),
                            sid: sid.as_str().to_string(),
                        };
                        tokio::spawn(async move {
                            peers::tell_closed(&http, &keys, &url, body).await;
                        });
                    }
                }
                self.hub.room_closed(&room, sid.as_str());
            }
            _ => {}
        }
    }

    /// Hands a room's automatic dispatch of `a` to the node at `url`.
    fn forward_opened(&mut self, room: &proto::Room, a: proto::RoomAgentDispatch, url: String) {
        let name = RoomName::new(room.name.clone());
        self.forwarded
            .entry(name.clone())
            .or_default()
            .insert(url.clone());
        let body = peers::Forwarded {
            room: room.clone(),
            req: proto::CreateAgentDispatchRequest {
                agent_name: a.agent_name,
                room: room.name.clone(),
                metadata: a.metadata,
                attributes: a.attributes,
                restart_policy: a.restart_policy,
                deployment: a.deployment,
            },
            identity: None,
        };
        let (http, keys) = (self.http.clone(), self.keys.clone());
        tokio::spawn(async move {
            if let Err(e) = peers::forward(&http, &keys, &url, body).await {
                tracing::warn!(room = %name, "an agent for this room could not be dispatched on another node: {e}");
            }
        });
    }

    fn carry_out(&mut self) {
        while let Some(action) = self.hub.poll_action() {
            match action {
                Action::Send(worker, msg) => {
                    let Some(out) = self.outs.get(&worker) else {
                        continue;
                    };
                    if out.try_send(msg).is_err() {
                        // A worker that does not read its socket: its
                        // connection closes and its jobs are handled as lost.
                        tracing::warn!(worker = %worker, "agent worker not reading; dropping it");
                        self.outs.remove(&worker);
                        self.hub.worker_gone(&worker, Instant::now());
                    }
                }
                Action::Drop(worker) => {
                    // Its connection sees its queue close and ends.
                    self.outs.remove(&worker);
                }
                Action::RemoveParticipant { room, identity } => {
                    let rooms = self.rooms.clone();
                    tokio::spawn(async move {
                        let op = AdminOp::RemoveParticipant(identity.clone());
                        if let Err(e) = rooms.admin(&room, op).await {
                            tracing::debug!(%room, %identity, "lost agent already gone: {e}");
                        }
                    });
                }
            }
        }
    }
}
