//! Fuzzing the Twirp RoomService (`/twirp/livekit.RoomService/<Method>`):
//! sequences of requests to every method, in protobuf and JSON, with bodies
//! that are structured requests (rooms and identities that exist or not),
//! their mutated encodings (bit flips, truncations, lying lengths, deep
//! nesting), arbitrary protobuf wire data, JSON and bytes, under any
//! Content-Type and with valid, limited, foreign or garbage tokens. A room
//! with a participant joined over a real `/rtc` WebSocket gives the
//! participant operations a target.
//!
//! Properties: no panic (room actors included), every case within a
//! deadline, never a 5xx; a success decodes as the method's response in the
//! request's format; a refusal is a Twirp error `{code, msg}` whose status
//! matches its code; a body that does not decode is `malformed`, one that
//! does never is; the service still serves afterwards. Also decode(encode(x))
//! == x for every request type, in protobuf and JSON.
//!
//! `PROPTEST_CASES` sets the number of cases (defaults below, sized for CI);
//! `scripts/fuzz` runs them for as long as asked.

// Clients still send fields the protocol marks deprecated.
#![allow(deprecated)]

mod fuzz_common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use fuzz_common::*;
use http_body_util::BodyExt;
use livekit_protocol as proto;
use nodo_sfu::net::testing::RecordingTransport;
use nodo_signaling::auth::KeyStore;
use nodo_signaling::auth::{claims_for, sign_with, VideoGrant};
use nodo_signaling::config::{LimitConfig, RoomDefaults};
use nodo_signaling::{router, LiveKit, RoomManager};
use proptest::prelude::*;
use prost::Message as _;
use serde_json::Value;
use tower::ServiceExt;

const ROOM: &str = "fuzz";
const SECRET: &str = "secret";

// ---------------------------------------------------------------------------
// Requests.

// A test value, made once per call: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
enum Req {
    CreateRoom(proto::CreateRoomRequest),
    ListRooms(proto::ListRoomsRequest),
    DeleteRoom(proto::DeleteRoomRequest),
    UpdateRoomMetadata(proto::UpdateRoomMetadataRequest),
    ListParticipants(proto::ListParticipantsRequest),
    GetParticipant(proto::RoomParticipantIdentity),
    RemoveParticipant(proto::RoomParticipantIdentity),
    MutePublishedTrack(proto::MuteRoomTrackRequest),
    UpdateParticipant(proto::UpdateParticipantRequest),
    UpdateSubscriptions(proto::UpdateSubscriptionsRequest),
    SendData(proto::SendDataRequest),
}

/// Applies `$f` to the request inside, whatever its type.
macro_rules! each {
    ($r:expr, $x:ident => $f:expr) => {
        match $r {
            Req::CreateRoom($x) => $f,
            Req::ListRooms($x) => $f,
            Req::DeleteRoom($x) => $f,
            Req::UpdateRoomMetadata($x) => $f,
            Req::ListParticipants($x) => $f,
            Req::GetParticipant($x) => $f,
            Req::RemoveParticipant($x) => $f,
            Req::MutePublishedTrack($x) => $f,
            Req::UpdateParticipant($x) => $f,
            Req::UpdateSubscriptions($x) => $f,
            Req::SendData($x) => $f,
        }
    };
}

impl Req {
    fn method(&self) -> &'static str {
        match self {
            Req::CreateRoom(_) => "CreateRoom",
            Req::ListRooms(_) => "ListRooms",
            Req::DeleteRoom(_) => "DeleteRoom",
            Req::UpdateRoomMetadata(_) => "UpdateRoomMetadata",
            Req::ListParticipants(_) => "ListParticipants",
            Req::GetParticipant(_) => "GetParticipant",
            Req::RemoveParticipant(_) => "RemoveParticipant",
            Req::MutePublishedTrack(_) => "MutePublishedTrack",
            Req::UpdateParticipant(_) => "UpdateParticipant",
            Req::UpdateSubscriptions(_) => "UpdateSubscriptions",
            Req::SendData(_) => "SendData",
        }
    }

    fn protobuf(&self) -> Vec<u8> {
        each!(self, x => x.encode_to_vec())
    }

    fn json(&self) -> Value {
        each!(self, x => serde_json::to_value(x).unwrap_or(Value::Null))
    }

    /// decode(encode(x)) == x in protobuf.
    fn protobuf_round_trips(&self) -> bool {
        fn check<T: prost::Message + Default + PartialEq>(x: &T) -> bool {
            T::decode(x.encode_to_vec().as_slice()).is_ok_and(|b| &b == x)
        }
        each!(self, x => check(x))
    }

    /// decode(encode(x)) == x in JSON; `Err` with serde's message otherwise.
    fn json_round_trips(&self) -> Result<bool, String> {
        fn check<T>(x: &T) -> Result<bool, String>
        where
            T: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
        {
            let text = serde_json::to_string(x).map_err(|e| e.to_string())?;
            let back: T = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            Ok(&back == x)
        }
        each!(self, x => check(x))
    }
}

