//! Media counters for `/metrics`: what crossed the media sockets, what the
//! rooms forwarded, and the repair traffic (NACK, PLI) on both sides.
//!
//! Counters are atomics shared with the registry. The hot path never touches
//! them per packet: a room counts in plain integers ([`RoomCounts`]) and
//! adds them to the shared counters once per drive (one input, many
//! packets), and the socket loops do the same once per batch.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The room label of per-room series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RoomLabel {
    pub room: String,
}

/// The media kind label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Node-wide media counters. Cheap to clone (shared atomics); the default is
/// a detached set that no registry reads (tests, tools).
#[derive(Clone)]
pub struct SfuMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    udp_rx_packets: Counter,
    udp_rx_bytes: Counter,
    udp_tx_packets: Counter,
    udp_tx_bytes: Counter,
    udp_tx_dropped: Counter,
    unrouted: Counter,
    inbox_dropped: Counter,
    rtp_in_packets: Family<KindLabel, Counter>,
    rtp_in_bytes: Family<KindLabel, Counter>,
    forwarded_packets: Family<RoomLabel, Counter>,
    forwarded_bytes: Family<RoomLabel, Counter>,
    nacks_from_subscribers: Counter,
    plis_from_subscribers: Counter,
    nacks_to_publishers: Counter,
    keyframe_requests_to_publishers: Counter,
    unrepaired_upstream: Counter,
    backlog_dropped: Counter,
    lost_downstream: Counter,
    peer_timeouts: Counter,
    upstream_loss: Histogram,
}

impl Default for SfuMetrics {
    fn default() -> Self {
        SfuMetrics {
            inner: Arc::new(Inner {
                udp_rx_packets: Counter::default(),
                udp_rx_bytes: Counter::default(),
                udp_tx_packets: Counter::default(),
                udp_tx_bytes: Counter::default(),
                udp_tx_dropped: Counter::default(),
                unrouted: Counter::default(),
                inbox_dropped: Counter::default(),
                rtp_in_packets: Family::default(),
                rtp_in_bytes: Family::default(),
                forwarded_packets: Family::default(),
                forwarded_bytes: Family::default(),
                nacks_from_subscribers: Counter::default(),
                plis_from_subscribers: Counter::default(),
                nacks_to_publishers: Counter::default(),
                keyframe_requests_to_publishers: Counter::default(),
                unrepaired_upstream: Counter::default(),
                backlog_dropped: Counter::default(),
                lost_downstream: Counter::default(),
                peer_timeouts: Counter::default(),
                upstream_loss: Histogram::new([0.0, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
            }),
        }
    }
}

impl SfuMetrics {
    /// Adds every series to `r` (names get the registry's prefix).
    pub fn register(&self, r: &mut Registry) {
        let m = &self.inner;
        r.register(
            "udp_received_packets",
            "UDP datagrams read from the media sockets",
            m.udp_rx_packets.clone(),
        );
        r.register(
            "udp_received_bytes",
            "Bytes of UDP datagrams read from the media sockets",
            m.udp_rx_bytes.clone(),
        );
        r.register(
            "udp_sent_packets",
            "Datagrams the rooms handed to the media sockets (those dropped are counted apart)",
            m.udp_tx_packets.clone(),
        );
        r.register(
            "udp_sent_bytes",
            "Bytes of the datagrams the rooms handed to the media sockets",
            m.udp_tx_bytes.clone(),
        );
        r.register(
            "udp_send_dropped_packets",
            "Datagrams dropped because the socket's send buffer was full",
            m.udp_tx_dropped.clone(),
        );
        r.register(
            "media_unrouted_packets",
            "Datagrams from an address no peer connection is known for",
            m.unrouted.clone(),
        );
        r.register(
            "room_inbox_dropped_packets",
            "Datagrams dropped because their room's queue was full",
            m.inbox_dropped.clone(),
        );
        r.register(
            "rtp_received_packets",
            "RTP packets received from publishers",
            m.rtp_in_packets.clone(),
        );
        r.register(
            "rtp_received_bytes",
            "RTP payload bytes received from publishers",
            m.rtp_in_bytes.clone(),
        );
        r.register(
            "rtp_forwarded_packets",
            "RTP packets forwarded to subscribers (one per subscriber), per open room",
            m.forwarded_packets.clone(),
        );
        r.register(
            "rtp_forwarded_bytes",
            "RTP payload bytes forwarded to subscribers, per open room",
            m.forwarded_bytes.clone(),
        );
        r.register(
            "nacks_received",
            "NACKs received from subscribers",
            m.nacks_from_subscribers.clone(),
        );
        r.register(
            "plis_received",
            "PLIs and FIRs received from subscribers",
            m.plis_from_subscribers.clone(),
        );
        r.register(
            "nacks_sent",
            "NACKs sent to publishers",
            m.nacks_to_publishers.clone(),
        );
        r.register(
            "keyframe_requests_sent",
            "Keyframe requests (PLI) sent to publishers",
            m.keyframe_requests_to_publishers.clone(),
        );
        r.register(
            "rtp_unrepaired_upstream_losses",
            "Publisher video losses retransmission did not repair in time (each answered with a keyframe request)",
            m.unrepaired_upstream.clone(),
        );
        r.register(
            "rtp_stale_backlog_dropped_packets",
            "Video packets dropped from a subscriber's pacer queue when it was moved off their layer (as the pacer last counted its queue)",
            m.backlog_dropped.clone(),
        );
        r.register(
            "rtp_lost_downstream_packets",
            "Packets subscribers reported lost (receiver reports)",
            m.lost_downstream.clone(),
        );
        r.register(
            "peer_timeouts",
            "Timeouts the rooms handed to peer connections (each runs all of the connection's timers: the per-connection cost of forwarding)",
            m.peer_timeouts.clone(),
        );
        r.register(
            "rtp_upstream_loss_ratio",
            "Loss fraction of publishers' streams, one observation per stream each stats interval",
            m.upstream_loss.clone(),
        );
    }

    /// The counters of one room; [`SfuMetrics::forget_room`] drops its series.
    pub fn room(&self, room: &str) -> RoomMetrics {
        let label = RoomLabel {
            room: room.to_string(),
        };
        RoomMetrics {
            forwarded_packets: self.inner.forwarded_packets.get_or_create_owned(&label),
            forwarded_bytes: self.inner.forwarded_bytes.get_or_create_owned(&label),
            node: self.clone(),
            room: room.to_string(),
            counts: RoomCounts::default(),
        }
    }

    /// Drops a closed room's series, so the label set stays as small as the
    /// open rooms.
    pub fn forget_room(&self, room: &str) {
        let label = RoomLabel {
            room: room.to_string(),
        };
        self.inner.forwarded_packets.remove(&label);
        self.inner.forwarded_bytes.remove(&label);
    }

    /// Datagrams read from the media sockets, and their bytes.
    pub fn udp_received(&self, packets: u64, bytes: u64) {
        self.inner.udp_rx_packets.inc_by(packets);
        self.inner.udp_rx_bytes.inc_by(bytes);
    }

    /// A datagram dropped for a full send buffer.
    pub fn udp_send_dropped(&self) {
        self.inner.udp_tx_dropped.inc();
    }

    /// A datagram no peer is known for.
    pub fn unrouted(&self) {
        self.inner.unrouted.inc();
    }

    /// A datagram dropped at a full room queue.
    pub fn inbox_dropped(&self) {
        self.inner.inbox_dropped.inc();
    }
}

impl std::fmt::Debug for SfuMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SfuMetrics").finish_non_exhaustive()
    }
}

