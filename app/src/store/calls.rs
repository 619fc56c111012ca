//! Calls: rows, guarded transitions and history.

use serde::Serialize;
use sqlx::{FromRow, Row};

use super::{iso8601, now_ms, Store};
use crate::calls::machine::Status;
use crate::error::Error;

/// A call as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    pub id: String,
    /// The seed frontends' name for `id`.
    pub call_id: String,
    pub from_user_id: String,
    pub to_user_id: String,
    pub status: Status,
    pub room_name: String,
    pub call_type: String,
    pub start_time: String,
    pub answered_at: Option<String>,
    pub connected_at: Option<String>,
    pub ended_at: Option<String>,
    pub end_reason: Option<String>,
    /// Seconds between connecting and ending, for ended calls.
    pub duration: Option<i64>,
}

/// A call to store.
pub struct NewCall<'a> {
    pub id: &'a str,
    pub caller: &'a str,
    pub callee: &'a str,
    pub call_type: &'a str,
    pub room_name: &'a str,
    /// `Ringing`, or `Busy` (stored as ended at once).
    pub status: Status,
}

/// One guarded change of a call's status.
pub struct CallTransition<'a> {
    pub id: &'a str,
    /// The status the change was decided from; the update applies only if
    /// the call is still in it.
    pub from: Status,
    pub to: Status,
    /// Why it ended, for ending transitions.
    pub reason: Option<&'static str>,
}

#[derive(FromRow)]
struct CallRow {
    seq: i64,
    id: String,
    from_user: String,
    to_user: String,
    call_type: String,
    status: String,
    room_name: String,
    created_at: i64,
    answered_at: Option<i64>,
    connected_at: Option<i64>,
    ended_at: Option<i64>,
    end_reason: Option<String>,
}

impl CallRow {
    fn into_call(self) -> Call {
        let duration = match (self.connected_at, self.ended_at) {
            (Some(c), Some(e)) => Some((e - c).max(0) / 1000),
            _ => None,
        };
        Call {
            call_id: self.id.clone(),
            id: self.id,
            from_user_id: self.from_user,
            to_user_id: self.to_user,
            status: Status::parse(&self.status).unwrap_or(Status::Ended),
            room_name: self.room_name,
            call_type: self.call_type,
            start_time: iso8601(self.created_at),
            answered_at: self.answered_at.map(iso8601),
            connected_at: self.connected_at.map(iso8601),
            ended_at: self.ended_at.map(iso8601),
            end_reason: self.end_reason,
            duration,
        }
    }
}

