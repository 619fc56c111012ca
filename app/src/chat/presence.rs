//! Who is online: the connected sockets of each identity, so a user with two
//! tabs goes offline only when the last one closes.
//!
//! Sockets are counted by id, and only by the connect handler once the
//! socket's disconnect handler is in place (`chat::socket`): a socket that is
//! dropped during the handshake is never counted, and counting the same
//! socket down twice is harmless. `retain` drops sockets the Socket.IO server
//! no longer holds (a periodic reconcile), so no path can leave a user online
//! forever.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use socketioxide::socket::Sid;

/// Connected sockets per identity.
#[derive(Default)]
pub struct Presence {
    online: Mutex<HashMap<String, HashSet<Sid>>>,
}

impl Presence {
    pub fn new() -> Arc<Presence> {
        Arc::new(Presence::default())
    }

    /// The map. A panic while it was held (a bug) leaves it usable: every
    /// update is one set change.
    fn map(&self) -> MutexGuard<'_, HashMap<String, HashSet<Sid>>> {
        self.online.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts socket `sid` of `identity`; true when it is the user's first.
    pub fn socket_up(&self, identity: &str, sid: Sid) -> bool {
        let mut o = self.map();
        let sockets = o.entry(identity.to_string()).or_default();
        sockets.insert(sid) && sockets.len() == 1
    }

    /// Forgets socket `sid`; true when it was the user's last. A socket that
    /// was never counted (or already forgotten) is not a departure.
    pub fn socket_down(&self, identity: &str, sid: Sid) -> bool {
        let mut o = self.map();
        let Some(sockets) = o.get_mut(identity) else {
            return false;
        };
        if !sockets.remove(&sid) {
            return false;
        }
        if sockets.is_empty() {
            o.remove(identity);
            return true;
        }
        false
    }

    /// Forgets socket `sid` of whoever holds it; returns that identity and
    /// whether it was their last socket.
    pub fn forget_socket(&self, sid: Sid) -> Option<(String, bool)> {
        let identity = self
            .map()
            .iter()
            .find(|(_, sockets)| sockets.contains(&sid))
            .map(|(identity, _)| identity.clone())?;
        let last = self.socket_down(&identity, sid);
        Some((identity, last))
    }

    /// Keeps only the sockets `live` says still exist; returns the identities
    /// that went offline because of it.
    pub fn retain(&self, live: impl Fn(Sid) -> bool) -> Vec<String> {
        let mut o = self.map();
        let mut gone = Vec::new();
        o.retain(|identity, sockets| {
            sockets.retain(|sid| live(*sid));
            if sockets.is_empty() {
                gone.push(identity.clone());
                return false;
            }
            true
        });
        gone
    }

    pub fn is_online(&self, identity: &str) -> bool {
        self.map().contains_key(identity)
    }

    /// Sockets counted in all.
    pub fn sockets(&self) -> usize {
        self.map().values().map(HashSet::len).sum()
    }

    /// Everyone online, sorted.
    pub fn online_users(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map().keys().cloned().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use socketioxide::socket::Sid;

    use super::Presence;

    #[test]
    fn two_tabs_go_offline_with_the_last() {
        let p = Presence::new();
        let (one, two) = (Sid::new(), Sid::new());
        assert!(p.socket_up("ana", one));
        assert!(!p.socket_up("ana", two));
        assert!(!p.socket_up("ana", two), "a socket counts once");
        assert!(p.is_online("ana"));
        assert!(!p.socket_down("ana", one));
        assert!(p.is_online("ana"));
        assert!(!p.socket_down("ana", one), "a socket goes down once");
        assert!(p.socket_down("ana", two));
        assert!(!p.is_online("ana"));
        assert!(
            !p.socket_down("ana", two),
            "an unknown socket is not a departure"
        );
        assert_eq!(p.online_users(), Vec::<String>::new());
    }

    #[test]
    fn reconcile_drops_sockets_the_server_no_longer_holds() {
        let p = Presence::new();
        let (a, b, c) = (Sid::new(), Sid::new(), Sid::new());
        p.socket_up("ana", a);
        p.socket_up("ana", b);
        p.socket_up("bo", c);
        assert_eq!(p.forget_socket(b), Some(("ana".to_string(), false)));
        assert_eq!(p.forget_socket(b), None);
        p.socket_up("ana", b);
        let gone = p.retain(|sid| sid == a);
        assert_eq!(gone, vec!["bo".to_string()]);
        assert_eq!(p.online_users(), vec!["ana".to_string()]);
        assert_eq!(p.sockets(), 1);
    }
}
