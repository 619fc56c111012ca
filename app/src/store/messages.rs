//! Messages: sending, history, delivery and read receipts, reactions, edits, search.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::{FromRow, Row};

use tokio::sync::oneshot;

use super::batch::{Online, SendJob, Stored};
use super::{now_ms, Store};
use crate::error::{Error, Missing};

/// A message as clients see it (history and live events share the shape).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub chat_id: String,
    pub sender_chat_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient_chat_path: Option<String>,
    pub content: String,
    pub content_type: String,
    pub created_at: String,
    pub reply_to: Option<String>,
    pub reactions: Vec<Reaction>,
    pub edited_at: Option<String>,
    pub deleted: bool,
    /// Per recipient: sent, delivered or read.
    pub status: HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    #[serde(skip)]
    pub seq: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Reaction {
    pub emoji: String,
    pub user_id: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: String,
    #[serde(skip)]
    pub chat_id: String,
    pub file_name: String,
    pub content_type: String,
    pub size: i64,
}

/// What a sender asks to store.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub chat_id: String,
    pub sender: String,
    pub content: String,
    pub content_type: String,
    pub reply_to: Option<String>,
    pub attachment_id: Option<String>,
}

/// Result of a send: the stored message, and whether this call stored it
/// (false for an idempotent resend of the same id).
pub struct SendOutcome {
    pub message: Message,
    pub inserted: bool,
    /// Members of the chat when it was stored.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub next_cursor: Option<String>,
}

#[derive(FromRow)]
pub(super) struct MessageRow {
    pub(super) seq: i64,
    id: String,
    chat_id: String,
    sender_id: String,
    content: String,
    content_type: String,
    reply_to: Option<String>,
    attachment_id: Option<String>,
    created_at: i64,
    edited_at: Option<i64>,
    deleted: i64,
}

/// Unix milliseconds as an RFC 3339 UTC timestamp (`2026-11-22T21:05:00.123Z`).
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Messages looked up per statement when a chat is marked read.
const READ_CHUNK: usize = 500;

/// How long after it was stored a message stays above a member's read
/// floor, however often the chat is marked read. On PostgreSQL a node's seq
/// is handed out before its transaction commits, so a lower seq can commit
/// after a higher one; the margin has to outlast any such transaction plus
/// the nodes' clock skew. Nothing bounds a transaction's life from the
/// client side once its COMMIT is sent (the server ends one idle for 60 s),
/// so the margin is ten times that: it costs only a longer walk above the
/// floor (the messages of the last ten minutes) at each mark and count.
pub(super) const READ_FLOOR_MARGIN_MS: i64 = 600_000;

impl Store {
    /// Stores a message durably (committed before this returns) with a status
    /// for every other member: `delivered` for those `online` says, `sent`
    /// (pending) for the rest. The chat service says nobody: a recipient's
    /// status becomes `delivered` only when its client confirms the message
    /// (`confirm_delivered`). A resend of the same id by the same sender
    /// returns the stored message and stores nothing. Concurrent sends share
    /// one transaction.
    pub async fn send(&self, m: NewMessage, online: Online) -> Result<SendOutcome, Error> {
        let (reply, rx) = oneshot::channel();
        self.sends()
            .send(SendJob {
                msg: m.clone(),
                online,
                reply,
            })
            .await
            .map_err(|_| Error::ShuttingDown)?;
        let stored = rx.await.map_err(|_| Error::ShuttingDown)??;
        let (seq, created_at, direct, members, status) = match stored {
            Stored::New {
                seq,
                created_at,
                direct,
                members,
                status,
            } => (seq, created_at, direct, members, status),
            Stored::Duplicate => {
                let existing = self
                    .message_by_id(&m.id)
                    .await?
                    .ok_or(Error::Vanished("message"))?;
                if existing.sender_chat_path != m.sender {
                    return Err(Error::MessageIdTaken);
                }
                let members = self.members(&existing.chat_id).await?;
                return Ok(SendOutcome {
                    message: existing,
                    inserted: false,
                    members,
                });
            }
        };
        let attachment = match &m.attachment_id {
            Some(a) => self.attachment(a).await?,
            None => None,
        };
        let recipient = if direct {
            members.iter().find(|u| **u != m.sender).cloned()
        } else {
            None
        };
        Ok(SendOutcome {
            message: Message {
                id: m.id,
                chat_id: m.chat_id,
                sender_chat_path: m.sender,
                recipient_chat_path: recipient,
                content: m.content,
                content_type: m.content_type,
                created_at: iso8601(created_at),
                reply_to: m.reply_to,
                reactions: Vec::new(),
                edited_at: None,
                deleted: false,
                status,
                attachment,
                seq,
            },
            inserted: true,
            members,
        })
    }

