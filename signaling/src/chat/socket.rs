//! Socket.IO handlers: authentication, presence, messages, receipts, typing,
//! reactions, edits and the call relay events of DESIGN.md §7.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;

use super::{ack_error, Chat, Session};
use crate::error::Error;
use crate::store::NewMessage;

/// Answers an event's ack: the result, or `{ok: false, error, code}`.
fn reply(ack: AckSender, out: Result<Value, Error>) {
    let _ = ack.send(&out.unwrap_or_else(|e| ack_error(&e)));
}

/// The event's payload, or a bad-request error naming what is wrong with it.
fn payload<T, E: std::fmt::Display>(data: Result<T, E>) -> Result<T, Error> {
    data.map_err(|e| Error::BadRequest(format!("invalid payload: {e}")))
}

/// Registers the default namespace.
pub fn attach(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

#[derive(Deserialize, Default)]
struct AuthPayload {
    #[serde(default)]
    token: Option<String>,
}

fn query_param(s: &SocketRef, key: &str) -> Option<String> {
    let q = s.req_parts().uri.query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Connect middleware: a valid token (auth `{token}` or query `token`), and a
/// `userId` query, if any, that matches it. Refusals reach the client as
/// `connect_error` with the reason.
async fn authenticate(
    s: SocketRef,
    TryData(auth): TryData<AuthPayload>,
    State(chat): State<Arc<Chat>>,
) -> Result<(), Error> {
    let token = auth
        .ok()
        .and_then(|a| a.token)
        .or_else(|| query_param(&s, "token"))
        .ok_or_else(|| {
            Error::Unauthorized("authentication required: pass auth {token} or ?token=".into())
        })?;
    let claims = chat.keys.verify(&token)?;
    let identity = claims.identity().to_string();
    if identity.is_empty() {
        return Err(Error::Unauthorized("token has no identity".into()));
    }
    if let Some(user_id) = query_param(&s, "userId") {
        if !user_id.is_empty() && user_id != identity {
            return Err(Error::Forbidden("userId does not match the token".into()));
        }
    }
    let (user, _) = chat.store.ensure_user(&identity, &claims.name).await?;
    // Counted here, before the client hears it is connected, so presence
    // (e.g. the directory's online flag) is right as soon as it is.
    let first = chat.socket_up(&identity);
    s.extensions.insert(Session {
        identity,
        name: user.name,
        first,
    });
    Ok(())
}

fn session(s: &SocketRef) -> Option<Session> {
    s.extensions.get::<Session>()
}

async fn on_connect(s: SocketRef, io: SocketIo, State(chat): State<Arc<Chat>>) {
    let Some(me) = session(&s) else {
        let _ = s.disconnect();
        return;
    };
    // Handlers first, before any await: the client may emit as soon as it is connected.
    s.on("sendMessage", send_message);
    s.on("markAsRead", mark_as_read);
    s.on("typing", typing);
    s.on("addReaction", add_reaction);
    s.on("removeReaction", remove_reaction);
    s.on("editMessage", edit_message);
    s.on("deleteMessage", delete_message);
    s.on("initiateCall", initiate_call);
    s.on("acceptCall", accept_call);
    s.on("rejectCall", reject_call);
    s.on_disconnect(async |s: SocketRef, State(chat): State<Arc<Chat>>| {
        if let Some(me) = session(&s) {
            if chat.socket_down(&me.identity) {
                let _ = s.broadcast().emit("contact_offline", &me.identity).await;
            }
        }
    });
    s.join(me.identity.clone());
    match chat.store.chat_ids_of(&me.identity).await {
        Ok(ids) => s.join(
            ids.into_iter()
                .map(|c| format!("chat:{c}"))
                .collect::<Vec<_>>(),
        ),
        Err(e) => tracing::warn!("chat rooms for {}: {e}", me.identity),
    }
    if me.first {
        let _ = s.broadcast().emit("contact_online", &me.identity).await;
    }
    let _ = s.emit("online_users", &chat.online_users());
    deliver_pending(&s, &io, &chat, &me).await;
}

/// Messages sent while the user was offline, oldest first.
async fn deliver_pending(s: &SocketRef, io: &SocketIo, chat: &Chat, me: &Session) {
    let pending = match chat.store.undelivered(&me.identity).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!("pending messages for {}: {e}", me.identity);
            return;
        }
    };
    for m in pending {
        if s.emit("receiveMessage", &m).is_err() {
            return;
        }
        if chat
            .store
            .mark_delivered(&me.identity, std::slice::from_ref(&m.id))
            .await
            .is_ok()
        {
            let _ = io
                .to(m.sender_chat_path.clone())
                .emit(
                    "messageDelivered",
                    &json!({"id": m.id, "chatId": m.chat_id, "to": me.identity}),
                )
                .await;
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SendMessage {
    id: Option<String>,
    chat_id: Option<String>,
    sender_chat_path: Option<String>,
    recipient_chat_path: Option<String>,
    #[serde(default)]
    content: String,
    content_type: Option<String>,
    reply_to: Option<String>,
    sender_profile: Option<Value>,
}

/// Checks a send and resolves its chat; the same rules serve REST sends.
pub async fn resolve_chat(
    chat: &Chat,
    me: &str,
    chat_id: Option<&str>,
    recipient: Option<&str>,
) -> Result<(String, bool), Error> {
    match (chat_id, recipient) {
        (Some(c), _) => {
            chat.store.require_member(c, me).await?;
            Ok((c.to_string(), false))
        }
        (None, Some(r)) => {
            if r == me {
                return Err(Error::BadRequest("cannot message yourself".into()));
            }
            if chat.store.user(r).await?.is_none() {
                return Err(Error::NotFound(format!("no user {r}")));
            }
            chat.store.direct_chat(me, r).await
        }
        (None, None) => Err(Error::BadRequest(
            "chatId or recipientChatPath is required".into(),
        )),
    }
}

async fn send_message(
    s: SocketRef,
    io: SocketIo,
    TryData(raw): TryData<Value>,
    ack: AckSender,
    State(chat): State<Arc<Chat>>,
) {
    let result = async {
        let me = session(&s).ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
        let raw = payload(raw)?;
        let size = serde_json::to_vec(&raw).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > chat.config.max_message_bytes {
            return Err(Error::TooLarge(format!(
                "message is {size} bytes; the limit is {}",
                chat.config.max_message_bytes
            )));
        }
        let m: SendMessage = serde_json::from_value(raw).map_err(|e| Error::BadRequest(format!("invalid message: {e}")))?;
        if m.sender_chat_path.as_deref().is_some_and(|p| p != me.identity) {
            return Err(Error::Forbidden("cannot send as someone else".into()));
        }
        if m.content.trim().is_empty() {
            return Err(Error::BadRequest("content is empty".into()));
        }
        if let Some(id) = &m.id {
            if id.is_empty() || id.len() > 128 {
                return Err(Error::BadRequest("id must be 1..128 characters".into()));
            }
        }
        chat.take_token(&me.identity)?;
        let (chat_id, created) =
            resolve_chat(&chat, &me.identity, m.chat_id.as_deref(), m.recipient_chat_path.as_deref()).await?;
        if created {
            // Both members' sockets follow the new chat's room.
            let members = chat.store.members(&chat_id).await?;
            let _ = io.to(members).join(format!("chat:{chat_id}")).await;
        }
        let out = chat
            .store
            .send(NewMessage {
                id: m.id.unwrap_or_else(|| crate::ids::new_sid("MS_")),
                chat_id,
                sender: me.identity.clone(),
                content: m.content,
                content_type: m.content_type.unwrap_or_else(|| "text".into()),
                reply_to: m.reply_to,
                attachment_id: None,
            }, chat.online_fn())
            .await?;
        if out.inserted {
            let extra = m.sender_profile.map(|p| json!({"senderProfile": p}));
            chat.deliver(&io, &out.message, &out.members, extra.as_ref(), Some(s.id)).await?;
        }
        Ok(json!({"ok": true, "id": out.message.id, "chatId": out.message.chat_id, "createdAt": out.message.created_at}))
    }
    .await;
    reply(ack, result);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkAsRead {
    chat_id: Option<String>,
    sender_chat_path: Option<String>,
}

async fn mark_as_read(
    s: SocketRef,
    io: SocketIo,
    TryData(m): TryData<MarkAsRead>,
    ack: AckSender,
    State(chat): State<Arc<Chat>>,
) {
    let result = async {
        let me = session(&s).ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
        let m = payload(m)?;
        let chat_id = match (&m.chat_id, &m.sender_chat_path) {
            (Some(c), _) => {
                chat.store.require_member(c, &me.identity).await?;
                c.clone()
            }
            (None, Some(other)) => {
                if chat.store.user(other).await?.is_none() {
                    return Err(Error::NotFound(format!("no user {other}")));
                }
                chat.store.direct_chat(&me.identity, other).await?.0
            }
            (None, None) => {
                return Err(Error::BadRequest(
                    "chatId or senderChatPath is required".into(),
                ))
            }
        };
        read_chat(&chat, &io, &chat_id, &me.identity).await?;
        Ok(json!({"ok": true}))
    }
    .await;
    reply(ack, result);
}

/// Marks a chat read by `reader` and tells each original sender.
pub async fn read_chat(
    chat: &Chat,
    io: &SocketIo,
    chat_id: &str,
    reader: &str,
) -> Result<(), Error> {
    let by_sender = chat.store.mark_read(chat_id, reader).await?;
    for (sender, ids) in by_sender {
        let payload = json!({
            // The seed frontends read the reader's identity under senderChatPath.
            "senderChatPath": reader,
            "readerChatPath": reader,
            "chatId": chat_id,
            "messageIds": ids,
        });
        let _ = io.to(sender).emit("messagesRead", &payload).await;
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Typing {
    chat_id: Option<String>,
    recipient_chat_path: Option<String>,
    #[serde(default)]
    is_typing: bool,
}

async fn typing(
    s: SocketRef,
    io: SocketIo,
    TryData(t): TryData<Typing>,
    ack: AckSender,
    State(chat): State<Arc<Chat>>,
) {
    let result = async {
        let me = session(&s).ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
        let t = payload(t)?;
        let (chat_id, _) = resolve_chat(&chat, &me.identity, t.chat_id.as_deref(), t.recipient_chat_path.as_deref()).await?;
        let gen = chat.typing_refresh(&chat_id, &me.identity, t.is_typing);
        let payload = json!({"chatId": chat_id, "userId": me.identity, "senderChatPath": me.identity, "isTyping": t.is_typing});
        let others: Vec<String> = chat
            .store
            .members(&chat_id)
            .await?
            .into_iter()
            .filter(|m| *m != me.identity)
            .collect();
        let _ = io.to(others.clone()).emit("typing", &payload).await;
        if t.is_typing {
            let chat = chat.clone();
            let io = io.clone();
            tokio::spawn(async move {
                tokio::time::sleep(chat.typing_timeout()).await;
                if chat.typing_expired(&chat_id, &me.identity, gen) {
                    let stop = json!({"chatId": chat_id, "userId": me.identity, "senderChatPath": me.identity, "isTyping": false, "expired": true});
                    let _ = io.to(others).emit("typing", &stop).await;
                }
            });
        }
        Ok(json!({"ok": true}))
    }
    .await;
    reply(ack, result);
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactionReq {
    message_id: String,
    emoji: String,
}

async fn react(
    s: &SocketRef,
    io: &SocketIo,
    r: ReactionReq,
    chat: &Chat,
    add: bool,
) -> Result<Value, Error> {
    let me = session(s).ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
    if r.emoji.is_empty() || r.emoji.len() > 64 {
        return Err(Error::BadRequest("emoji must be 1..64 bytes".into()));
    }
    let m = chat
        .store
        .message_by_id(&r.message_id)
        .await?
        .ok_or_else(|| Error::NotFound("no such message".into()))?;
    chat.store.require_member(&m.chat_id, &me.identity).await?;
    let m = chat
        .store
        .react(&r.message_id, &me.identity, &r.emoji, add)
        .await?;
    let payload = json!({"messageId": m.id, "chatId": m.chat_id, "userId": me.identity, "emoji": r.emoji, "added": add, "reactions": m.reactions});
    chat.to_members(io, &m.chat_id, "messageReaction", &payload)
        .await?;
    Ok(json!({"ok": true, "reactions": m.reactions}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EditReq {
    message_id: String,
    #[serde(default)]
    content: String,
}

async fn change(
    s: &SocketRef,
    io: &SocketIo,
    r: EditReq,
    chat: &Chat,
    delete: bool,
) -> Result<Value, Error> {
    let me = session(s).ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
    if !delete {
        if r.content.trim().is_empty() {
            return Err(Error::BadRequest("content is empty".into()));
        }
        if r.content.len() > chat.config.max_message_bytes {
            return Err(Error::TooLarge("message too large".into()));
        }
    }
    let m = chat
        .store
        .edit(
            &r.message_id,
            &me.identity,
            (!delete).then_some(r.content.as_str()),
        )
        .await?;
    let event = if delete {
        "messageDeleted"
    } else {
        "messageEdited"
    };
    let payload = crate::error::to_json(&m)?;
    chat.to_members(io, &m.chat_id, event, &payload).await?;
    Ok(json!({"ok": true, "id": m.id, "editedAt": m.edited_at}))
}

/// A handler that parses its payload, runs `$f(&s, &io, payload, &chat, $flag)` and acks.
macro_rules! ack_handler {
    ($name:ident, $req:ty, $f:ident, $flag:expr) => {
        async fn $name(
            s: SocketRef,
            io: SocketIo,
            TryData(r): TryData<$req>,
            ack: AckSender,
            State(chat): State<Arc<Chat>>,
        ) {
            let out = match payload(r) {
                Ok(r) => $f(&s, &io, r, &chat, $flag).await,
                Err(e) => Err(e),
            };
            reply(ack, out);
        }
    };
}

ack_handler!(add_reaction, ReactionReq, react, true);
ack_handler!(remove_reaction, ReactionReq, react, false);
ack_handler!(edit_message, EditReq, change, false);
ack_handler!(delete_message, EditReq, change, true);

fn calls(chat: &Chat) -> Result<&Arc<crate::calls::Calls>, Error> {
    chat.calls
        .get()
        .ok_or_else(|| Error::Unavailable("calls are not ready".into()))
}

fn field<'a>(d: &'a Value, key: &str) -> Option<&'a str> {
    d.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The call an accept or reject is about: `callId`, else the ringing call from `callerId` to me.
async fn find_call(chat: &Chat, d: &Value, me: &str) -> Result<String, Error> {
    if let Some(id) = field(d, "callId") {
        return Ok(id.to_string());
    }
    let caller = field(d, "callerId")
        .ok_or_else(|| Error::BadRequest("callId or callerId is required".into()))?;
    calls(chat)?
        .ringing_between(caller, me)
        .await?
        .map(|c| c.id)
        .ok_or_else(|| Error::NotFound("no ringing call from that caller".into()))
}

/// `{token, url}` for the call's room, as the REST answers carry.
async fn call_token(s: &SocketRef, chat: &Chat, user: &str, room: &str) -> Result<Value, Error> {
    let u = chat
        .store
        .user(user)
        .await?
        .ok_or_else(|| Error::NotFound("no such user".into()))?;
    let token = crate::calls::mint_room_token(&chat.keys, chat.token_ttl, &u, room, false)?;
    let url = crate::calls::public_ws_url(&chat.public_url, &s.req_parts().headers);
    Ok(json!({"token": token, "url": url}))
}

async fn initiate_call(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(chat): State<Arc<Chat>>,
) {
    let out = async {
        let d = payload(d)?;
        let me = session(&s).ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
        if field(&d, "callerId").is_some_and(|c| c != me.identity) {
            return Err(Error::Forbidden(
                "callerId must be your own identity".into(),
            ));
        }
        let user = chat
            .store
            .user(&me.identity)
            .await?
            .ok_or_else(|| Error::NotFound("no such user".into()))?;
        let call = crate::api::calls::start_call(
            calls(&chat)?,
            &user,
            field(&d, "recipientId"),
            field(&d, "callType"),
            d.get("callerInfo").cloned(),
        )
        .await?;
        if call.status == crate::calls::machine::Status::Busy {
            return Ok(json!({"ok": false, "error": "busy", "code": "busy", "call": call}));
        }
        let mut out = call_token(&s, &chat, &me.identity, &call.room_name).await?;
        out["ok"] = json!(true);
        out["call"] = crate::error::to_json(&call)?;
        Ok(out)
    }
    .await;
    reply(ack, out);
}

async fn accept_call(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(chat): State<Arc<Chat>>,
) {
    let out = async {
        let d = payload(d)?;
        let me = session(&s).ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
        let id = find_call(&chat, &d, &me.identity).await?;
        let call = calls(&chat)?
            .act_as(&id, crate::calls::machine::Action::Accept, &me.identity)
            .await?;
        let mut out = call_token(&s, &chat, &me.identity, &call.room_name).await?;
        out["ok"] = json!(true);
        out["call"] = crate::error::to_json(&call)?;
        Ok(out)
    }
    .await;
    reply(ack, out);
}

async fn reject_call(
    s: SocketRef,
    TryData(d): TryData<Value>,
    ack: AckSender,
    State(chat): State<Arc<Chat>>,
) {
    let out = async {
        let d = payload(d)?;
        let me = session(&s).ok_or_else(|| Error::Unauthorized("not authenticated".into()))?;
        if field(&d, "recipientId").is_some_and(|r| r != me.identity) {
            return Err(Error::Forbidden(
                "recipientId must be your own identity".into(),
            ));
        }
        let id = find_call(&chat, &d, &me.identity).await?;
        let call = calls(&chat)?
            .act_as(&id, crate::calls::machine::Action::Reject, &me.identity)
            .await?;
        Ok(json!({"ok": true, "call": call}))
    }
    .await;
    reply(ack, out);
}
