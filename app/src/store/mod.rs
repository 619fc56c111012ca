//! The SQLite store (WAL, every commit fsynced, the log kept bounded by
//! `wal`; migrations embedded in the binary). Every SQL statement of the node
//! lives under this module: accounts here, chats and messages in `messages`,
//! calls, meetings, push subscriptions and the webhook queue in their own
//! files. One `Store` per node; it is cheap to clone.

mod batch;
mod calls;
mod chats;
mod delivery;
mod files;
mod meetings;
mod messages;
mod nodes;
mod push;
mod users;
mod wal;
mod webhooks;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use batch::Online;
pub use calls::{Call, CallTransition, NewCall};
pub use chats::ChatSummary;
pub use delivery::Confirmed;
pub use meetings::{MeetingRecord, NewMeeting, Role};
pub use messages::{iso8601, Attachment, HistoryPage, Message, NewMessage, Reaction, SendOutcome};
pub use nodes::{BusListener, NodeJoin, BUS_CHANNEL};
pub use push::StoredSubscription;
pub use users::{AppUser, User};
pub use webhooks::StoreWebhookQueue;

use crate::error::Error;

/// How the store keeps its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Bound on `nodo.db-wal`, in bytes. The writer checkpoints and restarts
    /// the log once it passes half of this, so it stays under the bound (by
    /// at most one transaction, while a reader delays the restart).
    pub wal_limit: u64,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            wal_limit: wal::DEFAULT_LIMIT,
        }
    }
}

/// The settings the store's writer runs with, as SQLite reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Durability {
    /// `wal`.
    pub journal_mode: String,
    /// SQLite's number: 2 is FULL (every commit fsynced), 1 NORMAL.
    pub synchronous: i64,
    /// The size (bytes) a restarted log is cut back to.
    pub journal_size_limit: i64,
    /// The bound on the log (bytes).
    pub wal_limit: u64,
}

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `<data_dir>/nodo.db`, the default.
    Sqlite,
    /// A PostgreSQL database (`--database-url`), which several nodes share.
    Postgres,
}

