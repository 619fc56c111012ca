//! Nodes that share a PostgreSQL database without Redis: who is alive (the
//! `nodes` table, a heartbeat on the database's clock) and the events they
//! tell each other (LISTEN/NOTIFY on one channel). With Redis the cluster's
//! registry and pub/sub do both (the node binary's `cluster` and `bus`).
//!
//! A notification carries at most 8,000 bytes: a larger event is kept in
//! `bus_payloads` and its notification names the row (`@<id>`). Rows are
//! pruned once every node had time to read them.

use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::Row;

use super::batch::Marks;
use super::Store;
use crate::error::Error;

/// The notification channel every node listens on.
pub const BUS_CHANNEL: &str = "nodo_bus";

/// Largest event sent inline; PostgreSQL refuses a payload of 8,000 bytes
/// or more.
const INLINE_MAX: usize = 7_900;

/// How long a large event's row is kept for the nodes to read it.
const PAYLOAD_KEPT: Duration = Duration::from_secs(300);

/// Whether node `id` could take its entry in the `nodes` table.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeJoin {
    /// Joined; the other nodes alive then.
    Joined(Vec<String>),
    /// A live node (`holder`) has this id.
    Taken { holder: String },
}

impl Store {
    /// Takes node `id`'s entry for `holder` (what tells this process apart,
    /// e.g. host and address), unless a different holder renewed it within
    /// `ttl`. Answers the other nodes alive.
    pub async fn node_join(
        &self,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<NodeJoin, Error> {
        let taken: Option<String> = sqlx::query_scalar(
            "INSERT INTO nodes (id, holder, seen_at) VALUES ($1, $2, now()) \
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, seen_at = now() \
             WHERE nodes.holder = excluded.holder \
                OR nodes.seen_at < now() - make_interval(secs => $3) \
             RETURNING id",
        )
        .bind(id)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(self.writer())
        .await?;
        if taken.is_none() {
            let holder: Option<String> =
                sqlx::query_scalar("SELECT holder FROM nodes WHERE id = $1")
                    .bind(id)
                    .fetch_optional(self.pool())
                    .await?;
            return Ok(NodeJoin::Taken {
                holder: holder.unwrap_or_default(),
            });
        }
        Ok(NodeJoin::Joined(self.live_nodes(id, ttl).await?))
    }

    /// Renews node `id`'s entry (taking it back if it lapsed and nobody took
    /// it) and answers the other nodes alive. `Ok(None)`: another holder has
    /// the id now.
    pub async fn node_beat(
        &self,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Vec<String>>, Error> {
        match self.node_join(id, holder, ttl).await? {
            NodeJoin::Joined(live) => Ok(Some(live)),
            NodeJoin::Taken { .. } => Ok(None),
        }
    }

    /// The nodes other than `id` that renewed their entry within `ttl`.
    async fn live_nodes(&self, id: &str, ttl: Duration) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM nodes WHERE id <> $1 \
             AND seen_at >= now() - make_interval(secs => $2) ORDER BY id",
        )
        .bind(id)
        .bind(ttl.as_secs_f64())
        .fetch_all(self.pool())
        .await?)
    }

    /// Node `id` leaves (a clean shutdown): the others stop counting it at
    /// their next heartbeat.
    pub async fn node_leave(&self, id: &str, holder: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM nodes WHERE id = $1 AND holder = $2")
            .bind(id)
            .bind(holder)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Sends `events` to every listening node, in order, in one transaction
    /// (delivered when it commits). Each must differ from the others in the
    /// batch: PostgreSQL folds identical notifications of one transaction.
    pub async fn bus_publish(&self, events: &[String]) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer().begin().await?;
        let mut payloads = Vec::with_capacity(events.len());
        for event in events {
            if event.len() <= INLINE_MAX {
                payloads.push(event.clone());
                continue;
            }
            let id: i64 =
                sqlx::query_scalar("INSERT INTO bus_payloads (body) VALUES ($1) RETURNING id")
                    .bind(event)
                    .fetch_one(&mut *tx)
                    .await?;
            payloads.push(format!("@{id}"));
        }
        // One statement, its notifications in the order of its columns.
        let mut sql = String::from("SELECT ");
        let mut marks = Marks::for_conn(&tx);
        for i in 0..payloads.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str("pg_notify('");
            sql.push_str(BUS_CHANNEL);
            sql.push_str("', ");
            marks.list(&mut sql, 1);
            sql.push(')');
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in &payloads {
            q = q.bind(p);
        }
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The event a notification stands for: itself, or the row `@<id>`
    /// names. `None`: the row is gone (pruned).
    pub async fn bus_event(&self, payload: String) -> Result<Option<String>, Error> {
        let Some(id) = payload.strip_prefix('@') else {
            return Ok(Some(payload));
        };
        let Ok(id) = id.parse::<i64>() else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT body FROM bus_payloads WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.get::<String, _>(0)))
    }

    /// Drops the large events every node had time to read.
    pub async fn bus_prune(&self) -> Result<u64, Error> {
        Ok(sqlx::query(
            "DELETE FROM bus_payloads \
             WHERE created_at < now() - make_interval(secs => $1)",
        )
        .bind(PAYLOAD_KEPT.as_secs_f64())
        .execute(self.writer())
        .await?
        .rows_affected())
    }

    /// A connection listening on [`BUS_CHANNEL`] (PostgreSQL only).
    pub async fn bus_listener(&self) -> Result<BusListener, Error> {
        let Some(url) = self.url.as_deref() else {
            return Err(Error::invalid("the bus over the database needs PostgreSQL"));
        };
        let mut listener = PgListener::connect(url).await?;
        listener.listen(BUS_CHANNEL).await?;
        Ok(BusListener { inner: listener })
    }
}

/// This node's subscription to the bus.
pub struct BusListener {
    inner: PgListener,
}

impl BusListener {
    /// The next notification's payload. `Ok(None)`: the connection was lost
    /// and sqlx made it again (listening again); what was sent meanwhile is
    /// lost.
    pub async fn next(&mut self) -> Result<Option<String>, Error> {
        Ok(self
            .inner
            .try_recv()
            .await?
            .map(|n| n.payload().to_string()))
    }
}
