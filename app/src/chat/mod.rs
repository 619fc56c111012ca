//! Chat: direct and group chats, durable messages with receipts, typing,
//! reactions, edits and attachments. [`Chat`] holds the rules and tells the
//! people concerned over the Socket.IO handle; the Socket.IO events
//! (`socket`) and the REST API (`http::chats`) are two transports over it.

pub(crate) mod attachments;
mod delivery;
pub mod presence;
pub mod socket;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::fanout::Fanout;
use crate::files::Files;
use nodo_signaling::webhook::Webhooks;
use serde_json::{json, Value};

use crate::config::ChatConfig;
use crate::error::{to_json, Error, Missing};
use crate::limits::{Limiter, Rate, Turn, Turns};
use crate::metrics::AppMetrics;
use crate::push::Push;
use crate::store::{ChatSummary, Message, NewMessage, SendOutcome, Store};
pub use attachments::Upload;
pub use presence::Presence;

/// Message content types a client may claim (attachments get theirs from the
/// file's bytes): the app's own kinds, and MIME types of these families.
const CONTENT_KINDS: &[&str] = &[
    "text", "image", "file", "audio", "video", "location", "system",
];
const CONTENT_MIME: &[&str] = &["text/plain", "text/markdown", "application/pdf"];
const CONTENT_MIME_FAMILIES: &[&str] = &["image/", "audio/", "video/"];

/// Longest id a client may choose (message ids, replyTo).
pub const MAX_ID_LEN: usize = 128;

/// Checks a client-claimed content type against the allow-list.
pub fn check_content_type(ct: &str) -> Result<(), Error> {
    let ct = ct.trim();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    };
    let ok = CONTENT_KINDS.contains(&ct)
        || CONTENT_MIME.contains(&ct)
        || CONTENT_MIME_FAMILIES
            .iter()
            .any(|f| ct.strip_prefix(f).is_some_and(token));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "contentType must be text, image, file, audio, video, location, text/plain, \
             text/markdown, application/pdf, image/*, audio/* or video/*",
        ))
    }
}

/// Checks an optional client-chosen id (`field` names it in the error).
pub fn check_id(field: &'static str, id: Option<&str>) -> Result<(), Error> {
    match id {
        Some(id) if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) => {
            Err(Error::invalid(format!(
                "{field} must be 1..{MAX_ID_LEN} characters without control characters"
            )))
        }
        _ => Ok(()),
    }
}

/// The per-user rate limits of chat writes.
struct ChatLimits {
    send: Limiter<String>,
    read: Limiter<String>,
    typing: Limiter<String>,
    react: Limiter<String>,
    edit: Limiter<String>,
    create: Limiter<String>,
    add_members: Limiter<String>,
    /// Rate-limit refusals on the socket, per user: past them, the socket is disconnected.
    refusals: Limiter<String>,
    /// Socket events of one user handled at once.
    turns: Turns<String>,
}

impl ChatLimits {
    fn new(c: &ChatConfig) -> ChatLimits {
        ChatLimits {
            send: Limiter::new("messages", Rate::new(c.rate_per_sec, c.rate_burst)),
            read: Limiter::new("read receipts", c.read_rate),
            typing: Limiter::new("typing events", c.typing_rate),
            react: Limiter::new("reactions", c.reaction_rate),
            edit: Limiter::new("edits and deletes", c.edit_rate),
            create: Limiter::new("new chats", c.chat_create_rate),
            add_members: Limiter::new("member changes", c.member_add_rate),
            refusals: Limiter::new("refused events", c.refusal_rate),
            turns: Turns::new(c.user_concurrency),
        }
    }
}

/// A typing indicator that expires unless refreshed.
struct TypingEntry {
    expires: Instant,
    /// Who hears it stop.
    others: Vec<String>,
}

