//! Several nodes on one Redis: a node registry with heartbeats, and each
//! room pinned to one node under a Redis key, chosen by load.
//!
//! Keys (all under `nodo:`):
//! - `node:<id>`: this node's URL and load, rewritten every
//!   [`HEARTBEAT`] and gone [`NODE_TTL`] after the last one (a dead node
//!   drops out on its own); `nodes` is the set of ids ever seen, pruned of
//!   the dead ones when read.
//! - `room:<name>`: the id of the node serving the room. The owner renews it
//!   every heartbeat while the room is open and deletes it when the room has
//!   closed; a room whose owner has no `node:` key any more is free, so the
//!   first join after a node dies places the room on a live node.
//!
//! The node implements [`Placement`] for the LiveKit side, which hands `/rtc`
//! and RoomService requests for rooms served elsewhere to their node.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nodo_signaling::agents::{AgentPeers, Agents};
use nodo_signaling::ids::RoomName;
use nodo_signaling::placement::{BoxFuture, Location, Placement};
use nodo_signaling::room::RoomEvent;
use nodo_signaling::{Error, RoomManager};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::ClusterConfig;

/// How often a node renews its registry entry and its rooms.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a node's entry outlives its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(10);
/// How long a room's pin outlives its owner's last renewal.
const ROOM_TTL: Duration = Duration::from_secs(15);
/// Longest a Redis command may take before the node counts Redis as lost.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// What a node publishes about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct NodeInfo {
    id: String,
    url: String,
    /// Rooms open on the node: what placement balances.
    rooms: usize,
    /// Serving requests (rooms are placed only on such nodes): false from
    /// the id's reservation at start-up until the listeners run.
    #[serde(default)]
    ready: bool,
    /// The agent names its workers serve.
    #[serde(default)]
    agents: Vec<String>,
}

/// The other nodes as a node's registry sees them: Redis's (`Cluster`), or
/// the shared database's when there is no Redis (`pgbus::PgPeers`).
pub trait PeerView: Send + Sync {
    /// This node's id.
    fn id(&self) -> &str;
    /// Whether the registry answered at the last heartbeat.
    fn healthy(&self) -> bool;
    /// The ids of the other live nodes at the last heartbeat.
    fn peer_ids(&self) -> Vec<String>;
}

impl PeerView for Cluster {
    fn id(&self) -> &str {
        Cluster::id(self)
    }

    fn healthy(&self) -> bool {
        Cluster::healthy(self)
    }

    fn peer_ids(&self) -> Vec<String> {
        Cluster::peer_ids(self)
    }
}

/// This node's membership of the cluster.
pub struct Cluster {
    id: String,
    url: String,
    /// For connections of their own (the bus's subscription).
    client: redis::Client,
    redis: ConnectionManager,
    /// Whether the last heartbeat reached Redis (`/readyz`).
    healthy: AtomicBool,
    /// Live nodes (this one included) at the last heartbeat: id and URL.
    seen: Mutex<Vec<(String, String)>>,
    /// Rooms this node renewed at the last heartbeat.
    pinned: Mutex<HashSet<String>>,
    /// The agent names this node's workers serve (read each heartbeat).
    agents_here: Mutex<Vec<String>>,
    /// The other ready nodes' URLs and agent names, at the last heartbeat.
    agents_elsewhere: Mutex<Vec<(String, Vec<String>)>>,
    /// Spreads forwarded dispatches over the nodes that serve an agent.
    next_agent_node: std::sync::atomic::AtomicUsize,
    claim: Script,
    /// `claim` over many keys in one call (the heartbeat's renewals).
    claim_all: Script,
    release: Script,
}

/// Rooms renewed per Redis call at a heartbeat.
const RENEW_CHUNK: usize = 256;

fn node_key(id: &str) -> String {
    format!("nodo:node:{id}")
}

fn room_key(room: &str) -> String {
    format!("nodo:room:{room}")
}

const NODES: &str = "nodo:nodes";

