//! Accounts: registration and login with argon2-hashed passwords, users
//! created on first sight of a valid app-minted token, profiles and the
//! directory. A new user is announced to every socket (`user.registered`)
//! and, when enabled, as a webhook app event.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use nodo_signaling::auth::Claims;
use nodo_signaling::webhook::Webhooks;
use serde_json::{json, Value};
use socketioxide::SocketIo;

use crate::access::Access;
use crate::chat::Presence;
use crate::error::Error;
use crate::store::{Store, User};

/// What a registration asks for.
pub struct Registration {
    pub username: String,
    /// Shown name; the username when empty.
    pub name: String,
    pub password: String,
}

/// The account service.
pub struct Accounts {
    store: Store,
    access: Arc<Access>,
    presence: Arc<Presence>,
    io: SocketIo,
    webhooks: Arc<Webhooks>,
}

/// Checks the form of a username (3-32 of letters, digits, `_.-`).
pub fn valid_username(u: &str) -> Result<(), Error> {
    let ok = (3..=32).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "username must be 3-32 characters of letters, digits, '_', '.', '-', starting with a letter or digit",
        ))
    }
}

async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        let bytes: [u8; 16] = rand::random();
        let salt = SaltString::encode_b64(&bytes).map_err(Error::PasswordHash)?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(Error::PasswordHash)
    })
    .await?
}

async fn verify_password(password: String, hash: String) -> Result<bool, Error> {
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    })
    .await?)
}

impl Accounts {
    pub fn new(
        store: Store,
        access: Arc<Access>,
        presence: Arc<Presence>,
        io: SocketIo,
        webhooks: Arc<Webhooks>,
    ) -> Arc<Accounts> {
        Arc::new(Accounts {
            store,
            access,
            presence,
            io,
            webhooks,
        })
    }

    /// Creates an account; returns it with a session token.
    pub async fn register(&self, r: Registration) -> Result<(User, String), Error> {
        valid_username(&r.username)?;
        if r.password.len() < 8 || r.password.len() > 256 {
            return Err(Error::invalid("password must be 8 to 256 characters"));
        }
        if r.name.len() > 100 {
            return Err(Error::invalid("name is longer than 100 characters"));
        }
        let name = if r.name.trim().is_empty() {
            r.username.clone()
        } else {
            r.name.trim().to_string()
        };
        let hash = hash_password(r.password).await?;
        let user = self
            .store
            .create_user(&r.username, &r.username, &name, Some(&hash))
            .await?;
        let token = self.access.session_token(&user)?;
        self.announce(&user).await;
        Ok((user, token))
    }

    /// Checks a username and password; returns the user with a session token.
    pub async fn login(&self, username: &str, password: String) -> Result<(User, String), Error> {
        let user = self
            .store
            .user_by_username(username)
            .await?
            .ok_or(Error::BadCredentials)?;
        let hash = user.password_hash.clone().ok_or(Error::BadCredentials)?;
        if !verify_password(password, hash).await? {
            return Err(Error::BadCredentials);
        }
        let token = self.access.session_token(&user)?;
        Ok((user, token))
    }

    /// The user a token speaks for; a valid token for an unknown identity
    /// creates that user (an app backend that manages its own logins).
    pub async fn authenticate(&self, token: &str) -> Result<User, Error> {
        self.user_for(&self.access.verify(token)?).await
    }

    /// The user of verified claims, created (and announced) on first sight.
    pub async fn user_for(&self, claims: &Claims) -> Result<User, Error> {
        let (user, created) = self
            .store
            .ensure_user(claims.identity(), &claims.name)
            .await?;
        if created {
            self.announce(&user).await;
        }
        Ok(user)
    }

    /// Tells every connected socket about a new user (`user.registered`).
    async fn announce(&self, user: &User) {
        self.webhooks
            .app_event("user_registered", json!({"user": user}));
        let _ = self
            .io
            .emit("user.registered", &json!({"data": user}))
            .await;
    }

    /// The directory with online flags.
    pub async fn directory(&self) -> Result<Vec<Value>, Error> {
        Ok(self
            .store
            .users()
            .await?
            .into_iter()
            .map(|u| {
                let online = self.presence.is_online(&u.id);
                json!({"id": u.id, "username": u.username, "name": u.name, "avatar": u.avatar, "chatPath": u.id, "online": online})
            })
            .collect())
    }

    /// Changes a user's name and/or avatar URL.
    pub async fn update_profile(
        &self,
        user: &str,
        name: Option<&str>,
        avatar: Option<&str>,
    ) -> Result<User, Error> {
        if name.is_some_and(|n| n.trim().is_empty() || n.len() > 100) {
            return Err(Error::invalid("name must be 1 to 100 characters"));
        }
        if avatar.is_some_and(|a| a.len() > 2048) {
            return Err(Error::invalid("avatar URL is longer than 2048 characters"));
        }
        self.store
            .update_profile(user, name.map(str::trim), avatar)
            .await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn usernames() {
        for ok in ["ana", "a.b-c_d", "A1234567890123456789012345678901"] {
            assert!(super::valid_username(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "_ana", "ana maría", "a/b", ""] {
            assert!(super::valid_username(bad).is_err(), "{bad}");
        }
    }
}
