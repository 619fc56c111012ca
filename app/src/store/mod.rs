//! The SQLite store (WAL, migrations embedded in the binary). Every SQL
//! statement of the node lives under this module: accounts here, chats and
//! messages in `messages`, calls, meetings, push subscriptions and the webhook
//! queue in their own files. One `Store` per node; it is cheap to clone.

mod batch;
mod calls;
mod meetings;
mod messages;
mod push;
mod webhooks;

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

pub use batch::Online;
pub use calls::{Call, CallTransition, NewCall};
pub use meetings::{MeetingRecord, NewMeeting, Role};
pub use messages::{
    iso8601, Attachment, ChatSummary, HistoryPage, Message, NewMessage, Reaction, SendOutcome,
};
pub use push::StoredSubscription;
pub use webhooks::SqliteWebhookQueue;

use crate::error::{Error, Missing};

/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Handle to the database.
#[derive(Clone)]
pub struct Store {
    /// Readers.
    pool: SqlitePool,
    /// The one writer connection: writes queue here instead of spinning in
    /// SQLite's busy handler against each other.
    writer: SqlitePool,
    /// The group-commit queue for messages (owned by a task on `writer`).
    sends: tokio::sync::mpsc::Sender<batch::SendJob>,
}

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, FromRow, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub username: String,
    pub name: String,
    pub avatar: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    #[serde(skip)]
    pub created_at: i64,
}

/// Unix milliseconds now: the store's timestamps.
pub fn now_ms() -> i64 {
    nodo_signaling::auth::unix_now_ms()
}

impl Store {
    /// Opens (creating if needed) `<dir>/nodo.db` and runs the migrations.
    pub async fn open(dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: "creating the data dir",
            source,
        })?;
        // WAL with synchronous=NORMAL: a commit survives a crash of the process
        // (SIGKILL); only a power loss can take the last transactions.
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("nodo.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // The writer never checkpoints itself (its fsync would stall sends);
        // a background task checkpoints on its own connection instead.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            loop {
                tick.tick().await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&checkpointer)
                    .await
                {
                    tracing::warn!("WAL checkpoint: {e}");
                }
            }
        });
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        let sends = batch::spawn(writer.clone());
        Ok(Store {
            pool,
            writer,
            sends,
        })
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub(crate) fn writer(&self) -> &SqlitePool {
        &self.writer
    }

    fn sends(&self) -> &tokio::sync::mpsc::Sender<batch::SendJob> {
        &self.sends
    }

    /// Creates an account; `Conflict` when the id or username is taken.
    pub async fn create_user(
        &self,
        id: &str,
        username: &str,
        name: &str,
        password_hash: Option<&str>,
    ) -> Result<User, Error> {
        let r = sqlx::query(
            "INSERT INTO users (id, username, name, avatar, password_hash, created_at) VALUES (?, ?, ?, '', ?, ?)",
        )
        .bind(id)
        .bind(username)
        .bind(name)
        .bind(password_hash)
        .bind(now_ms())
        .execute(&self.writer)
        .await;
        match r {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::UsernameTaken);
            }
            Err(e) => return Err(e.into()),
        }
        self.user(id).await?.ok_or(Error::Vanished("user"))
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>, Error> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, Error> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users WHERE username = ?")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The user for a valid token's identity, created on first sight (app-managed login).
    pub async fn ensure_user(&self, identity: &str, name: &str) -> Result<(User, bool), Error> {
        if let Some(u) = self.user(identity).await? {
            return Ok((u, false));
        }
        sqlx::query(
            "INSERT INTO users (id, username, name, avatar, password_hash, created_at) VALUES (?, ?, ?, '', NULL, ?) ON CONFLICT DO NOTHING",
        )
        .bind(identity)
        .bind(identity)
        .bind(name)
        .bind(now_ms())
        .execute(&self.writer)
        .await?;
        let u = self.user(identity).await?.ok_or(Error::IdentityTaken)?;
        Ok((u, true))
    }

    pub async fn users(&self) -> Result<Vec<User>, Error> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users ORDER BY username")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn update_profile(
        &self,
        id: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> Result<User, Error> {
        sqlx::query(
            "UPDATE users SET name = COALESCE(?, name), avatar = COALESCE(?, avatar) WHERE id = ?",
        )
        .bind(name)
        .bind(avatar)
        .bind(id)
        .execute(&self.writer)
        .await?;
        self.user(id)
            .await?
            .ok_or_else(|| Error::NotFound(Missing::User(id.to_string())))
    }
}