    pub async fn message_by_id(&self, id: &str) -> Result<Option<Message>, Error> {
        let row = sqlx::query_as::<_, MessageRow>("SELECT * FROM messages WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => Ok(self.hydrate(vec![r]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn message_by_seq(&self, seq: i64) -> Result<Option<Message>, Error> {
        let row = sqlx::query_as::<_, MessageRow>("SELECT * FROM messages WHERE seq = $1")
            .bind(seq)
            .fetch_optional(self.pool())
            .await?;
        match row {
            Some(r) => Ok(self.hydrate(vec![r]).await?.pop()),
            None => Ok(None),
        }
    }

    /// Turns rows into API messages: statuses, reactions, attachment, and the
    /// recipient of direct chats.
    pub(super) async fn hydrate(&self, rows: Vec<MessageRow>) -> Result<Vec<Message>, Error> {
        let mut out = Vec::with_capacity(rows.len());
        let mut members_cache: HashMap<String, (bool, Vec<String>)> = HashMap::new();
        for r in rows {
            if !members_cache.contains_key(&r.chat_id) {
                let direct = self.chat_kind(&r.chat_id).await?.as_deref() == Some("direct");
                let members = self.members(&r.chat_id).await?;
                members_cache.insert(r.chat_id.clone(), (direct, members));
            }
            let (direct, members) = &members_cache[&r.chat_id];
            let recipient = if *direct {
                members.iter().find(|m| **m != r.sender_id).cloned()
            } else {
                None
            };
            let status: HashMap<String, String> =
                sqlx::query("SELECT user_id, status FROM message_status WHERE message_seq = $1")
                    .bind(r.seq)
                    .fetch_all(self.pool())
                    .await?
                    .into_iter()
                    .map(|row| (row.get::<String, _>(0), row.get::<String, _>(1)))
                    .collect();
            let reactions: Vec<Reaction> = sqlx::query(
                "SELECT emoji, user_id FROM reactions WHERE message_seq = $1 ORDER BY created_at, user_id",
            )
            .bind(r.seq)
            .fetch_all(self.pool())
            .await?
            .into_iter()
            .map(|row| Reaction {
                emoji: row.get(0),
                user_id: row.get(1),
            })
            .collect();
            let attachment = match &r.attachment_id {
                Some(a) => self.attachment(a).await?,
                None => None,
            };
            let deleted = r.deleted != 0;
            out.push(Message {
                id: r.id,
                chat_id: r.chat_id,
                sender_chat_path: r.sender_id,
                recipient_chat_path: recipient,
                content: if deleted { String::new() } else { r.content },
                content_type: r.content_type,
                created_at: iso8601(r.created_at),
                reply_to: r.reply_to,
                reactions,
                edited_at: r.edited_at.map(iso8601),
                deleted,
                status,
                attachment: if deleted { None } else { attachment },
                seq: r.seq,
            });
        }
        Ok(out)
    }

    /// Messages addressed to `user` not yet delivered, oldest first.
    pub async fn undelivered(&self, user: &str) -> Result<Vec<Message>, Error> {
        let rows = sqlx::query_as::<_, MessageRow>(
            "SELECT m.* FROM messages m JOIN message_status s ON s.message_seq = m.seq WHERE s.user_id = $1 AND s.status = 'sent' ORDER BY m.seq LIMIT 1000",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        self.hydrate(rows).await
    }

    /// Marks messages delivered to `user` (never downgrades a read).
    pub async fn mark_delivered(&self, user: &str, ids: &[String]) -> Result<(), Error> {
        let now = now_ms();
        for id in ids {
            sqlx::query(
                "UPDATE message_status SET status = 'delivered', updated_at = $1 WHERE user_id = $2 AND status = 'sent' AND message_seq = (SELECT seq FROM messages WHERE id = $3)",
            )
            .bind(now)
            .bind(user)
            .bind(id)
            .execute(self.writer())
            .await?;
        }
        Ok(())
    }

    /// Marks every message of `chat` to `reader` as read; returns their ids grouped by sender.
    pub async fn mark_read(
        &self,
        chat: &str,
        reader: &str,
    ) -> Result<HashMap<String, Vec<String>>, Error> {
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        // The rows this statement changed, and only those: a message stored
        // meanwhile by another connection (another node's) is either read
        // here and reported, or left for the next mark. Only messages above
        // the member's read floor are looked at, each through the status
        // table's primary key (there is no index by user: see
        // migrations/0013_read_floor.sql).
        let mut seqs: Vec<i64> = sqlx::query_scalar(
            "UPDATE message_status SET status = 'read', updated_at = $1 WHERE user_id = $2 AND status != 'read' \
             AND message_seq IN (SELECT seq FROM messages WHERE chat_id = $3 AND seq > \
               COALESCE((SELECT read_floor FROM chat_members WHERE chat_id = $3 AND user_id = $2), 0)) \
             RETURNING message_seq",
        )
        .bind(now)
        .bind(reader)
        .bind(chat)
        .fetch_all(&mut *tx)
        .await?;
        // The floor rises to the newest message stored more than
        // READ_FLOOR_MARGIN ago: every message at or below it was read just
        // now or earlier. Newer ones stay above it, so that a message that
        // another node's transaction numbered lower but committed later
        // (PostgreSQL hands out seqs before commit) is still found.
        let floor: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM messages WHERE chat_id = $1 AND created_at < $2 ORDER BY seq DESC LIMIT 1",
        )
        .bind(chat)
        .bind(now - READ_FLOOR_MARGIN_MS)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(floor) = floor {
            sqlx::query(
                "UPDATE chat_members SET read_floor = $1 WHERE chat_id = $2 AND user_id = $3 AND read_floor < $1",
            )
            .bind(floor)
            .bind(chat)
            .bind(reader)
            .execute(&mut *tx)
            .await?;
        }
        seqs.sort_unstable();
        let mut by_sender: HashMap<String, Vec<String>> = HashMap::new();
        for chunk in seqs.chunks(READ_CHUNK) {
            let mut sql = String::from("SELECT id, sender_id FROM messages WHERE seq IN (");
            let mut marks = super::batch::Marks::for_conn(&tx);
            marks.list(&mut sql, chunk.len());
            sql.push_str(") ORDER BY seq");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for s in chunk {
                q = q.bind(*s);
            }
            for r in q.fetch_all(&mut *tx).await? {
                by_sender
                    .entry(r.get::<String, _>(1))
                    .or_default()
                    .push(r.get::<String, _>(0));
            }
        }
        tx.commit().await?;
        Ok(by_sender)
    }

    /// A page of history, newest first. `before`/`after` are cursors from earlier pages.
    pub async fn history(
        &self,
        chat: &str,
        limit: i64,
        before: Option<i64>,
        after: Option<i64>,
    ) -> Result<HistoryPage, Error> {
        let limit = limit.clamp(1, 200);
        let rows = if let Some(after) = after {
            // Newer than the cursor: fetch ascending, then flip to newest first.
            let mut r = sqlx::query_as::<_, MessageRow>(
                "SELECT * FROM messages WHERE chat_id = $1 AND seq > $2 ORDER BY seq ASC LIMIT $3",
            )
            .bind(chat)
            .bind(after)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
            r.reverse();
            r
        } else {
            sqlx::query_as::<_, MessageRow>(
                "SELECT * FROM messages WHERE chat_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
            )
            .bind(chat)
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(self.pool())
            .await?
        };
        let oldest = rows.last().map(|r| r.seq);
        let more = match oldest {
            Some(seq) => {
                sqlx::query("SELECT 1 FROM messages WHERE chat_id = $1 AND seq < $2 LIMIT 1")
                    .bind(chat)
                    .bind(seq)
                    .fetch_optional(self.pool())
                    .await?
                    .is_some()
            }
            None => false,
        };
        let messages = self.hydrate(rows).await?;
        Ok(HistoryPage {
            next_cursor: if more {
                oldest.map(|s| s.to_string())
            } else {
                None
            },
            messages,
        })
    }

    /// Adds or removes a reaction; returns the message as it is now.
    pub async fn react(
        &self,
        message_id: &str,
        user: &str,
        emoji: &str,
        add: bool,
    ) -> Result<Message, Error> {
        let m = self
            .message_by_id(message_id)
            .await?
            .ok_or(Error::NotFound(Missing::Message))?;
        if add {
            sqlx::query("INSERT INTO reactions (message_seq, user_id, emoji, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
                .bind(m.seq)
                .bind(user)
                .bind(emoji)
                .bind(now_ms())
                .execute(self.writer())
                .await?;
        } else {
            sqlx::query(
                "DELETE FROM reactions WHERE message_seq = $1 AND user_id = $2 AND emoji = $3",
            )
            .bind(m.seq)
            .bind(user)
            .bind(emoji)
            .execute(self.writer())
            .await?;
        }
        self.message_by_seq(m.seq)
            .await?
            .ok_or(Error::Vanished("message"))
    }

    /// Edits (new content) or soft-deletes (`None`) a message of `sender`.
    pub async fn edit(
        &self,
        message_id: &str,
        sender: &str,
        content: Option<&str>,
    ) -> Result<Message, Error> {
        let m = self
            .message_by_id(message_id)
            .await?
            .ok_or(Error::NotFound(Missing::Message))?;
        if m.sender_chat_path != sender {
            return Err(Error::Forbidden("only the sender may change a message"));
        }
        if m.deleted {
            return Err(Error::conflict("message was deleted"));
        }
        match content {
            Some(c) => {
                sqlx::query("UPDATE messages SET content = $1, edited_at = $2 WHERE seq = $3")
                    .bind(c)
                    .bind(now_ms())
                    .bind(m.seq)
            }
            None => sqlx::query(
                "UPDATE messages SET content = '', deleted = 1, edited_at = $1 WHERE seq = $2",
            )
            .bind(now_ms())
            .bind(m.seq),
        }
        .execute(self.writer())
        .await?;
        self.message_by_seq(m.seq)
            .await?
            .ok_or(Error::Vanished("message"))
    }

    /// Full-text search over the chats `user` is in, newest first.
    pub async fn search(&self, user: &str, query: &str, limit: i64) -> Result<Vec<Message>, Error> {
        // Each word becomes a quoted FTS5 string, so user input is never FTS syntax.
        let fts: Vec<String> = query
            .split_whitespace()
            .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
            .collect();
        if fts.is_empty() {
            return Ok(Vec::new());
        }
        // PostgreSQL: every word must match, as with FTS5's implicit AND;
        // `plainto_tsquery` reads no operators either.
        let (sql, words) = match self.backend() {
            super::Backend::Sqlite => (
                "SELECT m.* FROM messages_fts f JOIN messages m ON m.seq = f.rowid \
                 JOIN chat_members cm ON cm.chat_id = m.chat_id AND cm.user_id = $1 \
                 WHERE messages_fts MATCH $2 AND m.deleted = 0 ORDER BY m.seq DESC LIMIT $3",
                fts.join(" "),
            ),
            super::Backend::Postgres => (
                "SELECT m.* FROM messages m \
                 JOIN chat_members cm ON cm.chat_id = m.chat_id AND cm.user_id = $1 \
                 WHERE to_tsvector('simple', m.content) @@ plainto_tsquery('simple', $2) \
                 AND m.deleted = 0 ORDER BY m.seq DESC LIMIT $3",
                query.split_whitespace().collect::<Vec<_>>().join(" "),
            ),
        };
        let rows = sqlx::query_as::<_, MessageRow>(sql)
            .bind(user)
            .bind(words)
            .bind(limit.clamp(1, 100))
            .fetch_all(self.pool())
            .await?;
        self.hydrate(rows).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_dates() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::iso8601(1_795_382_730_534),
            "2026-11-22T21:25:30.534Z"
        );
        assert_eq!(super::iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