/// The chat service: one per node.
pub struct Chat {
    store: Store,
    fanout: Arc<Fanout>,
    presence: Arc<Presence>,
    push: Arc<Push>,
    webhooks: Arc<Webhooks>,
    config: ChatConfig,
    /// Where attachments' bytes are kept.
    attachments: Files,
    /// Live typing indicators: (chat, user) -> expiry. One task (started
    /// with the service) tells who stopped typing; no task per event.
    typing: Mutex<HashMap<(String, String), TypingEntry>>,
    limits: ChatLimits,
    /// Receipts: clients' confirmations, stored and told to senders (`delivery`).
    delivery: delivery::Delivery,
}

/// Where the chat reports beyond its sockets: notifications for the
/// offline, webhooks, and the node's counters.
pub struct Outlets {
    pub push: Arc<Push>,
    pub webhooks: Arc<Webhooks>,
    pub metrics: AppMetrics,
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

/// A server-made message id (`MS_…`), ordered by time: the `messages.id`
/// unique index then takes each batch's ids on its last page rather than on
/// one random page per message (see [`nodo_signaling::ids::new_ordered_sid`]).
fn new_message_id() -> String {
    let ms = u64::try_from(crate::store::now_ms()).unwrap_or(0);
    nodo_signaling::ids::new_ordered_sid("MS_", ms)
}

/// Locks a map whose every update is a single entry change: a panic while it
/// was held (a bug) leaves it consistent, so it is used as it is.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Chat {
    pub fn new(
        store: Store,
        fanout: Arc<Fanout>,
        presence: Arc<Presence>,
        outlets: Outlets,
        config: ChatConfig,
        attachments_dir: PathBuf,
    ) -> Arc<Chat> {
        let Outlets {
            push,
            webhooks,
            metrics,
        } = outlets;
        let store_for_files = store.clone();
        let chat = Arc::new(Chat {
            delivery: delivery::Delivery::start(
                store.clone(),
                fanout.clone(),
                Duration::from_secs(config.delivery_ack_timeout_secs),
                metrics,
            ),
            store,
            fanout,
            presence,
            push,
            webhooks,
            limits: ChatLimits::new(&config),
            config,
            attachments: Files::new(attachments_dir, &store_for_files, "attachment"),
            typing: Mutex::new(HashMap::new()),
        });
        let tick = Duration::from_millis((chat.config.typing_timeout_ms / 4).clamp(50, 1000));
        tokio::spawn(typing_expiry(Arc::downgrade(&chat), tick));
        delivery::housekeeping(&chat);
        chat
    }

    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    pub fn presence(&self) -> &Arc<Presence> {
        &self.presence
    }

    /// One message of `identity`'s send rate, or `RateLimited` with the wait.
    pub fn take_token(&self, identity: &str) -> Result<(), Error> {
        check(&self.limits.send, identity)
    }

