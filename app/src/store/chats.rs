//! Chats and their members: direct chats (made on first use), groups,
//! membership, and each user's chat list with its unread counts.

use serde::Serialize;
use sqlx::{FromRow, Row};

use super::messages::{Message, MessageRow};
use super::{now_ms, Backend, Store};
use crate::error::{Error, Missing};

/// A chat's members as one JSON array of user ids, in a query whose chat
/// row is `c`: one row per chat instead of one per member. Every row of a
/// result crosses from sqlx's SQLite thread to the runtime on its own and
/// is copied twice on the way, which made reading a 1,000-member group
/// 1.8-3.3 ms of each message sent to it.
pub(super) fn members_json(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => {
            "(SELECT json_group_array(cm.user_id) FROM chat_members cm WHERE cm.chat_id = c.id)"
        }
        Backend::Postgres => {
            "(SELECT COALESCE(json_agg(cm.user_id), '[]')::text FROM chat_members cm WHERE cm.chat_id = c.id)"
        }
    }
}

/// The members [`members_json`] read, in id order.
pub(super) fn parse_members(json: &str) -> Result<Vec<String>, sqlx::Error> {
    let mut members: Vec<String> =
        serde_json::from_str(json).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    members.sort_unstable();
    Ok(members)
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatSummary {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub members: Vec<String>,
    pub last_message: Option<Message>,
    pub unread_count: i64,
}

#[derive(FromRow)]
struct ChatRow {
    id: String,
    #[sqlx(rename = "type")]
    kind: String,
    name: String,
}

fn direct_key(a: &str, b: &str) -> String {
    let (x, y) = if a <= b { (a, b) } else { (b, a) };
    format!("{x}\n{y}")
}

impl Store {
    /// The direct chat of `a` and `b` when this store has seen it (no
    /// database read): it exists, and so do both users.
    pub fn known_direct_chat(&self, a: &str, b: &str) -> Option<String> {
        super::cache_get(&self.caches.direct, &direct_key(a, b))
    }

    /// The direct chat between two users, created on first use.
    pub async fn direct_chat(&self, a: &str, b: &str) -> Result<(String, bool), Error> {
        let key = direct_key(a, b);
        if let Some(id) = self.known_direct_chat(a, b) {
            return Ok((id, false));
        }
        if let Some(row) = sqlx::query("SELECT id FROM chats WHERE direct_key = $1")
            .bind(&key)
            .fetch_optional(self.pool())
            .await?
        {
            let id = row.get::<String, _>(0);
            super::cache_put(&self.caches.direct, key, id.clone());
            return Ok((id, false));
        }
        let id = nodo_signaling::ids::new_sid("CH_");
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO chats (id, type, name, direct_key, created_by, created_at) VALUES ($1, 'direct', '', $2, $3, $4) ON CONFLICT(direct_key) DO NOTHING",
        )
        .bind(&id)
        .bind(&key)
        .bind(a)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            for u in [a, b] {
                sqlx::query("INSERT INTO chat_members (chat_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3) ON CONFLICT DO NOTHING")
                    .bind(&id)
                    .bind(u)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        if !inserted {
            return Box::pin(self.direct_chat(a, b)).await;
        }
        super::cache_put(&self.caches.direct, key, id.clone());
        Ok((id, true))
    }

    /// Creates a group owned by `owner` with the given members.
    pub async fn create_group(
        &self,
        owner: &str,
        name: &str,
        members: &[String],
    ) -> Result<String, Error> {
        let id = nodo_signaling::ids::new_sid("CH_");
        let now = now_ms();
        let mut tx = self.writer().begin().await?;
        sqlx::query("INSERT INTO chats (id, type, name, direct_key, created_by, created_at) VALUES ($1, 'group', $2, NULL, $3, $4)")
            .bind(&id)
            .bind(name)
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO chat_members (chat_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)")
            .bind(&id)
            .bind(owner)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        for m in members.iter().filter(|m| m.as_str() != owner) {
            sqlx::query("INSERT INTO chat_members (chat_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3) ON CONFLICT DO NOTHING")
                .bind(&id)
                .bind(m)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(id)
    }

    pub async fn chat_kind(&self, chat: &str) -> Result<Option<String>, Error> {
        Ok(sqlx::query("SELECT type FROM chats WHERE id = $1")
            .bind(chat)
            .fetch_optional(self.pool())
            .await?
            .map(|r| r.get::<String, _>(0)))
    }

    /// A chat's members in id order (none for a chat that does not exist).
    pub async fn members(&self, chat: &str) -> Result<Vec<String>, Error> {
        let sql = format!(
            "SELECT {} FROM chats c WHERE c.id = $1",
            members_json(self.backend())
        );
        match sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(chat)
            .fetch_optional(self.pool())
            .await?
        {
            Some(row) => Ok(parse_members(&row.get::<String, _>(0))?),
            None => Ok(Vec::new()),
        }
    }

    pub async fn member_role(&self, chat: &str, user: &str) -> Result<Option<String>, Error> {
        Ok(
            sqlx::query("SELECT role FROM chat_members WHERE chat_id = $1 AND user_id = $2")
                .bind(chat)
                .bind(user)
                .fetch_optional(self.pool())
                .await?
                .map(|r| r.get::<String, _>(0)),
        )
    }

    /// Fails with `Forbidden` unless `user` is in `chat` (and `NotFound` for no chat).
    pub async fn require_member(&self, chat: &str, user: &str) -> Result<(), Error> {
        if self.member_role(chat, user).await?.is_some() {
            return Ok(());
        }
        if self.chat_kind(chat).await?.is_none() {
            return Err(Error::NotFound(Missing::Chat));
        }
        Err(Error::Forbidden("you are not a member of this chat"))
    }

    pub async fn add_member(&self, chat: &str, user: &str) -> Result<(), Error> {
        sqlx::query("INSERT INTO chat_members (chat_id, user_id, role, joined_at) VALUES ($1, $2, 'member', $3) ON CONFLICT DO NOTHING")
            .bind(chat)
            .bind(user)
            .bind(now_ms())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    pub async fn remove_member(&self, chat: &str, user: &str) -> Result<bool, Error> {
        Ok(
            sqlx::query("DELETE FROM chat_members WHERE chat_id = $1 AND user_id = $2")
                .bind(chat)
                .bind(user)
                .execute(self.writer())
                .await?
                .rows_affected()
                == 1,
        )
    }

    pub async fn chat_ids_of(&self, user: &str) -> Result<Vec<String>, Error> {
        Ok(
            sqlx::query("SELECT chat_id FROM chat_members WHERE user_id = $1")
                .bind(user)
                .fetch_all(self.pool())
                .await?
                .into_iter()
                .map(|r| r.get::<String, _>(0))
                .collect(),
        )
    }

    /// The user's chats, most recently active first.
    pub async fn chats_of(&self, user: &str) -> Result<Vec<ChatSummary>, Error> {
        let chats = sqlx::query_as::<_, ChatRow>(
            "SELECT c.id, c.type, c.name FROM chats c JOIN chat_members cm ON cm.chat_id = c.id WHERE cm.user_id = $1 \
             ORDER BY COALESCE((SELECT MAX(seq) FROM messages WHERE chat_id = c.id), 0) DESC, c.created_at DESC",
        )
        .bind(user)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(chats.len());
        for c in chats {
            let last = sqlx::query_as::<_, MessageRow>(
                "SELECT * FROM messages WHERE chat_id = $1 ORDER BY seq DESC LIMIT 1",
            )
            .bind(&c.id)
            .fetch_optional(self.pool())
            .await?;
            let last_message = match last {
                Some(r) => self.hydrate(vec![r]).await?.pop(),
                None => None,
            };
            // Above the read floor only (everything below it is read).
            let unread: i64 = sqlx::query(
                "SELECT COUNT(*) FROM messages m JOIN message_status s ON s.message_seq = m.seq AND s.user_id = $2 \
                 WHERE m.chat_id = $1 AND s.status != 'read' AND m.seq > \
                   COALESCE((SELECT read_floor FROM chat_members WHERE chat_id = $1 AND user_id = $2), 0)",
            )
            .bind(&c.id)
            .bind(user)
            .fetch_one(self.pool())
            .await?
            .get(0);
            out.push(ChatSummary {
                members: self.members(&c.id).await?,
                id: c.id,
                kind: c.kind,
                name: c.name,
                last_message,
                unread_count: unread,
            });
        }
        Ok(out)
    }

    /// How many chats `user` is a member of (limits).
    pub async fn chat_count(&self, user: &str) -> Result<i64, Error> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM chat_members WHERE user_id = $1")
                .bind(user)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Whether the direct chat between two users exists (limits: creating one counts).
    pub async fn direct_chat_exists(&self, a: &str, b: &str) -> Result<bool, Error> {
        Ok(sqlx::query("SELECT 1 FROM chats WHERE direct_key = $1")
            .bind(direct_key(a, b))
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }
}
