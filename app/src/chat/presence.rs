//! Who is online: the connected sockets of each identity, so a user with two
//! tabs goes offline only when the last one closes.
//!
//! Sockets are counted by id, and only by the connect handler once the
//! socket's disconnect handler is in place (`chat::socket`): a socket that is
//! dropped during the handshake is never counted, and counting the same
//! socket down twice is harmless. `retain` drops sockets the Socket.IO server
//! no longer holds (a periodic reconcile), so no path can leave a user online
//! forever.
//!
//! With several nodes, each counts its own sockets and tells the others when
//! a user's first socket comes or last goes (`fanout::Shared::Presence`);
//! `elsewhere` is what they said, per node, dropped when a node leaves.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use socketioxide::socket::Sid;

use crate::fanout::{Fanout, Shared};

/// Connected sockets per identity.
#[derive(Default)]
pub struct Presence {
    online: Mutex<HashMap<String, HashSet<Sid>>>,
    /// node id -> users with a socket there.
    elsewhere: Mutex<HashMap<String, HashSet<String>>>,
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

    /// Whether `identity` has a socket on any node.
    pub fn is_online(&self, identity: &str) -> bool {
        self.map().contains_key(identity) || self.is_online_elsewhere(identity)
    }

    /// Whether `identity` has a socket on another node.
    pub fn is_online_elsewhere(&self, identity: &str) -> bool {
        self.others().values().any(|users| users.contains(identity))
    }

    fn others(&self) -> MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.elsewhere
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Node `node` says `identity` came online there or left it.
    pub fn set_elsewhere(&self, node: &str, identity: &str, online: bool) {
        let mut o = self.others();
        if online {
            o.entry(node.to_string())
                .or_default()
                .insert(identity.to_string());
        } else if let Some(users) = o.get_mut(node) {
            users.remove(identity);
        }
    }

    /// Node `node` says these are all its users online.
    pub fn replace_elsewhere(&self, node: &str, users: Vec<String>) {
        self.others()
            .insert(node.to_string(), users.into_iter().collect());
    }

    /// Node `node` is gone: returns its users who are now online nowhere.
    pub fn forget_node(&self, node: &str) -> Vec<String> {
        let Some(users) = self.others().remove(node) else {
            return Vec::new();
        };
        let mut gone: Vec<String> = users.into_iter().filter(|u| !self.is_online(u)).collect();
        gone.sort();
        gone
    }

    /// The nodes presence was heard from.
    pub fn nodes_elsewhere(&self) -> Vec<String> {
        self.others().keys().cloned().collect()
    }

    /// Users with a socket on this node.
    pub fn here(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }

    /// The sockets of `users` on this node, as (index in `users`, socket),
    /// in `users`' order. One look at the map for a whole fan-out: a lookup
    /// of each member's Socket.IO room was ~1.3 µs a member.
    pub fn sockets_of(&self, users: &[String]) -> Vec<(usize, Sid)> {
        let o = self.map();
        let mut out = Vec::with_capacity(users.len());
        for (i, user) in users.iter().enumerate() {
            if let Some(sockets) = o.get(user) {
                out.extend(sockets.iter().map(|sid| (i, *sid)));
            }
        }
        out
    }

    /// Sockets counted in all.
    pub fn sockets(&self) -> usize {
        self.map().values().map(HashSet::len).sum()
    }

    /// Everyone online on any node, sorted.
    pub fn online_users(&self) -> Vec<String> {
        let mut v: HashSet<String> = self.map().keys().cloned().collect();
        for users in self.others().values() {
            v.extend(users.iter().cloned());
        }
        let mut v: Vec<String> = v.into_iter().collect();
        v.sort();
        v
    }
}

/// `user`'s first socket on this node is up: the other nodes hear it, and
/// everyone but `socket` hears `contact_online` unless the user was already
/// online on another node.
pub async fn went_online(
    fanout: &Fanout,
    presence: &Presence,
    user: &str,
    socket: &socketioxide::extract::SocketRef,
) {
    fanout.publish(Shared::Presence {
        user: user.to_string(),
        online: true,
    });
    if presence.is_online_elsewhere(user) {
        return;
    }
    let _ = socket.broadcast().emit("contact_online", user).await;
    if let Ok(data) = serde_json::to_value(user) {
        fanout.publish(Shared::Emit {
            rooms: Vec::new(),
            event: "contact_online".into(),
            data,
        });
    }
}

/// `user`'s last socket on this node is gone: the other nodes hear it, and
/// everyone hears `contact_offline` unless the user is still online on
/// another node.
pub async fn went_offline(fanout: &Fanout, presence: &Presence, user: &str) {
    fanout.publish(Shared::Presence {
        user: user.to_string(),
        online: false,
    });
    if !presence.is_online(user) {
        fanout.emit_all("contact_offline", user).await;
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

    #[test]
    fn users_on_other_nodes_count_until_their_node_leaves() {
        let p = Presence::new();
        p.socket_up("ana", Sid::new());
        p.set_elsewhere("n2", "bo", true);
        p.set_elsewhere("n2", "ana", true);
        p.replace_elsewhere("n3", vec!["cy".into(), "bo".into()]);
        assert!(p.is_online("bo") && p.is_online_elsewhere("bo"));
        assert!(!p.is_online_elsewhere("dee"));
        assert_eq!(p.online_users(), vec!["ana", "bo", "cy"]);
        p.set_elsewhere("n3", "bo", false);
        assert!(p.is_online("bo"), "still on n2");
        // n2 leaves: bo is online nowhere now, ana still here.
        assert_eq!(p.forget_node("n2"), vec!["bo".to_string()]);
        assert_eq!(p.online_users(), vec!["ana", "cy"]);
        assert!(p.forget_node("n2").is_empty());
    }
}
