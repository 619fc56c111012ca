//! Fuzzing the LiveKit signal WebSocket (`/rtc`) end to end: a real server
//! on a loopback port (rooms on a recording fake of the media network), a
//! real WebSocket client that joins and then sends structured signal
//! requests of every kind (SDP offers and answers mutated line by line,
//! trickle candidates, tracks, subscriptions, settings, metadata, pings), in
//! protobuf and in JSON, mutated encodings of them (bit flips, truncations,
//! lying lengths, deep nesting), arbitrary protobuf wire data, arbitrary
//! JSON and bytes.
//!
//! Properties: no panic anywhere (room actors and sessions included), every
//! case within a deadline, every frame the server sends decodes as a
//! `SignalResponse`, the session still answers a ping, and the room still
//! takes a new participant. Decoding signal requests and access tokens on
//! their own is fuzzed in `fuzz_signal_decode.rs`; the generators are in
//! `fuzz_common/` (`signal.rs` for the signal requests).
//!
//! `PROPTEST_CASES` sets the number of cases (defaults below, sized for CI);
//! `scripts/fuzz` runs them for as long as asked.

mod fuzz_common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use fuzz_common::signal::*;
use fuzz_common::*;
use livekit_protocol as proto;
use nodo_sfu::net::testing::RecordingTransport;
use nodo_signaling::auth::{KeyStore, VideoGrant};
use nodo_signaling::config::{LimitConfig, RoomDefaults};
use nodo_signaling::ids::RoomName;
use nodo_signaling::{router, LiveKit, RoomManager};
use proptest::prelude::*;
use prost::Message as _;
use proto::signal_request::Message as In;
use proto::signal_response::Message as Out;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;

// ---------------------------------------------------------------------------
// Frames on the WebSocket.

#[derive(Debug, Clone)]
enum Frame {
    Proto(In),
    Json(In),
    ProtoMutated(In, Vec<Mutation>),
    JsonMutated(In, JsonMutation),
    Wire(Vec<Wire>),
    Deep { tag: u32, depth: usize, json: bool },
    Bytes(Vec<u8>),
    Text(String),
    Value(serde_json::Value),
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        6 => signal_request().prop_map(Frame::Proto),
        3 => signal_request().prop_map(Frame::Json),
        4 => (signal_request(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(m, muts)| Frame::ProtoMutated(m, muts)),
        3 => (signal_request(), json_mutation()).prop_map(|(m, j)| Frame::JsonMutated(m, j)),
        2 => wire().prop_map(Frame::Wire),
        1 => (1u32..24, 1usize..3000, any::<bool>()).prop_map(|(tag, depth, json)| Frame::Deep { tag, depth, json }),
        1 => prop::collection::vec(any::<u8>(), 0..500).prop_map(Frame::Bytes),
        1 => ".{0,200}".prop_map(Frame::Text),
        1 => json_value().prop_map(Frame::Value),
    ]
}

impl Frame {
    fn message(&self) -> Ws {
        match self {
            Frame::Proto(m) => Ws::Binary(request(m.clone()).encode_to_vec().into()),
            Frame::Json(m) => Ws::Text(json(m).into()),
            Frame::ProtoMutated(m, muts) => {
                let mut b = request(m.clone()).encode_to_vec();
                for mu in muts {
                    b = mutate_bytes(b, mu);
                }
                Ws::Binary(b.into())
            }
            Frame::JsonMutated(m, mu) => {
                let v = serde_json::to_value(request(m.clone())).unwrap_or_default();
                Ws::Text(mutate_json(v, mu).into())
            }
            Frame::Wire(w) => Ws::Binary(encode_wire(w).into()),
            Frame::Deep { tag, depth, json } => {
                if *json {
                    let key = ["offer", "trickle", "addTrack", "subscription", "syncState"]
                        [*tag as usize % 5];
                    let open = format!("{{\"{key}\":").repeat(*depth);
                    Ws::Text(format!("{open}{{}}{}", "}".repeat(*depth)).into())
                } else {
                    Ws::Binary(deep_protobuf(*tag, *depth).into())
                }
            }
            Frame::Bytes(b) => Ws::Binary(b.clone().into()),
            Frame::Text(s) => Ws::Text(s.clone().into()),
            Frame::Value(v) => Ws::Text(v.to_string().into()),
        }
    }

    /// Whether this frame may end the session on purpose (a leave request).
    fn may_leave(&self) -> bool {
        match self {
            Frame::Proto(In::Leave(_)) | Frame::Json(In::Leave(_)) => true,
            // A mutated frame can turn into a leave (tag 8).
            Frame::ProtoMutated(..) | Frame::JsonMutated(..) | Frame::Wire(_) => true,
            Frame::Bytes(_) | Frame::Text(_) | Frame::Value(_) => true,
            Frame::Deep { .. } => true,
            _ => false,
        }
    }
}

fn json(m: &In) -> String {
    serde_json::to_string(&request(m.clone())).unwrap_or_default()
}

// ---------------------------------------------------------------------------
// A node on a loopback port and its clients.

struct Node {
    addr: SocketAddr,
    rooms: Arc<RoomManager>,
}

