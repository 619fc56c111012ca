//! LiveKit-side counters for `/metrics`: joins and webhook deliveries.
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

#[derive(Clone, Default)]
pub struct SignalMetrics {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    joins: Counter,
    webhooks: Family<OutcomeLabel, Counter>,
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
