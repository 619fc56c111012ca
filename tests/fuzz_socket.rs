//! Fuzzing the chat socket (Socket.IO) and the app's REST JSON bodies
//! against a whole node in-process, served on a loopback port: a real
//! Socket.IO client (engine.io v4 over a WebSocket) authenticates and then
//! emits every event the node handles with payloads that are structured
//! (real chat, message and user ids, or not), mutated (a node replaced by any
//! JSON, keys dropped, deep nesting), arbitrary JSON of any type, several
//! arguments or none, plus malformed Socket.IO packets; the REST routes get
//! structured and arbitrary JSON bodies.
//!
//! Properties: no panic (the handlers' tasks included), every case within a
//! deadline, every emitted event acked with `{ok: true, …}` or
//! `{ok: false, error, code}` and never an internal error, REST answers
//! never a 5xx and every refusal a JSON `{error, message}`; afterwards the
//! node still serves a normal user (a message round trip between two fresh
//! sockets).
//!
//! `PROPTEST_CASES` sets the number of cases (defaults below, sized for CI);
//! `scripts/fuzz` runs them for as long as asked.

#[path = "../signaling/tests/fuzz_common/mod.rs"]
mod fuzz_common;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::{SinkExt, StreamExt};
use fuzz_common::*;
use http_body_util::BodyExt;
use nodo::node::Node;
use nodo::Config;
use nodo_sfu::net::testing::RecordingTransport;
use proptest::prelude::*;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;
use tower::ServiceExt;

const SECRET: &str = "secret";

// ---------------------------------------------------------------------------
// A node and its Socket.IO clients.

struct TestNode {
    addr: SocketAddr,
    app: axum::Router,
    _node: Node,
    _dir: tempfile::TempDir,
}

async fn start() -> Result<TestNode, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = Config {
        dev: true,
        ..Config::default()
    };
    config.keys.insert("devkey".into(), SECRET.into());
    config.data.dir = dir.path().display().to_string();
    let transport = RecordingTransport::new("10.0.0.1:7882".parse().map_err(|_| "addr")?);
    let node = Node::build(config, transport, None, Default::default()).await?;
    let app = nodo::http::router(&node);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let served = app
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, served).await;
    });
    Ok(TestNode {
        addr,
        app,
        _node: node,
        _dir: dir,
    })
}

/// An app token (the app owns this identity): no grants, signed with the key.
fn app_token(identity: &str) -> String {
    let claims =
        nodo_signaling::auth::claims_for("devkey", identity, Duration::from_secs(600), None);
    nodo_signaling::auth::sign_with(SECRET, &claims).unwrap_or_default()
}

type WsSink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    Ws,
>;

/// A Socket.IO client on the default namespace: acks and events arrive on
/// `rx` as they come (engine.io pings are answered by the reader).
struct Client {
    tx: mpsc::UnboundedSender<Ws>,
    rx: mpsc::UnboundedReceiver<Packet>,
    next_ack: u64,
}

#[derive(Debug)]
enum Packet {
    Event(Value),
    Ack(u64, Value),
    ConnectError(Value),
    Connected,
    Closed,
}

/// Parses one Socket.IO packet of the default namespace (`4` + type + id + JSON).
fn parse(text: &str) -> Option<Packet> {
    let rest = text.strip_prefix('4')?;
    let (kind, rest) = rest.split_at_checked(1)?;
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    let (id, json) = rest.split_at(digits);
    let value: Value = if json.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(json).ok()?
    };
    Some(match kind {
        "0" => Packet::Connected,
        "2" => Packet::Event(value),
        "3" => Packet::Ack(id.parse().ok()?, value),
        "4" => Packet::ConnectError(value),
        _ => return None,
    })
}

async fn pump(mut sink: WsSink, mut out: mpsc::UnboundedReceiver<Ws>) {
    while let Some(m) = out.recv().await {
        if sink.send(m).await.is_err() {
            return;
        }
    }
}

