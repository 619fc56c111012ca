//! Group commit for messages: sends queue to one writer task, which stores
//! every send waiting at that moment in a single transaction. A commit then
//! costs once per batch instead of once per message; each sender still gets
//! its reply only after the commit that holds its message.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use sqlx::{AnyConnection, AnyPool, Row};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::chats::{members_json, parse_members};
use super::messages::NewMessage;
use super::{now_ms, Backend};
use crate::error::Error;

/// Whether a user has a connected socket right now.
pub type Online = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub(super) struct SendJob {
    pub msg: NewMessage,
    pub online: Online,
    pub reply: oneshot::Sender<Result<Stored, Error>>,
}

/// What the writer did with one message.
pub(super) enum Stored {
    New {
        seq: i64,
        created_at: i64,
        direct: bool,
        members: Vec<String>,
        status: HashMap<String, String>,
    },
    /// The id was already stored (an idempotent resend).
    Duplicate,
}

/// Most messages stored in one transaction.
const MAX_BATCH: usize = 256;
/// Sends that may wait for the writer before senders wait to enqueue.
const QUEUE: usize = 4096;

/// `limit`: longest a batch may take before its senders are told the
/// database is unreachable (a server that went silent; none for SQLite).
pub(super) fn spawn(
    writer: AnyPool,
    stop: watch::Receiver<bool>,
    limit: Option<std::time::Duration>,
) -> (mpsc::Sender<SendJob>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    (tx, tokio::spawn(run(writer, rx, stop, limit)))
}

/// Stores batches until `stop` turns true; then refuses new sends, stores
/// the ones already queued, and ends. A failed batch (a full disk, an I/O
/// error) fails its senders and the loop goes on with the next one.
async fn run(
    writer: AnyPool,
    mut rx: mpsc::Receiver<SendJob>,
    mut stop: watch::Receiver<bool>,
    limit: Option<std::time::Duration>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut closing = false;
    let mut full = false;
    loop {
        let first = tokio::select! {
            biased;
            job = rx.recv() => match job {
                Some(j) => j,
                None => break,
            },
            _ = stop.wait_for(|s| *s), if !closing => {
                closing = true;
                rx.close();
                continue;
            }
        };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        let results = match limit {
            None => store_batch(&writer, &batch).await,
            Some(limit) => match tokio::time::timeout(limit, store_batch(&writer, &batch)).await {
                Ok(r) => r,
                Err(_) => {
                    let e = Arc::new(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the database did not answer in time",
                    )));
                    batch.iter().map(|_| Err(Error::from_shared(&e))).collect()
                }
            },
        };
        let now_full = results.iter().any(|r| matches!(r, Err(Error::StorageFull)));
        if now_full != full {
            if now_full {
                tracing::warn!("storage full: messages are refused until space is freed");
            } else {
                tracing::info!("storage available again: messages are stored");
            }
            full = now_full;
        }
        for (job, result) in batch.drain(..).zip(results) {
            let _ = job.reply.send(result);
        }
    }
}

/// Stores a batch, again (at most [`CONFLICT_RETRIES`] times) when
/// PostgreSQL gave it up for a deadlock or a serialization failure with
/// another node's transaction: nothing of it was committed then.
async fn store_batch(writer: &AnyPool, batch: &[SendJob]) -> Vec<Result<Stored, Error>> {
    let mut tries = 0;
    loop {
        let out = store_batch_once(writer, batch).await;
        let conflict = out.iter().any(|r| match r {
            Err(Error::Database(e)) => {
                crate::error::sqlstate(e).is_some_and(|s| s.starts_with("40"))
            }
            _ => false,
        });
        if !conflict || tries == CONFLICT_RETRIES {
            return out;
        }
        tries += 1;
        tracing::debug!("message batch lost a conflict with another transaction; storing it again");
    }
}

/// Retries of a batch that lost a conflict.
const CONFLICT_RETRIES: usize = 2;

