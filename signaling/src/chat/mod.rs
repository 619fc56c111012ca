//! The chat: a Socket.IO server (socketioxide) sharing the HTTP port, with
//! presence, typing, durable messages and receipts. The REST half is in `api`.

mod socket;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use socketioxide::SocketIo;

use crate::auth::KeyStore;
use crate::config::ChatConfig;
use crate::error::Error;
use crate::store::{Message, Store};

pub use socket::{attach, read_chat, resolve_chat};

/// Shared by the socket handlers and the REST API.
pub struct Chat {
    pub store: Store,
    pub keys: KeyStore,
    pub config: ChatConfig,
    /// Connected sockets per identity.
    online: Mutex<HashMap<String, usize>>,
    /// Typing indicators: (chat, user) -> generation of the last refresh.
    typing: Mutex<HashMap<(String, String), u64>>,
    /// Token buckets per identity: (tokens, last refill).
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Public base URL for the `url` of room tokens (empty: from the request).
    pub public_url: String,
    /// Lifetime of room tokens.
    pub token_ttl: Duration,
    /// Webhooks, for the `message_sent` app event.
    pub webhooks: std::sync::OnceLock<Arc<crate::webhook::Webhooks>>,
    /// Web Push, for messages to users with no connected socket.
    pub push: std::sync::OnceLock<Arc<crate::push::Push>>,
    /// The call service, set once the socket server exists.
    pub calls: std::sync::OnceLock<Arc<crate::calls::Calls>>,
}

/// The identity a socket authenticated as.
#[derive(Clone, Debug)]
pub struct Session {
    pub identity: String,
    pub name: String,
    /// This is the user's first connected socket.
    pub first: bool,
}

impl Chat {
    pub fn new(
        store: Store,
        keys: KeyStore,
        config: ChatConfig,
        public_url: String,
        token_ttl: Duration,
    ) -> Arc<Chat> {
        Arc::new(Chat {
            public_url,
            token_ttl,
            store,
            keys,
            config,
            online: Mutex::new(HashMap::new()),
            typing: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
            calls: std::sync::OnceLock::new(),
            push: std::sync::OnceLock::new(),
            webhooks: std::sync::OnceLock::new(),
        })
    }

    /// Counts a new socket; true when it is the user's first.
    fn socket_up(&self, identity: &str) -> bool {
        let Ok(mut o) = self.online.lock() else {
            return false;
        };
        let n = o.entry(identity.to_string()).or_default();
        *n += 1;
        *n == 1
    }

    /// Counts a closed socket; true when it was the user's last.
    fn socket_down(&self, identity: &str) -> bool {
        let Ok(mut o) = self.online.lock() else {
            return false;
        };
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
        self.online
            .lock()
            .map(|o| o.contains_key(identity))
            .unwrap_or(false)
    }

    /// `is_online` as a shareable function, for the message writer.
    pub fn online_fn(self: &Arc<Self>) -> crate::store::Online {
        let me = self.clone();
        Arc::new(move |u: &str| me.is_online(u))
    }

    pub fn online_users(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .online
            .lock()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Token bucket: `Err(RateLimited)` when the user sends faster than allowed.
    pub fn take_token(&self, identity: &str) -> Result<(), Error> {
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let burst = f64::from(self.config.rate_burst);
        let (tokens, last) = b.entry(identity.to_string()).or_insert((burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.config.rate_per_sec;
        *tokens = (*tokens + refill).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(Error::RateLimited(format!(
                "rate limit: at most {} messages per second",
                self.config.rate_per_sec
            )));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// Records a typing refresh; returns its generation.
    fn typing_refresh(&self, chat: &str, user: &str, typing: bool) -> u64 {
        let Ok(mut t) = self.typing.lock() else {
            return 0;
        };
        let key = (chat.to_string(), user.to_string());
        if !typing {
            t.remove(&key);
            return 0;
        }
        let g = t.entry(key).or_insert(0);
        *g += 1;
        *g
    }

    /// True (and forgotten) when no refresh came since generation `gen`.
    fn typing_expired(&self, chat: &str, user: &str, gen: u64) -> bool {
        let Ok(mut t) = self.typing.lock() else {
            return false;
        };
        let key = (chat.to_string(), user.to_string());
        if t.get(&key) == Some(&gen) {
            t.remove(&key);
            true
        } else {
            false
        }
    }

    pub fn typing_timeout(&self) -> Duration {
        Duration::from_millis(self.config.typing_timeout_ms)
    }

    /// Pushes a stored message to the chat's members (their sockets; the
    /// store already marked online recipients delivered) and tells the sender
    /// who it reached. `except_socket` skips the sending socket (its ack
    /// carries the result).
    pub async fn deliver(
        &self,
        io: &SocketIo,
        message: &Message,
        members: &[String],
        extra: Option<&Value>,
        except_socket: Option<socketioxide::socket::Sid>,
    ) -> Result<(), Error> {
        let mut payload = crate::error::to_json(&message)?;
        if let (Some(obj), Some(Value::Object(extra))) = (payload.as_object_mut(), extra) {
            for (k, v) in extra {
                obj.entry(k.clone()).or_insert(v.clone());
            }
        }
        let op = io.to(members.to_vec());
        let op = match except_socket {
            Some(sid) => op.except(sid),
            None => op,
        };
        if let Err(e) = op.emit("receiveMessage", &payload).await {
            tracing::debug!("receiveMessage emit: {e}");
        }
        if let Some(w) = self.webhooks.get() {
            w.app_event("message_sent", json!({"message": message}));
        }
        if let Some(push) = self.push.get() {
            for (to, status) in &message.status {
                if status == "sent" {
                    let preview: String = message.content.chars().take(100).collect();
                    push.notify(
                        to,
                        &json!({"type": "message", "chatId": message.chat_id, "messageId": message.id,
                                "senderId": message.sender_chat_path, "preview": preview}),
                        crate::push::Priority::Normal,
                    );
                }
            }
        }
        for (to, status) in &message.status {
            if status == "delivered" {
                let _ = io
                    .to(message.sender_chat_path.clone())
                    .emit(
                        "messageDelivered",
                        &json!({"id": message.id, "chatId": message.chat_id, "to": to}),
                    )
                    .await;
            }
        }
        Ok(())
    }

    /// Sends `event` with `data` to every member of a chat.
    pub async fn to_members(
        &self,
        io: &SocketIo,
        chat: &str,
        event: &'static str,
        data: &Value,
    ) -> Result<(), Error> {
        let members = self.store.members(chat).await?;
        if let Err(e) = io.to(members).emit(event, data).await {
            tracing::debug!("{event} emit: {e}");
        }
        Ok(())
    }
}

/// `{ok: false, error}` for acks.
pub fn ack_error(e: &Error) -> Value {
    json!({"ok": false, "error": e.to_string(), "code": e.code()})
}