async fn connect(node: &TestNode, identity: &str) -> Result<Client, String> {
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", node.addr);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("socket.io upgrade refused: {e}"))?;
    let (sink, mut stream) = ws.split();
    let (tx, out) = mpsc::unbounded_channel::<Ws>();
    tokio::spawn(pump(sink, out));
    let (events, rx) = mpsc::unbounded_channel();
    let pong = tx.clone();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let Ws::Text(t) = msg else {
                if matches!(msg, Ws::Close(_)) {
                    break;
                }
                continue;
            };
            let t = t.as_str();
            if t == "2" {
                let _ = pong.send(Ws::Text("3".into()));
                continue;
            }
            if let Some(p) = parse(t) {
                if events.send(p).is_err() {
                    return;
                }
            }
        }
        let _ = events.send(Packet::Closed);
    });
    let auth = json!({"token": app_token(identity)});
    tx.send(Ws::Text(format!("40{auth}").into()))
        .map_err(|_| "closed")?;
    let mut c = Client {
        tx,
        rx,
        next_ack: 1,
    };
    loop {
        match c.next(Duration::from_secs(10)).await {
            Some(Packet::Connected) => return Ok(c),
            Some(Packet::ConnectError(e)) => return Err(format!("{identity} refused: {e}")),
            Some(Packet::Closed) | None => return Err(format!("{identity} never connected")),
            Some(_) => {}
        }
    }
}

impl Client {
    async fn next(&mut self, wait: Duration) -> Option<Packet> {
        tokio::time::timeout(wait, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Emits `event` with `args` and an ack id; returns the id.
    fn emit(&mut self, event: &str, args: &[Value]) -> Result<u64, String> {
        let id = self.next_ack;
        self.next_ack += 1;
        let mut packet = vec![json!(event)];
        packet.extend(args.iter().cloned());
        self.raw(format!("42{id}{}", Value::Array(packet)))?;
        Ok(id)
    }

    fn raw(&mut self, text: String) -> Result<(), String> {
        self.tx
            .send(Ws::Text(text.into()))
            .map_err(|_| "the socket is closed".to_string())
    }

    /// The ack of `id` (events in between are skipped); `None` if the
    /// socket closed or nothing came within `wait`.
    async fn ack(&mut self, id: u64, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Packet::Ack(i, v) if i == id => return Some(v),
                Packet::Closed => return None,
                _ => {}
            }
        }
    }

    /// The next `event` (others skipped).
    async fn event(&mut self, name: &str, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Packet::Event(Value::Array(a)) if a.first() == Some(&json!(name)) => {
                    return Some(a.get(1).cloned().unwrap_or(Value::Null))
                }
                Packet::Closed => return None,
                _ => {}
            }
        }
    }
}

/// An ack is `{ok: true, …}` or `{ok: false, error, code}`, and never
/// reports an internal error (input must not cause one).
fn check_ack(event: &str, ack: &Value) -> Result<(), String> {
    let body = match ack {
        Value::Array(a) if a.len() == 1 => &a[0],
        other => return Err(format!("{event}: ack is not one value: {other}")),
    };
    match body["ok"].as_bool() {
        Some(true) => Ok(()),
        Some(false) => {
            let code = body["code"].as_str().unwrap_or_default();
            if body["error"].as_str().is_none() || code.is_empty() {
                return Err(format!("{event}: refusal without error and code: {body}"));
            }
            if code == "internal" {
                return Err(format!("{event}: internal error: {body}"));
            }
            Ok(())
        }
        None => Err(format!("{event}: ack without ok: {body}")),
    }
}

// ---------------------------------------------------------------------------
// Events and payloads.

const EVENTS: &[&str] = &[
    "sendMessage",
    "markAsRead",
    "typing",
    "addReaction",
    "removeReaction",
    "editMessage",
    "deleteMessage",
    "initiateCall",
    "acceptCall",
    "rejectCall",
    "messageReceived",
];

/// Ids the case knows: a real chat, message and users, and others.
#[derive(Debug, Clone, Copy)]
enum Id {
    Chat,
    Message,
    Me,
    Peer,
    Nobody,
}

#[derive(Debug, Clone)]
struct Known {
    chat: String,
    message: String,
}

fn id() -> impl Strategy<Value = (Id, Option<String>)> {
    (
        prop_oneof![
            Just(Id::Chat),
            Just(Id::Message),
            Just(Id::Me),
            Just(Id::Peer),
            Just(Id::Nobody)
        ],
        prop::option::weighted(0.3, text()),
    )
}

fn resolve(id: &(Id, Option<String>), k: &Known) -> Value {
    if let Some(s) = &id.1 {
        return json!(s);
    }
    json!(match id.0 {
        Id::Chat => k.chat.clone(),
        Id::Message => k.message.clone(),
        Id::Me => "alice".to_string(),
        Id::Peer => "bob".to_string(),
        Id::Nobody => "nobody".to_string(),
    })
}