/// What a room counted since its last flush.
#[derive(Debug, Default, Clone, Copy)]
pub struct RoomCounts {
    pub audio_in: u64,
    pub audio_in_bytes: u64,
    pub video_in: u64,
    pub video_in_bytes: u64,
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    /// Datagrams handed to the network, and their bytes.
    pub sent: u64,
    pub sent_bytes: u64,
    /// Timeouts handed to peer connections.
    pub timeouts: u64,
}

impl Drop for RoomMetrics {
    /// Flushes the last counts and, when the room's series are still this
    /// room's (a room of the same name opened since would own them), drops them.
    fn drop(&mut self) {
        self.flush();
        let label = RoomLabel {
            room: self.room.clone(),
        };
        let ours = self
            .node
            .inner
            .forwarded_packets
            .get(&label)
            .is_some_and(|c| std::ptr::eq(c.inner(), self.forwarded_packets.inner()));
        if ours {
            self.node.forget_room(&self.room);
        }
    }
}

/// One room's handles on the counters, and what it counted since the last
/// flush.
pub struct RoomMetrics {
    forwarded_packets: Counter,
    forwarded_bytes: Counter,
    node: SfuMetrics,
    room: String,
    /// Plain counts the room adds to on the hot path.
    pub counts: RoomCounts,
}

impl Default for RoomMetrics {
    fn default() -> Self {
        SfuMetrics::default().room("")
    }
}

impl RoomMetrics {
    /// Adds what was counted to the shared counters.
    pub fn flush(&mut self) {
        let c = std::mem::take(&mut self.counts);
        if c.forwarded > 0 {
            self.forwarded_packets.inc_by(c.forwarded);
            self.forwarded_bytes.inc_by(c.forwarded_bytes);
        }
        let m = &self.node.inner;
        if c.sent > 0 {
            m.udp_tx_packets.inc_by(c.sent);
            m.udp_tx_bytes.inc_by(c.sent_bytes);
        }
        if c.timeouts > 0 {
            m.peer_timeouts.inc_by(c.timeouts);
        }
        if c.audio_in > 0 {
            let k = KindLabel { kind: "audio" };
            m.rtp_in_packets.get_or_create(&k).inc_by(c.audio_in);
            m.rtp_in_bytes.get_or_create(&k).inc_by(c.audio_in_bytes);
        }
        if c.video_in > 0 {
            let k = KindLabel { kind: "video" };
            m.rtp_in_packets.get_or_create(&k).inc_by(c.video_in);
            m.rtp_in_bytes.get_or_create(&k).inc_by(c.video_in_bytes);
        }
    }

    /// Repair traffic from a stats report (deltas).
    pub fn repairs(&self, nacks_in: u64, plis_in: u64, nacks_out: u64, lost_downstream: u64) {
        let m = &self.node.inner;
        m.nacks_from_subscribers.inc_by(nacks_in);
        m.plis_from_subscribers.inc_by(plis_in);
        m.nacks_to_publishers.inc_by(nacks_out);
        m.lost_downstream.inc_by(lost_downstream);
    }

    /// A keyframe request sent to a publisher.
    pub fn keyframe_request_sent(&self) {
        self.node.inner.keyframe_requests_to_publishers.inc();
    }

    /// A publisher video loss that retransmission did not repair in time.
    pub fn uplink_loss_unrepaired(&self) {
        self.node.inner.unrepaired_upstream.inc();
    }

    /// Video packets dropped from a subscriber's pacer queue (a stale backlog).
    pub fn backlog_dropped(&self, packets: usize) {
        self.node.inner.backlog_dropped.inc_by(packets as u64);
    }

    /// A publisher stream's loss fraction from a stats report.
    pub fn upstream_loss(&self, fraction: f32) {
        self.node.inner.upstream_loss.observe(f64::from(fraction));
    }
}