async fn store_batch_once(writer: &AnyPool, batch: &[SendJob]) -> Vec<Result<Stored, Error>> {
    let fail = |e: sqlx::Error| {
        let e = Arc::new(e);
        batch.iter().map(|_| Err(Error::from_shared(&e))).collect()
    };
    let mut tx = match writer.begin().await {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let out = match store_many(&mut tx, batch).await {
        Ok(stored) => stored.into_iter().map(Ok).collect(),
        // SQLite may have rolled the whole transaction back on its own
        // (later statements would then commit one by one), or the database
        // is gone: nothing of this batch may be committed.
        Err(e) if ends_transaction(&e) => return fail(e),
        // One message broke a constraint. PostgreSQL refuses everything
        // after that in this transaction, and SQLite keeps what the
        // statements before the failed one did: start again, each message
        // under a savepoint of its own, so that only the bad one is refused.
        Err(_) => {
            if let Err(e) = tx.rollback().await {
                return fail(e);
            }
            tx = match writer.begin().await {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let mut out = Vec::with_capacity(batch.len());
            for job in batch {
                let mut one = match sqlx::Acquire::begin(&mut *tx).await {
                    Ok(sp) => sp,
                    Err(e) => return fail(e),
                };
                match store_many(&mut one, std::slice::from_ref(job)).await {
                    Ok(stored) => {
                        if let Err(e) = one.commit().await {
                            return fail(e);
                        }
                        out.extend(stored.into_iter().map(Ok));
                    }
                    Err(e) if ends_transaction(&e) => return fail(e),
                    Err(e) => {
                        if let Err(e) = one.rollback().await {
                            return fail(e);
                        }
                        out.push(Err(e.into()));
                    }
                }
            }
            out
        }
    };
    match tx.commit().await {
        Ok(()) => out,
        Err(e) => fail(e),
    }
}

/// Stores a whole batch in three statements, whatever its size: the
/// messages (one multi-row insert), their chats' members (a row per chat),
/// and every recipient's pending status. Each statement is a hand-off to the
/// connection's thread and back; per message, that was four of them.
async fn store_many(
    conn: &mut AnyConnection,
    batch: &[SendJob],
) -> Result<Vec<Stored>, sqlx::Error> {
    let now = now_ms();
    let mut sql = String::from(
        "INSERT INTO messages (id, chat_id, sender_id, content, content_type, reply_to, attachment_id, created_at) VALUES ",
    );
    let mut marks = Marks::for_conn(conn);
    for i in 0..batch.len() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        marks.list(&mut sql, 8);
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT(id) DO NOTHING RETURNING seq, id");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for job in batch {
        let m = &job.msg;
        q = q
            .bind(&m.id)
            .bind(&m.chat_id)
            .bind(&m.sender)
            .bind(&m.content)
            .bind(&m.content_type)
            .bind(&m.reply_to)
            .bind(&m.attachment_id)
            .bind(now);
    }
    let inserted: HashMap<String, i64> = q
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .map(|r| (r.get::<String, _>(1), r.get::<i64, _>(0)))
        .collect();
    // The first job with an id owns the row; a resend (even in this batch)
    // is a duplicate.
    let mut seqs: Vec<Option<i64>> = Vec::with_capacity(batch.len());
    let mut taken = std::collections::HashSet::new();
    for job in batch {
        let seq = inserted.get(&job.msg.id).copied();
        seqs.push(seq.filter(|_| taken.insert(job.msg.id.as_str())));
    }
    let new: Vec<i64> = seqs.iter().flatten().copied().collect();
    if new.is_empty() {
        return Ok(batch.iter().map(|_| Stored::Duplicate).collect());
    }

    // chat id -> new messages to it in this batch: the last one takes the
    // members read, the others copy them.
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for (job, _) in batch.iter().zip(&seqs).filter(|(_, s)| s.is_some()) {
        *uses.entry(job.msg.chat_id.as_str()).or_default() += 1;
    }
    let chats: Vec<&str> = uses.keys().copied().collect();
    let mut sql = format!(
        "SELECT c.id, c.type, {} FROM chats c WHERE c.id IN (",
        members_json(Backend::of(conn))
    );
    let mut marks = Marks::for_conn(conn);
    marks.list(&mut sql, chats.len());
    sql.push(')');
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for c in &chats {
        q = q.bind(*c);
    }
    // chat id -> (direct, members in id order)
    let mut members: HashMap<String, (bool, Vec<String>)> = HashMap::new();
    for r in q.fetch_all(&mut *conn).await? {
        let list = parse_members(&r.get::<String, _>(2))?;
        members.insert(
            r.get::<String, _>(0),
            (r.get::<String, _>(1) == "direct", list),
        );
    }

    let mut sql = String::from(
        "INSERT INTO message_status (message_seq, user_id, status, updated_at) SELECT m.seq, cm.user_id, 'sent', ",
    );
    let mut marks = Marks::for_conn(conn);
    marks.list(&mut sql, 1);
    sql.push_str(
        " FROM messages m JOIN chat_members cm ON cm.chat_id = m.chat_id WHERE m.seq IN (",
    );
    marks.list(&mut sql, new.len());
    sql.push_str(") AND cm.user_id <> m.sender_id");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
    for s in &new {
        q = q.bind(*s);
    }
    q.execute(&mut *conn).await?;

    let mut out = Vec::with_capacity(batch.len());
    for (job, seq) in batch.iter().zip(seqs) {
        let Some(seq) = seq else {
            out.push(Stored::Duplicate);
            continue;
        };
        let chat = job.msg.chat_id.as_str();
        let left = uses.get_mut(chat).map(|n| {
            *n -= 1;
            *n
        });
        let (direct, list) = match left {
            Some(0) => members.remove(chat),
            _ => members.get(chat).cloned(),
        }
        .unwrap_or_default();
        let status = statuses(conn, seq, &list, &job.msg.sender, &job.online).await?;
        out.push(Stored::New {
            seq,
            created_at: now,
            direct,
            members: list,
            status,
        });
    }
    Ok(out)
}

/// Each recipient's status of a just-stored message (its pending rows are
/// written): `delivered` for those `online` says are connected (their rows
/// updated), `sent` for the others.
async fn statuses(
    conn: &mut AnyConnection,
    seq: i64,
    members: &[String],
    sender: &str,
    online: &Online,
) -> Result<HashMap<String, String>, sqlx::Error> {
    let mut status = HashMap::new();
    for u in members.iter().filter(|u| *u != sender) {
        let st = if online(u) { "delivered" } else { "sent" };
        if st == "delivered" {
            sqlx::query(
                "UPDATE message_status SET status = 'delivered' WHERE message_seq = $1 AND user_id = $2",
            )
            .bind(seq)
            .bind(u)
            .execute(&mut *conn)
            .await?;
        }
        status.insert(u.clone(), st.to_string());
    }
    Ok(status)
}

/// Bind markers for a statement built at run time, in the order values are
/// bound. SQLite gets anonymous `?`s: it finds a numbered `$N` by name in a
/// list, once per value bound, which made the 2,048-value insert of a full
/// batch quadratic (~12 % of the node's CPU at saturation). PostgreSQL reads
/// only `$N`.
pub(super) struct Marks {
    numbered: bool,
    next: usize,
}

impl Marks {
    /// Markers for `conn`'s database, starting from the first value.
    pub(super) fn for_conn(conn: &AnyConnection) -> Marks {
        Marks {
            numbered: Backend::of(conn) == Backend::Postgres,
            next: 1,
        }
    }

    /// Appends `n` markers separated by commas.
    pub(super) fn list(&mut self, sql: &mut String, n: usize) {
        for i in 0..n {
            if i > 0 {
                sql.push_str(", ");
            }
            if self.numbered {
                let _ = write!(sql, "${}", self.next);
            } else {
                sql.push('?');
            }
            self.next += 1;
        }
    }
}

/// Whether the transaction cannot go on after this error: on SQLite,
/// `SQLITE_FULL`, `SQLITE_IOERR`, `SQLITE_BUSY` or `SQLITE_NOMEM` (SQLite may
/// have rolled it back on its own); on PostgreSQL, anything but a refused
/// row (SQLSTATE classes 22 and 23: bad data, a broken constraint); and a
/// lost connection on either.
fn ends_transaction(e: &sqlx::Error) -> bool {
    if let Some(code) = crate::error::sqlite_code(e) {
        return matches!(code, 13 | 10 | 5 | 7);
    }
    match crate::error::sqlstate(e) {
        Some(state) => !(state.starts_with("22") || state.starts_with("23")),
        None => !matches!(e, sqlx::Error::Database(_)),
    }
}