impl Store {
    async fn call_where(&self, sql: &'static str, arg: &str) -> Result<Option<Call>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(sql)
            .bind(arg)
            .fetch_optional(self.pool())
            .await?
            .map(CallRow::into_call))
    }

    /// A call by id.
    pub async fn call(&self, id: &str) -> Result<Option<Call>, Error> {
        self.call_where("SELECT * FROM calls WHERE id = $1", id)
            .await
    }

    /// The call that owns a media room.
    pub async fn call_by_room(&self, room: &str) -> Result<Option<Call>, Error> {
        self.call_where("SELECT * FROM calls WHERE room_name = $1", room)
            .await
    }

    /// The caller's or callee's active call, if any.
    pub async fn active_call_of(&self, user: &str) -> Result<Option<Call>, Error> {
        self.call_where(
            "SELECT * FROM calls WHERE (from_user = $1 OR to_user = $1) AND status IN ('ringing', 'accepted', 'connected') ORDER BY seq DESC LIMIT 1",
            user,
        )
        .await
    }

    /// The ringing call from `caller` to `callee`.
    pub async fn ringing_call_between(
        &self,
        caller: &str,
        callee: &str,
    ) -> Result<Option<Call>, Error> {
        Ok(sqlx::query_as::<_, CallRow>(
            "SELECT * FROM calls WHERE from_user = $1 AND to_user = $2 AND status = 'ringing' ORDER BY seq DESC LIMIT 1",
        )
        .bind(caller)
        .bind(callee)
        .fetch_optional(self.pool())
        .await?
        .map(CallRow::into_call))
    }

    /// Stores a new call; a busy one is stored as ended at once.
    pub async fn insert_call(&self, c: NewCall<'_>) -> Result<Call, Error> {
        let now = now_ms();
        let busy = c.status == Status::Busy;
        sqlx::query(
            "INSERT INTO calls (id, from_user, to_user, call_type, status, room_name, created_at, ended_at, end_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(c.id)
        .bind(c.caller)
        .bind(c.callee)
        .bind(c.call_type)
        .bind(c.status.as_str())
        .bind(c.room_name)
        .bind(now)
        .bind(busy.then_some(now))
        .bind(busy.then_some("busy"))
        .execute(self.writer())
        .await?;
        self.call(c.id).await?.ok_or(Error::Vanished("call"))
    }

    /// Applies a transition if the call is still in `t.from`: returns the
    /// call as it is now, or `None` when it changed meanwhile (the racing
    /// action won; nothing was written).
    pub async fn transition_call(&self, t: CallTransition<'_>) -> Result<Option<Call>, Error> {
        let now = now_ms();
        let done = !t.to.is_active();
        let updated = sqlx::query(
            "UPDATE calls SET status = $1, \
             answered_at = CASE WHEN $2 THEN $3 ELSE answered_at END, \
             connected_at = CASE WHEN $4 THEN $5 ELSE connected_at END, \
             ended_at = CASE WHEN $6 THEN $7 ELSE ended_at END, \
             end_reason = COALESCE($8, end_reason) \
             WHERE id = $9 AND status = $10",
        )
        .bind(t.to.as_str())
        .bind(t.to == Status::Accepted)
        .bind(now)
        .bind(t.to == Status::Connected)
        .bind(now)
        .bind(done)
        .bind(now)
        .bind(t.reason)
        .bind(t.id)
        .bind(t.from.as_str())
        .execute(self.writer())
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        Ok(Some(self.call(t.id).await?.ok_or(Error::Vanished("call"))?))
    }

    /// Ends the calls a previous run of the node left ringing, accepted or
    /// connected (created before `before_ms`): their media rooms died with
    /// that run, so they would keep both people busy forever. Ringing ones
    /// count as missed. Returns how many were ended.
    pub async fn end_calls_left_active(&self, before_ms: i64) -> Result<u64, Error> {
        Ok(sqlx::query(
            "UPDATE calls SET \
             status = CASE status WHEN 'ringing' THEN 'missed' ELSE 'ended' END, \
             ended_at = $1, end_reason = 'node_restarted' \
             WHERE status IN ('ringing', 'accepted', 'connected') AND created_at < $2",
        )
        .bind(now_ms())
        .bind(before_ms)
        .execute(self.writer())
        .await?
        .rows_affected())
    }

    /// Ends the calls still ringing or accepted though created before
    /// `before_ms`: the node whose timers would have ended them is gone (a
    /// database shared by several nodes, where a starting node must not end
    /// the others' calls). Ringing ones count as missed. Returns how many.
    pub async fn end_calls_left_waiting(&self, before_ms: i64) -> Result<u64, Error> {
        Ok(sqlx::query(
            "UPDATE calls SET \
             status = CASE status WHEN 'ringing' THEN 'missed' ELSE 'ended' END, \
             ended_at = $1, end_reason = 'node_lost' \
             WHERE status IN ('ringing', 'accepted') AND created_at < $2",
        )
        .bind(now_ms())
        .bind(before_ms)
        .execute(self.writer())
        .await?
        .rows_affected())
    }

    /// Connected calls that connected before `before_ms`: (id, room name).
    pub async fn connected_calls(&self, before_ms: i64) -> Result<Vec<(String, String)>, Error> {
        Ok(sqlx::query_as(
            "SELECT id, room_name FROM calls WHERE status = 'connected' AND connected_at < $1",
        )
        .bind(before_ms)
        .fetch_all(self.pool())
        .await?)
    }

    /// Ends connected call `id`, whose media room is open on no node any
    /// more (its node died). False when it was not connected any more.
    pub async fn end_call_room_lost(&self, id: &str) -> Result<bool, Error> {
        Ok(sqlx::query(
            "UPDATE calls SET status = 'ended', ended_at = $1, end_reason = 'node_lost' \
             WHERE id = $2 AND status = 'connected'",
        )
        .bind(now_ms())
        .bind(id)
        .execute(self.writer())
        .await?
        .rows_affected()
            == 1)
    }

    /// The user's calls, newest first, with a cursor for older ones.
    pub async fn call_history(
        &self,
        user: &str,
        limit: i64,
        before: Option<i64>,
    ) -> Result<(Vec<Call>, Option<String>), Error> {
        let limit = limit.clamp(1, 100);
        let rows = sqlx::query_as::<_, CallRow>(
            "SELECT * FROM calls WHERE (from_user = $1 OR to_user = $1) AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(user)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let oldest = rows.last().map(|r| r.seq);
        let more = match oldest {
            Some(seq) => sqlx::query(
                "SELECT 1 FROM calls WHERE (from_user = $1 OR to_user = $1) AND seq < $2 LIMIT 1",
            )
            .bind(user)
            .bind(seq)
            .fetch_optional(self.pool())
            .await?
            .map(|r| r.get::<i64, _>(0))
            .is_some(),
            None => false,
        };
        let calls = rows.into_iter().map(CallRow::into_call).collect();
        Ok((
            calls,
            if more {
                oldest.map(|s| s.to_string())
            } else {
                None
            },
        ))
    }
}