impl Backend {
    /// The database `conn` is open on.
    pub(crate) fn of(conn: &AnyConnection) -> Backend {
        if conn.backend_name() == "SQLite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

/// Connections a node keeps to PostgreSQL.
const PG_CONNECTIONS: u32 = 16;
/// Longest a batch of messages may take on PostgreSQL before its senders
/// hear the database is unreachable (a server that went silent without
/// closing its connections).
const PG_BATCH_LIMIT: Duration = Duration::from_secs(20);

/// Handle to the database.
#[derive(Clone)]
pub struct Store {
    /// Readers.
    pool: AnyPool,
    /// Writes. On SQLite, the one writer connection: writes queue here
    /// instead of spinning in SQLite's busy handler against each other. On
    /// PostgreSQL, the same pool as `pool`.
    writer: AnyPool,
    backend: Backend,
    /// The group-commit queue for messages (owned by a task on `writer`).
    sends: tokio::sync::mpsc::Sender<batch::SendJob>,
    /// The background tasks, stopped by [`Store::close`].
    tasks: Arc<Tasks>,
    /// The log bound (SQLite only).
    wal: Option<wal::WalBound>,
    options: StoreOptions,
    /// What every message would otherwise read again (see `Caches`).
    caches: Arc<Caches>,
    /// The database URL (PostgreSQL only): the bus listens on a connection
    /// of its own (see `nodes`).
    url: Option<Arc<str>>,
}

/// Facts the send path reads for every message, kept in memory. Each is
/// either immutable once true (a direct chat's id: chats and users are
/// never deleted) or changed only through this store, which updates the
/// cache in the same call (a user's name and picture). A database shared
/// with other nodes can change under the second kind, so there only the
/// first is kept.
struct Caches {
    /// `direct_key` -> chat id.
    direct: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// user id -> (name, avatar); `None` when the database is shared.
    profiles: Option<std::sync::Mutex<std::collections::HashMap<String, (String, String)>>>,
}

impl Caches {
    fn new(sole_writer: bool) -> Caches {
        Caches {
            direct: Default::default(),
            profiles: sole_writer.then(Default::default),
        }
    }
}

/// Entries a cache holds before it is emptied and refilled from the database.
const CACHE_ENTRIES: usize = 65_536;

fn cache_put<V>(map: &std::sync::Mutex<std::collections::HashMap<String, V>>, k: String, v: V) {
    let mut m = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if m.len() >= CACHE_ENTRIES {
        m.clear();
    }
    m.insert(k, v);
}

fn cache_get<V: Clone>(
    map: &std::sync::Mutex<std::collections::HashMap<String, V>>,
    k: &str,
) -> Option<V> {
    map.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get(k)
        .cloned()
}

/// The store's tasks and their stop signal.
struct Tasks {
    stop: watch::Sender<bool>,
    handles: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Unix milliseconds now: the store's timestamps.
pub fn now_ms() -> i64 {
    nodo_signaling::auth::unix_now_ms()
}

impl Store {
    /// Opens (creating if needed) `<dir>/nodo.db` and runs the migrations.
    pub async fn open(dir: &Path) -> Result<Store, Error> {
        Store::open_with(dir, StoreOptions::default()).await
    }

    /// [`Store::open`] with explicit options.
    pub async fn open_with(dir: &Path, options: StoreOptions) -> Result<Store, Error> {
        install_drivers();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: "creating the data dir",
            source,
        })?;
        let db = dir.join("nodo.db");
        // `to_url_lossy` percent-encodes the path; `mode=rwc` creates the file.
        let url = SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true)
            .to_url_lossy();
        let read_url = SqliteConnectOptions::new()
            .filename(&db)
            .read_only(true)
            .to_url_lossy();
        let wal = wal::WalBound::new(&db, options.wal_limit);
        let size_limit = wal::WalBound::journal_size_limit(options.wal_limit);
        // The writer never checkpoints on commit (SQLite's autocheckpoint);
        // it restarts the log when it passes its threshold (wal.rs).
        let bound = wal.clone();
        let writer = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                Box::pin(async move { sqlite_pragmas(conn, size_limit, Some(0)).await })
            })
            .after_release(move |conn, _| {
                let bound = bound.clone();
                Box::pin(async move { bound.after_release(conn).await })
            })
            .connect_with(AnyConnectOptions::from_url(&url)?)
            .await?;
        sqlx::migrate!("./migrations").run(&writer).await?;
        let checkpointer = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(move |conn, _| {
                Box::pin(async move { sqlite_pragmas(conn, size_limit, None).await })
            })
            .connect_with(AnyConnectOptions::from_url(&url)?)
            .await?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql("PRAGMA busy_timeout = 5000")
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect_with(AnyConnectOptions::from_url(&read_url)?)
            .await?;
        let (stop, stopped) = watch::channel(false);
        let (sends, batch_task) = batch::spawn(writer.clone(), stopped.clone(), None);
        let checkpoints = tokio::spawn(wal::background(checkpointer, writer.clone(), stopped));
        Ok(Store {
            pool,
            writer,
            backend: Backend::Sqlite,
            sends,
            tasks: Arc::new(Tasks {
                stop,
                handles: std::sync::Mutex::new(vec![batch_task, checkpoints]),
            }),
            wal: Some(wal),
            options,
            caches: Arc::new(Caches::new(true)),
            url: None,
        })
    }

    /// Opens the store on the PostgreSQL database at `url`
    /// (`postgres://user:password@host/db`) and runs its migrations. Several
    /// nodes may share it: whatever one node caches another could change is
    /// read from the database instead.
    pub async fn open_postgres(url: &str, options: StoreOptions) -> Result<Store, Error> {
        install_drivers();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(Error::invalid(
                "the database URL must start with postgres:// or postgresql://",
            ));
        }
        // Migrations run on a connection of their own: the PostgreSQL driver
        // takes an advisory lock, so nodes starting together migrate once.
        let mut conn = PgConnection::connect(url).await?;
        sqlx::migrate!("./migrations-pg").run(&mut conn).await?;
        conn.close().await?;
        let pool = AnyPoolOptions::new()
            .max_connections(PG_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(5))
            // A statement or an open transaction never holds rows forever
            // (a node that hung mid-transaction, a runaway query).
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::raw_sql(
                        "SET statement_timeout = 15000; SET idle_in_transaction_session_timeout = 60000",
                    )
                    .execute(conn)
                    .await
                    .map(drop)
                })
            })
            .connect_with(AnyConnectOptions::from_url(&url.parse().map_err(
                |_| Error::invalid("the database URL is not a valid URL"),
            )?)?)
            .await?;
        let (stop, stopped) = watch::channel(false);
        let (sends, batch_task) = batch::spawn(pool.clone(), stopped, Some(PG_BATCH_LIMIT));
        Ok(Store {
            pool: pool.clone(),
            writer: pool,
            backend: Backend::Postgres,
            sends,
            tasks: Arc::new(Tasks {
                stop,
                handles: std::sync::Mutex::new(vec![batch_task]),
            }),
            wal: None,
            options,
            caches: Arc::new(Caches::new(false)),
            url: Some(url.into()),
        })
    }

    /// The database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (PostgreSQL can be lost while the node
    /// runs; a local SQLite file cannot).
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::raw_sql("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// The settings the writer runs with (journal mode, fsync level, log
    /// bound); `None` on PostgreSQL, whose server owns them.
    pub async fn durability(&self) -> Result<Option<Durability>, Error> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let mut conn = self.writer.acquire().await?;
        let journal_mode = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut *conn)
            .await?;
        let synchronous = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *conn)
            .await?;
        let journal_size_limit = sqlx::query_scalar("PRAGMA journal_size_limit")
            .fetch_one(&mut *conn)
            .await?;
        Ok(Some(Durability {
            journal_mode,
            synchronous,
            journal_size_limit,
            wal_limit: self.options.wal_limit,
        }))
    }

    /// Messages waiting for the group-commit writer.
    pub fn send_queue_depth(&self) -> usize {
        self.sends.max_capacity() - self.sends.capacity()
    }

    /// The size of `nodo.db-wal` now, in bytes (0 when there is none, and
    /// on PostgreSQL).
    pub fn wal_size(&self) -> u64 {
        self.wal.as_ref().map_or(0, wal::WalBound::size)
    }

    /// Closes the store for a clean shutdown: queued messages are committed,
    /// later sends are refused ([`Error::ShuttingDown`]), the log is
    /// checkpointed into the database and removed, and every connection is
    /// closed. Other clones of the store fail from here on.
    pub async fn close(&self) {
        let _ = self.tasks.stop.send(true);
        let handles = std::mem::take(
            &mut *self
                .tasks
                .handles
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for h in handles {
            if let Err(e) = h.await {
                tracing::warn!("store task: {e}");
            }
        }
        self.pool.close().await;
        if self.backend != Backend::Sqlite {
            self.writer.close().await;
            return;
        }
        // The writer closes last: the last connection to close removes the log.
        match self.writer.acquire().await {
            Ok(mut conn) => match wal::checkpoint(&mut conn, wal::Mode::Truncate).await {
                Ok(c) if c.busy => tracing::warn!("closing the store: the log is still in use"),
                Ok(_) => {}
                Err(e) => tracing::warn!("closing the store: final checkpoint: {e}"),
            },
            Err(e) => tracing::debug!("closing the store: {e}"),
        }
        self.writer.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub(crate) fn writer(&self) -> &AnyPool {
        &self.writer
    }

    fn sends(&self) -> &tokio::sync::mpsc::Sender<batch::SendJob> {
        &self.sends
    }
}

/// Registers the SQLite and PostgreSQL drivers with sqlx's `Any` (once per
/// process; later calls do nothing).
fn install_drivers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        sqlx::any::install_drivers(&[sqlx::sqlite::any::DRIVER, sqlx::postgres::any::DRIVER])
            .expect("sqlx drivers are installed once");
    });
}

