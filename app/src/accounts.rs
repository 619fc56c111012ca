//! Accounts: registration and login with argon2-hashed passwords, sign-in
//! sessions that can be ended, users created on first sight of a valid
//! app-minted token, profiles and the directory. A new user is announced to
//! every socket (`user.registered`) and, when enabled, as a webhook app event.
//!
//! Who owns identity is `[accounts] mode` (`local`, `app`, `both`; see
//! [`AccountsMode`]). Password work is bounded and throttled (`guard`),
//! usernames have one key whatever their case or Unicode form (`names`),
//! and every session-token request checks its session (`sessions`).

pub mod avatars;
mod guard;
mod names;
mod sessions;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use crate::fanout::Fanout;
use argon2::password_hash::{self, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use nodo_signaling::webhook::Webhooks;
use serde_json::{json, Value};

pub use guard::{client_ip, parse_cidr, Cidr};
pub use names::{key as name_key, username as check_username, Username};
pub use sessions::SessionId;

use crate::access::{Access, Bearer};
use crate::chat::Presence;
use crate::config::{AccountsConfig, AccountsMode};
use crate::error::Error;
use crate::limits::{Limiter, DEFAULT_MAX_KEYS};
use crate::store::{AppUser, Store, User};
use guard::{Hasher, Policy, Throttle};
use sessions::Sessions;

/// What a registration asks for.
pub struct Registration {
    pub username: String,
    /// Shown name; the username when empty.
    pub name: String,
    pub password: String,
}

/// A request's caller: the user, and their session when the token is one of
/// the node's own session tokens (an app-minted token has none).
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub session: Option<SessionId>,
}

/// The account service.
pub struct Accounts {
    store: Store,
    access: Arc<Access>,
    presence: Arc<Presence>,
    fanout: Arc<Fanout>,
    webhooks: Arc<Webhooks>,
    config: AccountsConfig,
    trusted_proxies: Vec<Cidr>,
    hasher: Hasher,
    /// Failed password checks per username key.
    by_name: Throttle<String>,
    /// Failed password checks per client address.
    by_ip: Throttle<IpAddr>,
    registrations: Limiter<IpAddr>,
    sessions: Sessions,
    /// Verified when a login names nobody, so that it takes as long as a
    /// wrong password (no probing of usernames by timing).
    dummy_hash: String,
}

/// Checks the form of a username (see `names`).
pub fn valid_username(u: &str) -> Result<(), Error> {
    names::username(u).map(|_| ())
}

fn check_password(password: &str) -> Result<(), Error> {
    if password.chars().count() < 8 || password.len() > 256 {
        return Err(Error::invalid("password must be 8 to 256 characters"));
    }
    Ok(())
}

/// Largest argon2 memory a stored hash may ask for (1 GiB): hashes are the
/// node's own, but a tampered row must not take the machine's memory.
const MAX_BLOCKS: usize = 1 << 20;

/// argon2id with the default parameters, into `memory` (resized once and
/// kept by the hasher thread): a PHC string.
fn hash(password: &str, memory: &mut Vec<Block>) -> Result<String, Error> {
    let argon = Argon2::default();
    let params = argon.params().clone();
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(Error::PasswordHash)?;
    memory.resize(params.block_count(), Block::default());
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(output_len, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, out, &mut memory[..])
            .map_err(|_| password_hash::Error::Crypto)
    })
    .map_err(Error::PasswordHash)?;
    let phc = PasswordHash {
        algorithm: Algorithm::default().ident(),
        version: Some(Version::default().into()),
        params: ParamsString::try_from(&params).map_err(Error::PasswordHash)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `hash`, computed in `memory`.
fn verify(password: &str, hash: &str, memory: &mut Vec<Block>) -> bool {
    let mut check = || -> Option<bool> {
        let h = PasswordHash::new(hash).ok()?;
        let algorithm = Algorithm::try_from(h.algorithm).ok()?;
        let version = match h.version {
            Some(v) => Version::try_from(v).ok()?,
            None => Version::default(),
        };
        let params = Params::try_from(&h).ok()?;
        let expected = h.hash?;
        let mut salt_buf = [0u8; 64];
        let salt = h.salt?.decode_b64(&mut salt_buf).ok()?;
        if params.block_count() > MAX_BLOCKS {
            return None;
        }
        memory.resize(params.block_count(), Block::default());
        let argon = Argon2::new(algorithm, version, params);
        let got = Output::init_with(expected.len(), |out| {
            argon
                .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut memory[..])
                .map_err(|_| password_hash::Error::Crypto)
        })
        .ok()?;
        // Output compares in constant time.
        Some(got == expected)
    };
    check().unwrap_or(false)
}

