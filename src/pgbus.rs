//! Nodes on one PostgreSQL database and no Redis: chat, receipts, rings and
//! presence reach the other nodes' sockets through the database alone.
//!
//! - [`PgPeers`]: who is alive, from a heartbeat row per node (the store's
//!   `nodes` table, on the database's clock). An id held by another live
//!   process refuses the start.
//! - [`PgBus`]: the events of [`nodo_app::fanout::Shared`] over LISTEN/NOTIFY,
//!   published in order from one task and applied by one listener, as the
//!   Redis bus does (`bus`). While the database is lost, events wait (a
//!   batch that failed is sent again) and new ones queue up to [`QUEUE`].
//!   When the listener's connection was lost, the node says hello again, so
//!   presence is mended on every node. A node alone (no other node's
//!   heartbeat, nothing heard from one lately) publishes nothing, so a lone
//!   node on PostgreSQL pays no notification per message; a node that
//!   starts says hello as soon as it listens, before it serves.
//!
//! Media rooms are not shared without Redis: each node serves the rooms
//! joined through it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nodo_app::fanout::{Bus, Shared};
use nodo_app::store::{NodeJoin, Store};
use nodo_app::App;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::bus::{greet, Envelope};
use crate::cluster::{PeerView, HEARTBEAT, NODE_TTL};

/// Events waiting for the database before new ones are dropped.
const QUEUE: usize = 65_536;
/// Most events published in one transaction.
const BATCH: usize = 256;
/// Wait before listening again after the listener failed.
const RELISTEN: Duration = Duration::from_secs(1);
/// How often the large events every node has read are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How long a starting node waits for its listener before it serves.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// How often the listener checks that it still hears: it sends itself a
/// ping and listens again when one is not back by the next check. A
/// connection a NAT or a fail-over dropped without a reset stays silent
/// for ever otherwise (sqlx's listener has no read timeout).
const PING_EVERY: Duration = Duration::from_secs(6);
/// The prefix of a listener's ping (not an event: every node skips it).
const PING: &str = "ping:";

/// This node's entry among the nodes of the database.
pub struct PgPeers {
    id: String,
    holder: String,
    store: Store,
    healthy: AtomicBool,
    seen: Mutex<Vec<String>>,
}

impl PgPeers {
    /// Takes node `id`'s entry for `holder` (this process: host and
    /// address). Refuses when another live process holds the id.
    pub async fn join(store: Store, id: String, holder: String) -> Result<Arc<PgPeers>, String> {
        if id.is_empty() || id.len() > 128 || id.contains(char::is_whitespace) {
            return Err(format!(
                "nodes: node id {id:?} must be 1 to 128 characters without spaces"
            ));
        }
        let live = match store.node_join(&id, &holder, NODE_TTL).await {
            Ok(NodeJoin::Joined(live)) => live,
            Ok(NodeJoin::Taken { holder }) => {
                return Err(format!(
                    "nodes: node id {id} is in use by a live node ({holder}); give this node \
                     another --node-id"
                ))
            }
            Err(e) => return Err(format!("nodes: cannot register in the database: {e}")),
        };
        Ok(Arc::new(PgPeers {
            id,
            holder,
            store,
            healthy: AtomicBool::new(true),
            seen: Mutex::new(live),
        }))
    }

