//! The durable webhook queue: the LiveKit side's `WebhookQueue` on SQLite.

use futures_util::future::BoxFuture;
use nodo_signaling::webhook::{QueueError, QueuedDelivery, WebhookQueue};
use sqlx::Row;

use super::{now_ms, Store};

/// The webhook queue in the node's database: queued deliveries survive restarts.
#[derive(Clone)]
pub struct SqliteWebhookQueue {
    store: Store,
}

impl Store {
    /// The webhook queue kept in this store.
    pub fn webhook_queue(&self) -> SqliteWebhookQueue {
        SqliteWebhookQueue {
            store: self.clone(),
        }
    }
}

impl WebhookQueue for SqliteWebhookQueue {
    fn push(&self, urls: Vec<String>, body: String) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            let now = now_ms();
            let mut tx = self.store.writer().begin().await?;
            for url in &urls {
                sqlx::query("INSERT INTO webhook_queue (url, body, attempts, next_attempt_at, created_at) VALUES (?, ?, 0, ?, ?)")
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
            let row = sqlx::query("SELECT seq, body, attempts, next_attempt_at FROM webhook_queue WHERE url = ? ORDER BY seq LIMIT 1")
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
            sqlx::query("DELETE FROM webhook_queue WHERE seq = ?")
                .bind(seq)
                .execute(self.store.writer())
                .await?;
            Ok(())
        })
    }

    fn retry_at(&self, seq: i64, due_ms: i64) -> BoxFuture<'_, Result<(), QueueError>> {
        Box::pin(async move {
            sqlx::query("UPDATE webhook_queue SET attempts = attempts + 1, next_attempt_at = ? WHERE seq = ?")
                .bind(due_ms)
                .bind(seq)
                .execute(self.store.writer())
                .await?;
            Ok(())
        })
    }
}