fn room() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just(ROOM.to_string()), 1 => Just("other".to_string()), 2 => text()]
}

fn identity() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just("alice".to_string()), 1 => Just("nobody".to_string()), 2 => text()]
}

fn strings() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..4)
}

fn attributes() -> impl Strategy<Value = HashMap<String, String>> {
    prop::collection::hash_map(text(), text(), 0..3)
}

fn permission() -> impl Strategy<Value = proto::ParticipantPermission> {
    (
        any::<[bool; 6]>(),
        prop::collection::vec(prop_oneof![0i32..6, any::<i32>()], 0..4),
    )
        .prop_map(|(b, sources)| proto::ParticipantPermission {
            can_subscribe: b[0],
            can_publish: b[1],
            can_publish_data: b[2],
            hidden: b[3],
            can_update_metadata: b[4],
            agent: b[5],
            can_publish_sources: sources,
            ..Default::default()
        })
}

fn req() -> impl Strategy<Value = Req> {
    prop_oneof![
        2 => (room(), any::<u32>(), any::<u32>(), any::<u32>(), text(), attributes()).prop_map(
            |(name, empty, departure, max, metadata, tags)| Req::CreateRoom(proto::CreateRoomRequest {
                name,
                empty_timeout: empty,
                departure_timeout: departure,
                max_participants: max,
                metadata,
                tags,
                ..Default::default()
            })
        ),
        1 => strings().prop_map(|names| Req::ListRooms(proto::ListRoomsRequest { names })),
        1 => room().prop_map(|room| Req::DeleteRoom(proto::DeleteRoomRequest { room })),
        1 => (room(), text()).prop_map(|(room, metadata)| {
            Req::UpdateRoomMetadata(proto::UpdateRoomMetadataRequest { room, metadata })
        }),
        1 => room().prop_map(|room| Req::ListParticipants(proto::ListParticipantsRequest { room })),
        1 => (room(), identity(), any::<i64>()).prop_map(|(room, identity, ts)| {
            Req::GetParticipant(proto::RoomParticipantIdentity { room, identity, revoke_token_ts: ts })
        }),
        1 => (room(), identity()).prop_map(|(room, identity)| {
            Req::RemoveParticipant(proto::RoomParticipantIdentity { room, identity, revoke_token_ts: 0 })
        }),
        1 => (room(), identity(), text(), any::<bool>()).prop_map(|(room, identity, track_sid, muted)| {
            Req::MutePublishedTrack(proto::MuteRoomTrackRequest { room, identity, track_sid, muted })
        }),
        2 => (room(), identity(), text(), prop::option::of(permission()), text(), attributes()).prop_map(
            |(room, identity, metadata, permission, name, attributes)| {
                Req::UpdateParticipant(proto::UpdateParticipantRequest {
                    room,
                    identity,
                    metadata,
                    permission,
                    name,
                    attributes,
                })
            }
        ),
        1 => (room(), identity(), strings(), any::<bool>(), prop::collection::vec((text(), strings()), 0..3))
            .prop_map(|(room, identity, track_sids, subscribe, pt)| {
                Req::UpdateSubscriptions(proto::UpdateSubscriptionsRequest {
                    room,
                    identity,
                    track_sids,
                    subscribe,
                    participant_tracks: pt
                        .into_iter()
                        .map(|(p, t)| proto::ParticipantTracks { participant_sid: p, track_sids: t })
                        .collect(),
                })
            }),
        2 => (
            room(),
            prop_oneof![
                4 => prop::collection::vec(any::<u8>(), 0..200),
                1 => (65_530usize..65_545).prop_map(|n| vec![7u8; n]),
            ],
            prop_oneof![0i32..3, any::<i32>()],
            prop::collection::vec(identity(), 0..3),
            prop::option::of(text()),
        )
            .prop_map(|(room, data, kind, destination_identities, topic)| {
                Req::SendData(proto::SendDataRequest {
                    room,
                    data,
                    kind,
                    destination_identities,
                    topic,
                    ..Default::default()
                })
            }),
    ]
}

// ---------------------------------------------------------------------------
// Calls.

#[derive(Debug, Clone, Copy, PartialEq)]
enum Format {
    Json,
    Protobuf,
}

