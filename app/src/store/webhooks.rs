//! The durable webhook queue: the LiveKit side's `WebhookQueue` in the store.

use futures_util::future::BoxFuture;
use nodo_signaling::webhook::{QueueError, QueuedDelivery, WebhookQueue};
use sqlx::Row;

use super::{now_ms, Store};
use crate::error::Error;

/// The webhook queue in the node's database: queued deliveries survive
/// restarts. Each node of a shared database has a queue of its own.
#[derive(Clone)]
pub struct StoreWebhookQueue {
    store: Store,
    node: String,
}

impl Store {
    /// The webhook queue of node `node` ("" for a node alone) in this store.
    pub fn webhook_queue(&self, node: &str) -> StoreWebhookQueue {
        StoreWebhookQueue {
            store: self.clone(),
            node: node.to_string(),
        }
    }
}

impl Store {
    /// The nodes with webhook deliveries queued.
    pub async fn webhook_nodes(&self) -> Result<Vec<String>, Error> {
        Ok(
            sqlx::query_scalar::<_, String>("SELECT DISTINCT node FROM webhook_queue")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Node `to` takes over the deliveries node `from` queued (it is gone);
    /// returns how many. Two nodes adopting at once: one gets them.
    pub async fn adopt_webhooks(&self, from: &str, to: &str) -> Result<u64, Error> {
        Ok(
            sqlx::query("UPDATE webhook_queue SET node = $1 WHERE node = $2")
                .bind(to)
                .bind(from)
                .execute(self.writer())
                .await?
                .rows_affected(),
        )
    }
}

impl WebhookQueue for StoreWebhookQueue {
    fn push(&self, urls: Vec<String>, body: String) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let now = now_ms();
            let mut tx = self.store.writer().begin().await?;
            for url in &urls {
                sqlx::query("INSERT INTO webhook_queue (node, url, body, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, 0, $4, $5)")
                    .bind(&self.node)
                    .bind(url)
                    .bind(&body)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn head(&self, url: String) -> BoxFuture<'_, Result<Option<QueuedDelivery>, QueueError>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT seq, body, attempts, next_attempt_at FROM webhook_queue WHERE node = $1 AND url = $2 ORDER BY seq LIMIT 1")
                .bind(&self.node)
                .bind(&url)
                .fetch_optional(self.store.pool())
                .await?;
            Ok(row.map(|r| QueuedDelivery {
                seq: r.get(0),
                body: r.get(1),
                attempts: r.get::<i64, _>(2).clamp(0, i64::from(u32::MAX)) as u32,
                due_ms: r.get(3),
            }))
        })
    }

    fn delivered(&self, seq: i64) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            sqlx::query("DELETE FROM webhook_queue WHERE seq = $1")
                .bind(seq)
                .execute(self.store.writer())
                .await?;
            Ok(())
        })
    }

    fn retry_at(&self, seq: i64, due_ms: i64) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            sqlx::query("UPDATE webhook_queue SET attempts = attempts + 1, next_attempt_at = $1 WHERE seq = $2")
                .bind(due_ms)
                .bind(seq)
                .execute(self.store.writer())
                .await?;
            Ok(())
        })
    }
}