/// A payload of the shape an event takes, its values drawn from the case's ids.
#[derive(Debug, Clone)]
struct Shaped {
    fields: Vec<(&'static str, Field)>,
}

#[derive(Debug, Clone)]
enum Field {
    Id((Id, Option<String>)),
    Text(String),
    Bool(bool),
    Ids(Vec<(Id, Option<String>)>),
    Any(Value),
}

const FIELDS: &[&str] = &[
    "id",
    "chatId",
    "senderChatPath",
    "recipientChatPath",
    "content",
    "contentType",
    "replyTo",
    "senderProfile",
    "isTyping",
    "messageId",
    "emoji",
    "callId",
    "callerId",
    "recipientId",
    "callType",
    "callerInfo",
    "ids",
];

fn field(name: &'static str) -> BoxedStrategy<Field> {
    match name {
        "content" | "emoji" => prop_oneof![
            4 => prop_oneof![Just("hi".to_string()), Just("👍".to_string()), text()].prop_map(Field::Text),
            1 => json_value().prop_map(Field::Any),
        ]
        .boxed(),
        "contentType" | "callType" => prop_oneof![
            Just("text"), Just("image"), Just("audio"), Just("video"), Just("file"), Just("text/html"),
        ]
        .prop_map(|s| Field::Text(s.to_string()))
        .boxed(),
        "isTyping" => any::<bool>().prop_map(Field::Bool).boxed(),
        "ids" => prop::collection::vec(id(), 0..5).prop_map(Field::Ids).boxed(),
        "senderProfile" | "callerInfo" => json_value().prop_map(Field::Any).boxed(),
        _ => prop_oneof![
            6 => id().prop_map(Field::Id),
            1 => json_value().prop_map(Field::Any),
        ]
        .boxed(),
    }
}

fn shaped() -> impl Strategy<Value = Shaped> {
    prop::collection::vec(prop::sample::select(FIELDS), 0..6)
        .prop_flat_map(|names| {
            names
                .into_iter()
                .map(|n| field(n).prop_map(move |f| (n, f)))
                .collect::<Vec<_>>()
        })
        .prop_map(|fields| Shaped { fields })
}

impl Shaped {
    fn value(&self, k: &Known) -> Value {
        let mut o = serde_json::Map::new();
        for (name, f) in &self.fields {
            let v = match f {
                Field::Id(i) => resolve(i, k),
                Field::Text(s) => json!(s),
                Field::Bool(b) => json!(b),
                Field::Ids(ids) => Value::Array(ids.iter().map(|i| resolve(i, k)).collect()),
                Field::Any(v) => v.clone(),
            };
            o.insert(name.to_string(), v);
        }
        Value::Object(o)
    }
}

#[derive(Debug, Clone)]
enum Payload {
    Shaped(Shaped),
    Mutated(Shaped, JsonMutation),
    Any(Value),
    /// No argument at all.
    None,
    /// Several arguments.
    Many(Vec<Value>),
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        6 => shaped().prop_map(Payload::Shaped),
        2 => (shaped(), json_mutation()).prop_map(|(s, m)| Payload::Mutated(s, m)),
        2 => json_value().prop_map(Payload::Any),
        1 => Just(Payload::None),
        1 => prop::collection::vec(json_value(), 2..4).prop_map(Payload::Many),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Emit(usize, Payload),
    /// A Socket.IO packet that is not well-formed (the server may close the
    /// socket: it is the client's fault).
    Malformed(String),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => (0..EVENTS.len(), payload()).prop_map(|(e, p)| Step::Emit(e, p)),
        1 => prop_oneof![
            ".{0,40}",
            "4[0-9]{0,3}[\\[\\]{}\",a-z0-9]{0,30}",
            Just("42".to_string()),
            Just("42[]".to_string()),
            Just("42[1]".to_string()),
            Just("42[\"sendMessage\"".to_string()),
            Just("451-[\"sendMessage\",{\"_placeholder\":true,\"num\":0}]".to_string()),
            Just("4299999999999999999999[\"typing\",{}]".to_string()),
            (1usize..3000).prop_map(|d| format!("42[\"typing\",{}{}]", "[".repeat(d), "]".repeat(d))),
        ]
        .prop_map(Step::Malformed),
    ]
}

