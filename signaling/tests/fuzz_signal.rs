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
//! takes a new participant. Also decode(encode(x)) == x for signal requests
//! in protobuf and JSON, and token parsing never panics and round-trips.
//!
//! `PROPTEST_CASES` sets the number of cases (defaults below, sized for CI);
//! `scripts/fuzz` runs them for as long as asked.

// Clients still send fields the protocol marks deprecated.
#![allow(deprecated)]

mod fuzz_common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use fuzz_common::*;
use livekit_protocol as proto;
use nodo_sfu::net::testing::RecordingTransport;
use nodo_sfu::str0m::media::{Direction, MediaKind};
use nodo_sfu::str0m::Rtc;
use nodo_signaling::auth::{claims_for, sign_with, Claims, KeyStore, VideoGrant};
use nodo_signaling::config::{LimitConfig, RoomDefaults};
use nodo_signaling::ids::RoomName;
use nodo_signaling::{router, LiveKit, RoomManager};
use proptest::prelude::*;
use prost::Message as _;
use proto::signal_request::Message as In;
use proto::signal_response::Message as Out;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;

const ROOM: &str = "fuzz";
const SECRET: &str = "secret";

// ---------------------------------------------------------------------------
// Signal requests.

/// A valid SDP offer from a str0m client (audio, video, data channel).
fn valid_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut rtc = Rtc::new(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_channel("_reliable".into());
        let (offer, _) = api.apply().expect("an offer");
        offer.to_sdp_string()
    })
}

#[derive(Debug, Clone)]
enum Sdp {
    Valid,
    DropLine(usize),
    RepeatLine(usize, u8),
    ReplaceLine(usize, String),
    Truncate(usize),
    Any(String),
}

fn sdp() -> impl Strategy<Value = Sdp> {
    prop_oneof![
        2 => Just(Sdp::Valid),
        2 => any::<usize>().prop_map(Sdp::DropLine),
        1 => (any::<usize>(), 2u8..50).prop_map(|(l, n)| Sdp::RepeatLine(l, n)),
        3 => (any::<usize>(), prop_oneof![
            ".{0,80}",
            "[a-z]=[ -~]{0,60}",
            Just("m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105".to_string()),
            Just("a=ssrc-group:SIM 1 2 3 4 5 6 7 8 9".to_string()),
            Just("a=rtpmap:96 VP8/4294967296".to_string()),
            Just("a=extmap:99999 urn:x".to_string()),
        ]).prop_map(|(l, s)| Sdp::ReplaceLine(l, s)),
        1 => any::<usize>().prop_map(Sdp::Truncate),
        1 => ".{0,200}".prop_map(Sdp::Any),
    ]
}

impl Sdp {
    fn text(&self) -> String {
        let valid = valid_offer();
        let mut lines: Vec<String> = valid.split("\r\n").map(String::from).collect();
        let n = lines.len();
        match self {
            Sdp::Valid => return valid.to_string(),
            Sdp::DropLine(i) => {
                lines.remove(i % n);
            }
            Sdp::RepeatLine(i, k) => {
                let l = lines[i % n].clone();
                for _ in 0..*k {
                    lines.insert(i % n, l.clone());
                }
            }
            Sdp::ReplaceLine(i, s) => lines[i % n] = s.clone(),
            Sdp::Truncate(at) => {
                let mut at = at % (valid.len() + 1);
                while !valid.is_char_boundary(at) {
                    at -= 1;
                }
                return valid[..at].to_string();
            }
            Sdp::Any(s) => return s.clone(),
        }
        lines.join("\r\n")
    }
}

fn candidate_init() -> impl Strategy<Value = String> {
    let candidate = prop_oneof![
        Just("candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host".to_string()),
        Just("candidate:1 1 tcp 2130706431 10.0.0.2 9 typ host tcptype active".to_string()),
        Just(String::new()),
        "candidate:[0-9]{1,3} [0-9] (udp|tcp|UDP|xyz) [0-9]{1,12} [0-9a-f.:]{0,40} [0-9]{1,6} typ (host|srflx|relay|prflx|x)( raddr [0-9.]{0,15} rport [0-9]{1,6})?",
        ".{0,100}",
    ];
    prop_oneof![
        4 => (candidate, prop::option::of("[0-9]{1,3}"), prop::option::of(any::<i64>()))
            .prop_map(|(c, mid, idx)| {
                serde_json::json!({"candidate": c, "sdpMid": mid, "sdpMLineIndex": idx}).to_string()
            }),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => ".{0,60}",
    ]
}

fn small_int() -> impl Strategy<Value = i32> {
    prop_oneof![4 => -1i32..8, 1 => any::<i32>()]
}

