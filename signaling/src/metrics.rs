//! LiveKit-side counters for `/metrics`: joins, webhook deliveries and
//! requests handed to another node.
//! Cheap to clone (shared atomics); the default is a detached set.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// How a webhook delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// A request handed to the room's node: which kind, and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct HandoverLabel {
    /// `signal` (a `/rtc` WebSocket piped) or `api` (a Twirp call re-sent).
    pub kind: &'static str,
    /// `ok`, or `unreachable` when the room's node could not be reached.
    pub outcome: &'static str,
}

#[derive(Clone, Default)]
pub struct SignalMetrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    joins: Counter,
    webhooks: Family<OutcomeLabel, Counter>,
    handovers: Family<HandoverLabel, Counter>,
}

impl std::fmt::Debug for SignalMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalMetrics").finish_non_exhaustive()
    }
}

impl SignalMetrics {
    /// Adds every series to `r`.
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "participants_joined",
            "Participants that joined a room",
            self.inner.joins.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by outcome: delivered, retry",
            self.inner.webhooks.clone(),
        );
        r.register(
            "cluster_handovers",
            "Requests handed to the node serving their room, by kind (signal, api) and outcome (ok, unreachable)",
            self.inner.handovers.clone(),
        );
    }

    pub fn handover(&self, kind: &'static str, ok: bool) {
        let outcome = if ok { "ok" } else { "unreachable" };
        self.inner
            .handovers
            .get_or_create(&HandoverLabel { kind, outcome })
            .inc();
    }

    pub fn joined(&self) {
        self.inner.joins.inc();
    }

    pub fn webhook(&self, outcome: &'static str) {
        self.inner
            .webhooks
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}
