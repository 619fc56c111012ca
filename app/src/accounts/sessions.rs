//! Sign-in sessions: a row per session in the store, named by the `jti` of
//! its token, and an in-memory cache in front of it so that checking a
//! session on every request and socket connect costs a map lookup, not a
//! query. Revocation deletes the row and leaves a tombstone in the cache; a
//! lookup that raced with it never overwrites the tombstone. The cache is
//! bounded: when full, a tenth of it is dropped (the store still knows).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use base64::Engine;

use crate::error::Error;
use crate::store::{now_ms, Store};

/// Sessions the cache remembers.
const CACHE_MAX: usize = 100_000;

/// A sign-in session's id (the `jti` of its token).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    fn random() -> SessionId {
        let bytes: [u8; 16] = rand::random();
        SessionId(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    pub fn new(id: impl Into<String>) -> SessionId {
        SessionId(id.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Socket.IO room every socket of this session is in.
    pub fn room(&self) -> String {
        format!("session:{}", self.0)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
enum Entry {
    Live { user: String, expires_at: i64 },
    Revoked,
}

/// The sessions of local accounts.
pub struct Sessions {
    store: Store,
    cache: Mutex<HashMap<SessionId, Entry>>,
}

impl Sessions {
    pub fn new(store: Store) -> Sessions {
        Sessions {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<SessionId, Entry>> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, id: SessionId, entry: Entry, overwrite: bool) {
        let mut cache = self.cache();
        if cache.len() >= CACHE_MAX && !cache.contains_key(&id) {
            let drop: Vec<SessionId> = cache.keys().take(CACHE_MAX / 10).cloned().collect();
            for k in drop {
                cache.remove(&k);
            }
        }
        if overwrite {
            cache.insert(id, entry);
        } else {
            cache.entry(id).or_insert(entry);
        }
    }

    /// Opens a session for `user` until `expires_at` (unix ms), keeping at
    /// most `keep` per user; returns it and the sessions dropped for room.
    pub async fn open(
        &self,
        user: &str,
        expires_at: i64,
        keep: u32,
    ) -> Result<(SessionId, Vec<SessionId>), Error> {
        let id = SessionId::random();
        let dropped = self
            .store
            .create_session(id.as_str(), user, expires_at, keep)
            .await?;
        let dropped: Vec<SessionId> = dropped.into_iter().map(SessionId).collect();
        for d in &dropped {
            self.remember(d.clone(), Entry::Revoked, true);
        }
        self.remember(
            id.clone(),
            Entry::Live {
                user: user.to_string(),
                expires_at,
            },
            true,
        );
        Ok((id, dropped))
    }

    /// Whether `id` is a live session of `user`. On a database other nodes
    /// share, a session another node ended is gone from the database only:
    /// there a live session is read again every time (an ended one never
    /// comes back, so its tombstone is kept).
    pub async fn is_live(&self, id: &SessionId, user: &str) -> Result<bool, Error> {
        let cached = self.cache().get(id).cloned();
        let shared = self.store.backend() == crate::store::Backend::Postgres;
        let entry = match cached {
            Some(e @ Entry::Revoked) => e,
            Some(e) if !shared => e,
            _ => {
                let entry = match self.store.session(id.as_str()).await? {
                    Some((user, expires_at)) => Entry::Live { user, expires_at },
                    None => Entry::Revoked,
                };
                // Never over a tombstone a revocation left meanwhile.
                self.remember(id.clone(), entry.clone(), false);
                entry
            }
        };
        Ok(
            matches!(entry, Entry::Live { user: u, expires_at } if u == user && expires_at > now_ms()),
        )
    }

    /// Ends one session; false when it was not live.
    pub async fn revoke(&self, id: &SessionId) -> Result<bool, Error> {
        let existed = self.store.delete_session(id.as_str()).await?;
        self.remember(id.clone(), Entry::Revoked, true);
        Ok(existed)
    }

    /// Ends every session of `user` but `except`; returns the ones ended.
    pub async fn revoke_all(
        &self,
        user: &str,
        except: Option<&SessionId>,
    ) -> Result<Vec<SessionId>, Error> {
        let ids = self
            .store
            .delete_sessions(user, except.map(SessionId::as_str))
            .await?;
        let ids: Vec<SessionId> = ids.into_iter().map(SessionId).collect();
        for id in &ids {
            self.remember(id.clone(), Entry::Revoked, true);
        }
        Ok(ids)
    }
}
