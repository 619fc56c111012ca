//! LiveKit-compatible webhooks: `WebhookEvent` JSON POSTed with
//! `Content-Type: application/webhook+json` and `Authorization: <JWT>` (HS256
//! with the API secret, carrying `sha256` of the body), so the SDKs'
//! `WebhookReceiver` validates them. Events are queued before any attempt,
//! delivered off the hot path in order per URL, and retried with exponential
//! backoff.
//!
//! The queue is a [`WebhookQueue`]: the LiveKit side owns the delivery rules
//! and knows no SQL; the node's store implements the trait durably (SQLite in
//! nodo-app), so a restart loses no queued event. [`MemoryQueue`] is the
//! non-durable one, for tests and embedders without a store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};

use crate::auth::{claims_for, unix_now_ms, KeyStore};
use crate::config::WebhookConfig;
use crate::error::Error;
use crate::metrics::SignalMetrics;
use crate::room::RoomEvent;

/// Longest wait between two attempts at one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a signed delivery token stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(300);

/// A failure of the queue's store.
pub type QueueError = Box<dyn std::error::Error + Send + Sync>;

/// The delivery at the head of one URL's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedDelivery {
    /// Position in the queue; deliveries to one URL go in `seq` order.
    pub seq: i64,
    /// The JSON body, exactly as it is signed and sent.
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Unix milliseconds before which it must not be tried.
    pub due_ms: i64,
}

/// Where webhook deliveries wait. Implemented durably by the node's store.
pub trait WebhookQueue: Send + Sync + 'static {
    /// Queues `body` once for each URL, due now.
    fn push(&self, urls: Vec<String>, body: String) -> BoxFuture<'_, Result<(), QueueError>>;
    /// The oldest delivery still queued for `url`.
    fn head(&self, url: String) -> BoxFuture<'_, Result<Option<QueuedDelivery>, QueueError>>;
    /// Removes a delivered entry.
    fn delivered(&self, seq: i64) -> BoxFuture<'_, Result<(), QueueError>>;
    /// Counts a failed attempt and defers the entry until `due_ms`.
    fn retry_at(&self, seq: i64, due_ms: i64) -> BoxFuture<'_, Result<(), QueueError>>;
}

/// A [`WebhookQueue`] in memory: in order and retried, but lost on restart.
#[derive(Default)]
pub struct MemoryQueue {
    entries: Mutex<(i64, VecDeque<(String, QueuedDelivery)>)>,
}

impl WebhookQueue for MemoryQueue {
    fn push(&self, urls: Vec<String>, body: String) -> BoxFuture<'_, Result<(), QueueError>> {
        let mut q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for url in urls {
            q.0 += 1;
            let d = QueuedDelivery {
                seq: q.0,
                body: body.clone(),
                attempts: 0,
                due_ms: unix_now_ms(),
            };
            q.1.push_back((url, d));
        }
        Box::pin(async { Ok(()) })
    }

    fn head(&self, url: String) -> BoxFuture<'_, Result<Option<QueuedDelivery>, QueueError>> {
        let q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let head = q.1.iter().find(|(u, _)| *u == url).map(|(_, d)| d.clone());
        Box::pin(async move { Ok(head) })
    }

    fn delivered(&self, seq: i64) -> BoxFuture<'_, Result<(), QueueError>> {
        let mut q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        q.1.retain(|(_, d)| d.seq != seq);
        Box::pin(async { Ok(()) })
    }

    fn retry_at(&self, seq: i64, due_ms: i64) -> BoxFuture<'_, Result<(), QueueError>> {
        let mut q = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, d)) = q.1.iter_mut().find(|(_, d)| d.seq == seq) {
            d.attempts += 1;
            d.due_ms = due_ms;
        }
        Box::pin(async { Ok(()) })
    }
}

/// The webhook sender of a node.
pub struct Webhooks {
    queue: Arc<dyn WebhookQueue>,
    keys: KeyStore,
    api_key: String,
    urls: Vec<String>,
    app_events: bool,
    wake: Notify,
    metrics: SignalMetrics,
}

