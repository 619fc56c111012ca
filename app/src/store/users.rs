//! Accounts: users by id and by username, profiles, sign-in sessions.
//!
//! Every user has a `name_key` (NFKC + case fold of its username, see
//! `accounts::names`): a new account's key must be free among all users, and
//! accounts with a password (local accounts) hold distinct keys (a unique
//! index). App-minted identities keep their exact id; their key only serves
//! to keep them and local accounts apart.

use serde::Serialize;
use sqlx::{AnyConnection, FromRow, Row};

use super::{now_ms, Store};
use crate::accounts::name_key;
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

impl User {
    /// A local account (registered here, with a password), not an app-minted identity.
    pub fn is_local(&self) -> bool {
        self.password_hash.is_some()
    }
}

/// What `ensure_app_user` found or did.
#[derive(Debug, Clone, PartialEq)]
pub enum AppUser {
    /// The user, and whether it was created now.
    Ready(User, bool),
    /// A local account holds this identity or its key.
    HeldLocally,
}

impl Store {
    /// Creates an account; `UsernameTaken` when the id is taken or any user
    /// holds the username's key (another case or Unicode form of it).
    pub async fn create_user(
        &self,
        id: &str,
        username: &str,
        name: &str,
        password_hash: Option<&str>,
    ) -> Result<User, Error> {
        let key = name_key(username);
        let mut tx = self.writer.begin().await?;
        self.lock_name_key(&mut tx, &key).await?;
        let r = sqlx::query(
            "INSERT INTO users (id, username, name, avatar, password_hash, created_at, name_key) \
             SELECT $1, $2, $3, '', $4, $5, $6 \
             WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = $1 OR name_key = $6)",
        )
        .bind(id)
        .bind(username)
        .bind(name)
        .bind(password_hash)
        .bind(now_ms())
        .bind(&key)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(r) if r.rows_affected() == 1 => tx.commit().await?,
            Ok(_) => return Err(Error::UsernameTaken),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::UsernameTaken);
            }
            Err(e) => return Err(e.into()),
        }
        self.user(id).await?.ok_or(Error::Vanished("user"))
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>, Error> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Whether any user holds this username key (or this exact id).
    pub async fn name_taken(&self, id: &str, key: &str) -> Result<bool, Error> {
        Ok(
            sqlx::query("SELECT 1 FROM users WHERE id = $1 OR name_key = $2 LIMIT 1")
                .bind(id)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, Error> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users WHERE username = $1")
                .bind(username)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The local account a sign-in names: its exact username first, else the
    /// one holding its key.
    pub async fn local_user(&self, username: &str, key: &str) -> Result<Option<User>, Error> {
        Ok(sqlx::query_as::<_, User>(
            "SELECT * FROM users WHERE password_hash IS NOT NULL AND (username = $1 OR name_key = $2) \
             ORDER BY username = $1 DESC LIMIT 1",
        )
        .bind(username)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The user for a valid token's identity, created on first sight (app-managed login).
    pub async fn ensure_user(&self, identity: &str, name: &str) -> Result<(User, bool), Error> {
        match self.ensure_app_user(identity, name, false).await? {
            AppUser::Ready(u, created) => Ok((u, created)),
            AppUser::HeldLocally => Err(Error::IdentityTaken),
        }
    }

    /// The user of an app-minted identity, created on first sight. With
    /// `guard`, an identity that is a local account, or whose key a local
    /// account holds, is refused (`HeldLocally`).
    pub async fn ensure_app_user(
        &self,
        identity: &str,
        name: &str,
        guard: bool,
    ) -> Result<AppUser, Error> {
        let key = name_key(identity);
        if let Some(found) = self.app_user(identity).await? {
            return Ok(match found {
                (u, shadowed) if guard && (u.is_local() || shadowed) => AppUser::HeldLocally,
                (u, _) => AppUser::Ready(u, false),
            });
        }
        // With the guard, not over a local account's key.
        let sql = if guard {
            "INSERT INTO users (id, username, name, avatar, password_hash, created_at, name_key) \
             SELECT $1, $2, $3, '', NULL, $4, $5 WHERE NOT EXISTS \
             (SELECT 1 FROM users WHERE password_hash IS NOT NULL AND name_key = $5) \
             ON CONFLICT DO NOTHING"
        } else {
            "INSERT INTO users (id, username, name, avatar, password_hash, created_at, name_key) \
             VALUES ($1, $2, $3, '', NULL, $4, $5) ON CONFLICT DO NOTHING"
        };
        let mut tx = self.writer.begin().await?;
        self.lock_name_key(&mut tx, &key).await?;
        let r = sqlx::query(sql)
            .bind(identity)
            .bind(identity)
            .bind(name)
            .bind(now_ms())
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        match self.app_user(identity).await? {
            Some((u, shadowed)) if guard && (u.is_local() || shadowed) => Ok(AppUser::HeldLocally),
            Some((u, _)) => Ok(AppUser::Ready(u, r.rows_affected() == 1)),
            None if guard => Ok(AppUser::HeldLocally),
            // The username (not the id) is another user's.
            None => Err(Error::IdentityTaken),
        }
    }

    /// Serialises the writes of one name key across the nodes of a shared
    /// database, until the transaction ends: under PostgreSQL's READ
    /// COMMITTED two `INSERT … WHERE NOT EXISTS` of the same key could both
    /// pass. SQLite's one writer serialises them already.
    async fn lock_name_key(&self, conn: &mut AnyConnection, key: &str) -> Result<(), Error> {
        if self.backend() == super::Backend::Postgres {
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtext($1))) AS held")
                .bind(key)
                .execute(conn)
                .await?;
        }
        Ok(())
    }

    /// A user by id, and whether a local account other than it holds its key.
    async fn app_user(&self, id: &str) -> Result<Option<(User, bool)>, Error> {
        let row = sqlx::query(
            "SELECT u.*, CASE WHEN EXISTS (SELECT 1 FROM users l WHERE l.password_hash IS NOT NULL \
             AND l.name_key = u.name_key AND l.id <> u.id) THEN 1 ELSE 0 END AS shadowed \
             FROM users u WHERE u.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((User::from_row(&r)?, r.try_get::<i64, _>("shadowed")? != 0)))
            .transpose()
            .map_err(|e: sqlx::Error| e.into())
    }

    /// Fills the key of users that have none yet (app identities from
    /// before keys existed; the migration keyed local accounts).
    pub async fn backfill_name_keys(&self) -> Result<u64, Error> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM users WHERE name_key IS NULL AND password_hash IS NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut n = 0;
        for id in ids {
            n += sqlx::query("UPDATE users SET name_key = $1 WHERE id = $2 AND name_key IS NULL")
                .bind(name_key(&id))
                .bind(&id)
                .execute(&self.writer)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<(), Error> {
        sqlx::query(
            "UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash IS NOT NULL",
        )
        .bind(hash)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn users(&self) -> Result<Vec<User>, Error> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users ORDER BY username")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// A user's `(name, avatar)`, from memory once read.
    pub async fn profile(&self, id: &str) -> Result<Option<(String, String)>, Error> {
        let cache = self.caches.profiles.as_ref();
        if let Some(p) = cache.and_then(|c| super::cache_get(c, id)) {
            return Ok(Some(p));
        }
        let Some(u) = self.user(id).await? else {
            return Ok(None);
        };
        let p = (u.name, u.avatar);
        if let Some(c) = cache {
            super::cache_put(c, id.to_string(), p.clone());
        }
        Ok(Some(p))
    }

    pub async fn update_profile(
        &self,
        id: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> Result<User, Error> {
        let forget = || {
            if let Some(c) = &self.caches.profiles {
                c.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(id);
            }
        };
        forget();
        sqlx::query(
            "UPDATE users SET name = COALESCE($1, name), avatar = COALESCE($2, avatar) WHERE id = $3",
        )
        .bind(name)
        .bind(avatar)
        .bind(id)
        .execute(&self.writer)
        .await?;
        // Again after the write: a read between the first forget and the
        // commit may have cached the old row.
        forget();
        self.user(id)
            .await?
            .ok_or_else(|| Error::NotFound(Missing::User(id.to_string())))
    }

    /// Records a sign-in session until `expires_at` (unix ms). The user's
    /// expired sessions, and those beyond the `keep` newest, are deleted;
    /// their ids are returned.
    pub async fn create_session(
        &self,
        id: &str,
        user: &str,
        expires_at: i64,
        keep: u32,
    ) -> Result<Vec<String>, Error> {
        let now = now_ms();
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(user)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        let dropped: Vec<String> = sqlx::query_scalar(
            "DELETE FROM sessions WHERE user_id = $1 AND (expires_at < $2 OR id IN \
             (SELECT id FROM sessions WHERE user_id = $1 ORDER BY created_at DESC, rowid DESC \
              LIMIT 9223372036854775807 OFFSET $3)) RETURNING id",
        )
        .bind(user)
        .bind(now)
        .bind(i64::from(keep.max(1)))
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(dropped)
    }

    /// A session's user and expiry (unix ms), if it exists.
    pub async fn session(&self, id: &str) -> Result<Option<(String, i64)>, Error> {
        Ok(sqlx::query_as::<_, (String, i64)>(
            "SELECT user_id, expires_at FROM sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Deletes one session; false when there was none.
    pub async fn delete_session(&self, id: &str) -> Result<bool, Error> {
        Ok(sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&self.writer)
            .await?
            .rows_affected()
            == 1)
    }

    /// Deletes every session of `user` but `except`; returns their ids.
    pub async fn delete_sessions(
        &self,
        user: &str,
        except: Option<&str>,
    ) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar(
            "DELETE FROM sessions WHERE user_id = $1 AND id <> COALESCE($2, '') RETURNING id",
        )
        .bind(user)
        .bind(except)
        .fetch_all(&self.writer)
        .await?)
    }
}