#[derive(Debug, Clone)]
enum CallBody {
    /// The request, encoded in the call's format.
    Valid,
    Mutated(Vec<Mutation>),
    JsonMutated(JsonMutation),
    Wire(Vec<Wire>),
    Deep(usize),
    Bytes(Vec<u8>),
    Value(Value),
    Empty,
}

fn body() -> impl Strategy<Value = CallBody> {
    prop_oneof![
        6 => Just(CallBody::Valid),
        3 => prop::collection::vec(mutation(), 1..4).prop_map(CallBody::Mutated),
        2 => json_mutation().prop_map(CallBody::JsonMutated),
        1 => wire().prop_map(CallBody::Wire),
        1 => (1usize..3000).prop_map(CallBody::Deep),
        1 => prop::collection::vec(any::<u8>(), 0..300).prop_map(CallBody::Bytes),
        1 => json_value().prop_map(CallBody::Value),
        1 => Just(CallBody::Empty),
    ]
}

#[derive(Debug, Clone)]
enum Auth {
    Admin,
    /// Grants for another room.
    OtherRoom,
    /// A join-only token.
    Participant,
    None,
    Garbage(String),
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        8 => Just(Auth::Admin),
        1 => Just(Auth::OtherRoom),
        1 => Just(Auth::Participant),
        1 => Just(Auth::None),
        // Any visible ASCII (what a header value can carry).
        1 => "[!-~]{0,60}".prop_map(Auth::Garbage),
    ]
}

#[derive(Debug, Clone)]
enum ContentType {
    Of(Format),
    /// With parameters (`; charset=utf-8`).
    WithParams(Format),
    Other(String),
    Missing,
}

fn content_type() -> impl Strategy<Value = ContentType> {
    let format = prop_oneof![Just(Format::Json), Just(Format::Protobuf)];
    prop_oneof![
        10 => format.clone().prop_map(ContentType::Of),
        1 => format.prop_map(ContentType::WithParams),
        1 => "[!-~]{0,40}".prop_map(ContentType::Other),
        1 => Just(ContentType::Missing),
    ]
}

#[derive(Debug, Clone)]
struct Call {
    req: Req,
    body: CallBody,
    auth: Auth,
    content_type: ContentType,
    /// Another method name than the request's.
    method: Option<String>,
}

fn call() -> impl Strategy<Value = Call> {
    (
        req(),
        body(),
        auth(),
        content_type(),
        // Unknown methods (a name the route matches: one path segment).
        prop::option::weighted(0.05, "[A-Za-z_.]{1,20}"),
    )
        .prop_map(|(req, body, auth, content_type, method)| Call {
            req,
            body,
            auth,
            content_type,
            method,
        })
}

fn token(grant: VideoGrant) -> String {
    let claims = claims_for("devkey", "server", Duration::from_secs(600), Some(grant));
    sign_with(SECRET, &claims).unwrap_or_default()
}

fn admin_grant(room: &str) -> VideoGrant {
    VideoGrant {
        room_create: true,
        room_list: true,
        room_admin: true,
        room: room.into(),
        ..VideoGrant::default()
    }
}

impl Call {
    fn format(&self) -> Option<Format> {
        match &self.content_type {
            ContentType::Of(f) | ContentType::WithParams(f) => Some(*f),
            _ => None,
        }
    }

    fn content_type_header(&self) -> Option<String> {
        let name = |f: &Format| match f {
            Format::Json => "application/json",
            Format::Protobuf => "application/protobuf",
        };
        match &self.content_type {
            ContentType::Of(f) => Some(name(f).to_string()),
            ContentType::WithParams(f) => Some(format!("{}; charset=utf-8", name(f))),
            ContentType::Other(s) => Some(s.clone()),
            ContentType::Missing => None,
        }
    }

    fn body_bytes(&self) -> Vec<u8> {
        let format = self.format().unwrap_or(Format::Json);
        let valid = || match format {
            Format::Json => self.req.json().to_string().into_bytes(),
            Format::Protobuf => self.req.protobuf(),
        };
        match &self.body {
            CallBody::Valid => valid(),
            CallBody::Mutated(muts) => muts.iter().fold(valid(), mutate_bytes),
            CallBody::JsonMutated(m) => mutate_json(self.req.json(), m).into_bytes(),
            CallBody::Wire(w) => encode_wire(w),
            CallBody::Deep(depth) => match format {
                Format::Json => {
                    format!("{}1{}", "[".repeat(*depth), "]".repeat(*depth)).into_bytes()
                }
                Format::Protobuf => deep_protobuf(14, *depth),
            },
            CallBody::Bytes(b) => b.clone(),
            CallBody::Value(v) => v.to_string().into_bytes(),
            CallBody::Empty => Vec::new(),
        }
    }

