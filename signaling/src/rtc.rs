//! LiveKit client signaling: `/rtc` (v0, two peer connections), `/rtc/v1`
//! (one peer connection, the join in a `join_request` parameter) and their
//! `validate` checks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as In;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::{bearer, Claims};
use crate::error::Error;
use crate::ids::{ParticipantSid, RoomName};
use crate::placement::{self, Location};
use crate::room::{JoinOptions, Outgoing, RoomCmd, V1Join, SIGNAL_QUEUE};
use crate::ws::{self, Socket, Upgrade};
use crate::LiveKit;

/// Largest signal frame accepted (LiveKit's `signal_message_size_limit`).
const MAX_FRAME: usize = 2 * 1024 * 1024;
/// Bytes read from the signal socket at a time, held by every open socket
/// (an idle participant's largest single buffer at 16 KiB). Most requests
/// are a few hundred bytes; an SDP offer of 5-10 KiB takes a few reads.
const SIGNAL_READ_BUFFER: usize = 4 * 1024;
/// WebSocket-level ping, to keep proxies from idling the connection out.
const WS_PING: Duration = Duration::from_secs(10);
/// A signal connection that hears nothing (no frame, no pong to the pings
/// above) for this long is dead (half-open, stalled) and is closed; the
/// participant then gets the room's reconnect window, as after a drop.
/// Twice the `ping_timeout` the join response announces.
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Longest name or identity accepted.
pub(crate) const MAX_NAME_LEN: usize = 256;

type Params = HashMap<String, String>;

fn flag(params: &Params, key: &str) -> Option<bool> {
    params
        .get(key)
        .map(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Token from `Authorization: Bearer` or the `access_token` query value.
fn token<'a>(headers: &'a HeaderMap, params: &'a Params) -> Option<&'a str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer)
        .or_else(|| params.get("access_token").map(String::as_str))
}