    /// Renews the entry every [`HEARTBEAT`] and reads who else is alive,
    /// until `stop` turns true; then leaves.
    pub fn start(self: &Arc<Self>, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let healthy = match me.store.node_beat(&me.id, &me.holder, NODE_TTL).await {
                    Ok(Some(live)) => {
                        *me.seen.lock().unwrap_or_else(PoisonError::into_inner) = live;
                        true
                    }
                    Ok(None) => {
                        tracing::error!(id = %me.id, "nodes: another process took this node's id");
                        false
                    }
                    Err(e) => {
                        if me.healthy() {
                            tracing::warn!("nodes: the heartbeat failed: {e}");
                        }
                        false
                    }
                };
                if healthy && !me.healthy() {
                    tracing::info!("nodes: the heartbeat works again");
                }
                me.healthy.store(healthy, Ordering::Relaxed);
            }
            if let Err(e) = me.store.node_leave(&me.id, &me.holder).await {
                tracing::warn!("nodes: leaving: {e}");
            }
        })
    }

    /// The ids of the other nodes alive at start-up or the last heartbeat.
    pub fn others(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl PeerView for PgPeers {
    fn id(&self) -> &str {
        &self.id
    }

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn peer_ids(&self) -> Vec<String> {
        self.others()
    }
}

/// This node's end of the bus over the database.
pub struct PgBus {
    id: String,
    peers: Arc<PgPeers>,
    queue: mpsc::Sender<Shared>,
    dropped: AtomicU64,
    /// When an event of another node last arrived.
    heard: Mutex<Option<Instant>>,
}

impl PgBus {
    /// Whether no other node can be listening: none in the last heartbeat,
    /// and none heard from within the time a node's entry lives.
    fn alone(&self) -> bool {
        let heard = *self.heard.lock().unwrap_or_else(PoisonError::into_inner);
        self.peers.others().is_empty() && heard.is_none_or(|t| t.elapsed() > NODE_TTL)
    }
}

impl Bus for PgBus {
    fn publish(&self, event: Shared) {
        if self.queue.try_send(event).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!(
                "bus: the database is not keeping up; events for other nodes are dropped"
            );
        }
    }
}

/// Starts the bus of the node `peers` stands for on `store`: a publisher
/// and a listener, each on a connection of its own, until `stop` turns true.
/// Returns once the listener listens (or after [`LISTEN_WAIT`]) and a hello
/// went out past the lone-node check: a node that was alone until now
/// hears of this one before this one serves its first socket.
pub async fn start(
    peers: Arc<PgPeers>,
    store: Store,
    app: Arc<App>,
    stop: watch::Receiver<bool>,
) -> Arc<PgBus> {
    let (queue, rx) = mpsc::channel(QUEUE);
    let bus = Arc::new(PgBus {
        id: peers.id.clone(),
        peers,
        queue,
        dropped: AtomicU64::new(0),
        heard: Mutex::new(None),
    });
    let (listening, mut listens) = watch::channel(false);
    tokio::spawn(listener(
        bus.clone(),
        store.clone(),
        app.clone(),
        listening,
        stop.clone(),
    ));
    if tokio::time::timeout(LISTEN_WAIT, listens.wait_for(|l| *l))
        .await
        .is_err()
    {
        tracing::warn!("bus: not listening to the database yet; serving anyway");
    }
    let hello = Envelope {
        from: bus.id.clone(),
        n: 0,
        event: Shared::Hello,
    };
    if let Ok(hello) = serde_json::to_string(&hello) {
        if let Err(e) = store.bus_publish(&[hello]).await {
            tracing::warn!("bus: saying hello: {e}");
        }
    }
    tokio::spawn(publisher(bus.clone(), store, app, rx, stop));
    bus
}