    fn request(&self) -> Request<Body> {
        let method = self.method.as_deref().unwrap_or(self.req.method());
        let mut r = Request::post(format!("/twirp/livekit.RoomService/{method}"));
        if let Some(ct) = self.content_type_header() {
            r = r.header("content-type", ct);
        }
        let auth = match &self.auth {
            Auth::Admin => Some(token(admin_grant(ROOM))),
            Auth::OtherRoom => Some(token(admin_grant("elsewhere"))),
            Auth::Participant => Some(token(VideoGrant {
                room_join: true,
                room: ROOM.into(),
                ..VideoGrant::default()
            })),
            Auth::None => None,
            Auth::Garbage(s) => Some(s.clone()),
        };
        if let Some(t) = auth {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        r.body(Body::from(self.body_bytes()))
            .unwrap_or_else(|_| Request::new(Body::empty()))
    }
}

/// Whether `bytes` decode as the response of `method` in `format`.
fn decodes_as_response(method: &str, format: Format, bytes: &[u8]) -> bool {
    fn check<T: prost::Message + Default + serde::de::DeserializeOwned>(
        format: Format,
        bytes: &[u8],
    ) -> bool {
        match format {
            Format::Protobuf => T::decode(bytes).is_ok(),
            Format::Json => serde_json::from_slice::<T>(bytes).is_ok(),
        }
    }
    match method {
        "CreateRoom" | "UpdateRoomMetadata" => check::<proto::Room>(format, bytes),
        "ListRooms" => check::<proto::ListRoomsResponse>(format, bytes),
        "DeleteRoom" => check::<proto::DeleteRoomResponse>(format, bytes),
        "ListParticipants" => check::<proto::ListParticipantsResponse>(format, bytes),
        "GetParticipant" | "UpdateParticipant" => check::<proto::ParticipantInfo>(format, bytes),
        "RemoveParticipant" => check::<proto::RemoveParticipantResponse>(format, bytes),
        "MutePublishedTrack" => check::<proto::MuteRoomTrackResponse>(format, bytes),
        "UpdateSubscriptions" => check::<proto::UpdateSubscriptionsResponse>(format, bytes),
        "SendData" => check::<proto::SendDataResponse>(format, bytes),
        _ => false,
    }
}

/// Whether the body decodes as the method's request in `format`, as the
/// server decodes it (an empty JSON body reads as `{}`).
fn decodes_as_request(method: &str, format: Format, bytes: &[u8]) -> bool {
    fn check<T: prost::Message + Default + serde::de::DeserializeOwned>(
        format: Format,
        bytes: &[u8],
    ) -> bool {
        match format {
            Format::Protobuf => T::decode(bytes).is_ok(),
            Format::Json => {
                let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { bytes };
                serde_json::from_slice::<T>(bytes).is_ok()
            }
        }
    }
    match method {
        "CreateRoom" => check::<proto::CreateRoomRequest>(format, bytes),
        "ListRooms" => check::<proto::ListRoomsRequest>(format, bytes),
        "DeleteRoom" => check::<proto::DeleteRoomRequest>(format, bytes),
        "UpdateRoomMetadata" => check::<proto::UpdateRoomMetadataRequest>(format, bytes),
        "ListParticipants" => check::<proto::ListParticipantsRequest>(format, bytes),
        "GetParticipant" | "RemoveParticipant" => {
            check::<proto::RoomParticipantIdentity>(format, bytes)
        }
        "MutePublishedTrack" => check::<proto::MuteRoomTrackRequest>(format, bytes),
        "UpdateParticipant" => check::<proto::UpdateParticipantRequest>(format, bytes),
        "UpdateSubscriptions" => check::<proto::UpdateSubscriptionsRequest>(format, bytes),
        "SendData" => check::<proto::SendDataRequest>(format, bytes),
        _ => false,
    }
}

/// Twirp's HTTP status for each error code the service uses (`internal`,
/// a 500, is not among them: no input may cause one).
fn status_of(code: &str) -> Option<StatusCode> {
    Some(match code {
        "unauthenticated" => StatusCode::UNAUTHORIZED,
        "permission_denied" => StatusCode::FORBIDDEN,
        "not_found" | "bad_route" => StatusCode::NOT_FOUND,
        "invalid_argument" | "malformed" => StatusCode::BAD_REQUEST,
        "already_exists" => StatusCode::CONFLICT,
        "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
        "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
        _ => return None,
    })
}

struct Node {
    app: axum::Router,
}

/// A node on a loopback port with room `fuzz` and alice in it (over a real
/// `/rtc` WebSocket, kept open for the case).
async fn start() -> Result<(Node, impl Sized), String> {
    let transport = RecordingTransport::new("10.0.0.1:7882".parse().map_err(|_| "addr")?);
    let keys = KeyStore::new(BTreeMap::from([("devkey".into(), SECRET.into())]));
    let rooms = RoomManager::new(transport, RoomDefaults::default(), LimitConfig::default());
    let app = router(Arc::new(LiveKit::start(keys, rooms)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let served = app.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, served).await;
    });
    let mut alice = claims_for("devkey", "alice", Duration::from_secs(600), None);
    alice.video = Some(VideoGrant {
        room_join: true,
        room: ROOM.into(),
        ..VideoGrant::default()
    });
    let join = sign_with(SECRET, &alice).map_err(|e| e.to_string())?;
    let url = format!("ws://{addr}/rtc?access_token={join}&protocol=16");
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .map_err(|e| format!("alice cannot join: {e}"))?;
    Ok((Node { app }, ws))
}