/// Checks the token and grant of a join; returns the claims and room.
fn authorize(
    state: &LiveKit,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(Claims, RoomName), Error> {
    let token = token(headers, params).ok_or(Error::MissingToken)?;
    let claims = state.keys.verify(token)?;
    let grant = claims.video();
    if !grant.room_join {
        return Err(Error::NoJoinGrant);
    }
    if claims.identity().is_empty() {
        return Err(Error::InvalidArgument("token has no identity"));
    }
    if grant.room.is_empty() {
        return Err(Error::InvalidArgument("no room name"));
    }
    if grant.room.len() > MAX_NAME_LEN || claims.identity().len() > MAX_NAME_LEN {
        return Err(Error::InvalidArgument("room name or identity too long"));
    }
    let room = RoomName::new(grant.room.clone());
    // With several nodes the room may be open elsewhere: `route_join` asks.
    if state.placement().is_none() && !may_open(state, &claims, &room) {
        return Err(Error::RoomNotFound(room));
    }
    Ok((claims, room))
}

/// Whether a join may go ahead on this node: the room is open here, or the
/// join may open it.
fn may_open(state: &LiveKit, claims: &Claims, room: &RoomName) -> bool {
    may_create(state, claims) || state.rooms.exists(room)
}

/// Whether a join may open its room.
fn may_create(state: &LiveKit, claims: &Claims) -> bool {
    state.rooms.defaults().auto_create || claims.video().room_create
}

/// What becomes of a join on a node that shares rooms with others.
enum Routed {
    /// Served here.
    Local(Upgrade),
    /// Handed to the room's node: the answer for the client.
    Remote(Response),
}

/// Sends a join for a room served by another node there; a room open here,
/// or placed here, is served here.
async fn route_join(
    state: &LiveKit,
    headers: &HeaderMap,
    uri: &Uri,
    claims: &Claims,
    room: &RoomName,
    ws: Upgrade,
) -> Result<Routed, Error> {
    let Some(placement) = state.placement() else {
        return Ok(Routed::Local(ws));
    };
    if !state.rooms.exists(room) {
        if let Location::There { url, node } =
            placement.locate(room, may_create(state, claims)).await?
        {
            if placement::forwarded(headers) {
                // Handed over by a node that saw this one as the owner.
                return Err(Error::ClusterUnavailable(format!(
                    "room {room} moved to node {node} during the join; retry"
                )));
            }
            let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
            let handed = placement::proxy_ws(ws, &url, path, headers, socket_config()).await;
            state.rooms.metrics().handover("signal", handed.is_ok());
            return Ok(Routed::Remote(handed?));
        }
    }
    if !may_open(state, claims, room) {
        return Err(Error::RoomNotFound(room.clone()));
    }
    Ok(Routed::Local(ws))
}

/// `GET /rtc/validate`: 200 `success` when a join would be accepted.
pub async fn validate(
    State(state): State<Arc<LiveKit>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    validation(&state, authorize(&state, &headers, &params)).await
}

/// The answer of a validate endpoint for an authorized (or refused) join.
async fn validation(state: &LiveKit, authorized: Result<(Claims, RoomName), Error>) -> Response {
    let checked = match authorized {
        Ok((claims, room)) => open_somewhere(state, &claims, &room).await,
        Err(e) => Err(e),
    };
    let cors = [(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")];
    match checked {
        Ok(()) => (StatusCode::OK, cors, "success").into_response(),
        Err(e) => e.into_response(),
    }
}

/// With several nodes: whether the join could go ahead on some node (the
/// room is open on one, or the join may open it). `authorize` checks this
/// on a single node.
async fn open_somewhere(state: &LiveKit, claims: &Claims, room: &RoomName) -> Result<(), Error> {
    let Some(placement) = state.placement() else {
        return Ok(());
    };
    if may_open(state, claims, room) {
        return Ok(());
    }
    match placement.locate(room, false).await? {
        Location::Here => Err(Error::RoomNotFound(room.clone())),
        Location::There { .. } => Ok(()),
    }
}

/// Largest v1 `join_request` accepted, encoded or unpacked (LiveKit's cap).
const MAX_JOIN_REQUEST: usize = 1024 * 1024;

/// Decodes a v1 `join_request`: URL-safe base64 (padded or not; the
/// standard alphabet is taken too) of a `WrappedJoinRequest`, whose
/// `JoinRequest` may be gzip-compressed.
pub fn decode_join_request(param: &str) -> Result<proto::JoinRequest, Error> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use std::io::Read as _;
    let bad = |m: &str| Error::BadJoinRequest(m.to_string());
    if param.len() > MAX_JOIN_REQUEST * 2 {
        return Err(bad("too large"));
    }
    let trimmed = param.trim_end_matches('=');
    let bytes = URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| STANDARD.decode(param))
        .map_err(|_| bad("not base64"))?;
    let wrapped = proto::WrappedJoinRequest::decode(bytes.as_slice())
        .map_err(|_| bad("not a WrappedJoinRequest"))?;
    let raw = match proto::wrapped_join_request::Compression::try_from(wrapped.compression) {
        Ok(proto::wrapped_join_request::Compression::None) => wrapped.join_request,
        Ok(proto::wrapped_join_request::Compression::Gzip) => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(wrapped.join_request.as_slice())
                .take(MAX_JOIN_REQUEST as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| bad("gzip data does not inflate"))?;
            if out.len() > MAX_JOIN_REQUEST {
                return Err(bad("too large once inflated"));
            }
            out
        }
        Err(_) => return Err(bad("unknown compression")),
    };
    if raw.len() > MAX_JOIN_REQUEST {
        return Err(bad("too large"));
    }
    proto::JoinRequest::decode(raw.as_slice()).map_err(|_| bad("not a JoinRequest"))
}

/// The join request of a v1 call, required as LiveKit requires it.
fn v1_request(params: &Params) -> Result<proto::JoinRequest, Error> {
    let param = params.get("join_request").ok_or(Error::InvalidArgument(
        "join_request is required on /rtc/v1",
    ))?;
    decode_join_request(param)
}

/// `GET /rtc/v1/validate`: as `/rtc/validate`, with the join request checked.
pub async fn validate_v1(
    State(state): State<Arc<LiveKit>>,
    headers: HeaderMap,
    Query(params): Query<Params>,
) -> Response {
    let authorized = v1_request(&params).and_then(|_| authorize(&state, &headers, &params));
    validation(&state, authorized).await
}

