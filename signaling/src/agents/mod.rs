//! LiveKit Agents: workers register over `/agent` ([`worker`]) and are
//! dispatched into rooms: every unnamed agent when a room opens (or the
//! agents its creator's token or settings name), and explicitly through the
//! Twirp `AgentDispatchService`. One actor owns the [`hub::Hub`] state
//! machine; connections and the API reach it through [`Agents`].

pub mod hub;
pub(crate) mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use tokio::sync::{mpsc, oneshot};

use crate::auth::KeyStore;
use crate::error::Error;
use crate::ids::{RoomName, WorkerId};
use crate::room::{AdminOp, RoomEvent, RoomManager};
use hub::{Action, Hub};

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
    Create {
        room: Box<proto::Room>,
        req: Box<proto::CreateAgentDispatchRequest>,
        identity: Option<String>,
        reply: oneshot::Sender<Result<proto::AgentDispatch, Error>>,
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
}

impl Agents {
    /// Starts the dispatcher for the rooms of `rooms`; job tokens are signed
    /// with `keys`' first key.
    pub fn start(rooms: Arc<RoomManager>, keys: KeyStore) -> Agents {
        let (tx, rx) = mpsc::channel(QUEUE);
        let events = rooms.subscribe();
        let actor = Actor {
            hub: Hub::new(keys),
            rooms,
            outs: std::collections::HashMap::new(),
        };
        tokio::spawn(actor.run(rx, events));
        Agents { tx }
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
        let (room, req) = (Box::new(room), Box::new(req));
        self.ask(|reply| Cmd::Create {
            room,
            req,
            identity,
            reply,
        })
        .await?
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
    outs: std::collections::HashMap<WorkerId, mpsc::Sender<Box<proto::ServerMessage>>>,
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
                let _ = reply.send(self.hub.serves(&agent_name));
            }
            Cmd::Create {
                room,
                req,
                identity,
                reply,
            } => {
                let _ = reply.send(self.hub.create_dispatch(*room, *req, identity, now));
            }
            Cmd::List { room, id, reply } => {
                let _ = reply.send(self.hub.list(&room, &id));
            }
            Cmd::Delete { room, id, reply } => {
                let _ = reply.send(self.hub.delete(&room, &id));
            }
        }
    }

    fn on_room_event(&mut self, ev: RoomEvent) {
        match ev {
            RoomEvent::Opened { room, agents } => {
                self.hub.room_opened(*room, agents, Instant::now());
            }
            RoomEvent::RoomClosed { room, sid } => self.hub.room_closed(&room, sid.as_str()),
            _ => {}
        }
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