fn layer() -> impl Strategy<Value = proto::VideoLayer> {
    (
        small_int(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        "[a-z]{0,2}",
    )
        .prop_map(|(quality, width, height, bitrate, rid)| proto::VideoLayer {
            quality,
            width,
            height,
            bitrate,
            rid,
            ..Default::default()
        })
}

fn codec() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("vp8".to_string()),
        Just("VP9".to_string()),
        Just("h264".to_string()),
        Just("av1".to_string()),
        Just("opus".to_string()),
        Just("video/VP8".to_string()),
        Just("audio/red".to_string()),
        Just("/".to_string()),
        Just("ǅǆ".to_string()),
        text(),
    ]
}

fn sids() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..6)
}

fn session_description() -> impl Strategy<Value = proto::SessionDescription> {
    (
        sdp(),
        prop_oneof![
            Just("offer".to_string()),
            Just("answer".to_string()),
            text()
        ],
        any::<u32>(),
    )
        .prop_map(|(s, t, id)| proto::SessionDescription {
            r#type: t,
            sdp: s.text(),
            id,
            mid_to_track_id: HashMap::new(),
        })
}

fn add_track() -> impl Strategy<Value = proto::AddTrackRequest> {
    (
        (
            text(),
            text(),
            small_int(),
            small_int(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(layer(), 0..5),
        ),
        prop::collection::vec(
            (codec(), text(), prop::collection::vec(layer(), 0..3)),
            0..3,
        ),
        (
            text(),
            small_int(),
            prop::collection::vec(small_int(), 0..3),
        ),
    )
        .prop_map(
            |(
                (cid, name, typ, source, muted, dtx),
                (width, height, layers),
                codecs,
                (stream, enc, features),
            )| {
                proto::AddTrackRequest {
                    cid,
                    name,
                    r#type: typ,
                    source,
                    muted,
                    disable_dtx: dtx,
                    width,
                    height,
                    layers,
                    simulcast_codecs: codecs
                        .into_iter()
                        .map(|(codec, cid, layers)| proto::SimulcastCodec {
                            codec,
                            cid,
                            layers,
                            ..Default::default()
                        })
                        .collect(),
                    stream,
                    encryption: enc,
                    audio_features: features,
                    ..Default::default()
                }
            },
        )
}

fn metadata() -> impl Strategy<Value = proto::UpdateParticipantMetadata> {
    (
        prop_oneof![4 => text(), 1 => (500_000usize..600_000).prop_map(|n| "m".repeat(n))],
        text(),
        prop::collection::hash_map(text(), text(), 0..4),
        any::<u32>(),
    )
        .prop_map(|(metadata, name, attributes, request_id)| {
            proto::UpdateParticipantMetadata {
                metadata,
                name,
                attributes,
                request_id,
            }
        })
}

/// A signal request of any kind the protocol has, with fields that matter.
fn signal_request() -> impl Strategy<Value = In> {
    prop_oneof![
        3 => session_description().prop_map(In::Offer),
        2 => session_description().prop_map(In::Answer),
        3 => (candidate_init(), small_int(), any::<bool>()).prop_map(|(c, target, f)| {
            In::Trickle(proto::TrickleRequest { candidate_init: c, target, r#final: f })
        }),
        3 => add_track().prop_map(In::AddTrack),
        1 => (text(), any::<bool>()).prop_map(|(sid, muted)| In::Mute(proto::MuteTrackRequest { sid, muted })),
        2 => (sids(), any::<bool>(), prop::collection::vec((text(), sids()), 0..3)).prop_map(
            |(track_sids, subscribe, pt)| In::Subscription(proto::UpdateSubscription {
                track_sids,
                subscribe,
                participant_tracks: pt
                    .into_iter()
                    .map(|(p, t)| proto::ParticipantTracks { participant_sid: p, track_sids: t })
                    .collect(),
            })
        ),
        2 => (sids(), any::<bool>(), small_int(), any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(track_sids, disabled, quality, width, height, fps)| {
                In::TrackSetting(proto::UpdateTrackSettings {
                    track_sids,
                    disabled,
                    quality,
                    width,
                    height,
                    fps,
                    priority: 0,
                })
            }),
        1 => (any::<bool>(), small_int(), small_int()).prop_map(|(r, reason, action)| {
            In::Leave(proto::LeaveRequest { can_reconnect: r, reason, action, regions: None })
        }),
        2 => metadata().prop_map(In::UpdateMetadata),
        1 => any::<i64>().prop_map(In::Ping),
        1 => (any::<i64>(), any::<i64>()).prop_map(|(timestamp, rtt)| In::PingReq(proto::Ping { timestamp, rtt })),
        1 => (text(), prop::collection::vec(layer(), 0..4))
            .prop_map(|(track_sid, layers)| In::UpdateLayers(proto::UpdateVideoLayers { track_sid, layers })),
        1 => (any::<bool>(), prop::collection::vec((text(), text(), any::<bool>(), sids()), 0..3)).prop_map(
            |(all, perms)| In::SubscriptionPermission(proto::SubscriptionPermission {
                all_participants: all,
                track_permissions: perms
                    .into_iter()
                    .map(|(ps, pi, all, ts)| proto::TrackPermission {
                        participant_sid: ps,
                        participant_identity: pi,
                        all_tracks: all,
                        track_sids: ts,
                    })
                    .collect(),
            })
        ),
        1 => (session_description(), sids()).prop_map(|(answer, sids)| In::SyncState(proto::SyncState {
            answer: Some(answer),
            subscription: Some(proto::UpdateSubscription { track_sids: sids, ..Default::default() }),
            ..Default::default()
        })),
        1 => Just(In::Simulate(proto::SimulateScenario::default())),
        1 => (text(), prop::collection::vec(small_int(), 0..3))
            .prop_map(|(track_sid, features)| In::UpdateAudioTrack(proto::UpdateLocalAudioTrack { track_sid, features })),
        1 => (text(), any::<u32>(), any::<u32>())
            .prop_map(|(track_sid, width, height)| In::UpdateVideoTrack(proto::UpdateLocalVideoTrack { track_sid, width, height })),
    ]
}

fn request(m: In) -> proto::SignalRequest {
    proto::SignalRequest { message: Some(m) }
}

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
    let app = router(Arc::new(LiveKit {
        keys,
        rooms: rooms.clone(),
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(Node { addr, rooms })
}

fn token(identity: &str, grant: VideoGrant) -> Result<String, String> {
    let grant = VideoGrant {
        room_join: true,
        room: ROOM.into(),
        ..grant
    };
    let claims = claims_for("devkey", identity, Duration::from_secs(600), Some(grant));
    sign_with(SECRET, &claims).map_err(|e| e.to_string())
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

proptest! {
    #![proptest_config(config(256))]

    /// decode(encode(x)) == x for signal requests, in protobuf.
    #[test]
    fn signal_requests_round_trip_in_protobuf(m in signal_request()) {
        let r = request(m);
        let back = proto::SignalRequest::decode(r.encode_to_vec().as_slice());
        prop_assert_eq!(back.ok(), Some(r));
    }

    /// decode(encode(x)) == x for signal requests, in JSON (livekit-client's
    /// JSON mode), except that an enum number the protocol does not name
    /// has no JSON form: an error, not a panic.
    #[test]
    fn signal_requests_round_trip_in_json(m in signal_request()) {
        let r = request(m);
        let back = serde_json::to_string(&r)
            .and_then(|text| serde_json::from_str::<proto::SignalRequest>(&text));
        match back {
            Ok(back) => prop_assert_eq!(back, r),
            Err(e) => prop_assert!(e.to_string().contains("Invalid variant"), "{}", e),
        }
    }

    /// Malformed protobuf is a decode error, never a panic or a hang.
    #[test]
    fn mutated_protobuf_decodes_or_errs(
        m in signal_request(),
        muts in prop::collection::vec(mutation(), 1..4),
        w in wire(),
    ) {
        let mut b = request(m).encode_to_vec();
        for mu in &muts {
            b = mutate_bytes(b, mu);
        }
        let _ = proto::SignalRequest::decode(b.as_slice());
        let _ = proto::SignalRequest::decode(encode_wire(&w).as_slice());
        // Deeper than prost's recursion limit: an error.
        prop_assert!(proto::SignalRequest::decode(deep_protobuf(1, 200).as_slice()).is_err());
    }
}

// ---------------------------------------------------------------------------
// Access tokens.

#[derive(Debug, Clone)]
enum Tok {
    /// A signed token, its text mutated.
    Mutated(usize, u8),
    /// A signed token cut short.
    Truncated(usize),
    /// One of its three parts replaced.
    Part(usize, String),
    /// A header with another algorithm (`none`, RS256, …).
    Alg(String),
    /// A payload of any JSON, signed or not.
    Payload(serde_json::Value, bool),
    /// A signed, valid token with one claim of any JSON type.
    Claim(String, serde_json::Value),
    Any(String),
}

fn tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Tok::Mutated(a, b)),
        any::<usize>().prop_map(Tok::Truncated),
        (0usize..3, "[A-Za-z0-9_=+/.-]{0,80}").prop_map(|(i, s)| Tok::Part(i, s)),
        prop_oneof![
            Just("none"),
            Just("RS256"),
            Just("HS512"),
            Just("ES256"),
            Just("")
        ]
        .prop_map(|a| Tok::Alg(a.to_string())),
        (json_value(), any::<bool>()).prop_map(|(v, s)| Tok::Payload(v, s)),
        (
            prop_oneof![
                Just("video"),
                Just("attributes"),
                Just("nbf"),
                Just("exp"),
                Just("iss"),
                Just("sub"),
                Just("name"),
                Just("metadata"),
                Just("kind"),
                Just("sha256"),
            ],
            prop_oneof![
                json_value(),
                json_value().prop_map(|v| serde_json::json!({"roomJoin": true, "room": v})),
                json_value()
                    .prop_map(|v| serde_json::json!({"canPublish": v, "canPublishSources": [v]})),
            ],
        )
            .prop_map(|(k, v)| Tok::Claim(k.to_string(), v)),
        ".{0,200}".prop_map(Tok::Any),
    ]
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `payload` signed with HS256 and the node's secret.
fn signed_json(payload: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        payload,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

fn make_token(t: &Tok) -> String {
    let valid = token("alice", VideoGrant::default()).unwrap_or_default();
    let parts: Vec<&str> = valid.split('.').collect();
    match t {
        Tok::Mutated(at, b) => {
            let mut s = valid.into_bytes();
            let at = at % s.len();
            s[at] = *b;
            String::from_utf8_lossy(&s).into_owned()
        }
        Tok::Truncated(n) => valid[..n % (valid.len() + 1)].to_string(),
        Tok::Part(i, s) => {
            let mut p: Vec<String> = parts.iter().map(|x| x.to_string()).collect();
            if let Some(x) = p.get_mut(*i) {
                *x = s.clone();
            }
            p.join(".")
        }
        Tok::Alg(alg) => {
            let header = b64(format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}").as_bytes());
            format!(
                "{header}.{}.{}",
                parts.get(1).unwrap_or(&""),
                parts.get(2).unwrap_or(&"")
            )
        }
        Tok::Payload(v, true) => signed_json(v),
        Tok::Payload(v, false) => {
            let header = parts.first().copied().unwrap_or("");
            let payload = b64(v.to_string().as_bytes());
            format!("{header}.{payload}.{}", parts.get(2).unwrap_or(&""))
        }
        Tok::Claim(key, v) => {
            let mut claims = serde_json::json!({
                "iss": "devkey",
                "sub": "alice",
                "exp": nodo_signaling::auth::unix_now() + 600,
            });
            claims[key.as_str()] = v.clone();
            signed_json(&claims)
        }
        Tok::Any(s) => s.clone(),
    }
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        "[a-zA-Z0-9_.@-]{1,40}",
        text(),
        text(),
        prop::collection::hash_map("[a-z]{1,8}", text(), 0..3),
        (any::<bool>(), any::<bool>(), any::<bool>(), text()),
        (
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::collection::vec(text(), 0..3),
        ),
    )
        .prop_map(
            |(
                identity,
                name,
                metadata,
                attributes,
                (join, admin, hidden, room),
                (publish, subscribe, sources),
            )| {
                let grant = VideoGrant {
                    room_join: join,
                    room_admin: admin,
                    hidden,
                    room,
                    can_publish: publish,
                    can_subscribe: subscribe,
                    can_publish_sources: sources,
                    ..VideoGrant::default()
                };
                let mut c = claims_for("devkey", &identity, Duration::from_secs(600), Some(grant));
                c.name = name;
                c.metadata = metadata;
                c.attributes = attributes;
                c
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    /// Any string as a token: a typed refusal, never a panic; a mutated
    /// token is never accepted with other claims than were signed.
    #[test]
    fn tokens_refuse_anything_unsigned(t in tok()) {
        let keys = KeyStore::new(BTreeMap::from([("devkey".into(), SECRET.into())]));
        let text = make_token(&t);
        if let Ok(c) = keys.verify(&text) {
            // Only a token signed with the secret passes (an unchanged one:
            // a mutation that changed nothing, or base64 slack bits), and
            // then it says what was signed: our key, not expired.
            prop_assert_eq!(c.iss.as_str(), "devkey");
            prop_assert!(c.exp + 60 >= nodo_signaling::auth::unix_now());
            if !matches!(t, Tok::Payload(..) | Tok::Claim(..)) {
                prop_assert_eq!(c.identity(), "alice");
            }
        }
    }

    /// decode(encode(x)) == x for claims signed with a configured key.
    #[test]
    fn tokens_round_trip(c in claims()) {
        let keys = KeyStore::new(BTreeMap::from([("devkey".into(), SECRET.into())]));
        let signed = keys.sign("devkey", &c).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = keys.verify(&signed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, c);
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