/// `GET /rtc/v1`: signaling v1. The join (or resume) comes in the
/// `join_request` parameter, possibly with the client's first offer; the
/// participant gets one peer connection, which the client always offers.
pub async fn connect_v1(
    State(state): State<Arc<LiveKit>>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Params>,
    ws: Result<Upgrade, Error>,
) -> Result<Response, Error> {
    let Ok(ws) = ws else {
        return Err(Error::NotWebSocket);
    };
    let req = v1_request(&params)?;
    let (claims, room) = authorize(&state, &headers, &params)?;
    let ws = match route_join(&state, &headers, &uri, &claims, &room, ws).await? {
        Routed::Local(ws) => ws,
        Routed::Remote(resp) => return Ok(resp),
    };
    if req.reconnect && req.participant_sid.is_empty() {
        return Err(Error::InvalidArgument("reconnect without participant_sid"));
    }
    let settings = req.connection_settings.unwrap_or_default();
    let client = req.client_info.unwrap_or_default();
    let sdk = proto::client_info::Sdk::try_from(client.sdk)
        .map(|s| s.as_str_name().to_ascii_lowercase())
        .unwrap_or_default();
    let options = JoinOptions {
        auto_subscribe: settings.auto_subscribe,
        resume_sid: req.reconnect.then_some(req.participant_sid),
        protocol: client.protocol,
        adaptive_stream: settings.adaptive_stream,
        sdk,
        allow_pause: settings.subscriber_allow_pause.unwrap_or(false),
        single_pc: true,
        v1: Some(Box::new(V1Join {
            offer: req.publisher_offer,
            add_tracks: req.add_track_requests,
            metadata: req.metadata,
            attributes: req.participant_attributes,
        })),
    };
    join_and_upgrade(&state, ws, claims, room, options).await
}

/// `GET /rtc`: joins (or resumes) and upgrades to the signal WebSocket. The
/// join happens before the upgrade, so refusals are HTTP errors with a reason.
pub async fn connect(
    State(state): State<Arc<LiveKit>>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Params>,
    ws: Result<Upgrade, Error>,
) -> Result<Response, Error> {
    let Ok(ws) = ws else {
        return Err(Error::NotWebSocket);
    };
    let (claims, room) = authorize(&state, &headers, &params)?;
    let ws = match route_join(&state, &headers, &uri, &claims, &room, ws).await? {
        Routed::Local(ws) => ws,
        Routed::Remote(resp) => return Ok(resp),
    };
    let resume = flag(&params, "reconnect").unwrap_or(false);
    let options = JoinOptions {
        auto_subscribe: flag(&params, "auto_subscribe").unwrap_or(true),
        resume_sid: if resume {
            params.get("sid").cloned()
        } else {
            None
        },
        protocol: params
            .get("protocol")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0),
        adaptive_stream: flag(&params, "adaptive_stream").unwrap_or(false),
        sdk: params.get("sdk").cloned().unwrap_or_default(),
        allow_pause: flag(&params, "subscriber_allow_pause").unwrap_or(false),
        single_pc: false,
        v1: None,
    };
    if resume && options.resume_sid.is_none() {
        return Err(Error::InvalidArgument("reconnect without sid"));
    }
    join_and_upgrade(&state, ws, claims, room, options).await
}

async fn join_and_upgrade(
    state: &LiveKit,
    ws: Upgrade,
    claims: Claims,
    room: RoomName,
    options: JoinOptions,
) -> Result<Response, Error> {
    let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
    let (handle, joined) = state.rooms.join(&room, claims, options, tx).await?;
    let room_tx = handle.tx.clone();
    let upgrade = ws.on_upgrade(socket_config(), move |socket| {
        session(socket, room_tx, joined.sid, joined.session, rx)
    });
    Ok(upgrade)
}

/// The signal socket's limits and buffers.
pub(crate) fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME))
        // tungstenite's default read buffer (128 KiB) is zeroed each time the
        // socket is read: 12 % of the node's CPU during join churn. Signal
        // messages are small; a larger one still arrives, in several reads.
        .read_buffer_size(SIGNAL_READ_BUFFER)
        // Each message is written out as it is sent: nothing waits in the
        // write buffer for a later one.
        .write_buffer_size(0)
}