impl Webhooks {
    /// Starts the queue writer (fed by `events`, the rooms' event stream) and
    /// one delivery worker per URL. With no URL configured, nothing runs and
    /// events are dropped: there is nobody to tell.
    pub fn start(
        keys: KeyStore,
        config: &WebhookConfig,
        queue: Arc<dyn WebhookQueue>,
        mut events: mpsc::UnboundedReceiver<RoomEvent>,
        metrics: SignalMetrics,
    ) -> Arc<Webhooks> {
        let api_key = if config.api_key.is_empty() {
            keys.first_key().unwrap_or_default().to_string()
        } else {
            config.api_key.clone()
        };
        let hooks = Arc::new(Webhooks {
            queue,
            keys,
            api_key,
            urls: config.urls.clone(),
            app_events: config.app_events,
            wake: Notify::new(),
            metrics,
        });
        if hooks.urls.is_empty() {
            return hooks;
        }
        let h = hooks.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let RoomEvent::Webhook(ev) = ev {
                    if let Err(e) = h.enqueue(&ev).await {
                        e.log_internal();
                    }
                }
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        for url in hooks.urls.clone() {
            let h = hooks.clone();
            let client = client.clone();
            tokio::spawn(async move { h.deliver_loop(&url, &client).await });
        }
        hooks
    }

    async fn enqueue(&self, ev: &livekit_protocol::WebhookEvent) -> Result<(), Error> {
        let body = serde_json::to_string(ev)?;
        self.enqueue_body(body).await
    }

    /// Looks at the queue again now (deliveries were added to it from
    /// elsewhere: another node's, taken over).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Whether [`Self::app_event`] sends anything: callers whose event data
    /// costs something to build (a message to a large group) ask first.
    pub fn wants_app_events(&self) -> bool {
        self.app_events && !self.urls.is_empty()
    }

    /// Queues one of Nodo's app events (when enabled): a WebhookEvent-shaped
    /// body (`event`, `id`, `createdAt`) with the details under `data`.
    pub fn app_event(self: &Arc<Self>, event: &'static str, data: serde_json::Value) {
        if !self.wants_app_events() {
            return;
        }
        let body = serde_json::json!({
            "event": event,
            "id": crate::ids::new_sid("EV_"),
            "createdAt": crate::auth::unix_now().to_string(),
            "data": data,
        })
        .to_string();
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.enqueue_body(body).await {
                e.log_internal();
            }
        });
    }

    async fn enqueue_body(&self, body: String) -> Result<(), Error> {
        self.queue
            .push(self.urls.clone(), body)
            .await
            .map_err(Error::WebhookQueue)?;
        self.wake.notify_waiters();
        Ok(())
    }

    /// The `Authorization` value for a body: a JWT with its SHA-256.
    fn sign(&self, body: &str) -> Result<String, Error> {
        let digest = Sha256::digest(body.as_bytes());
        let mut claims = claims_for(&self.api_key, "", TOKEN_TTL, None);
        claims.sha256 = Some(base64::engine::general_purpose::STANDARD.encode(digest));
        self.keys.sign(&self.api_key, &claims)
    }

    async fn deliver_loop(&self, url: &str, client: &reqwest::Client) {
        loop {
            // Armed before the queue is read, so a push in between is not missed.
            let queued = self.wake.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            let head = match self.queue.head(url.to_string()).await {
                Ok(Some(d)) => d,
                Ok(None) => {
                    // Idle until something is queued (or a minute passes).
                    let _ = tokio::time::timeout(MAX_BACKOFF, queued).await;
                    continue;
                }
                Err(e) => {
                    Error::WebhookQueue(e).log_internal();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let wait = head.due_ms - unix_now_ms();
            if wait > 0 {
                // In order per URL: the head waits, everything behind it waits
                // too (or the queue changed: deliveries taken over).
                let _ = tokio::time::timeout(Duration::from_millis(wait as u64), queued).await;
                continue;
            }
            let ok = match self.sign(&head.body) {
                Ok(token) => client
                    .post(url)
                    .header("Content-Type", "application/webhook+json")
                    .header("Authorization", token)
                    .header("User-Agent", "LiveKit")
                    .body(head.body.clone())
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false),
                Err(e) => {
                    e.log_internal();
                    false
                }
            };
            self.metrics.webhook(if ok { "delivered" } else { "retry" });
            let result = if ok {
                self.queue.delivered(head.seq).await
            } else {
                let backoff =
                    Duration::from_millis(500u64.saturating_mul(1 << head.attempts.min(16)))
                        .min(MAX_BACKOFF);
                tracing::debug!(%url, attempts = head.attempts, "webhook delivery failed; retrying in {backoff:?}");
                self.queue
                    .retry_at(head.seq, unix_now_ms() + backoff.as_millis() as i64)
                    .await
            };
            if let Err(e) = result {
                Error::WebhookQueue(e).log_internal();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