impl Accounts {
    /// Builds the service; fills the username keys of identities from before
    /// keys existed.
    pub async fn start(
        store: Store,
        access: Arc<Access>,
        presence: Arc<Presence>,
        fanout: Arc<Fanout>,
        webhooks: Arc<Webhooks>,
        config: AccountsConfig,
    ) -> Result<Arc<Accounts>, Error> {
        let keyed = store.backfill_name_keys().await?;
        if keyed > 0 {
            tracing::info!("accounts: keyed {keyed} app identities for case-insensitive names");
        }
        let hasher = Hasher::new(config.hash_concurrency, config.hash_queue);
        let dummy: [u8; 16] = rand::random();
        let dummy_hash = hasher
            .run(move |memory| hash(&String::from_utf8_lossy(&dummy), memory))
            .await??;
        let policy = |free, lockout| Policy {
            free,
            lockout,
            lockout_for: Duration::from_secs(config.lockout_secs),
            max_backoff: Duration::from_secs(config.max_backoff_secs),
        };
        Ok(Arc::new(Accounts {
            sessions: Sessions::new(store.clone()),
            store,
            access,
            presence,
            fanout,
            webhooks,
            trusted_proxies: config
                .trusted_proxies
                .iter()
                .filter_map(|p| parse_cidr(p))
                .collect(),
            hasher,
            by_name: Throttle::new(
                "failed logins for this username",
                policy(config.login_free_failures, config.login_lockout_failures),
                DEFAULT_MAX_KEYS,
            ),
            by_ip: Throttle::new(
                "failed logins from this address",
                policy(config.ip_free_failures, config.ip_lockout_failures),
                DEFAULT_MAX_KEYS,
            ),
            registrations: Limiter::new("registrations from this address", config.register_rate),
            dummy_hash,
            config,
        }))
    }

    pub fn mode(&self) -> AccountsMode {
        self.config.mode
    }