/// Pumps one signal WebSocket: client requests into the room actor, room
/// messages out to the client. Pings are answered here directly.
async fn session(
    mut socket: Socket,
    room: mpsc::Sender<RoomCmd>,
    sid: ParticipantSid,
    session: u64,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let mut json = false;
    let mut ping = tokio::time::interval(WS_PING);
    ping.tick().await;
    let mut heard = tokio::time::Instant::now();
    let mut left = false;
    loop {
        tokio::select! {
            out = rx.recv() => {
                let Some(out) = out else { break };
                let is_leave = matches!(out.response().message, Some(proto::signal_response::Message::Leave(_)));
                let sent = match &out {
                    Outgoing::Shared(shared) if !json => {
                        ws::send(&mut socket, Message::Binary(shared.binary())).await
                    }
                    _ => send(&mut socket, out.response(), json).await,
                };
                if sent.is_err() {
                    break;
                }
                if is_leave {
                    left = true;
                    let _ = ws::send(&mut socket, Message::Close(None)).await;
                    break;
                }
            }
            msg = socket.next() => {
                let Some(Ok(msg)) = msg else { break };
                heard = tokio::time::Instant::now();
                let req = match msg {
                    Message::Binary(b) => proto::SignalRequest::decode(b.as_ref()).ok(),
                    Message::Text(t) => {
                        json = true;
                        serde_json::from_str::<proto::SignalRequest>(t.as_str()).ok()
                    }
                    Message::Close(_) => break,
                    _ => continue,
                };
                let Some(msg) = req.and_then(|r| r.message) else {
                    tracing::debug!(%sid, "undecodable signal frame");
                    continue;
                };
                if let Some(reply) = pong(&msg) {
                    if send(&mut socket, &reply, json).await.is_err() {
                        break;
                    }
                    continue;
                }
                if matches!(msg, In::Leave(_)) {
                    left = true;
                }
                if room.send(RoomCmd::Signal { sid: sid.clone(), session, msg: Box::new(msg) }).await.is_err() {
                    break;
                }
                if left {
                    break;
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_LIMIT {
                    tracing::info!(%sid, "signal connection silent for 30 s: closing it");
                    break;
                }
                if ws::send(&mut socket, Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    if !left {
        let _ = room.send(RoomCmd::SignalClosed { sid, session }).await;
    }
}

fn pong(msg: &In) -> Option<proto::SignalResponse> {
    use proto::signal_response::Message as Out;
    let now = crate::auth::unix_now_ms();
    let out = match msg {
        In::Ping(_) => Out::Pong(now),
        In::PingReq(p) => Out::PongResp(proto::Pong {
            last_ping_timestamp: p.timestamp,
            timestamp: now,
        }),
        _ => return None,
    };
    Some(proto::SignalResponse { message: Some(out) })
}

async fn send(
    socket: &mut Socket,
    msg: &proto::SignalResponse,
    json: bool,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let frame = if json {
        match serde_json::to_string(msg) {
            Ok(s) => Message::Text(s.into()),
            Err(_) => return Ok(()),
        }
    } else {
        Message::Binary(msg.encode_to_vec().into())
    };
    ws::send(socket, frame).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    use std::io::Write as _;

    fn wrap(req: &proto::JoinRequest, gzip: bool) -> Vec<u8> {
        let raw = req.encode_to_vec();
        let (compression, join_request) = if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&raw).expect("gzip");
            (
                proto::wrapped_join_request::Compression::Gzip,
                enc.finish().expect("gzip"),
            )
        } else {
            (proto::wrapped_join_request::Compression::None, raw)
        };
        proto::WrappedJoinRequest {
            compression: compression as i32,
            join_request,
        }
        .encode_to_vec()
    }

    #[test]
    fn join_requests_decode_in_every_encoding_clients_use() {
        let req = proto::JoinRequest {
            metadata: "m".repeat(100),
            reconnect: true,
            participant_sid: "PA_x".into(),
            ..Default::default()
        };
        for gzip in [false, true] {
            let bytes = wrap(&req, gzip);
            for text in [
                URL_SAFE.encode(&bytes),
                URL_SAFE_NO_PAD.encode(&bytes),
                STANDARD.encode(&bytes),
            ] {
                assert_eq!(decode_join_request(&text).expect("decodes"), req);
            }
        }
    }

    #[test]
    fn bad_join_requests_are_refused_with_a_reason() {
        let bomb = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&vec![0u8; 4 * MAX_JOIN_REQUEST])
                .expect("gzip");
            proto::WrappedJoinRequest {
                compression: 1,
                join_request: enc.finish().expect("gzip"),
            }
            .encode_to_vec()
        };
        let unknown = proto::WrappedJoinRequest {
            compression: 7,
            join_request: Vec::new(),
        }
        .encode_to_vec();
        for (text, why) in [
            ("***".to_string(), "not base64"),
            (
                URL_SAFE.encode([0xff, 0xff, 0xff]),
                "not a WrappedJoinRequest",
            ),
            (URL_SAFE.encode(&bomb), "too large once inflated"),
            (URL_SAFE.encode(&unknown), "unknown compression"),
        ] {
            let err = decode_join_request(&text).expect_err(why).to_string();
            assert!(err.contains(why), "{err} lacks {why}");
        }
    }
}