/// The refusal while Redis fails: the error itself goes to the log.
fn unavailable(e: redis::RedisError) -> Error {
    tracing::warn!("cluster: Redis: {e}");
    Error::ClusterUnavailable("the cluster's registry does not answer; retry".into())
}

impl Cluster {
    /// Connects to Redis and registers this node. Refuses (with the reason)
    /// when Redis does not answer, the config is incomplete, or a live node
    /// already has this id.
    pub async fn join(config: &ClusterConfig) -> Result<Arc<Cluster>, String> {
        let id = node_id(config);
        if id.is_empty() || id.len() > 128 || id.contains(char::is_whitespace) {
            return Err(format!(
                "cluster: node id {id:?} must be 1 to 128 characters without spaces"
            ));
        }
        let url = config.node_url.trim_end_matches('/').to_string();
        if !url.starts_with("http://") || url.len() <= "http://".len() {
            return Err(
                "cluster: set cluster.node_url (--node-url) to the plain-HTTP address where the \
                 other nodes reach this node's HTTP port, e.g. http://10.0.0.2:7880 (nodes talk \
                 HTTP to each other on a private network)"
                    .into(),
            );
        }
        let client = redis::Client::open(config.redis_url.as_str()).map_err(|e| {
            format!(
                "cluster: bad redis_url {:?}: {e}",
                crate::node::redact_password(&config.redis_url)
            )
        })?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let redis = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(|e| {
                format!(
                    "cluster: cannot reach Redis at {}: {e}",
                    crate::node::redact_password(&config.redis_url)
                )
            })?;
        let cluster = Arc::new(Cluster {
            id,
            url,
            client,
            redis,
            healthy: AtomicBool::new(false),
            seen: Mutex::new(Vec::new()),
            pinned: Mutex::new(HashSet::new()),
            agents_here: Mutex::new(Vec::new()),
            agents_elsewhere: Mutex::new(Vec::new()),
            next_agent_node: Default::default(),
            // Sets the pin when it is free or already this node's; answers the owner.
            claim: Script::new(
                r"local v = redis.call('GET', KEYS[1])
                  if v == false or v == ARGV[1] then
                    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
                    return ARGV[1]
                  end
                  return v",
            ),
            claim_all: Script::new(
                r"local owners = {}
                  for i, k in ipairs(KEYS) do
                    local v = redis.call('GET', k)
                    if v == false or v == ARGV[1] then
                      redis.call('SET', k, ARGV[1], 'PX', ARGV[2])
                      v = ARGV[1]
                    end
                    owners[i] = v
                  end
                  return owners",
            ),
            // Deletes the pin only when it is still the given node's.
            release: Script::new(
                r"if redis.call('GET', KEYS[1]) == ARGV[1] then
                    return redis.call('DEL', KEYS[1])
                  end
                  return 0",
            ),
        });
        // Reserve the id: a live node with another URL keeps it.
        let reached = |e: redis::RedisError| {
            format!(
                "cluster: cannot reach Redis at {}: {e}",
                crate::node::redact_password(&config.redis_url)
            )
        };
        let mut conn = cluster.redis.clone();
        let reserved: Option<String> = redis::cmd("SET")
            .arg(node_key(&cluster.id))
            .arg(cluster.info(0, false))
            .arg("NX")
            .arg("PX")
            .arg(NODE_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(reached)?;
        if reserved.is_none() {
            let existing: Option<String> =
                conn.get(node_key(&cluster.id)).await.map_err(reached)?;
            let holder = existing.and_then(|raw| serde_json::from_str::<NodeInfo>(&raw).ok());
            if let Some(info) = holder.filter(|i| i.url != cluster.url) {
                return Err(format!(
                    "cluster: node id {} is in use by a live node at {}; give this node \
                     another --node-id",
                    cluster.id, info.url
                ));
            }
        }
        // The entry proper (and the id in the set of nodes); placement
        // takes the node once `start` marks it ready.
        cluster
            .register(0, false)
            .await
            .map_err(|e| format!("cluster: cannot register with Redis: {e}"))?;
        cluster.healthy.store(true, Ordering::Relaxed);
        Ok(cluster)
    }

    fn info(&self, rooms: usize, ready: bool) -> String {
        let info = NodeInfo {
            id: self.id.clone(),
            url: self.url.clone(),
            rooms,
            ready,
            agents: self
                .agents_here
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        };
        serde_json::to_string(&info).unwrap_or_default()
    }

    /// This node's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The Redis client and shared connection (the bus uses both).
    pub fn redis(&self) -> (redis::Client, ConnectionManager) {
        (self.client.clone(), self.redis.clone())
    }

    /// The ids of the other live nodes at the last heartbeat.
    pub fn peer_ids(&self) -> Vec<String> {
        self.peers(|(id, _)| id.clone())
    }

    /// `f` of each other live node's (id, URL) at the last heartbeat.
    fn peers<T>(&self, f: impl Fn(&(String, String)) -> T) -> Vec<T> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(id, _)| *id != self.id)
            .map(f)
            .collect()
    }

    /// Live nodes, this one included, at the last heartbeat.
    pub fn nodes_seen(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The URLs of the other live nodes at the last heartbeat.
    pub fn peer_urls(&self) -> Vec<String> {
        self.peers(|(_, url)| url.clone())
    }

    /// Whether Redis answered the last heartbeat.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The ids and URLs of the live nodes, this one included.
    pub async fn nodes(&self) -> Result<Vec<(String, String)>, Error> {
        Ok(self
            .live_nodes()
            .await
            .map_err(unavailable)?
            .into_iter()
            .map(|n| (n.id, n.url))
            .collect())
    }

    /// Renews this node's entry and its rooms' pins every [`HEARTBEAT`]
    /// until `stop`; pins a room the moment it opens here (however it was
    /// opened: a join, the server API, a call the chat started) and releases
    /// it when it closes.
    pub fn start(
        self: &Arc<Self>,
        rooms: Arc<RoomManager>,
        agents: Agents,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let cluster = self.clone();
        let mut events = rooms.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                enum Step {
                    Beat,
                    Opened(String),
                    Closed(RoomName),
                    Stop,
                }
                let step = tokio::select! {
                    _ = tick.tick() => Step::Beat,
                    Some(ev) = events.recv() => match ev {
                        RoomEvent::Opened { room, .. } => Step::Opened(room.name),
                        RoomEvent::RoomClosed { room, .. } => Step::Closed(room),
                        _ => continue,
                    },
                    r = stop.changed() => match r {
                        Ok(()) if !*stop.borrow() => continue,
                        _ => Step::Stop,
                    },
                };
                let ok = match step {
                    Step::Beat => {
                        // Never held up by a busy dispatcher: the last list stands.
                        let served =
                            tokio::time::timeout(Duration::from_millis(500), agents.served()).await;
                        if let Ok(Ok(names)) = served {
                            *cluster
                                .agents_here
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner) = names;
                        }
                        cluster.heartbeat(&rooms).await
                    }
                    Step::Opened(room) => match cluster.pin(&room).await {
                        Ok(Some(owner)) => {
                            close_lost(&rooms, &RoomName::new(room), &owner).await;
                            Ok(())
                        }
                        r => r.map(|_| ()),
                    },
                    // A room of that name may have opened again since.
                    Step::Closed(room) if !rooms.exists(&room) => {
                        cluster.unpin(room.as_str()).await
                    }
                    Step::Closed(_) => continue,
                    Step::Stop => break,
                };
                let was = cluster.healthy.swap(ok.is_ok(), Ordering::Relaxed);
                match ok {
                    Err(e) if was => tracing::error!("cluster: lost Redis: {e}"),
                    Ok(()) if !was => tracing::info!("cluster: Redis is back"),
                    _ => {}
                }
            }
            cluster.leave().await;
        })
    }

    /// Pins `room` to this node when it is free or already ours; otherwise
    /// answers the node that holds it.
    async fn pin(&self, room: &str) -> redis::RedisResult<Option<String>> {
        let mut conn = self.redis.clone();
        let owner: String = self
            .claim
            .key(room_key(room))
            .arg(&self.id)
            .arg(ROOM_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?;
        if owner != self.id {
            return Ok(Some(owner));
        }
        self.pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(room.to_string());
        Ok(None)
    }

    /// Frees this node's pin of `room`.
    async fn unpin(&self, room: &str) -> redis::RedisResult<()> {
        self.pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(room);
        let mut conn = self.redis.clone();
        self.release
            .key(room_key(room))
            .arg(&self.id)
            .invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
    }

    async fn register(&self, rooms_open: usize, ready: bool) -> redis::RedisResult<()> {
        let json = self.info(rooms_open, ready);
        let mut conn = self.redis.clone();
        redis::pipe()
            .cmd("SET")
            .arg(node_key(&self.id))
            .arg(json)
            .arg("PX")
            .arg(NODE_TTL.as_millis() as u64)
            .ignore()
            .sadd(NODES, &self.id)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
    }

    async fn heartbeat(&self, rooms: &RoomManager) -> redis::RedisResult<()> {
        let open: HashSet<String> = rooms
            .room_names()
            .into_iter()
            .map(|r| r.as_str().to_string())
            .collect();
        self.register(open.len(), true).await?;
        let live = self.live_nodes().await?;
        *self
            .agents_elsewhere
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = live
            .iter()
            .filter(|n| n.id != self.id && n.ready && !n.agents.is_empty())
            .map(|n| (n.url.clone(), n.agents.clone()))
            .collect();
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) =
            live.into_iter().map(|n| (n.id, n.url)).collect();
        let open_list: Vec<&String> = open.iter().collect();
        let mut conn = self.redis.clone();
        for chunk in open_list.chunks(RENEW_CHUNK) {
            let mut call = self.claim_all.prepare_invoke();
            for room in chunk {
                call.key(room_key(room));
            }
            let owners: Vec<String> = call
                .arg(&self.id)
                .arg(ROOM_TTL.as_millis() as u64)
                .invoke_async(&mut conn)
                .await?;
            let mut lost = Vec::new();
            {
                let mut pinned = self.pinned.lock().unwrap_or_else(PoisonError::into_inner);
                for (room, owner) in chunk.iter().zip(owners) {
                    if owner == self.id {
                        pinned.insert((*room).clone());
                    } else {
                        lost.push((RoomName::new((*room).clone()), owner));
                    }
                }
            }
            for (room, owner) in lost {
                close_lost(rooms, &room, &owner).await;
            }
        }
        let closed: Vec<String> = self
            .pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .difference(&open)
            .cloned()
            .collect();
        for room in closed {
            self.unpin(&room).await?;
        }
        Ok(())
    }

    /// Takes this node out of the registry and frees its pins (clean shutdown).
    async fn leave(&self) {
        let pinned: Vec<String> = self
            .pinned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        let mut conn = self.redis.clone();
        for room in pinned {
            let _ = self
                .release
                .key(room_key(&room))
                .arg(&self.id)
                .invoke_async::<i64>(&mut conn)
                .await;
        }
        let _: redis::RedisResult<()> = redis::pipe()
            .del(node_key(&self.id))
            .ignore()
            .srem(NODES, &self.id)
            .ignore()
            .query_async(&mut conn)
            .await;
    }

    /// Every node with a live entry; ids whose entry expired leave the set.
    async fn live_nodes(&self) -> redis::RedisResult<Vec<NodeInfo>> {
        let mut conn = self.redis.clone();
        let ids: Vec<String> = conn.smembers(NODES).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|i| node_key(i)).collect();
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut live = Vec::new();
        for (id, v) in ids.iter().zip(values) {
            match v.and_then(|raw| serde_json::from_str::<NodeInfo>(&raw).ok()) {
                Some(info) => live.push(info),
                None => {
                    let _: redis::RedisResult<i64> = conn.srem(NODES, id).await;
                }
            }
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    async fn node(&self, id: &str) -> redis::RedisResult<Option<NodeInfo>> {
        let mut conn = self.redis.clone();
        let raw: Option<String> = conn.get(node_key(id)).await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    fn location(&self, info: NodeInfo) -> Location {
        if info.id == self.id {
            Location::Here
        } else {
            Location::There {
                node: info.id,
                url: info.url,
            }
        }
    }

    async fn locate_room(&self, room: &RoomName, claim: bool) -> redis::RedisResult<Location> {
        let key = room_key(room.as_str());
        let mut conn = self.redis.clone();
        // A few rounds: another node may pin the room between our reads.
        for _ in 0..3 {
            let owner: Option<String> = conn.get(&key).await?;
            if let Some(owner) = owner {
                if owner == self.id {
                    return Ok(Location::Here);
                }
                if let Some(info) = self.node(&owner).await? {
                    return Ok(self.location(info));
                }
                // The owner is gone: free its pin (only if still its own).
                self.release
                    .key(&key)
                    .arg(&owner)
                    .invoke_async::<i64>(&mut conn)
                    .await?;
                tracing::info!(%room, dead = %owner, "cluster: freed the room of a dead node");
            }
            if !claim {
                return Ok(Location::Here);
            }
            // The least loaded live node; this one on a tie.
            let nodes = self.live_nodes().await?;
            let chosen = nodes
                .into_iter()
                .filter(|n| n.ready || n.id == self.id)
                .min_by_key(|n| (n.rooms, n.id != self.id, n.id.clone()))
                .unwrap_or(NodeInfo {
                    id: self.id.clone(),
                    url: self.url.clone(),
                    rooms: 0,
                    ready: true,
                    agents: Vec::new(),
                });
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&chosen.id)
                .arg("NX")
                .arg("PX")
                .arg(ROOM_TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await?;
            if set.is_some() {
                tracing::info!(%room, node = %chosen.id, "cluster: room placed");
                return Ok(self.location(chosen));
            }
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the room's pin kept changing",
        )))
    }
}

