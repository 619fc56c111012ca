//! Chat: direct and group chats, durable messages with receipts, typing,
//! reactions, edits and attachments. [`Chat`] holds the rules and tells the
//! people concerned over the Socket.IO handle; the Socket.IO events
//! (`socket`) and the REST API (`http::chats`) are two transports over it.

mod attachments;
pub mod presence;
pub mod socket;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nodo_signaling::webhook::Webhooks;
use serde_json::{json, Value};
use socketioxide::SocketIo;

use crate::config::ChatConfig;
use crate::error::{to_json, Error, Missing};
use crate::push::{Priority, Push};
use crate::store::{Attachment, ChatSummary, Message, NewMessage, SendOutcome, Store};
pub use attachments::Upload;
pub use presence::Presence;

/// Most people in a group created at once.
const MAX_GROUP_CREATE: usize = 1000;

/// The chat service: one per node.
pub struct Chat {
    store: Store,
    io: SocketIo,
    presence: Arc<Presence>,
    push: Arc<Push>,
    webhooks: Arc<Webhooks>,
    config: ChatConfig,
    /// Where attachment files are kept.
    attachments_dir: PathBuf,
    /// Typing indicators: (chat, user) -> generation of the last refresh.
    typing: Mutex<HashMap<(String, String), u64>>,
    /// Token buckets per identity: (tokens, last refill).
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// A message a user sends, before it is stored.
pub struct Outgoing {
    /// Client-chosen id (idempotent resends), or none for a server-made one.
    pub id: Option<String>,
    pub chat_id: String,
    pub content: String,
    pub content_type: String,
    pub reply_to: Option<String>,
    pub attachment_id: Option<String>,
}

/// Locks a map whose every update is a single entry change: a panic while it
/// was held (a bug) leaves it consistent, so it is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Chat {
    pub fn new(
        store: Store,
        io: SocketIo,
        presence: Arc<Presence>,
        push: Arc<Push>,
        webhooks: Arc<Webhooks>,
        config: ChatConfig,
        attachments_dir: PathBuf,
    ) -> Arc<Chat> {
        Arc::new(Chat {
            store,
            io,
            presence,
            push,
            webhooks,
            config,
            attachments_dir,
            typing: Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    pub fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    /// Token bucket: `RateLimited` when the user sends faster than allowed.
    pub fn take_token(&self, identity: &str) -> Result<(), Error> {
        let mut b = lock(&self.buckets);
        let now = Instant::now();
        let burst = f64::from(self.config.rate_burst);
        let (tokens, last) = b.entry(identity.to_string()).or_insert((burst, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * self.config.rate_per_sec;
        *tokens = (*tokens + refill).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(Error::RateLimited(self.config.rate_per_sec));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// The chat a send or a typing event is about: `chat_id` (the sender must
    /// be a member), else the direct chat with `recipient` (created on first
    /// use; `true` when it was). The same rules serve the socket and REST.
    pub async fn resolve(
        &self,
        me: &str,
        chat_id: Option<&str>,
        recipient: Option<&str>,
    ) -> Result<(String, bool), Error> {
        match (chat_id, recipient) {
            (Some(c), _) => {
                self.store.require_member(c, me).await?;
                Ok((c.to_string(), false))
            }
            (None, Some(r)) => {
                if r == me {
                    return Err(Error::invalid("cannot message yourself"));
                }
                if self.store.user(r).await?.is_none() {
                    return Err(Error::NotFound(Missing::User(r.to_string())));
                }
                let (id, created) = self.store.direct_chat(me, r).await?;
                if created {
                    // Both members' sockets follow the new chat's room.
                    self.follow(&id, &self.store.members(&id).await?).await;
                }
                Ok((id, created))
            }
            (None, None) => Err(Error::invalid("chatId or recipientChatPath is required")),
        }
    }

    /// Makes members' sockets follow a chat's Socket.IO room.
    async fn follow(&self, chat_id: &str, members: &[String]) {
        let _ = self
            .io
            .to(members.to_vec())
            .join(format!("chat:{chat_id}"))
            .await;
    }

    /// Stores a message durably and delivers it: to the members' sockets
    /// (except `except_socket`, whose ack carries the result), as a webhook
    /// app event, and as a push to members with no socket. A resend of the
    /// same id stores and delivers nothing again.
    pub async fn send(
        &self,
        sender: &str,
        m: Outgoing,
        extra: Option<&Value>,
        except_socket: Option<socketioxide::socket::Sid>,
    ) -> Result<SendOutcome, Error> {
        let out = self
            .store
            .send(
                NewMessage {
                    id: m.id.unwrap_or_else(|| nodo_signaling::ids::new_sid("MS_")),
                    chat_id: m.chat_id,
                    sender: sender.to_string(),
                    content: m.content,
                    content_type: m.content_type,
                    reply_to: m.reply_to,
                    attachment_id: m.attachment_id,
                },
                self.presence.online_fn(),
            )
            .await?;
        if out.inserted {
            self.deliver(&out.message, &out.members, extra, except_socket)
                .await?;
        }
        Ok(out)
    }

    /// Pushes a stored message to the chat's members (the store already
    /// marked online recipients delivered) and tells the sender who it reached.
    async fn deliver(
        &self,
        message: &Message,
        members: &[String],
        extra: Option<&Value>,
        except_socket: Option<socketioxide::socket::Sid>,
    ) -> Result<(), Error> {
        let mut payload = to_json(&message)?;
        if let (Some(obj), Some(Value::Object(extra))) = (payload.as_object_mut(), extra) {
            for (k, v) in extra {
                obj.entry(k.clone()).or_insert(v.clone());
            }
        }
        let op = self.io.to(members.to_vec());
        let op = match except_socket {
            Some(sid) => op.except(sid),
            None => op,
        };
        if let Err(e) = op.emit("receiveMessage", &payload).await {
            tracing::debug!("receiveMessage emit: {e}");
        }
        self.webhooks
            .app_event("message_sent", json!({"message": message}));
        for (to, status) in &message.status {
            if status == "sent" {
                let preview: String = message.content.chars().take(100).collect();
                self.push.notify(
                    to,
                    &json!({"type": "message", "chatId": message.chat_id, "messageId": message.id,
                            "senderId": message.sender_chat_path, "preview": preview}),
                    Priority::Normal,
                );
            }
        }
        for (to, status) in &message.status {
            if status == "delivered" {
                self.delivered_to(message, to).await;
            }
        }
        Ok(())
    }

    /// Tells a message's sender it reached `to`.
    async fn delivered_to(&self, message: &Message, to: &str) {
        let _ = self
            .io
            .to(message.sender_chat_path.clone())
            .emit(
                "messageDelivered",
                &json!({"id": message.id, "chatId": message.chat_id, "to": to}),
            )
            .await;
    }

    /// Messages sent to `user` while offline, oldest first, each handed to
    /// `emit` (the new socket) and then marked delivered, with a receipt to
    /// its sender. Stops when `emit` fails (the socket is gone).
    pub async fn deliver_pending(
        &self,
        user: &str,
        emit: impl Fn(&Message) -> bool,
    ) -> Result<(), Error> {
        for m in self.store.undelivered(user).await? {
            if !emit(&m) {
                return Ok(());
            }
            // A receipt that cannot be stored is logged; the next message still goes.
            match self
                .store
                .mark_delivered(user, std::slice::from_ref(&m.id))
                .await
            {
                Ok(()) => self.delivered_to(&m, user).await,
                Err(e) => e.log_if_internal(),
            }
        }
        Ok(())
    }

    /// Sends `event` with `data` to every member of a chat.
    async fn to_members(&self, chat: &str, event: &'static str, data: &Value) -> Result<(), Error> {
        let members = self.store.members(chat).await?;
        if let Err(e) = self.io.to(members).emit(event, data).await {
            tracing::debug!("{event} emit: {e}");
        }
        Ok(())
    }

    /// Marks a chat read by `reader` and tells each original sender.
    pub async fn read(&self, chat_id: &str, reader: &str) -> Result<(), Error> {
        let by_sender = self.store.mark_read(chat_id, reader).await?;
        for (sender, ids) in by_sender {
            let payload = json!({
                // The seed frontends read the reader's identity under senderChatPath.
                "senderChatPath": reader,
                "readerChatPath": reader,
                "chatId": chat_id,
                "messageIds": ids,
            });
            let _ = self.io.to(sender).emit("messagesRead", &payload).await;
        }
        Ok(())
    }

    /// `markAsRead`: by chat id, or the direct chat with `other`.
    pub async fn mark_read(
        &self,
        me: &str,
        chat_id: Option<&str>,
        other: Option<&str>,
    ) -> Result<(), Error> {
        if chat_id.is_none() && other.is_none() {
            return Err(Error::invalid("chatId or senderChatPath is required"));
        }
        let (chat_id, _) = self.resolve(me, chat_id, other).await?;
        self.read(&chat_id, me).await
    }

    /// A typing refresh (or stop) of `me` in a chat, told to the other
    /// members; without a refresh it expires after `typing_timeout_ms`.
    pub async fn typing(
        self: &Arc<Self>,
        me: &str,
        chat_id: Option<&str>,
        recipient: Option<&str>,
        is_typing: bool,
    ) -> Result<(), Error> {
        let (chat_id, _) = self.resolve(me, chat_id, recipient).await?;
        let gen = self.typing_refresh(&chat_id, me, is_typing);
        let payload =
            json!({"chatId": chat_id, "userId": me, "senderChatPath": me, "isTyping": is_typing});
        let others: Vec<String> = self
            .store
            .members(&chat_id)
            .await?
            .into_iter()
            .filter(|m| m != me)
            .collect();
        let _ = self.io.to(others.clone()).emit("typing", &payload).await;
        if is_typing {
            let chat = self.clone();
            let me = me.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(chat.config.typing_timeout_ms)).await;
                if chat.typing_expired(&chat_id, &me, gen) {
                    let stop = json!({"chatId": chat_id, "userId": me, "senderChatPath": me, "isTyping": false, "expired": true});
                    let _ = chat.io.to(others).emit("typing", &stop).await;
                }
            });
        }
        Ok(())
    }

    /// Records a typing refresh; returns its generation.
    fn typing_refresh(&self, chat: &str, user: &str, typing: bool) -> u64 {
        let mut t = lock(&self.typing);
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
        let mut t = lock(&self.typing);
        let key = (chat.to_string(), user.to_string());
        if t.get(&key) == Some(&gen) {
            t.remove(&key);
            true
        } else {
            false
        }
    }

    /// Adds (or removes) `me`'s reaction to a message of a chat they are in.
    pub async fn react(
        &self,
        me: &str,
        message_id: &str,
        emoji: &str,
        add: bool,
    ) -> Result<Message, Error> {
        if emoji.is_empty() || emoji.len() > 64 {
            return Err(Error::invalid("emoji must be 1..64 bytes"));
        }
        let m = self
            .store
            .message_by_id(message_id)
            .await?
            .ok_or(Error::NotFound(Missing::Message))?;
        self.store.require_member(&m.chat_id, me).await?;
        let m = self.store.react(message_id, me, emoji, add).await?;
        let payload = json!({"messageId": m.id, "chatId": m.chat_id, "userId": me, "emoji": emoji, "added": add, "reactions": m.reactions});
        self.to_members(&m.chat_id, "messageReaction", &payload)
            .await?;
        Ok(m)
    }

    /// Edits (`Some(content)`) or deletes (`None`) one of `me`'s messages.
    pub async fn change(
        &self,
        me: &str,
        message_id: &str,
        content: Option<&str>,
    ) -> Result<Message, Error> {
        if let Some(c) = content {
            if c.trim().is_empty() {
                return Err(Error::invalid("content is empty"));
            }
            if c.len() > self.config.max_message_bytes {
                return Err(Error::too_large("message too large"));
            }
        }
        let m = self.store.edit(message_id, me, content).await?;
        let event = if content.is_none() {
            "messageDeleted"
        } else {
            "messageEdited"
        };
        self.to_members(&m.chat_id, event, &to_json(&m)?).await?;
        Ok(m)
    }

    /// Creates a group (or opens the direct chat with the one participant)
    /// and tells its members (`chatCreated`).
    pub async fn create(
        &self,
        me: &str,
        kind: &str,
        name: &str,
        participants: &[String],
    ) -> Result<ChatSummary, Error> {
        if participants.len() > MAX_GROUP_CREATE {
            return Err(Error::invalid("at most 1000 participants"));
        }
        self.require_users(participants).await?;
        let id = match kind {
            "group" => {
                let name = name.trim();
                if name.is_empty() || name.len() > 100 {
                    return Err(Error::invalid(
                        "a group needs a name of 1 to 100 characters",
                    ));
                }
                self.store.create_group(me, name, participants).await?
            }
            "direct" => {
                let [other] = participants else {
                    return Err(Error::invalid(
                        "a direct chat has exactly one other participant",
                    ));
                };
                self.resolve(me, None, Some(other)).await?.0
            }
            _ => return Err(Error::invalid("type must be \"group\" or \"direct\"")),
        };
        self.follow(&id, &self.store.members(&id).await?).await;
        let summary = self
            .store
            .chats_of(me)
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or(Error::Vanished("chat"))?;
        self.to_members(&id, "chatCreated", &json!({"chat": summary}))
            .await?;
        Ok(summary)
    }

    async fn require_users(&self, ids: &[String]) -> Result<(), Error> {
        for id in ids {
            if self.store.user(id).await?.is_none() {
                return Err(Error::NotFound(Missing::User(id.clone())));
            }
        }
        Ok(())
    }

    /// `me`'s role in a group, `Invalid` for a direct chat.
    async fn group_role(&self, chat_id: &str, me: &str) -> Result<String, Error> {
        self.store.require_member(chat_id, me).await?;
        if self.store.chat_kind(chat_id).await?.as_deref() != Some("group") {
            return Err(Error::invalid("members can only change in a group"));
        }
        Ok(self
            .store
            .member_role(chat_id, me)
            .await?
            .unwrap_or_default())
    }

    /// Adds people to a group (any member may); tells the members.
    pub async fn add_members(
        &self,
        me: &str,
        chat_id: &str,
        users: &[String],
    ) -> Result<Value, Error> {
        self.group_role(chat_id, me).await?;
        if users.is_empty() {
            return Err(Error::invalid("userIds is empty"));
        }
        self.require_users(users).await?;
        for u in users {
            self.store.add_member(chat_id, u).await?;
        }
        self.follow(chat_id, users).await;
        let members = self.store.members(chat_id).await?;
        let payload = json!({"chatId": chat_id, "members": members, "added": users, "by": me});
        self.to_members(chat_id, "chatMembersChanged", &payload)
            .await?;
        Ok(payload)
    }

    /// Removes `user` from a group: the owner removes anyone, anyone removes
    /// themselves. Tells everyone who was a member.
    pub async fn remove_member(&self, me: &str, chat_id: &str, user: &str) -> Result<Value, Error> {
        let role = self.group_role(chat_id, me).await?;
        if user != me && role != "owner" {
            return Err(Error::Forbidden(
                "only the group owner removes other members",
            ));
        }
        let before = self.store.members(chat_id).await?;
        if !self.store.remove_member(chat_id, user).await? {
            return Err(Error::NotFound(Missing::Member));
        }
        let _ = self
            .io
            .to(user.to_string())
            .leave(format!("chat:{chat_id}"))
            .await;
        let members = self.store.members(chat_id).await?;
        let payload = json!({"chatId": chat_id, "members": members, "removed": [user], "by": me});
        let _ = self
            .io
            .to(before)
            .emit("chatMembersChanged", &payload)
            .await;
        Ok(payload)
    }

    /// An attachment's record and file, for a member of its chat.
    pub async fn attachment(&self, me: &str, id: &str) -> Result<(Attachment, Vec<u8>), Error> {
        let a = self
            .store
            .attachment(id)
            .await?
            .ok_or(Error::NotFound(Missing::Attachment))?;
        self.store.require_member(&a.chat_id, me).await?;
        let data = tokio::fs::read(self.attachments_dir.join(&a.id))
            .await
            .map_err(|_| Error::NotFound(Missing::AttachmentFile))?;
        Ok((a, data))
    }
}