/// The settings every SQLite connection runs with. WAL with
/// synchronous=FULL: every commit is fsynced before a sender gets its ack,
/// so an acknowledged message survives a power loss, not only a crash of the
/// process. Group commit (batch.rs) pays one fsync per batch of messages.
/// `autocheckpoint` 0 leaves checkpoints to the log bound (wal.rs).
async fn sqlite_pragmas(
    conn: &mut AnyConnection,
    journal_size_limit: u64,
    autocheckpoint: Option<u32>,
) -> Result<(), sqlx::Error> {
    let mut sql = format!(
        "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
         PRAGMA foreign_keys = ON; PRAGMA journal_size_limit = {journal_size_limit};"
    );
    if let Some(n) = autocheckpoint {
        // The writer. Its statement journals (SQLite keeps one for a
        // statement that changes several rows inside a transaction, to undo
        // that statement alone) spill to a temporary file past 64 KiB, and a
        // batch's inserts pass that: the writes to it were ~7 % of the node's
        // CPU at saturation. In memory, each is freed when its statement
        // ends; it holds only pages that existed before the statement and
        // that it changed (pages it appends are not journaled).
        sql.push_str(&format!(
            " PRAGMA wal_autocheckpoint = {n}; PRAGMA temp_store = MEMORY;"
        ));
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(conn)
        .await?;
    Ok(())
}