async fn publisher(
    bus: Arc<PgBus>,
    store: Store,
    app: Arc<App>,
    mut rx: mpsc::Receiver<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    // Numbers every event of this node: PostgreSQL folds identical
    // notifications of one transaction, and two `Hello`s must both go.
    let mut n: u64 = 0;
    let mut failing = false;
    let mut events = Vec::with_capacity(BATCH);
    let mut batch: Vec<String> = Vec::with_capacity(BATCH);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        if batch.is_empty() {
            let got = tokio::select! {
                k = rx.recv_many(&mut events, BATCH) => Some(k),
                _ = prune.tick() => None,
                _ = stop.wait_for(|s| *s) => return,
            };
            let Some(got) = got else {
                if let Err(e) = store.bus_prune().await {
                    e.log_if_internal();
                }
                continue;
            };
            if got == 0 {
                return;
            }
            if bus.alone() {
                events.clear();
                continue;
            }
            for event in events.drain(..) {
                n += 1;
                let envelope = Envelope {
                    from: bus.id.clone(),
                    n,
                    event,
                };
                match serde_json::to_string(&envelope) {
                    Ok(s) => batch.push(s),
                    Err(e) => tracing::warn!("bus: serializing an event: {e}"),
                }
            }
        }
        match store.bus_publish(&batch).await {
            Ok(()) => {
                batch.clear();
                if failing {
                    tracing::info!("bus: publishing through the database works again");
                    failing = false;
                    greet(&*bus, &app);
                }
            }
            Err(
                e @ (nodo_app::error::Error::DatabaseUnreachable(_)
                | nodo_app::error::Error::Database(_)),
            ) => {
                if !failing {
                    tracing::warn!("bus: publishing through the database: {e}; retrying");
                    failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(RELISTEN) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            Err(e) => {
                // Refused for what it holds, not for the database's state:
                // sending it again would block the bus for good.
                tracing::warn!(
                    "bus: the database refused {} events: {e}; dropped",
                    batch.len()
                );
                batch.clear();
            }
        }
    }
}

/// What woke the listener.
enum Woke {
    Notified(Result<Option<String>, nodo_app::error::Error>),
    Ping,
    Stop,
}

async fn listener(
    bus: Arc<PgBus>,
    store: Store,
    app: Arc<App>,
    listening: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pings: u64 = 0;
    loop {
        let mut listener = match store.bus_listener().await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!("bus: listening: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(RELISTEN) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        let _ = listening.send(true);
        // Listening (again): the others say who is online with them, and
        // hear who is online here.
        greet(&*bus, &app);
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        // This listener's last ping, not heard back yet, and when it went.
        let mut awaited: Option<(String, Instant)> = None;
        loop {
            let woke = tokio::select! {
                n = listener.next() => Woke::Notified(n),
                _ = ping.tick() => Woke::Ping,
                _ = stop.wait_for(|s| *s) => Woke::Stop,
            };
            let payload = match woke {
                Woke::Stop => return,
                Woke::Ping => {
                    match &awaited {
                        // Two periods: a listener working through a backlog
                        // is slow, not deaf.
                        Some((_, at)) if at.elapsed() >= PING_EVERY * 2 => {
                            tracing::warn!(
                                "bus: the database connection stopped hearing; listening again"
                            );
                            break;
                        }
                        Some(_) => {}
                        None => {
                            pings += 1;
                            let token = format!("{PING}{}:{pings}", bus.id);
                            if store
                                .bus_publish(std::slice::from_ref(&token))
                                .await
                                .is_ok()
                            {
                                awaited = Some((token, Instant::now()));
                            }
                        }
                    }
                    continue;
                }
                Woke::Notified(Ok(Some(p))) => p,
                Woke::Notified(Ok(None)) => {
                    // sqlx connected again at once: what was sent meanwhile is lost.
                    tracing::warn!("bus: the database connection was lost; listening again");
                    greet(&*bus, &app);
                    continue;
                }
                Woke::Notified(Err(e)) => {
                    tracing::warn!("bus: listening: {e}");
                    break;
                }
            };
            if payload.starts_with(PING) {
                if awaited.as_ref().is_some_and(|(t, _)| *t == payload) {
                    awaited = None;
                }
                continue;
            }
            let text = match store.bus_event(payload).await {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!("bus: reading a large event: {e}");
                    continue;
                }
            };
            if let Some(e) = crate::bus::open(&bus.id, text.as_bytes()) {
                // Before the event is applied: what it makes this node
                // publish (a `Present` for a `Hello`) must not meet the
                // lone-node check.
                *bus.heard.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
                app.on_shared(&e.from, e.event).await;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RELISTEN) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
