//! App-side counters for `/metrics`: chat sends, deliveries and client
//! confirmations, and Web Push outcomes. Cheap to clone (shared atomics);
//! the default is a detached set no registry reads (tests).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What became of something: a message sent, a push.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

#[derive(Clone)]
pub struct AppMetrics {
    inner: Arc<Inner>,
}

struct Inner {
    messages: Family<OutcomeLabel, Counter>,
    send_seconds: Histogram,
    deliveries: Counter,
    confirmations: Counter,
    receipts: Counter,
    push: Family<OutcomeLabel, Counter>,
}

impl Default for AppMetrics {
    fn default() -> Self {
        AppMetrics {
            inner: Arc::new(Inner {
                messages: Family::default(),
                // 0.1 ms .. ~1.6 s.
                send_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
                deliveries: Counter::default(),
                confirmations: Counter::default(),
                receipts: Counter::default(),
                push: Family::default(),
            }),
        }
    }
}

impl std::fmt::Debug for AppMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppMetrics").finish_non_exhaustive()
    }
}

impl AppMetrics {
    /// Adds every series to `r`.
    pub fn register(&self, r: &mut Registry) {
        let m = &self.inner;
        r.register(
            "chat_messages",
            "Chat messages sent, by outcome: stored, duplicate (an idempotent resend), refused",
            m.messages.clone(),
        );
        r.register(
            "chat_send_seconds",
            "Time from a send to its commit (what the sender's ack waits for)",
            m.send_seconds.clone(),
        );
        r.register(
            "chat_deliveries",
            "receiveMessage events handed to sockets",
            m.deliveries.clone(),
        );
        r.register(
            "chat_confirmations",
            "Deliveries confirmed by the receiving client (acks of receiveMessage)",
            m.confirmations.clone(),
        );
        r.register(
            "chat_receipts",
            "messageDelivered events sent to senders",
            m.receipts.clone(),
        );
        r.register(
            "push_notifications",
            "Web Push sends, by outcome: sent, gone (subscription removed), retry, failed",
            m.push.clone(),
        );
    }

    /// A send's outcome and, when stored, how long it took.
    pub fn message(&self, outcome: &'static str, took: Option<Duration>) {
        self.inner
            .messages
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        if let Some(t) = took {
            self.inner.send_seconds.observe(t.as_secs_f64());
        }
    }

    pub fn delivered(&self, sockets: u64) {
        self.inner.deliveries.inc_by(sockets);
    }

    pub fn confirmed(&self, n: u64) {
        self.inner.confirmations.inc_by(n);
    }

    pub fn receipt(&self) {
        self.inner.receipts.inc();
    }

    pub fn push(&self, outcome: &'static str) {
        self.inner
            .push
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}
