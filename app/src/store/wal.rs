//! Keeping the write-ahead log bounded.
//!
//! SQLite appends every commit to `nodo.db-wal` and only writes from its
//! start again once a checkpoint has copied the whole log into the database
//! and no reader still reads from it. Under steady load a PASSIVE checkpoint
//! never gets there, so the log grew without end (8.7 GB in two minutes at
//! 9,000 messages/s). Three things bound it:
//!
//! - The writer, whenever its connection is released, checks the log's size;
//!   past half the bound it runs `wal_checkpoint(RESTART)` itself. Writes wait
//!   meanwhile (they share that one connection), so the log cannot grow while
//!   the checkpoint waits for readers; the next commit then writes from the
//!   log's start, and `journal_size_limit` (half the bound) cuts the file
//!   back to the threshold.
//! - A background task checkpoints PASSIVE every second on a connection of
//!   its own, so the writer's checkpoints find most pages already copied; when
//!   nothing was written for a whole tick it truncates the log to zero bytes.
//! - [`super::Store::close`] truncates the log and closes the writer last,
//!   which removes the file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AnyConnection as SqliteConnection, AnyPool as SqlitePool, Connection, Row};
use tokio::sync::watch;

/// The default bound on `nodo.db-wal`.
pub const DEFAULT_LIMIT: u64 = 64 << 20;

/// How often the background task checkpoints.
const TICK: Duration = Duration::from_secs(1);

/// The log's size rule, shared by the writer's pool and the background task.
#[derive(Debug, Clone)]
pub(super) struct WalBound {
    /// `<dir>/nodo.db-wal`.
    path: PathBuf,
    /// The log size (bytes) past which the writer restarts the log.
    restart_at: u64,
    /// The last restart failed (a full disk fails them all: logged once).
    failing: Arc<AtomicBool>,
}

/// What `PRAGMA wal_checkpoint` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checkpoint {
    /// Readers (or another checkpoint) kept it from finishing.
    pub busy: bool,
    /// Frames in the log.
    pub log: i64,
    /// Frames of the log copied into the database.
    pub copied: i64,
}

/// A checkpoint mode (SQLite's names).
#[derive(Debug, Clone, Copy)]
pub(super) enum Mode {
    /// Copy what no reader needs; never waits.
    Passive,
    /// Copy everything, then wait until no reader uses the log, so the next
    /// commit writes from its start.
    Restart,
    /// Restart, and truncate the file to zero bytes.
    Truncate,
}

impl Mode {
    fn sql(self) -> &'static str {
        match self {
            Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
            Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
            Mode::Truncate => "PRAGMA wal_checkpoint(TRUNCATE)",
        }
    }
}

/// Runs a checkpoint on `conn`.
pub(super) async fn checkpoint(
    conn: &mut SqliteConnection,
    mode: Mode,
) -> Result<Checkpoint, sqlx::Error> {
    let row = sqlx::query(mode.sql()).fetch_one(conn).await?;
    Ok(Checkpoint {
        busy: row.try_get::<i64, _>(0)? != 0,
        log: row.try_get(1)?,
        copied: row.try_get(2)?,
    })
}

impl WalBound {
    /// The rule for the database at `db` and a bound of `limit` bytes.
    pub fn new(db: &Path, limit: u64) -> WalBound {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        WalBound {
            path: path.into(),
            restart_at: limit / 2,
            failing: Arc::default(),
        }
    }

    /// `journal_size_limit` for a bound of `limit` bytes: the size a
    /// restarted log is cut back to, the restart threshold itself. The file
    /// then keeps its size from one restart to the next, and commits
    /// overwrite it in place (an fsync that also has to record a grown file
    /// costs more); only frames past the threshold grow it, which is the
    /// writer's cue to restart.
    pub fn journal_size_limit(limit: u64) -> u64 {
        limit / 2
    }

    /// The log file's size now (0 if there is none).
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Run each time the writer's connection goes back to its pool: `false`
    /// drops the connection. A transaction left open means a COMMIT failed
    /// after SQLite had already rolled it back on its own (a full disk does
    /// that), so the driver's idea of the connection is wrong: a fresh one
    /// replaces it. Otherwise, past the threshold, the log is restarted.
    pub async fn after_release(&self, conn: &mut SqliteConnection) -> Result<bool, sqlx::Error> {
        // Waits for a rollback the dropped transaction queued.
        conn.ping().await?;
        if conn.is_in_transaction() {
            tracing::debug!("store: a failed commit left the writer mid-transaction; reconnecting");
            return Ok(false);
        }
        if self.size() > self.restart_at {
            let r = checkpoint(conn, Mode::Restart).await;
            let failed = r.is_err();
            match r {
                Ok(c) if c.busy => {
                    tracing::debug!("WAL restart deferred: a reader still uses the log")
                }
                Ok(_) => {}
                Err(e) if !self.failing.load(Ordering::Relaxed) => {
                    tracing::warn!("WAL restart checkpoint: {e}")
                }
                Err(_) => {}
            }
            if self.failing.swap(failed, Ordering::Relaxed) && !failed {
                tracing::info!("WAL restart checkpoints work again");
            }
        }
        Ok(true)
    }
}

/// The background checkpoints: PASSIVE every tick on `checkpointer`, and a
/// TRUNCATE on the writer once a tick passed without writes. Ends when `stop`
/// turns true (or its sender is gone), closing `checkpointer`.
pub(super) async fn background(
    checkpointer: SqlitePool,
    writer: SqlitePool,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_log = 0;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let c = match checkpointer.acquire().await {
            Ok(mut conn) => checkpoint(&mut conn, Mode::Passive).await,
            Err(e) => Err(e),
        };
        let c = match c {
            Ok(c) => {
                if failing {
                    tracing::info!("WAL checkpoint works again");
                    failing = false;
                }
                c
            }
            Err(e) => {
                // A full disk fails every tick: say it once.
                if !failing {
                    tracing::warn!("WAL checkpoint: {e}");
                    failing = true;
                }
                continue;
            }
        };
        let quiet = c.log > 0 && c.log == c.copied && c.log == last_log && !c.busy;
        last_log = c.log;
        if quiet {
            if let Ok(mut conn) = writer.acquire().await {
                match checkpoint(&mut conn, Mode::Truncate).await {
                    Ok(t) if !t.busy => last_log = 0,
                    Ok(_) => {}
                    Err(e) => tracing::debug!("WAL truncate: {e}"),
                }
            }
        }
    }
    checkpointer.close().await;
}