async fn send(app: &axum::Router, req: Request<Body>) -> Result<(StatusCode, Vec<u8>), String> {
    let resp = app.clone().oneshot(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok((status, bytes))
}

async fn check_call(node: &Node, c: &Call) -> Result<(), String> {
    let body = c.body_bytes();
    let (status, bytes) = send(&node.app, c.request()).await?;
    let method = c.method.as_deref().unwrap_or(c.req.method());
    if status == StatusCode::OK {
        let Some(format) = c.format() else {
            return Err(format!(
                "{method}: 200 to a request with no Twirp content type"
            ));
        };
        if !decodes_as_response(method, format, &bytes) {
            return Err(format!("{method}: a 200 whose body is not its response"));
        }
        if !decodes_as_request(method, format, &body) {
            return Err(format!("{method}: 200 to a body that does not decode"));
        }
        return Ok(());
    }
    if status.is_server_error() {
        return Err(format!(
            "{method}: {status} ({})",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let err: Value = serde_json::from_slice(&bytes)
        .map_err(|_| format!("{method}: {status} without a JSON Twirp error"))?;
    let code = err["code"].as_str().unwrap_or_default();
    if err["msg"].as_str().is_none() {
        return Err(format!("{method}: Twirp error without msg: {err}"));
    }
    if status_of(code) != Some(status) {
        return Err(format!("{method}: code {code:?} with status {status}"));
    }
    // Only a body that does not decode is malformed, and one that does not
    // decode is refused as malformed once it gets past routing and auth.
    if let Some(format) = c.format() {
        let decodes = decodes_as_request(method, format, &body);
        if code == "malformed" && decodes {
            return Err(format!(
                "{method}: a body that decodes refused as malformed: {err}"
            ));
        }
        let authorized = matches!(c.auth, Auth::Admin);
        let known = c.method.is_none();
        if !decodes && authorized && known && code != "malformed" && code != "permission_denied" {
            // Grants are checked before the body on some methods.
            return Err(format!("{method}: undecodable body answered {code}"));
        }
    }
    Ok(())
}

async fn fuzz_calls(calls: Vec<Call>) -> Result<(), String> {
    let (node, _alice) = start().await?;
    for c in &calls {
        check_call(&node, c).await?;
    }
    // The service still serves.
    let list = Call {
        req: Req::ListRooms(proto::ListRoomsRequest::default()),
        body: CallBody::Valid,
        auth: Auth::Admin,
        content_type: ContentType::Of(Format::Protobuf),
        method: None,
    };
    let (status, bytes) = send(&node.app, list.request()).await?;
    if status != StatusCode::OK || proto::ListRoomsResponse::decode(bytes.as_slice()).is_err() {
        return Err(format!("ListRooms afterwards: {status}"));
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn twirp_answers_any_call_with_a_response_or_a_twirp_error(
        calls in prop::collection::vec(call(), 1..10),
    ) {
        run_case(Duration::from_secs(60), fuzz_calls(calls))?;
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// decode(encode(x)) == x for every RoomService request, in protobuf,
    /// and in JSON except that an enum number the protocol does not name has
    /// no JSON form (an error, not a panic).
    #[test]
    fn twirp_requests_round_trip(r in req()) {
        prop_assert!(r.protobuf_round_trips(), "protobuf round trip of {}", r.method());
        match r.json_round_trips() {
            Ok(same) => prop_assert!(same, "JSON round trip of {}", r.method()),
            Err(e) => prop_assert!(e.contains("Invalid variant"), "{}", e),
        }
    }
}
