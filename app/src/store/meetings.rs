//! Meetings: records, members and their roles.

use sqlx::{FromRow, Row};

use super::{now_ms, Store};
use crate::error::Error;

/// A meeting as stored.
#[derive(Debug, Clone, FromRow, PartialEq)]
pub struct MeetingRecord {
    pub id: String,
    pub name: String,
    /// The LiveKit room the meeting owns.
    pub room_name: String,
    pub created_by: String,
    pub max_participants: i64,
    pub empty_timeout: i64,
    pub metadata: String,
    pub is_open: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub ended_at: Option<i64>,
}

/// A member's role in a meeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Starts and ends the meeting; joins with roomAdmin.
    Moderator,
    Member,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Moderator => "moderator",
            Role::Member => "member",
        }
    }

    fn parse(s: &str) -> Role {
        if s == "moderator" {
            Role::Moderator
        } else {
            Role::Member
        }
    }
}

/// A meeting to store.
pub struct NewMeeting<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub room_name: &'a str,
    pub created_by: &'a str,
    pub max_participants: u32,
    pub empty_timeout: u32,
    pub metadata: &'a str,
    pub open: bool,
}

impl Store {
    /// A meeting by id.
    pub async fn meeting(&self, id: &str) -> Result<Option<MeetingRecord>, Error> {
        Ok(
            sqlx::query_as::<_, MeetingRecord>("SELECT * FROM meetings WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// The meeting that owns a media room.
    pub async fn meeting_by_room(&self, room: &str) -> Result<Option<MeetingRecord>, Error> {
        Ok(
            sqlx::query_as::<_, MeetingRecord>("SELECT * FROM meetings WHERE room_name = $1")
                .bind(room)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Stores a meeting with its creator as moderator and the others as
    /// members, in one transaction.
    pub async fn create_meeting(
        &self,
        m: NewMeeting<'_>,
        members: &[String],
    ) -> Result<MeetingRecord, Error> {
        let mut tx = self.writer().begin().await?;
        sqlx::query(
            "INSERT INTO meetings (id, name, room_name, created_by, max_participants, empty_timeout, metadata, is_open, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(m.id)
        .bind(m.name)
        .bind(m.room_name)
        .bind(m.created_by)
        .bind(i64::from(m.max_participants))
        .bind(i64::from(m.empty_timeout))
        .bind(m.metadata)
        .bind(i64::from(m.open))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO meeting_members (meeting_id, user_id, role) VALUES ($1, $2, 'moderator')",
        )
        .bind(m.id)
        .bind(m.created_by)
        .execute(&mut *tx)
        .await?;
        for u in members.iter().filter(|u| u.as_str() != m.created_by) {
            sqlx::query(
                "INSERT INTO meeting_members (meeting_id, user_id, role) VALUES ($1, $2, 'member') ON CONFLICT DO NOTHING",
            )
            .bind(m.id)
            .bind(u)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        self.meeting(m.id).await?.ok_or(Error::Vanished("meeting"))
    }

    /// The meetings a user is a member of, newest first (at most `limit`).
    pub async fn meetings_of(&self, user: &str, limit: u32) -> Result<Vec<MeetingRecord>, Error> {
        Ok(sqlx::query_as::<_, MeetingRecord>(
            "SELECT m.* FROM meetings m JOIN meeting_members mm ON mm.meeting_id = m.id \
             WHERE mm.user_id = $1 ORDER BY m.created_at DESC LIMIT $2",
        )
        .bind(user)
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?)
    }

    /// A user's role in a meeting, if a member.
    pub async fn meeting_role(&self, meeting: &str, user: &str) -> Result<Option<Role>, Error> {
        Ok(
            sqlx::query("SELECT role FROM meeting_members WHERE meeting_id = $1 AND user_id = $2")
                .bind(meeting)
                .bind(user)
                .fetch_optional(self.pool())
                .await?
                .map(|r| Role::parse(&r.get::<String, _>(0))),
        )
    }

    /// Adds a member; an existing member keeps their role unless `role` is
    /// moderator (promotion, never demotion).
    pub async fn add_meeting_member(
        &self,
        meeting: &str,
        user: &str,
        role: Role,
    ) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO meeting_members (meeting_id, user_id, role) VALUES ($1, $2, $3) \
             ON CONFLICT(meeting_id, user_id) DO UPDATE SET role = CASE WHEN excluded.role = 'moderator' THEN 'moderator' ELSE meeting_members.role END",
        )
        .bind(meeting)
        .bind(user)
        .bind(role.as_str())
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Every member of a meeting with their role, by user id.
    pub async fn meeting_members(&self, meeting: &str) -> Result<Vec<(String, Role)>, Error> {
        Ok(sqlx::query(
            "SELECT user_id, role FROM meeting_members WHERE meeting_id = $1 ORDER BY user_id",
        )
        .bind(meeting)
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|r| (r.get::<String, _>(0), Role::parse(&r.get::<String, _>(1))))
        .collect())
    }

    /// Records that a meeting started now (and is no longer ended).
    pub async fn meeting_started(&self, id: &str) -> Result<(), Error> {
        sqlx::query("UPDATE meetings SET started_at = $1, ended_at = NULL WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// Records that a meeting ended at `at` (unix ms).
    pub async fn meeting_ended(&self, id: &str, at: i64) -> Result<(), Error> {
        sqlx::query("UPDATE meetings SET ended_at = $1 WHERE id = $2")
            .bind(at)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }
}
