//! `/metrics`: one Prometheus registry for the whole node. Each crate owns
//! its counters (`SfuMetrics`, `SignalMetrics`, `AppMetrics`) and registers
//! them here; the gauges that describe the present (rooms, sockets, queue
//! depths) are read when the endpoint is scraped.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use nodo_app::metrics::AppMetrics;
use nodo_app::App;
use nodo_sfu::SfuMetrics;
use nodo_signaling::metrics::SignalMetrics;
use nodo_signaling::RoomManager;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The node's counters, shared by the services that count.
#[derive(Clone, Default)]
pub struct NodeMetrics {
    pub media: SfuMetrics,
    pub signal: SignalMetrics,
    pub app: AppMetrics,
}

/// Gauges set at each scrape.
#[derive(Default)]
struct Present {
    rooms: Gauge,
    participants: Gauge,
    tracks: Gauge,
    chat_sockets: Gauge,
    chat_send_queue: Gauge,
    wal_bytes: Gauge<u64, AtomicU64>,
    cluster_redis_up: Gauge,
    cluster_nodes: Gauge,
}

/// The registry and what fills the gauges.
pub struct Exporter {
    registry: Registry,
    present: Present,
    rooms: Arc<RoomManager>,
    app: Arc<App>,
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl Exporter {
    pub fn new(
        metrics: &NodeMetrics,
        rooms: Arc<RoomManager>,
        app: Arc<App>,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Exporter {
        let mut registry = Registry::with_prefix("nodo");
        metrics.media.register(&mut registry);
        metrics.signal.register(&mut registry);
        metrics.app.register(&mut registry);
        let present = Present::default();
        let r = &mut registry;
        r.register("rooms", "Open rooms", present.rooms.clone());
        r.register(
            "participants",
            "Connected participants",
            present.participants.clone(),
        );
        r.register(
            "published_tracks",
            "Published tracks",
            present.tracks.clone(),
        );
        r.register(
            "chat_sockets",
            "Connected chat sockets",
            present.chat_sockets.clone(),
        );
        r.register(
            "chat_send_queue",
            "Messages waiting for the store's group-commit writer",
            present.chat_send_queue.clone(),
        );
        r.register(
            "store_wal_bytes",
            "Size of the SQLite write-ahead log",
            present.wal_bytes.clone(),
        );
        if cluster.is_some() {
            r.register(
                "cluster_redis_up",
                "1 while the last heartbeat reached the cluster's Redis",
                present.cluster_redis_up.clone(),
            );
            r.register(
                "cluster_nodes",
                "Live nodes of the cluster, this one included, at the last heartbeat",
                present.cluster_nodes.clone(),
            );
        }
        Exporter {
            registry,
            present,
            rooms,
            app,
            cluster,
        }
    }

    /// The text exposition (OpenMetrics), with the gauges read now.
    pub async fn render(&self) -> String {
        let snaps = self.rooms.snapshots().await;
        let participants: usize = snaps.iter().map(|s| s.participants.len()).sum();
        let tracks: usize = snaps
            .iter()
            .flat_map(|s| s.participants.iter())
            .map(|p| p.tracks.len())
            .sum();
        let p = &self.present;
        p.rooms.set(snaps.len() as i64);
        p.participants.set(participants as i64);
        p.tracks.set(tracks as i64);
        p.chat_sockets
            .set(self.app.chat.presence().sockets() as i64);
        p.chat_send_queue
            .set(self.app.store.send_queue_depth() as i64);
        p.wal_bytes.set(self.app.store.wal_size());
        if let Some(c) = &self.cluster {
            p.cluster_redis_up.set(i64::from(c.healthy()));
            p.cluster_nodes.set(c.nodes_seen() as i64);
        }
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }
}
