//! The cluster's event bus: what one node's services tell users on other
//! nodes (`nodo_app::fanout::Shared`) travels over one Redis pub/sub channel.
//! Each node publishes from one task, in order, and applies what the others
//! publish to its own sockets; a node hears nothing of its own. While Redis
//! is lost, events wait (a batch that failed is sent again) and new ones
//! queue up to [`QUEUE`], dropped beyond (counted and logged): live events
//! only, since messages stay pending in the database and reach their
//! recipients on their next connection. Once Redis is back the node says
//! hello again, so presence is mended on every node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use nodo_app::fanout::{Bus, Shared};
use nodo_app::App;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

/// The channel every node publishes on and listens to.
pub const CHANNEL: &str = "nodo:bus";
/// Events waiting for Redis before new ones are dropped.
const QUEUE: usize = 65_536;
/// Most events published in one round trip to Redis.
const PIPELINE: usize = 256;
/// Wait before subscribing again after the subscription broke.
const RESUBSCRIBE: Duration = Duration::from_secs(1);

/// One event on the channel, with the node that sent it (the bus over
/// PostgreSQL uses it too).
#[derive(Serialize, Deserialize)]
pub(crate) struct Envelope {
    pub from: String,
    /// The event's number among the sending node's (0 on Redis, which keeps
    /// repeated events apart by itself).
    #[serde(default)]
    pub n: u64,
    pub event: Shared,
}

/// One event from the bus, unless node `me` sent it (or it cannot be read).
pub(crate) fn open(me: &str, bytes: &[u8]) -> Option<Envelope> {
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(e) if e.from == me => None,
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!("bus: an event this node cannot read: {e}");
            None
        }
    }
}

/// Says hello on `bus` and who is online here: after (re)joining it, what
/// the others knew of this node may be stale.
pub(crate) fn greet(bus: &dyn Bus, app: &App) {
    bus.publish(Shared::Hello);
    bus.publish(Shared::Present {
        users: app.chat.presence().here(),
    });
}

/// This node's end of the bus.
pub struct RedisBus {
    id: String,
    queue: mpsc::Sender<Vec<u8>>,
    dropped: AtomicU64,
}

impl Bus for RedisBus {
    fn publish(&self, event: Shared) {
        let envelope = Envelope {
            from: self.id.clone(),
            n: 0,
            event,
        };
        let bytes = match serde_json::to_vec(&envelope) {
            Ok(b) => b,
            Err(e) => return tracing::warn!("bus: serializing an event: {e}"),
        };
        if self.queue.try_send(bytes).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0
        {
            tracing::warn!("bus: Redis is not keeping up; events for other nodes are dropped");
        }
    }
}

impl RedisBus {
    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts the bus of node `id`: a publisher on `conn`, a subscriber on a
/// connection of its own from `client` that hands each event to `app`.
/// Both end when `stop` turns true.
pub fn start(
    id: String,
    client: redis::Client,
    conn: ConnectionManager,
    app: Arc<App>,
    stop: watch::Receiver<bool>,
) -> Arc<RedisBus> {
    let (queue, rx) = mpsc::channel(QUEUE);
    let bus = Arc::new(RedisBus {
        id,
        queue,
        dropped: AtomicU64::new(0),
    });
    tokio::spawn(publisher(bus.clone(), app.clone(), conn, rx, stop.clone()));
    tokio::spawn(subscriber(bus.clone(), client, app, stop));
    bus
}

async fn publisher(
    bus: Arc<RedisBus>,
    app: Arc<App>,
    mut conn: ConnectionManager,
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut failing = false;
    let mut batch = Vec::with_capacity(PIPELINE);
    loop {
        if batch.is_empty() {
            let got = tokio::select! {
                n = rx.recv_many(&mut batch, PIPELINE) => n,
                _ = stop.wait_for(|s| *s) => return,
            };
            if got == 0 {
                return;
            }
        }
        // Whatever queued meanwhile goes in one round trip, in order.
        let mut pipe = redis::pipe();
        for bytes in &batch {
            pipe.cmd("PUBLISH")
                .arg(CHANNEL)
                .arg(bytes.as_slice())
                .ignore();
        }
        let sent: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
        match sent {
            Ok(()) => {
                batch.clear();
                if failing {
                    tracing::info!("bus: publishing to Redis works again");
                    failing = false;
                    // What the others missed of this node meanwhile.
                    greet(&*bus, &app);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("bus: publishing to Redis: {e}; retrying");
                    failing = true;
                }
                // The same batch again, once Redis answers.
                tokio::select! {
                    _ = tokio::time::sleep(RESUBSCRIBE) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

async fn subscriber(
    bus: Arc<RedisBus>,
    client: redis::Client,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!("bus: subscribing: {e}");
                tokio::select! {
                    _ = tokio::time::sleep(RESUBSCRIBE) => continue,
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        };
        if let Err(e) = pubsub.subscribe(CHANNEL).await {
            tracing::debug!("bus: subscribing: {e}");
            tokio::time::sleep(RESUBSCRIBE).await;
            continue;
        }
        // Joined (again): the others say who is online with them, and hear
        // who is online here (what they knew may be stale after a break).
        greet(&*bus, &app);
        let mut messages = pubsub.on_message();
        loop {
            let msg = tokio::select! {
                m = messages.next() => match m {
                    Some(m) => m,
                    None => break,
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            if let Some(e) = open(&bus.id, msg.get_payload_bytes()) {
                app.on_shared(&e.from, e.event).await;
            }
        }
        tracing::warn!("bus: the Redis subscription broke; subscribing again");
        tokio::time::sleep(RESUBSCRIBE).await;
    }
}