    /// The address limits count a request under: the TCP peer, or what a
    /// trusted proxy says (`X-Forwarded-For`); IPv6 by its /64. Unknown (no
    /// peer address, as in-process): one shared key.
    pub fn client(&self, peer: Option<IpAddr>, forwarded: Option<&str>) -> IpAddr {
        client_ip(peer, forwarded, &self.trusted_proxies)
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), guard::client_key)
    }

    fn local_accounts_on(&self) -> Result<(), Error> {
        if self.config.mode == AccountsMode::App {
            return Err(Error::Forbidden(
                "registration and login are off: this node's identities come from the app ([accounts] mode = \"app\")",
            ));
        }
        Ok(())
    }

    /// Opens a session for `user`; returns its token.
    async fn open_session(&self, user: &User) -> Result<String, Error> {
        let ttl = self.access.session_ttl();
        let expires_at = crate::store::now_ms()
            .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let (id, dropped) = self
            .sessions
            .open(&user.id, expires_at, self.config.max_sessions_per_user)
            .await?;
        self.disconnect(&dropped).await;
        self.access.session_token(user, id.as_str())
    }

    /// Creates an account; returns it with a session token.
    pub async fn register(&self, r: Registration, client: IpAddr) -> Result<(User, String), Error> {
        self.local_accounts_on()?;
        let username = names::username(&r.username)?;
        check_password(&r.password)?;
        if r.name.chars().count() > 100 {
            return Err(Error::invalid("name is longer than 100 characters"));
        }
        let name = if r.name.trim().is_empty() {
            username.name.clone()
        } else {
            r.name.trim().to_string()
        };
        if self.store.name_taken(&username.name, &username.key).await? {
            return Err(Error::UsernameTaken);
        }
        // Charged once the request would cost a hash and a row.
        self.registrations
            .check(&client)
            .map_err(Error::RateLimited)?;
        let password = r.password;
        let hash = self
            .hasher
            .run(move |memory| hash(&password, memory))
            .await??;
        let user = self
            .store
            .create_user(&username.name, &username.name, &name, Some(&hash))
            .await?;
        let token = self.open_session(&user).await?;
        self.announce(&user).await;
        Ok((user, token))
    }

    /// Checks a password for `key` from `client` under both throttles; the
    /// attempt counts as a failure unless the password is right.
    async fn password_check(
        &self,
        key: &str,
        client: IpAddr,
        hash: Option<String>,
        password: String,
    ) -> Result<bool, Error> {
        let key = key.to_string();
        self.by_ip.attempt(&client).map_err(Error::RateLimited)?;
        if let Err(r) = self.by_name.attempt(&key) {
            self.by_ip.succeeded(&client, false);
            return Err(Error::RateLimited(r));
        }
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.clone());
        let checked = self
            .hasher
            .run(move |memory| verify(&password, &hash, memory))
            .await;
        let right = matches!(checked, Ok(true)) && known;
        if right || checked.is_err() {
            // A refusal by the pool is not a guess.
            self.by_name.succeeded(&key, right);
            self.by_ip.succeeded(&client, false);
        }
        checked.map(|_| right)
    }

    /// Checks a username and password; returns the user with a session token.
    pub async fn login(
        &self,
        username: &str,
        password: String,
        client: IpAddr,
    ) -> Result<(User, String), Error> {
        self.local_accounts_on()?;
        let key = names::key(username);
        let user = self.store.local_user(username, &key).await?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        if !self.password_check(&key, client, hash, password).await? {
            return Err(Error::BadCredentials);
        }
        let user = user.ok_or(Error::BadCredentials)?;
        let token = self.open_session(&user).await?;
        Ok((user, token))
    }

    /// Checks a bearer token for the API or the chat socket, without the
    /// store: its kind (no room token) and what the mode accepts.
    pub fn verify(&self, token: &str) -> Result<Bearer, Error> {
        let bearer = self.access.verify(token)?;
        match (&bearer, self.config.mode) {
            (Bearer::Session { .. }, AccountsMode::App) => Err(Error::Unauthenticated(
                "this node's identities come from the app: use a token the app minted",
            )),
            (Bearer::App(_), AccountsMode::Local) => Err(Error::Unauthenticated(
                "this node accepts only its own sessions: sign in with /api/auth/login",
            )),
            _ => Ok(bearer),
        }
    }

    /// The caller a verified token speaks for: a live session's local
    /// account, or an app identity (created and announced on first sight;
    /// in `both` mode refused when a local account holds the name).
    pub async fn admit(&self, bearer: &Bearer) -> Result<Authenticated, Error> {
        match bearer {
            Bearer::Session { claims, session } => {
                let session = SessionId::new(session.as_str());
                if !self.sessions.is_live(&session, claims.identity()).await? {
                    return Err(Error::Unauthenticated(
                        "this session has ended (signed out or revoked): sign in again",
                    ));
                }
                let user = self
                    .store
                    .user(claims.identity())
                    .await?
                    .filter(User::is_local)
                    .ok_or(Error::Unauthenticated("this session's account is gone"))?;
                Ok(Authenticated {
                    user,
                    session: Some(session),
                })
            }
            Bearer::App(claims) => {
                let guard = self.config.mode == AccountsMode::Both;
                match self
                    .store
                    .ensure_app_user(claims.identity(), &claims.name, guard)
                    .await?
                {
                    AppUser::Ready(user, created) => {
                        if created {
                            self.announce(&user).await;
                        }
                        Ok(Authenticated {
                            user,
                            session: None,
                        })
                    }
                    AppUser::HeldLocally => Err(Error::IdentityTaken),
                }
            }
        }
    }

    /// [`Accounts::verify`] then [`Accounts::admit`].
    pub async fn authenticate(&self, token: &str) -> Result<Authenticated, Error> {
        self.admit(&self.verify(token)?).await
    }

    /// Whether a session is still live (cached; for a socket that joined its rooms).
    pub async fn session_live(&self, session: &SessionId, user: &str) -> Result<bool, Error> {
        self.sessions.is_live(session, user).await
    }

    /// Disconnects every socket of these sessions.
    async fn disconnect(&self, sessions: &[SessionId]) {
        for s in sessions {
            self.fanout.disconnect(s.room()).await;
        }
    }

    fn own_session(me: &Authenticated) -> Result<&SessionId, Error> {
        me.session.as_ref().ok_or(Error::Forbidden(
            "this token was minted by the app: the app ends its sessions",
        ))
    }

    /// Ends the caller's session and disconnects its sockets.
    pub async fn logout(&self, me: &Authenticated) -> Result<(), Error> {
        let session = Self::own_session(me)?;
        self.sessions.revoke(session).await?;
        self.disconnect(std::slice::from_ref(session)).await;
        Ok(())
    }

    /// Ends every session of the caller (this one too) and disconnects their
    /// sockets; returns how many ended.
    pub async fn logout_all(&self, me: &Authenticated) -> Result<usize, Error> {
        Self::own_session(me)?;
        let ended = self.sessions.revoke_all(&me.user.id, None).await?;
        self.disconnect(&ended).await;
        Ok(ended.len())
    }

    /// Changes the caller's password (the current one required, throttled
    /// as a login); every other session ends and its sockets are
    /// disconnected; the caller's session stays.
    pub async fn change_password(
        &self,
        me: &Authenticated,
        current: String,
        new: String,
        client: IpAddr,
    ) -> Result<usize, Error> {
        self.local_accounts_on()?;
        let session = Self::own_session(me)?;
        check_password(&new)?;
        let user = self
            .store
            .user(&me.user.id)
            .await?
            .filter(User::is_local)
            .ok_or(Error::Unauthenticated("this session's account is gone"))?;
        let key = names::key(&user.username);
        if !self
            .password_check(&key, client, user.password_hash.clone(), current)
            .await?
        {
            return Err(Error::BadCredentials);
        }
        let hash = self.hasher.run(move |memory| hash(&new, memory)).await??;
        self.store.set_password_hash(&user.id, &hash).await?;
        let ended = self.sessions.revoke_all(&user.id, Some(session)).await?;
        self.disconnect(&ended).await;
        Ok(ended.len())
    }

    /// Tells every connected socket about a new user (`user.registered`).
    async fn announce(&self, user: &User) {
        self.webhooks
            .app_event("user_registered", json!({"user": user}));
        self.fanout
            .emit_all("user.registered", &json!({"data": user}))
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
    use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
    use argon2::Argon2;

    #[test]
    fn hashes_in_reused_memory_are_standard_argon2() {
        let mut memory = Vec::new();
        let h = super::hash("correct horse battery", &mut memory).expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        // The argon2 crate's own verifier agrees, and so does ours.
        let parsed = PasswordHash::new(&h).expect("phc");
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        assert!(super::verify("correct horse battery", &h, &mut memory));
        assert!(!super::verify("correct horse batterY", &h, &mut memory));
        assert!(!super::verify("x", "not a hash", &mut memory));
        // A hash made by the crate itself (as before this pool) verifies too.
        let salt = SaltString::encode_b64(&[7u8; 16]).expect("salt");
        let old = Argon2::default()
            .hash_password(b"other password", &salt)
            .expect("hash")
            .to_string();
        assert!(super::verify("other password", &old, &mut memory));
    }
}
