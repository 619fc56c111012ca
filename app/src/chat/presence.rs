//! Who is online: connected sockets counted per identity, so a user with two
//! tabs goes offline only when the last one closes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::store::Online;

/// Connected sockets per identity.
#[derive(Default)]
pub struct Presence {
    online: Mutex<HashMap<String, usize>>,
}

impl Presence {
    pub fn new() -> Arc<Presence> {
        Arc::new(Presence::default())
    }

    /// The map. A panic while it was held (a bug) leaves it usable: every
    /// update is one counter change.
    fn map(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.online.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new socket; true when it is the user's first.
    pub fn socket_up(&self, identity: &str) -> bool {
        let mut o = self.map();
        let n = o.entry(identity.to_string()).or_default();
        *n += 1;
        *n == 1
    }

    /// Counts a closed socket; true when it was the user's last.
    pub fn socket_down(&self, identity: &str) -> bool {
        let mut o = self.map();
        match o.get_mut(identity) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                o.remove(identity);
                true
            }
            None => false,
        }
    }

    pub fn is_online(&self, identity: &str) -> bool {
        self.map().contains_key(identity)
    }

    /// `is_online` as a shareable function, for the message writer.
    pub fn online_fn(self: &Arc<Self>) -> Online {
        let me = self.clone();
        Arc::new(move |u: &str| me.is_online(u))
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
    use super::Presence;

    #[test]
    fn two_tabs_go_offline_with_the_last() {
        let p = Presence::new();
        assert!(p.socket_up("ana"));
        assert!(!p.socket_up("ana"));
        assert!(p.is_online("ana"));
        assert!(!p.socket_down("ana"));
        assert!(p.is_online("ana"));
        assert!(p.socket_down("ana"));
        assert!(!p.is_online("ana"));
        assert!(
            !p.socket_down("ana"),
            "an unknown socket is not a departure"
        );
        assert_eq!(p.online_users(), Vec::<String>::new());
    }
}
