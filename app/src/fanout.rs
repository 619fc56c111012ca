//! Socket events for every node of a cluster.
//!
//! Each node holds its own Socket.IO sockets. What the services tell users
//! (a message, a receipt, typing, a ring, a call's progress, presence) goes to
//! the sockets on this node at once and, when the node is one of several, to
//! the others over a [`Bus`] (Redis pub/sub, wired by the node's binary):
//! each node applies what it receives to its own sockets only.
//!
//! Messages are not relayed as Socket.IO broadcasts: a node that holds a
//! recipient's sockets delivers to them itself, with its own acks, so the
//! confirmation is stored by the node the client answered (see
//! `chat::delivery`), and the origin node sends a notification only to
//! recipients online nowhere.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use socketioxide::SocketIo;

/// What one node asks the others to do for their sockets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Shared {
    /// `event` with `data` to the sockets in `rooms` (a user's identity, a
    /// session's room), or to every socket when `rooms` is empty.
    Emit {
        rooms: Vec<String>,
        event: String,
        data: Value,
    },
    /// A stored message for the sockets of its members on the receiving node.
    Deliver {
        /// The `receiveMessage` payload.
        payload: Value,
        /// What a recipient's confirmation refers to.
        seq: i64,
        id: String,
        chat_id: String,
        sender: String,
        members: Vec<String>,
    },
    /// The sockets in `room` disconnect (an ended session).
    Disconnect { room: String },
    /// `user`'s first socket on the sending node is up, or its last is gone.
    Presence { user: String, online: bool },
    /// Everyone with a socket on the sending node (the answer to `Hello`).
    Present { users: Vec<String> },
    /// The sending node (re)joined the bus: every node answers `Present`.
    Hello,
}

/// Carries [`Shared`] events to the other nodes (never back to this one).
pub trait Bus: Send + Sync {
    /// Queues `event` for every other node; never waits. An event that
    /// cannot be queued (the bus is down and its queue full) is dropped and
    /// counted by the implementation: what it carried stays pending in the
    /// store where that matters (messages).
    fn publish(&self, event: Shared);
}

/// This node's Socket.IO handle, plus the bus once the node joined a cluster.
pub struct Fanout {
    io: SocketIo,
    bus: OnceLock<Arc<dyn Bus>>,
}

impl Fanout {
    pub fn new(io: SocketIo) -> Arc<Fanout> {
        Arc::new(Fanout {
            io,
            bus: OnceLock::new(),
        })
    }

    /// The Socket.IO handle, for what concerns this node's sockets only.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    /// Joins the other nodes: events go to them from now on. Set once.
    pub fn set_bus(&self, bus: Arc<dyn Bus>) {
        if self.bus.set(bus).is_err() {
            tracing::warn!("the cluster bus was already set");
        }
    }

    /// Whether other nodes may hold sockets.
    pub fn clustered(&self) -> bool {
        self.bus.get().is_some()
    }

    /// Sends `event` to the other nodes, if there are any.
    pub fn publish(&self, event: Shared) {
        if let Some(bus) = self.bus.get() {
            bus.publish(event);
        }
    }

    /// `event` with `data` to the sockets in `rooms`, on every node.
    pub async fn emit<T: Serialize + ?Sized>(
        &self,
        rooms: impl Into<Vec<String>>,
        event: &'static str,
        data: &T,
    ) {
        let rooms = rooms.into();
        if rooms.is_empty() {
            return;
        }
        if let Some(bus) = self.bus.get() {
            match serde_json::to_value(data) {
                Ok(data) => bus.publish(Shared::Emit {
                    rooms: rooms.clone(),
                    event: event.to_string(),
                    data,
                }),
                Err(e) => tracing::warn!("{event}: serializing for the other nodes: {e}"),
            }
        }
        if let Err(e) = self.io.to(rooms).emit(event, data).await {
            tracing::debug!("{event} emit: {e}");
        }
    }

    /// `event` with `data` to every socket, on every node.
    pub async fn emit_all<T: Serialize + ?Sized>(&self, event: &'static str, data: &T) {
        if let Some(bus) = self.bus.get() {
            if let Ok(data) = serde_json::to_value(data) {
                bus.publish(Shared::Emit {
                    rooms: Vec::new(),
                    event: event.to_string(),
                    data,
                });
            }
        }
        if let Err(e) = self.io.emit(event, data).await {
            tracing::debug!("{event} emit: {e}");
        }
    }

    /// Disconnects the sockets in `room`, on every node.
    pub async fn disconnect(&self, room: String) {
        self.publish(Shared::Disconnect { room: room.clone() });
        if let Err(e) = self.io.to(room).disconnect().await {
            tracing::warn!("disconnecting a room's sockets: {e}");
        }
    }

    /// Applies an `Emit` or `Disconnect` from another node to this node's
    /// sockets; other events are the services' (see `App::on_shared`).
    pub(crate) async fn apply(&self, event: Shared) {
        match event {
            Shared::Emit { rooms, event, data } => {
                let r = if rooms.is_empty() {
                    self.io.emit(event, &data).await
                } else {
                    self.io.to(rooms).emit(event, &data).await
                };
                if let Err(e) = r {
                    tracing::debug!("relayed emit: {e}");
                }
            }
            Shared::Disconnect { room } => {
                if let Err(e) = self.io.to(room).disconnect().await {
                    tracing::warn!("disconnecting a room's sockets for another node: {e}");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_written() {
        let events = [
            Shared::Emit {
                rooms: vec!["ana".into()],
                event: "typing".into(),
                data: serde_json::json!({"chatId": "c", "isTyping": true}),
            },
            Shared::Deliver {
                payload: serde_json::json!({"id": "m1"}),
                seq: 7,
                id: "m1".into(),
                chat_id: "c".into(),
                sender: "ana".into(),
                members: vec!["ana".into(), "bo".into()],
            },
            Shared::Disconnect { room: "s:1".into() },
            Shared::Presence {
                user: "bo".into(),
                online: true,
            },
            Shared::Present {
                users: vec!["bo".into()],
            },
            Shared::Hello,
        ];
        for e in events {
            let text = serde_json::to_string(&e).expect("serialize");
            let back: Shared = serde_json::from_str(&text).expect("parse");
            assert_eq!(back, e, "{text}");
        }
        assert!(serde_json::from_str::<Shared>(r#"{"kind":"unknown"}"#).is_err());
    }
}
