//! Accounts: users by id and by username, profiles.

use serde::Serialize;
use sqlx::FromRow;

use super::{now_ms, Store};
use crate::error::{Error, Missing};

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

impl Store {
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
