//! The SQLite store (WAL, migrations embedded in the binary). Every SQL
//! statement of the node lives under this module: accounts here, chats and
//! messages in `messages`, calls, meetings, push subscriptions and the webhook
//! queue in their own files. One `Store` per node; it is cheap to clone.

mod batch;
mod calls;
mod meetings;
mod messages;
mod push;
mod users;
mod webhooks;

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use batch::Online;
pub use calls::{Call, CallTransition, NewCall};
pub use meetings::{MeetingRecord, NewMeeting, Role};
pub use messages::{
    iso8601, Attachment, ChatSummary, HistoryPage, Message, NewMessage, Reaction, SendOutcome,
};
pub use push::StoredSubscription;
pub use users::{AppUser, User};
pub use webhooks::SqliteWebhookQueue;

use crate::error::Error;

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
}