    /// Waits for `user`'s turn to have a socket event handled: at most
    /// `user_concurrency` at once, so one user's flood waits behind itself,
    /// not in front of other users at the shared database writer.
    pub async fn turn(&self, user: &str) -> Turn<'_, String> {
        self.limits.turns.take(&user.to_string()).await
    }

    /// Counts a rate-limit refusal of `user`; true once they collect them
    /// faster than `refusal_rate` allows (a client ignoring `retryAfter`).
    pub fn refused_too_often(&self, user: &str) -> bool {
        check(&self.limits.refusals, user).is_err()
    }

    /// Checks what a sender claims of a message (REST and socket alike):
    /// its id, `replyTo` and content type.
    pub fn check_outgoing(&self, m: &Outgoing) -> Result<(), Error> {
        check_id("id", m.id.as_deref())?;
        check_id("replyTo", m.reply_to.as_deref())?;
        check_content_type(&m.content_type)
    }

    /// `{senderProfile: {id, name, avatar}}` from the store: what a relayed
    /// message says of its sender (never what the sender's payload claims).
    pub async fn sender_profile(&self, me: &str) -> Result<Value, Error> {
        let (name, avatar) = self
            .store
            .profile(me)
            .await?
            .ok_or_else(|| Error::NotFound(Missing::User(me.to_string())))?;
        Ok(json!({"senderProfile": {"id": me, "name": name, "avatar": avatar}}))
    }

    /// Refuses an upload that would take `uploader` past the daily attachment bytes.
    pub async fn check_upload_quota(&self, uploader: &str, size: usize) -> Result<(), Error> {
        let limit = self.config.attachment_bytes_per_day;
        let since = crate::store::now_ms() - 24 * 3600 * 1000;
        let used = self.store.attachment_bytes_since(uploader, since).await?;
        let used = u64::try_from(used).unwrap_or(0);
        if used.saturating_add(size as u64) > limit {
            return Err(Error::too_large(format!(
                "attachments: {used} of {limit} bytes per day used; this file is {size}"
            )));
        }
        Ok(())
    }

    /// Refuses when `user` is already in `max_chats_per_user` chats.
    async fn check_chat_count(&self, user: &str) -> Result<(), Error> {
        let max = self.config.max_chats_per_user;
        if usize::try_from(self.store.chat_count(user).await?).unwrap_or(usize::MAX) >= max {
            return Err(Error::conflict(format!(
                "{user} is already in {max} chats, the most allowed"
            )));
        }
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
                if let Some(id) = self.store.known_direct_chat(me, r) {
                    return Ok((id, false));
                }
                if self.store.user(r).await?.is_none() {
                    return Err(Error::NotFound(Missing::User(r.to_string())));
                }
                if !self.store.direct_chat_exists(me, r).await? {
                    check(&self.limits.create, me)?;
                    self.check_chat_count(me).await?;
                    self.check_chat_count(r).await?;
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
            .fanout
            .io()
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
        self.check_outgoing(&m)?;
        let started = std::time::Instant::now();
        let out = self
            .store
            .send(
                NewMessage {
                    id: m.id.unwrap_or_else(new_message_id),
                    chat_id: m.chat_id,
                    sender: sender.to_string(),
                    content: m.content,
                    content_type: m.content_type,
                    reply_to: m.reply_to,
                    attachment_id: m.attachment_id,
                },
                // Pending for everyone: delivered once a recipient's client confirms.
                Arc::new(|_: &str| false),
            )
            .await
            .inspect_err(|_| self.delivery.metrics.message("refused", None))?;
        if !out.inserted {
            self.delivery.metrics.message("duplicate", None);
        } else {
            self.delivery
                .metrics
                .message("stored", Some(started.elapsed()));
            self.deliver(&out.message, &out.members, extra, except_socket)
                .await?;
        }
        Ok(out)
    }

    /// Sends `event` with `data` to every member of a chat.
    async fn to_members(&self, chat: &str, event: &'static str, data: &Value) -> Result<(), Error> {
        let members = self.store.members(chat).await?;
        self.fanout.emit(members, event, data).await;
        Ok(())
    }

    /// Marks a chat read by `reader` and tells each original sender.
    pub async fn read(&self, chat_id: &str, reader: &str) -> Result<(), Error> {
        check(&self.limits.read, reader)?;
        let by_sender = self.store.mark_read(chat_id, reader).await?;
        for (sender, ids) in by_sender {
            let payload = json!({
                // The seed frontends read the reader's identity under senderChatPath.
                "senderChatPath": reader,
                "readerChatPath": reader,
                "chatId": chat_id,
                "messageIds": ids,
            });
            self.fanout
                .emit(vec![sender], "messagesRead", &payload)
                .await;
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
        check(&self.limits.typing, me)?;
        let (chat_id, _) = self.resolve(me, chat_id, recipient).await?;
        let payload =
            json!({"chatId": chat_id, "userId": me, "senderChatPath": me, "isTyping": is_typing});
        let others: Vec<String> = self
            .store
            .members(&chat_id)
            .await?
            .into_iter()
            .filter(|m| m != me)
            .collect();
        {
            let mut t = lock(&self.typing);
            let key = (chat_id.clone(), me.to_string());
            if is_typing {
                let expires = Instant::now() + Duration::from_millis(self.config.typing_timeout_ms);
                t.insert(
                    key,
                    TypingEntry {
                        expires,
                        others: others.clone(),
                    },
                );
            } else {
                t.remove(&key);
            }
        }
        self.fanout.emit(others, "typing", &payload).await;
        Ok(())
    }

    /// Typing indicators past their expiry, removed from the table.
    fn expired_typing(&self, now: Instant) -> Vec<((String, String), Vec<String>)> {
        let mut t = lock(&self.typing);
        let done: Vec<(String, String)> = t
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        done.into_iter()
            .filter_map(|k| t.remove(&k).map(|e| (k, e.others)))
            .collect()
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
        check_id("messageId", Some(message_id))?;
        check(&self.limits.react, me)?;
        let m = self
            .store
            .message_by_id(message_id)
            .await?
            .ok_or(Error::NotFound(Missing::Message))?;
        self.store.require_member(&m.chat_id, me).await?;
        if add
            && !m
                .reactions
                .iter()
                .any(|r| r.emoji == emoji && r.user_id == me)
        {
            let mine = m.reactions.iter().filter(|r| r.user_id == me).count();
            if mine >= self.config.max_reactions_per_user {
                return Err(Error::conflict(format!(
                    "at most {} reactions per person on a message",
                    self.config.max_reactions_per_user
                )));
            }
            let mut emojis: Vec<&str> = m.reactions.iter().map(|r| r.emoji.as_str()).collect();
            emojis.sort_unstable();
            emojis.dedup();
            if !emojis.contains(&emoji) && emojis.len() >= self.config.max_reaction_emojis {
                return Err(Error::conflict(format!(
                    "at most {} different emoji on a message",
                    self.config.max_reaction_emojis
                )));
            }
        }
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
        check_id("messageId", Some(message_id))?;
        check(&self.limits.edit, me)?;
        let m = self.store.edit(message_id, me, content).await?;
        let event = if content.is_none() {
            // A deleted message's attachment is no longer served, nor kept.
            self.drop_attachment(&m).await;
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
        let max = self.config.max_group_members;
        // The creator is a member too.
        if participants.iter().filter(|p| p.as_str() != me).count() + 1 > max {
            return Err(Error::too_large(format!(
                "a group has at most {max} members, its creator included"
            )));
        }
        if kind == "group" {
            check(&self.limits.create, me)?;
            self.check_chat_count(me).await?;
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
        if users.is_empty() {
            return Err(Error::invalid("userIds is empty"));
        }
        check(&self.limits.add_members, me)?;
        self.group_role(chat_id, me).await?;
        let max = self.config.max_group_members;
        let members = self.store.members(chat_id).await?;
        let mut new: Vec<&String> = users.iter().filter(|u| !members.contains(u)).collect();
        new.sort_unstable();
        new.dedup();
        if members.len() + new.len() > max {
            return Err(Error::too_large(format!(
                "a group has at most {max} members; it has {} and {} would join",
                members.len(),
                new.len()
            )));
        }
        self.require_users(users).await?;
        for u in &new {
            self.check_chat_count(u).await?;
        }
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
        check(&self.limits.add_members, me)?;
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
            .fanout
            .io()
            .to(user.to_string())
            .leave(format!("chat:{chat_id}"))
            .await;
        let members = self.store.members(chat_id).await?;
        let payload = json!({"chatId": chat_id, "members": members, "removed": [user], "by": me});
        self.fanout
            .emit(before, "chatMembersChanged", &payload)
            .await;
        Ok(payload)
    }
}

/// One action of `key` under `limiter`, or `RateLimited` with the wait.
fn check(limiter: &Limiter<String>, key: &str) -> Result<(), Error> {
    limiter.check(&key.to_string()).map_err(Error::RateLimited)
}

/// The one task that ends typing indicators nobody refreshed: every `tick`
/// it tells the others in the chat, until the service is dropped.
async fn typing_expiry(chat: Weak<Chat>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(chat) = chat.upgrade() else { return };
        for ((chat_id, me), others) in chat.expired_typing(Instant::now()) {
            let stop = json!({"chatId": chat_id, "userId": me, "senderChatPath": me, "isTyping": false, "expired": true});
            chat.fanout.emit(others, "typing", &stop).await;
        }
    }
}
