//! The Socket.IO transport (DESIGN.md §7): authentication, presence, and one
//! handler per event. Handlers parse the payload, call the services and ack
//! with the result or `{ok: false, error, code}`; the rules live in the
//! services.

use std::sync::{Arc, Weak};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::ParserError;
use socketioxide::SocketIo;

use super::Outgoing;
use crate::calls::machine::{Action, Status};
use crate::error::{Error, Missing};
use crate::App;

/// The identity a socket authenticated as.
#[derive(Clone, Debug)]
struct Session {
    identity: String,
    /// The sign-in session of its token (none for an app-minted token).
    session: Option<crate::accounts::SessionId>,
}

/// Registers the default namespace on `io`. Handlers hold the app weakly:
/// the app holds `io`, and a node that is dropped should not be kept alive
/// by its own handlers.
pub fn attach(io: &SocketIo, app: Arc<App>) {
    let app = Arc::downgrade(&app);
    let auth = app.clone();
    let connect = move |s: SocketRef| on_connect(s, app.clone());
    let middleware =
        move |s: SocketRef, TryData(a): TryData<AuthPayload>| authenticate(s, a, auth.clone());
    io.ns("/", connect.with(middleware));
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
/// `connect_error` with the reason (internal errors only with their id).
async fn authenticate(
    s: SocketRef,
    auth: Result<AuthPayload, ParserError>,
    app: Weak<App>,
) -> Result<(), crate::error::Public> {
    let result = async {
        let app = app.upgrade().ok_or(Error::ShuttingDown)?;
        let token = auth
            .ok()
            .and_then(|a| a.token)
            .or_else(|| query_param(&s, "token"))
            .ok_or(Error::Unauthenticated(
                "authentication required: pass auth {token} or ?token=",
            ))?;
        // A session token (live) or an app-minted one; never a room token.
        let bearer = app.accounts.verify(&token)?;
        if let Some(user_id) = query_param(&s, "userId") {
            if !user_id.is_empty() && user_id != bearer.identity() {
                return Err(Error::Forbidden("userId does not match the token"));
            }
        }
        let who = app.accounts.admit(&bearer).await?;
        let user = who.user;
        // Presence counts the socket in the connect handler, not here: a
        // socket dropped before that handler runs has no disconnect handler
        // to count it down again.
        s.extensions.insert(Session {
            identity: user.id,
            session: who.session,
        });
        Ok(())
    }
    .await;
    if result.is_ok() {
        register(&s, &app);
    }
    result.map_err(|e: Error| e.public())
}

fn session(s: &SocketRef) -> Result<Session, Error> {
    s.extensions
        .get::<Session>()
        .ok_or(Error::Unauthenticated("not authenticated"))
}

/// Registers `$handler(s, payload, app, $args…)` for `$event`; its result is the ack.
macro_rules! on {
    ($s:expr, $app:expr, $event:literal, $handler:ident $(, $arg:expr)*) => {{
        let app = $app.clone();
        $s.on(
            $event,
            move |s: SocketRef, TryData(d): TryData<Value>, ack: AckSender| async move {
                if Kick::heard(&s) {
                    // Being disconnected for flooding: not served, not acked.
                    return;
                }
                let mut ignores_limits = false;
                let out = match app.upgrade() {
                    Some(app) => {
                        let me = session(&s).map(|m| m.identity).unwrap_or_default();
                        let turn = app.chat.turn(&me).await;
                        // Kicked while it waited for its turn.
                        if Kick::heard(&s) {
                            return;
                        }
                        let out = $handler(&s, d, &app $(, $arg)*).await;
                        drop(turn);
                        if matches!(out, Err(Error::RateLimited(_))) {
                            ignores_limits = app.chat.refused_too_often(&me);
                        }
                        out
                    }
                    None => Err(Error::ShuttingDown),
                };
                let _ = ack.send(&out.unwrap_or_else(|e| e.ack()));
                if ignores_limits {
                    // A client that keeps flooding past its refusals costs
                    // the node work for nothing: it is disconnected.
                    Kick::start(s);
                }
            },
        );
    }};
}

/// Marks a socket that is being disconnected for flooding past its
/// refusals; its events are dropped meanwhile.
///
/// The disconnect waits until the client's events in flight have arrived:
/// socketioxide answers an event for a socket it no longer knows by closing
/// the transport at once, dropping what was queued for it, the DISCONNECT
/// packet included, and the client would hear "transport close" instead of
/// being told it was disconnected. A client still sending after
/// [`KICK_GRACE`] is cut regardless.
#[derive(Clone, Default)]
struct Kick(Arc<std::sync::OnceLock<Kicked>>);

/// When a socket was kicked and when its last event arrived since.
struct Kicked {
    /// When its last event arrived, in ms since the kick started.
    last_heard: std::sync::atomic::AtomicU64,
    started: tokio::time::Instant,
}

/// How long a kicked socket must be quiet before it is disconnected.
const KICK_QUIET: std::time::Duration = std::time::Duration::from_millis(250);
/// How long a kicked socket that never goes quiet is waited for.
const KICK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Kick {
    /// Puts the (unset) mark on a new socket: set once, by the first event
    /// that finds the client flooding, however many race to it.
    fn attach(s: &SocketRef) {
        s.extensions.insert(Kick::default());
    }

    fn start(s: SocketRef) {
        let Some(Kick(cell)) = s.extensions.get::<Kick>() else {
            return;
        };
        let fresh = Kicked {
            last_heard: std::sync::atomic::AtomicU64::new(0),
            started: tokio::time::Instant::now(),
        };
        if cell.set(fresh).is_err() {
            return;
        }
        tracing::info!(sid = %s.id, "socket floods past its refusals: disconnecting it");
        tokio::spawn(async move {
            let Some(kick) = cell.get() else {
                return;
            };
            loop {
                let heard = std::time::Duration::from_millis(
                    kick.last_heard.load(std::sync::atomic::Ordering::Relaxed),
                );
                let quiet_at = kick.started + heard + KICK_QUIET;
                let now = tokio::time::Instant::now();
                if now >= quiet_at || now >= kick.started + KICK_GRACE {
                    break;
                }
                tokio::time::sleep_until(quiet_at.min(kick.started + KICK_GRACE)).await;
            }
            // Its queue may be full of the refusals' acks: the DISCONNECT
            // packet is retried until it fits.
            let deadline = tokio::time::Instant::now() + KICK_GRACE;
            while let Err(socketioxide::SocketError::InternalChannelFull) = s.clone().disconnect() {
                if tokio::time::Instant::now() >= deadline {
                    tracing::warn!(sid = %s.id, "a flooding socket reads nothing: left to its ping timeout");
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        });
    }

    /// Whether the socket was kicked; if so, notes that an event arrived.
    fn heard(s: &SocketRef) -> bool {
        let Some(Kick(cell)) = s.extensions.get::<Kick>() else {
            return false;
        };
        let Some(kick) = cell.get() else {
            return false;
        };
        let ms = kick.started.elapsed().as_millis();
        kick.last_heard.store(
            u64::try_from(ms).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        true
    }
}

/// Registers the event handlers of an admitted socket. Done in the
/// middleware, before the client hears it is connected: socketioxide sends
/// CONNECT and only then spawns the connect handler, while a client emits at
/// once (socket.io-client flushes its buffered emits on CONNECT), and an
/// event that arrives before its handler is dropped, unacked.
fn register(s: &SocketRef, app: &Weak<App>) {
    Kick::attach(s);
    on!(s, app, "sendMessage", send_message);
    on!(s, app, "markAsRead", mark_as_read);
    on!(s, app, "typing", typing);
    on!(s, app, "addReaction", react, true);
    on!(s, app, "removeReaction", react, false);
    on!(s, app, "editMessage", change, false);
    on!(s, app, "deleteMessage", change, true);
    on!(s, app, "initiateCall", initiate_call);
    on!(s, app, "acceptCall", accept_call);
    on!(s, app, "rejectCall", reject_call);
    on!(s, app, "messageReceived", message_received);
}

async fn on_connect(s: SocketRef, app: Weak<App>) {
    let (Ok(me), Some(strong)) = (session(&s), app.upgrade()) else {
        let _ = s.disconnect();
        return;
    };
    // The event handlers are registered by the middleware (`register`).
    let gone = app.clone();
    s.on_disconnect(move |s: SocketRef| async move {
        if let (Ok(me), Some(app)) = (session(&s), gone.upgrade()) {
            if app.chat.presence().socket_down(&me.identity, s.id) {
                let presence = app.chat.presence();
                super::presence::went_offline(&app.fanout, presence, &me.identity).await;
            }
        }
    });
    let app = strong;
    // Counted once the disconnect handler is in place, so that every counted
    // socket is counted down; one that closed before (dropped during the
    // handshake) is not left counted.
    let first = app.chat.presence().socket_up(&me.identity, s.id);
    if !s.connected() {
        app.chat.presence().socket_down(&me.identity, s.id);
        return;
    }
    s.join(me.identity.clone());
    if let Some(session) = &me.session {
        // Ending a session disconnects its room; one ended between the
        // middleware and this join is caught by the second look.
        s.join(session.room());
        if !matches!(
            app.accounts.session_live(session, &me.identity).await,
            Ok(true)
        ) {
            let _ = s.disconnect();
            return;
        }
    }
    match app.store.chat_ids_of(&me.identity).await {
        Ok(ids) => s.join(
            ids.into_iter()
                .map(|c| format!("chat:{c}"))
                .collect::<Vec<_>>(),
        ),
        Err(e) => e.log_if_internal(),
    }
    // Not announced when it closed meanwhile (its disconnect handler told
    // the others it went offline).
    if first && s.connected() {
        super::presence::went_online(&app.fanout, app.chat.presence(), &me.identity, &s).await;
    }
    if let Err(socketioxide::SendError::Socket(socketioxide::SocketError::Closed)) =
        s.emit("online_users", &app.chat.presence().online_users())
    {
        // Its transport closed during the handshake, after the server stopped
        // telling this namespace: disconnecting cleans it up (and counts it down).
        let _ = s.disconnect();
        return;
    }
    // Messages no client of the user confirmed yet, oldest first.
    let pending = app.chat.deliver_pending(&s, &me.identity).await;
    if let Err(e) = pending {
        e.log_if_internal();
    }
}

/// The event's payload as `T`, or a bad-request error naming what is wrong with it.
fn payload<T: DeserializeOwned>(data: Result<Value, ParserError>) -> Result<T, Error> {
    let v = data.map_err(|e| Error::invalid(format!("invalid payload: {e}")))?;
    serde_json::from_value(v).map_err(|e| Error::invalid(format!("invalid payload: {e}")))
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
}

async fn send_message(
    s: &SocketRef,
    raw: Result<Value, ParserError>,
    app: &App,
) -> Result<Value, Error> {
    let me = session(s)?;
    let raw = raw.map_err(|e| Error::invalid(format!("invalid payload: {e}")))?;
    let limit = app.chat.config().max_message_bytes;
    let size = serde_json::to_vec(&raw).map_or(usize::MAX, |v| v.len());
    if size > limit {
        return Err(Error::too_large(format!(
            "message is {size} bytes; the limit is {limit}"
        )));
    }
    let m: SendMessage = payload(Ok(raw))?;
    if m.sender_chat_path
        .as_deref()
        .is_some_and(|p| p != me.identity)
    {
        return Err(Error::Forbidden("cannot send as someone else"));
    }
    if m.content.trim().is_empty() {
        return Err(Error::invalid("content is empty"));
    }
    if m.id
        .as_ref()
        .is_some_and(|id| id.is_empty() || id.len() > 128)
    {
        return Err(Error::invalid("id must be 1..128 characters"));
    }
    app.chat.take_token(&me.identity)?;
    let (chat_id, _) = app
        .chat
        .resolve(
            &me.identity,
            m.chat_id.as_deref(),
            m.recipient_chat_path.as_deref(),
        )
        .await?;
    // The profile others see is the stored one, whatever the payload claims.
    let extra = app.chat.sender_profile(&me.identity).await?;
    let out = app
        .chat
        .send(
            &me.identity,
            Outgoing {
                id: m.id,
                chat_id,
                content: m.content,
                content_type: m.content_type.unwrap_or_else(|| "text".into()),
                reply_to: m.reply_to,
                attachment_id: None,
            },
            Some(&extra),
            Some(s.id),
        )
        .await?;
    Ok(
        json!({"ok": true, "id": out.message.id, "chatId": out.message.chat_id, "createdAt": out.message.created_at}),
    )
}

#[derive(Deserialize)]
struct Received {
    ids: Vec<String>,
}

/// `messageReceived {ids}`: the client confirms messages it has, for clients
/// that do not answer the ack of `receiveMessage`.
async fn message_received(
    s: &SocketRef,
    d: Result<Value, ParserError>,
    app: &App,
) -> Result<Value, Error> {
    let me = session(s)?;
    let r: Received = payload(d)?;
    let confirmed = app.chat.received(&me.identity, &r.ids).await?;
    Ok(json!({"ok": true, "confirmed": confirmed}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkAsRead {
    chat_id: Option<String>,
    sender_chat_path: Option<String>,
}

async fn mark_as_read(
    s: &SocketRef,
    d: Result<Value, ParserError>,
    app: &App,
) -> Result<Value, Error> {
    let me = session(s)?;
    let m: MarkAsRead = payload(d)?;
    app.chat
        .mark_read(
            &me.identity,
            m.chat_id.as_deref(),
            m.sender_chat_path.as_deref(),
        )
        .await?;
    Ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Typing {
    chat_id: Option<String>,
    recipient_chat_path: Option<String>,
    #[serde(default)]
    is_typing: bool,
}

async fn typing(s: &SocketRef, d: Result<Value, ParserError>, app: &App) -> Result<Value, Error> {
    let me = session(s)?;
    let t: Typing = payload(d)?;
    app.chat
        .typing(
            &me.identity,
            t.chat_id.as_deref(),
            t.recipient_chat_path.as_deref(),
            t.is_typing,
        )
        .await?;
    Ok(json!({"ok": true}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReactionReq {
    message_id: String,
    emoji: String,
}

async fn react(
    s: &SocketRef,
    d: Result<Value, ParserError>,
    app: &App,
    add: bool,
) -> Result<Value, Error> {
    let me = session(s)?;
    let r: ReactionReq = payload(d)?;
    let m = app
        .chat
        .react(&me.identity, &r.message_id, &r.emoji, add)
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
    d: Result<Value, ParserError>,
    app: &App,
    delete: bool,
) -> Result<Value, Error> {
    let me = session(s)?;
    let r: EditReq = payload(d)?;
    let content = (!delete).then_some(r.content.as_str());
    let m = app
        .chat
        .change(&me.identity, &r.message_id, content)
        .await?;
    Ok(json!({"ok": true, "id": m.id, "editedAt": m.edited_at}))
}

fn field<'a>(d: &'a Value, key: &str) -> Option<&'a str> {
    d.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The call an accept or reject is about: `callId`, else the ringing call from `callerId` to me.
async fn find_call(app: &App, d: &Value, me: &str) -> Result<String, Error> {
    if let Some(id) = field(d, "callId") {
        return Ok(id.to_string());
    }
    let caller =
        field(d, "callerId").ok_or_else(|| Error::invalid("callId or callerId is required"))?;
    app.calls
        .ringing_between(caller, me)
        .await?
        .map(|c| c.id)
        .ok_or(Error::NotFound(Missing::RingingCall))
}

/// The user behind a session.
async fn user(app: &App, me: &Session) -> Result<crate::store::User, Error> {
    app.store
        .user(&me.identity)
        .await?
        .ok_or_else(|| Error::NotFound(Missing::User(me.identity.clone())))
}

async fn initiate_call(
    s: &SocketRef,
    d: Result<Value, ParserError>,
    app: &App,
) -> Result<Value, Error> {
    let d: Value = payload(d)?;
    let me = session(s)?;
    if field(&d, "callerId").is_some_and(|c| c != me.identity) {
        return Err(Error::Forbidden("callerId must be your own identity"));
    }
    let user = user(app, &me).await?;
    let call = app
        .calls
        .start_call(&user, field(&d, "recipientId"), field(&d, "callType"))
        .await?;
    if call.status == Status::Busy {
        return Ok(json!({"ok": false, "error": "busy", "code": "busy", "call": call}));
    }
    let mut out = app
        .access
        .call_with_token(&user, &call, &s.req_parts().headers)?;
    out["ok"] = json!(true);
    Ok(out)
}

async fn accept_call(
    s: &SocketRef,
    d: Result<Value, ParserError>,
    app: &App,
) -> Result<Value, Error> {
    let d: Value = payload(d)?;
    let me = session(s)?;
    let id = find_call(app, &d, &me.identity).await?;
    let call = app.calls.act_as(&id, Action::Accept, &me.identity).await?;
    let user = user(app, &me).await?;
    let mut out = app
        .access
        .call_with_token(&user, &call, &s.req_parts().headers)?;
    out["ok"] = json!(true);
    Ok(out)
}

async fn reject_call(
    s: &SocketRef,
    d: Result<Value, ParserError>,
    app: &App,
) -> Result<Value, Error> {
    let d: Value = payload(d)?;
    let me = session(s)?;
    if field(&d, "recipientId").is_some_and(|r| r != me.identity) {
        return Err(Error::Forbidden("recipientId must be your own identity"));
    }
    let id = find_call(app, &d, &me.identity).await?;
    let call = app.calls.act_as(&id, Action::Reject, &me.identity).await?;
    Ok(json!({"ok": true, "call": call}))
}
