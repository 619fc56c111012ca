//! LiveKit-compatible webhooks: `WebhookEvent` JSON POSTed with
//! `Content-Type: application/webhook+json` and `Authorization: <JWT>` (HS256
//! with the API secret, carrying `sha256` of the body), so the SDKs'
//! `WebhookReceiver` validates them. Events are queued in SQLite before any
//! attempt, delivered off the hot path in order per URL, and retried with
//! exponential backoff; a restart loses none that were queued.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::Row;
use tokio::sync::Notify;

use crate::auth::{claims_for, KeyStore};
use crate::config::WebhookConfig;
use crate::error::Error;
use crate::room::{RoomEvent, RoomManager};
use crate::store::{now_ms, Store};

/// Longest wait between two attempts at one delivery.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How long a signed delivery token stays valid.
const TOKEN_TTL: Duration = Duration::from_secs(300);

pub struct Webhooks {
    store: Store,
    keys: KeyStore,
    api_key: String,
    urls: Vec<String>,
    app_events: bool,
    wake: Notify,
}

impl Webhooks {
    /// Starts the queue writer and one delivery worker per URL.
    pub fn start(
        store: Store,
        keys: KeyStore,
        config: &WebhookConfig,
        rooms: &RoomManager,
    ) -> Arc<Webhooks> {
        let api_key = if config.api_key.is_empty() {
            keys.first_key().unwrap_or_default().to_string()
        } else {
            config.api_key.clone()
        };
        let hooks = Arc::new(Webhooks {
            store,
            keys,
            api_key,
            urls: config.urls.clone(),
            app_events: config.app_events,
            wake: Notify::new(),
        });
        if hooks.urls.is_empty() {
            return hooks;
        }
        let mut events = rooms.subscribe();
        let h = hooks.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.recv().await {
                if let RoomEvent::Webhook(ev) = ev {
                    if let Err(e) = h.enqueue(&ev).await {
                        tracing::warn!("webhook enqueue: {e}");
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
        let body = serde_json::to_string(ev).map_err(|e| Error::Internal(e.to_string()))?;
        self.enqueue_body(&body).await
    }

    /// Queues one of Nodo's app events (when enabled): a WebhookEvent-shaped
    /// body (`event`, `id`, `createdAt`) with the details under `data`.
    pub fn app_event(self: &Arc<Self>, event: &'static str, data: serde_json::Value) {
        if !self.app_events || self.urls.is_empty() {
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
            if let Err(e) = me.enqueue_body(&body).await {
                tracing::warn!("webhook enqueue: {e}");
            }
        });
    }

    async fn enqueue_body(&self, body: &str) -> Result<(), Error> {
        let now = now_ms();
        for url in &self.urls {
            sqlx::query("INSERT INTO webhook_queue (url, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, ?, ?)")
                .bind(url)
                .bind(body)
                .bind(now)
                .bind(now)
                .execute(self.store.writer())
                .await?;
        }
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
            let head = sqlx::query("SELECT seq, body, attempts, next_attempt_at FROM webhook_queue WHERE url = ? ORDER BY seq LIMIT 1")
                .bind(url)
                .fetch_optional(self.store.pool())
                .await;
            let row = match head {
                Ok(Some(r)) => r,
                Ok(None) => {
                    // Idle until something is queued (or a minute passes).
                    let _ = tokio::time::timeout(MAX_BACKOFF, self.wake.notified()).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("webhook queue: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let (seq, body, attempts, due): (i64, String, i64, i64) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let wait = due - now_ms();
            if wait > 0 {
                // In order per URL: the head waits, everything behind it waits too.
                tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                continue;
            }
            let ok = match self.sign(&body) {
                Ok(token) => client
                    .post(url)
                    .header("Content-Type", "application/webhook+json")
                    .header("Authorization", token)
                    .header("User-Agent", "LiveKit")
                    .body(body.clone())
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false),
                Err(e) => {
                    tracing::error!("webhook signing: {e}");
                    false
                }
            };
            let result = if ok {
                sqlx::query("DELETE FROM webhook_queue WHERE seq = ?")
                    .bind(seq)
                    .execute(self.store.writer())
                    .await
            } else {
                let backoff =
                    Duration::from_millis(500u64.saturating_mul(1 << attempts.clamp(0, 16)))
                        .min(MAX_BACKOFF);
                tracing::debug!(%url, attempts, "webhook delivery failed; retrying in {backoff:?}");
                sqlx::query("UPDATE webhook_queue SET attempts = attempts + 1, next_attempt_at = ? WHERE seq = ?")
                    .bind(now_ms() + backoff.as_millis() as i64)
                    .bind(seq)
                    .execute(self.store.writer())
                    .await
            };
            if let Err(e) = result {
                tracing::warn!("webhook queue update: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