/// The text of a payload, for the events whose payload is sent as given.
fn args(p: &Payload, k: &Known) -> Option<Vec<Value>> {
    match p {
        Payload::Shaped(s) => Some(vec![s.value(k)]),
        Payload::Mutated(s, m) => {
            // A mutated text that is no longer JSON cannot be an argument.
            serde_json::from_str(&mutate_json(s.value(k), m))
                .ok()
                .map(|v| vec![v])
        }
        Payload::Any(v) => Some(vec![v.clone()]),
        Payload::None => Some(Vec::new()),
        Payload::Many(v) => Some(v.clone()),
    }
}

/// The chat socket's message cap with the default `chat.max_message_bytes`
/// (16 KiB, times four, plus 4 KiB), less a margin for the packet's framing.
const SOCKET_CAP: usize = 16 * 1024 * 4 + 4096 - 64;

fn packet_len(event: &str, args: &[Value]) -> usize {
    let mut packet = vec![json!(event)];
    packet.extend(args.iter().cloned());
    Value::Array(packet).to_string().len()
}

/// Two users, a direct chat between them and one message in it.
async fn setup(node: &TestNode) -> Result<(Client, Client, Known), String> {
    let mut alice = connect(node, "alice").await?;
    let mut bob = connect(node, "bob").await?;
    let id = alice.emit(
        "sendMessage",
        &[json!({"recipientChatPath": "bob", "content": "hello"})],
    )?;
    let ack = alice
        .ack(id, Duration::from_secs(10))
        .await
        .ok_or("no ack for the first message")?;
    let ack = &ack[0];
    let known = Known {
        chat: ack["chatId"].as_str().ok_or("no chatId")?.to_string(),
        message: ack["id"].as_str().ok_or("no message id")?.to_string(),
    };
    bob.event("receiveMessage", Duration::from_secs(10))
        .await
        .ok_or("bob did not get the first message")?;
    Ok((alice, bob, known))
}

/// A normal user still gets served: a message between two fresh sockets.
async fn still_serves(node: &TestNode) -> Result<(), String> {
    let mut carol = connect(node, "carol").await?;
    let mut dave = connect(node, "dave").await?;
    let id = carol.emit(
        "sendMessage",
        &[json!({"recipientChatPath": "dave", "content": "still here"})],
    )?;
    let ack = carol
        .ack(id, Duration::from_secs(10))
        .await
        .ok_or("carol got no ack")?;
    if ack[0]["ok"] != json!(true) {
        return Err(format!("carol's message refused: {ack}"));
    }
    let got = dave
        .event("receiveMessage", Duration::from_secs(10))
        .await
        .ok_or("dave got nothing")?;
    if got["content"] != json!("still here") {
        return Err(format!("dave got {got}"));
    }
    Ok(())
}

async fn fuzz_socket(steps: Vec<Step>) -> Result<(), String> {
    let node = start().await?;
    let (mut alice, _bob, known) = setup(&node).await?;
    for s in &steps {
        match s {
            Step::Emit(e, p) => {
                let event = EVENTS[*e];
                let Some(args) = args(p, &known) else {
                    continue;
                };
                let id = alice.emit(event, &args)?;
                match alice.ack(id, Duration::from_secs(10)).await {
                    Some(ack) => check_ack(event, &ack)?,
                    // Over the socket's message cap the server closes it
                    // (the client's fault): go on with a new one.
                    None if packet_len(event, &args) > SOCKET_CAP => {
                        alice = connect(&node, "alice").await?;
                    }
                    None => return Err(format!("{event} with {args:?}: no ack within 10 s")),
                }
            }
            Step::Malformed(text) => {
                let _ = alice.raw(text.clone());
                // The server may close a socket that sends garbage (the
                // client's fault): go on with a new one.
                tokio::time::sleep(Duration::from_millis(5)).await;
                alice = connect(&node, "alice").await?;
            }
        }
    }
    still_serves(&node).await
}

proptest! {
    #![proptest_config(config(12))]

    #[test]
    fn chat_socket_acks_any_event_payload(steps in prop::collection::vec(step(), 1..16)) {
        run_case(Duration::from_secs(120), fuzz_socket(steps))?;
    }
}

// ---------------------------------------------------------------------------
// REST JSON bodies.

/// Routes that take a JSON body (`{chat}` and `{id}` filled from the case).
/// Sign-in routes are left out: a valid body costs an argon2 hash, which
/// in a debug build takes seconds.
const ROUTES: &[&str] = &[
    "/api/chats",
    "/api/chats/{chat}/messages",
    "/api/chats/{chat}/members",
    "/api/chats/{chat}/leave",
    "/api/chats/{chat}/read",
    "/api/calls/initiate",
    "/calls",
    "/api/calls/{id}/accept",
    "/api/calls/{id}/reject",
    "/api/calls/{id}/cancel",
    "/api/calls/{id}/end",
    "/rooms",
    "/rooms/{id}/join",
    "/api/rooms/{id}/moderators",
    "/api/rooms/{id}/start",
    "/api/rooms/{id}/end",
    "/livekit/token",
    "/api/livekit/get-token",
];