impl Placement for Cluster {
    fn locate<'a>(
        &'a self,
        room: &'a RoomName,
        claim: bool,
    ) -> BoxFuture<'a, Result<Location, Error>> {
        Box::pin(async move { self.locate_room(room, claim).await.map_err(unavailable) })
    }

    fn peers(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async move {
            Ok(self
                .live_nodes()
                .await
                .map_err(unavailable)?
                .into_iter()
                .filter(|n| n.id != self.id && n.ready)
                .map(|n| n.url)
                .collect())
        })
    }
}

/// Closes a room open here whose pin another node holds (this node lost it
/// while Redis was out of reach, and the room was placed again): its
/// participants reconnect and land in the one room of that name.
async fn close_lost(rooms: &RoomManager, room: &RoomName, owner: &str) {
    tracing::warn!(%room, %owner, "cluster: room is open here but pinned to another node; closing it here");
    rooms.close_room(room).await;
}

/// The host name, for a default node id.
/// This node's id: `node_id`, or the host name.
pub fn node_id(config: &ClusterConfig) -> String {
    if config.node_id.is_empty() {
        hostname()
    } else {
        config.node_id.clone()
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

impl AgentPeers for Cluster {
    fn node_serving(&self, agent_name: &str) -> Option<String> {
        let nodes = self
            .agents_elsewhere
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let serving: Vec<&String> = nodes
            .iter()
            .filter(|(_, names)| names.iter().any(|n| n == agent_name))
            .map(|(url, _)| url)
            .collect();
        if serving.is_empty() {
            return None;
        }
        let i = self.next_agent_node.fetch_add(1, Ordering::Relaxed) % serving.len();
        Some(serving[i].clone())
    }
}