async fn start() -> Result<Node, String> {
    let transport = RecordingTransport::new("10.0.0.1:7882".parse().map_err(|_| "addr")?);
    let keys = KeyStore::new(BTreeMap::from([("devkey".into(), SECRET.into())]));
    let rooms = RoomManager::new(transport, RoomDefaults::default(), LimitConfig::default());
    let app = router(Arc::new(LiveKit::start(keys, rooms.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Node { addr, rooms })
}

/// A joined signal connection: frames go out on `tx`, what the server sends
/// comes back decoded on `rx` (an `Err` for a frame that does not decode).
struct Client {
    tx: futures_util::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        Ws,
    >,
    rx: mpsc::UnboundedReceiver<Result<Out, String>>,
}

async fn connect(node: &Node, identity: &str, grant: VideoGrant) -> Result<Client, String> {
    let url = format!(
        "ws://{}/rtc?access_token={}&protocol=16&auto_subscribe=1",
        node.addr,
        token(identity, grant)?
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("join refused: {e}"))?;
    let (tx, mut stream) = ws.split();
    let (out, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            let decoded = match msg {
                Ws::Binary(b) => proto::SignalResponse::decode(b.as_ref())
                    .map_err(|e| format!("undecodable binary frame from the server: {e}")),
                Ws::Text(t) => serde_json::from_str::<proto::SignalResponse>(t.as_str())
                    .map_err(|e| format!("undecodable JSON frame from the server: {e}")),
                Ws::Close(_) => break,
                _ => continue,
            };
            let decoded = decoded.and_then(|r| r.message.ok_or_else(|| "empty response".into()));
            if out.send(decoded).is_err() {
                break;
            }
        }
    });
    let mut c = Client { tx, rx };
    match c.next(Duration::from_secs(10)).await? {
        Some(Out::Join(_)) => Ok(c),
        other => Err(format!("first message is not the join response: {other:?}")),
    }
}

impl Client {
    async fn next(&mut self, wait: Duration) -> Result<Option<Out>, String> {
        match tokio::time::timeout(wait, self.rx.recv()).await {
            Ok(Some(r)) => r.map(Some),
            Ok(None) | Err(_) => Ok(None),
        }
    }

    /// Sends a ping request and waits for its answer; `Ok(false)` when the
    /// server ended the session (with a leave) instead.
    async fn ping(&mut self) -> Result<bool, String> {
        let ping = request(In::PingReq(proto::Ping {
            timestamp: 4242,
            rtt: 0,
        }));
        if self
            .tx
            .send(Ws::Binary(ping.encode_to_vec().into()))
            .await
            .is_err()
        {
            return Ok(false);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(wait).await? {
                Some(Out::PongResp(p)) if p.last_ping_timestamp == 4242 => return Ok(true),
                Some(Out::Leave(_)) => return Ok(false),
                Some(_) => {}
                None => return Ok(false),
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Grants {
    publish: Option<bool>,
    subscribe: Option<bool>,
    data: Option<bool>,
    metadata: Option<bool>,
    hidden: bool,
}

fn grants() -> impl Strategy<Value = Grants> {
    (
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::option::of(any::<bool>()),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(publish, subscribe, data, metadata, hidden)| Grants {
            publish,
            subscribe,
            data,
            metadata,
            hidden,
        })
}

async fn fuzz_session(grants: Grants, frames: Vec<Frame>) -> Result<(), String> {
    let node = start().await?;
    // Someone else in the room, so subscriptions and updates have a target.
    let mut other = connect(&node, "bystander", VideoGrant::default()).await?;
    let grant = VideoGrant {
        can_publish: grants.publish,
        can_subscribe: grants.subscribe,
        can_publish_data: grants.data,
        can_update_own_metadata: grants.metadata,
        hidden: grants.hidden,
        ..VideoGrant::default()
    };
    let mut me = connect(&node, "fuzzer", grant).await?;
    let mut may_have_left = false;
    for f in &frames {
        may_have_left |= f.may_leave();
        if me.tx.send(f.message()).await.is_err() {
            if may_have_left {
                break;
            }
            return Err("the server closed the connection".into());
        }
    }
    // The session still answers (unless a frame was a leave).
    let alive = me.ping().await?;
    if !alive && !may_have_left {
        return Err("the session stopped answering pings".into());
    }
    // Everything the server sent decoded (checked by the reader as it went).
    while let Some(m) = me.next(Duration::from_millis(1)).await? {
        drop(m);
    }
    // The room still takes a participant, and its actor answers.
    connect(&node, "newcomer", VideoGrant::default()).await?;
    if node.rooms.snapshot(&RoomName::new(ROOM)).await.is_none() {
        return Err("the room actor does not answer".into());
    }
    if !other.ping().await? {
        return Err("the bystander lost its session".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn rtc_sessions_survive_any_frames(
        grants in grants(),
        frames in prop::collection::vec(frame(), 1..16),
    ) {
        run_case(Duration::from_secs(60), fuzz_session(grants, frames))?;
    }
}

/// The panic watch sees a panic in a spawned task, which tokio would
/// otherwise swallow: the cases above can fail on one.
#[test]
fn the_panic_watch_sees_task_panics() {
    let out = run_case(Duration::from_secs(5), async {
        let task = tokio::spawn(async {
            let empty: Vec<u8> = Vec::new();
            // Index out of bounds, as a bug would.
            std::hint::black_box(&empty)[std::hint::black_box(1)]
        });
        let _ = task.await;
        Ok(())
    });
    assert!(out.is_err(), "a task panic went unseen");
}