#[derive(Debug, Clone)]
enum RestBody {
    Shaped(Shaped),
    Mutated(Shaped, JsonMutation),
    Any(Value),
    Bytes(Vec<u8>),
}

fn rest_body() -> impl Strategy<Value = RestBody> {
    prop_oneof![
        4 => shaped().prop_map(RestBody::Shaped),
        2 => (shaped(), json_mutation()).prop_map(|(s, m)| RestBody::Mutated(s, m)),
        2 => json_value().prop_map(RestBody::Any),
        1 => prop::collection::vec(any::<u8>(), 0..200).prop_map(RestBody::Bytes),
    ]
}

async fn rest(node: &TestNode, route: &str, body: &RestBody, k: &Known) -> Result<(), String> {
    let path = route.replace("{chat}", &k.chat).replace("{id}", &k.message);
    let bytes = match body {
        RestBody::Shaped(s) => s.value(k).to_string().into_bytes(),
        RestBody::Mutated(s, m) => mutate_json(s.value(k), m).into_bytes(),
        RestBody::Any(v) => v.to_string().into_bytes(),
        RestBody::Bytes(b) => b.clone(),
    };
    let req = Request::post(&path)
        .header("content-type", "application/json")
        .header("host", "node.test:7880")
        .header("authorization", format!("Bearer {}", app_token("alice")))
        .body(Body::from(bytes))
        .map_err(|e| e.to_string())?;
    let resp = node
        .app
        .clone()
        .oneshot(req)
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    if status.is_server_error() {
        return Err(format!(
            "{path}: {status} {}",
            String::from_utf8_lossy(&text)
        ));
    }
    if !status.is_success() && status != StatusCode::NOT_FOUND {
        let v: Value = serde_json::from_slice(&text)
            .map_err(|_| format!("{path}: {status} without a JSON error"))?;
        if v["error"].as_str().is_none() || v["message"].as_str().is_none() {
            return Err(format!("{path}: {status} error without error/message: {v}"));
        }
    }
    Ok(())
}

async fn fuzz_rest(calls: Vec<(usize, RestBody)>) -> Result<(), String> {
    let node = start().await?;
    let (_alice, _bob, known) = setup(&node).await?;
    for (r, body) in &calls {
        rest(&node, ROUTES[*r], body, &known).await?;
    }
    still_serves(&node).await
}

proptest! {
    #![proptest_config(config(12))]

    #[test]
    fn rest_routes_answer_any_json_body(
        calls in prop::collection::vec((0..ROUTES.len(), rest_body()), 1..16),
    ) {
        run_case(Duration::from_secs(120), fuzz_rest(calls))?;
    }
}

/// Regression: a node's chat housekeeping ran its first presence
/// reconciliation as soon as it was spawned, which could be before the
/// socket handlers (the default namespace) were attached; `io.sockets()`
/// then panicked and presence was never reconciled for the node's life.
#[test]
fn a_starting_node_does_not_panic_in_its_housekeeping() {
    for _ in 0..4 {
        run_case(Duration::from_secs(60), async {
            let node = start().await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
            drop(node);
            Ok(())
        })
        .expect("no panic while a node starts");
    }
}

/// Regression: the event handlers were registered by the connect handler,
/// which socketioxide spawns after it has sent CONNECT; an event emitted as
/// soon as the client is connected (socket.io-client flushes its buffered
/// emits then) could arrive first and be dropped without an ack. Found by
/// the socket fuzz test as acks that never came after a reconnect.
#[test]
fn an_event_emitted_at_connect_is_acked() {
    run_case(Duration::from_secs(120), async {
        let node = start().await?;
        for n in 0..40 {
            let mut c = connect(&node, "alice").await?;
            let id = c.emit("messageReceived", &[json!({"ids": []})])?;
            match c.ack(id, Duration::from_secs(10)).await {
                Some(ack) => check_ack("messageReceived", &ack)?,
                None => return Err(format!("connection {n}: no ack")),
            }
        }
        Ok(())
    })
    .expect("every event acked");
}
