//! Delivery state: which messages each recipient's client has not confirmed
//! yet (their `message_status` is still `sent`), and the lifetime of
//! attachments, which are served only while their message exists.

use std::collections::HashSet;

use sqlx::Row;

use super::messages::MessageRow;
use super::{now_ms, Store};
use crate::error::Error;
use crate::store::{Attachment, Message};

/// A message a recipient's client confirmed: its sender is told.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Confirmed {
    pub recipient: String,
    pub seq: i64,
    pub id: String,
    pub chat_id: String,
    pub sender: String,
}

/// Confirmations stored per statement (two bound values each).
const CONFIRM_CHUNK: usize = 500;

impl Store {
    /// Up to `limit` messages to `user` that no client of theirs confirmed,
    /// with `seq` above `after`, oldest first. Deleted messages are left out.
    pub async fn pending_for(
        &self,
        user: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Message>, Error> {
        let rows = sqlx::query_as::<_, MessageRow>(
            "SELECT m.* FROM message_status s JOIN messages m ON m.seq = s.message_seq \
             WHERE s.user_id = $1 AND s.status = 'sent' AND s.message_seq > $2 AND m.deleted = 0 \
             ORDER BY s.message_seq LIMIT $3",
        )
        .bind(user)
        .bind(after)
        .bind(limit.clamp(1, 1000))
        .fetch_all(self.pool())
        .await?;
        self.hydrate(rows).await
    }

    /// Marks messages delivered to their recipients, all in one transaction;
    /// returns the ones that were still pending (a message two tabs confirm,
    /// or one already read, comes back once or not at all).
    pub async fn confirm_delivered(&self, items: &[Confirmed]) -> Result<Vec<Confirmed>, Error> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut changed = Vec::new();
        // Rows in one order on every node, so two nodes confirming at once
        // wait for each other instead of deadlocking.
        let mut sorted: Vec<&Confirmed> = items.iter().collect();
        sorted.sort_by(|a, b| (a.seq, &a.recipient).cmp(&(b.seq, &b.recipient)));
        let mut tx = self.writer().begin().await?;
        // One statement per chunk, not per confirmation: each statement is a
        // hand-off to the connection's thread and back.
        for chunk in sorted.chunks(CONFIRM_CHUNK) {
            let mut sql =
                String::from("UPDATE message_status SET status = 'delivered', updated_at = ");
            let mut marks = super::batch::Marks::for_conn(&tx);
            marks.list(&mut sql, 1);
            sql.push_str(" WHERE status = 'sent' AND (message_seq, user_id) IN (VALUES ");
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { "(" } else { ", (" });
                marks.list(&mut sql, 2);
                sql.push(')');
            }
            sql.push_str(") RETURNING message_seq, user_id");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for c in chunk {
                q = q.bind(c.seq).bind(&c.recipient);
            }
            let done: HashSet<(i64, String)> = q
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1)))
                .collect();
            let mut told = HashSet::new();
            for c in chunk {
                let key = (c.seq, c.recipient.clone());
                if done.contains(&key) && told.insert(key) {
                    changed.push((*c).clone());
                }
            }
        }
        tx.commit().await?;
        Ok(changed)
    }

    /// The messages among `ids` addressed to `user` and still pending for them.
    pub async fn pending_by_ids(
        &self,
        user: &str,
        ids: &[String],
    ) -> Result<Vec<Confirmed>, Error> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for id in ids {
            if !seen.insert(id.as_str()) {
                continue;
            }
            let row = sqlx::query(
                "SELECT m.seq, m.id, m.chat_id, m.sender_id FROM messages m \
                 JOIN message_status s ON s.message_seq = m.seq \
                 WHERE m.id = $1 AND s.user_id = $2 AND s.status = 'sent'",
            )
            .bind(id)
            .bind(user)
            .fetch_optional(self.pool())
            .await?;
            if let Some(r) = row {
                out.push(Confirmed {
                    recipient: user.to_string(),
                    seq: r.get(0),
                    id: r.get(1),
                    chat_id: r.get(2),
                    sender: r.get(3),
                });
            }
        }
        Ok(out)
    }

    /// An attachment that may be served: its message exists and is not
    /// deleted, and its file was not removed.
    pub async fn live_attachment(&self, id: &str) -> Result<Option<Attachment>, Error> {
        Ok(sqlx::query_as::<_, Attachment>(
            "SELECT a.id, a.chat_id, a.file_name, a.content_type, a.size FROM attachments a \
             WHERE a.id = $1 AND a.removed_at IS NULL AND EXISTS \
             (SELECT 1 FROM messages m WHERE m.attachment_id = a.id AND m.deleted = 0)",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The attachment a message carried, marked removed (its message was
    /// deleted); returns its id so the file can go too.
    pub async fn remove_attachment_of(&self, message_seq: i64) -> Result<Option<String>, Error> {
        let Some(id) = sqlx::query_scalar::<_, Option<String>>(
            "SELECT attachment_id FROM messages WHERE seq = $1",
        )
        .bind(message_seq)
        .fetch_optional(self.pool())
        .await?
        .flatten() else {
            return Ok(None);
        };
        sqlx::query("UPDATE attachments SET removed_at = $1 WHERE id = $2 AND removed_at IS NULL")
            .bind(now_ms())
            .bind(&id)
            .execute(self.writer())
            .await?;
        Ok(Some(id))
    }

    /// Forgets an upload no message refers to (its send failed, or was a
    /// resend); false when a message does refer to it (it is kept).
    pub async fn forget_upload(&self, id: &str) -> Result<bool, Error> {
        Ok(sqlx::query(
            "DELETE FROM attachments WHERE id = $1 AND NOT EXISTS \
             (SELECT 1 FROM messages WHERE attachment_id = $2)",
        )
        .bind(id)
        .bind(id)
        .execute(self.writer())
        .await?
        .rows_affected()
            == 1)
    }

    /// Uploads stored before `before_ms` that no message refers to (a crash
    /// between the file and the message), forgotten; returns their ids.
    pub async fn forget_orphan_uploads(&self, before_ms: i64) -> Result<Vec<String>, Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "DELETE FROM attachments WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM messages m WHERE m.attachment_id = attachments.id) RETURNING id",
        )
        .bind(before_ms)
        .fetch_all(self.writer())
        .await?;
        Ok(ids)
    }

    /// Which of `ids` are attachments whose file must be kept (not removed).
    pub async fn kept_attachments(&self, ids: &[String]) -> Result<HashSet<String>, Error> {
        let mut kept = HashSet::new();
        for id in ids {
            let keep =
                sqlx::query("SELECT 1 FROM attachments WHERE id = $1 AND removed_at IS NULL")
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?
                    .is_some();
            if keep {
                kept.insert(id.clone());
            }
        }
        Ok(kept)
    }
}

impl Store {
    /// Records an upload of `uploader`.
    pub async fn add_attachment(&self, a: &Attachment, uploader: &str) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO attachments (id, chat_id, uploader_id, file_name, content_type, size, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.id)
        .bind(&a.chat_id)
        .bind(uploader)
        .bind(&a.file_name)
        .bind(&a.content_type)
        .bind(a.size)
        .bind(now_ms())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Bytes `uploader` stored as attachments since `since_ms` (limits).
    pub async fn attachment_bytes_since(
        &self,
        uploader: &str,
        since_ms: i64,
    ) -> Result<i64, Error> {
        Ok(sqlx::query_scalar::<_, Option<i64>>(
            "SELECT CAST(SUM(size) AS BIGINT) FROM attachments WHERE uploader_id = $1 AND created_at >= $2",
        )
        .bind(uploader)
        .bind(since_ms)
        .fetch_one(self.pool())
        .await?
        .unwrap_or(0))
    }

    /// An attachment's record, whatever became of its message.
    pub async fn attachment(&self, id: &str) -> Result<Option<Attachment>, Error> {
        Ok(sqlx::query_as::<_, Attachment>(
            "SELECT id, chat_id, file_name, content_type, size FROM attachments WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.pool())
        .await?)
    }
}
