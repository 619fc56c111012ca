//! The LiveKit signaling dialect, v0 (`GET /rtc` WebSocket, protobuf
//! `SignalRequest`/`SignalResponse`): the publisher connection is the one we
//! offer on, the subscriber connection the one the server offers on.

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use proto::signal_request::Message as Req;
use proto::signal_response::Message as Resp;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::signal::{Conn, LayerChoice, Quality, SignalEvent, TrackSpec};
use crate::stats::Shared;

/// How long the WebSocket handshake (and join) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// Token lifetime.
const TOKEN_TTL_SECS: u64 = 6 * 3600;
/// Signaling protocol version we announce.
const PROTOCOL: u32 = 15;
/// WebSocket read buffer: tungstenite's default (128 KiB) is zeroed on every
/// read and held per connection, thousands of times over here.
const READ_BUFFER: usize = 16 * 1024;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A LiveKit-compatible server and the API key to mint tokens with.
#[derive(Debug, Clone)]
pub struct LiveKitTarget {
    /// Base URL: `http://host:port` or `ws://host:port`.
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
}

pub struct LiveKit {
    sink: SplitSink<Ws, Message>,
    shared: Rc<Shared>,
    /// Frames from the reader task (`None`: the socket ended, and why).
    frames: mpsc::UnboundedReceiver<Result<Message, String>>,
    reader: JoinHandle<()>,
    /// Client ids of announced tracks not yet published by the server.
    pending: Vec<String>,
}

impl Drop for LiveKit {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Reads the socket in its own task, so it is polled only when data came
/// (polling it from the participant's `select!` on every packet made
/// tungstenite zero its read buffer each time).
async fn read_frames(
    mut stream: SplitStream<Ws>,
    frames: mpsc::UnboundedSender<Result<Message, String>>,
) {
    loop {
        let item = match stream.next().await {
            Some(Ok(m)) => Ok(m),
            Some(Err(e)) => Err(format!("signal socket: {e}")),
            None => Err("signal socket closed".to_string()),
        };
        let end = item.is_err();
        if frames.send(item).is_err() || end {
            return;
        }
    }
}

/// An HS256 room token with the claims LiveKit (and Nodo) read.
pub fn token(t: &LiveKitTarget, room: &str, identity: &str) -> Result<String, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "iss": t.api_key,
        "sub": identity,
        "name": identity,
        "nbf": now.saturating_sub(5),
        "exp": now + TOKEN_TTL_SECS,
        "video": {
            "roomJoin": true,
            "room": room,
            "canPublish": true,
            "canSubscribe": true,
            "canPublishData": true,
        },
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(t.api_secret.as_bytes()),
    )
    .map_err(|e| e.to_string())
}

/// `ws://…/rtc?…` for a join.
pub fn rtc_url(base: &str, token: &str, subscribe: bool) -> String {
    let base = base.trim_end_matches('/');
    let base = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        base.to_string()
    };
    format!(
        "{base}/rtc?access_token={token}&auto_subscribe={}&protocol={PROTOCOL}&sdk=rust&adaptive_stream=0",
        u8::from(subscribe)
    )
}

fn request(message: Req) -> Message {
    let req = proto::SignalRequest {
        message: Some(message),
    };
    Message::Binary(req.encode_to_vec().into())
}

impl LiveKit {
    pub async fn connect(
        t: &LiveKitTarget,
        room: &str,
        identity: &str,
        subscribe: bool,
        shared: Rc<Shared>,
    ) -> Result<LiveKit, String> {
        let url = rtc_url(&t.url, &token(t, room, identity)?, subscribe);
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(0);
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
        let (ws, _) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| "signal connect timed out".to_string())?
            .map_err(|e| format!("signal connect: {e}"))?;
        let (sink, stream) = ws.split();
        let (tx, frames) = mpsc::unbounded_channel();
        let reader = tokio::task::spawn_local(read_frames(stream, tx));
        Ok(LiveKit {
            sink,
            shared,
            frames,
            reader,
            pending: Vec::new(),
        })
    }

    async fn send(&mut self, message: Req) -> Result<(), String> {
        self.sink
            .send(request(message))
            .await
            .map_err(|e| format!("signal send: {e}"))
    }

    pub async fn next(&mut self) -> Result<Vec<SignalEvent>, String> {
        let msg = match self.frames.recv().await {
            None => return Ok(vec![SignalEvent::Closed("signal socket closed".into())]),
            Some(Err(e)) => return Ok(vec![SignalEvent::Closed(e)]),
            Some(Ok(m)) => m,
        };
        let c = &self.shared.counters;
        Shared::inc(&c.signal_msgs_in);
        Shared::add(&c.signal_bytes_in, msg.len() as u64);
        let resp = match msg {
            Message::Binary(b) => proto::SignalResponse::decode(b.as_ref()).ok(),
            Message::Text(t) => serde_json::from_str::<proto::SignalResponse>(t.as_str()).ok(),
            Message::Close(_) => {
                return Ok(vec![SignalEvent::Closed("signal socket closed".into())])
            }
            _ => None,
        };
        let Some(message) = resp.and_then(|r| r.message) else {
            return Ok(Vec::new());
        };
        Ok(on_message(&mut self.pending, message))
    }

    pub async fn announce(&mut self, tracks: &[TrackSpec]) -> Result<(), String> {
        for t in tracks {
            let req = match t {
                TrackSpec::Video { cid, layers } => {
                    let video_layers: Vec<proto::VideoLayer> = layers
                        .iter()
                        .enumerate()
                        .map(|(i, l)| proto::VideoLayer {
                            quality: match (layers.len(), i) {
                                (1, _) | (_, 2..) => proto::VideoQuality::High,
                                (_, 1) => proto::VideoQuality::Medium,
                                _ => proto::VideoQuality::Low,
                            } as i32,
                            width: u32::from(l.width),
                            height: u32::from(l.height),
                            bitrate: l.bitrate,
                            rid: if layers.len() > 1 {
                                l.rid.to_string()
                            } else {
                                String::new()
                            },
                            ..Default::default()
                        })
                        .collect();
                    let top = layers.last();
                    proto::AddTrackRequest {
                        cid: cid.clone(),
                        name: "camera".into(),
                        r#type: proto::TrackType::Video as i32,
                        width: top.map_or(0, |l| u32::from(l.width)),
                        height: top.map_or(0, |l| u32::from(l.height)),
                        source: proto::TrackSource::Camera as i32,
                        layers: video_layers.clone(),
                        simulcast_codecs: vec![proto::SimulcastCodec {
                            codec: "vp8".into(),
                            cid: cid.clone(),
                            layers: video_layers,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                }
                TrackSpec::Audio { cid } => proto::AddTrackRequest {
                    cid: cid.clone(),
                    name: "microphone".into(),
                    r#type: proto::TrackType::Audio as i32,
                    source: proto::TrackSource::Microphone as i32,
                    simulcast_codecs: vec![proto::SimulcastCodec {
                        codec: "opus".into(),
                        cid: cid.clone(),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            };
            self.pending.push(req.cid.clone());
            self.send(Req::AddTrack(req)).await?;
        }
        Ok(())
    }

    pub async fn offer(&mut self, sdp: String) -> Result<(), String> {
        self.send(Req::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp,
            ..Default::default()
        }))
        .await
    }

    pub async fn answer(&mut self, sdp: String) -> Result<(), String> {
        self.send(Req::Answer(proto::SessionDescription {
            r#type: "answer".into(),
            sdp,
            ..Default::default()
        }))
        .await
    }

    pub async fn candidate(&mut self, conn: Conn, candidate: String) -> Result<(), String> {
        let target = match conn {
            Conn::Send => proto::SignalTarget::Publisher,
            Conn::Recv => proto::SignalTarget::Subscriber,
        };
        let init = serde_json::json!({
            "candidate": candidate,
            "sdpMid": "0",
            "sdpMLineIndex": 0,
        });
        self.send(Req::Trickle(proto::TrickleRequest {
            candidate_init: init.to_string(),
            target: target as i32,
            r#final: false,
        }))
        .await
    }

    pub async fn set_layer(&mut self, track: String, choice: LayerChoice) -> Result<(), String> {
        let (quality, (width, height)) = match choice {
            LayerChoice::Quality(Quality::Low) => (proto::VideoQuality::Low, (0, 0)),
            LayerChoice::Quality(Quality::Medium) => (proto::VideoQuality::Medium, (0, 0)),
            LayerChoice::Quality(Quality::High) => (proto::VideoQuality::High, (0, 0)),
            // As adaptive-stream clients: the rendered size, quality unset.
            LayerChoice::Size(w, h) => (proto::VideoQuality::Low, (w, h)),
        };
        self.send(Req::TrackSetting(proto::UpdateTrackSettings {
            track_sids: vec![track],
            quality: quality as i32,
            width,
            height,
            ..Default::default()
        }))
        .await
    }

    pub async fn leave(&mut self) {
        let _ = self
            .send(Req::Leave(proto::LeaveRequest {
                reason: proto::DisconnectReason::ClientInitiated as i32,
                action: proto::leave_request::Action::Disconnect as i32,
                ..Default::default()
            }))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.sink.close()).await;
    }
}

/// What one server message means to a participant; `pending` holds the
/// client ids of announced tracks the server has not published yet.
fn on_message(pending: &mut Vec<String>, message: Resp) -> Vec<SignalEvent> {
    match message {
        Resp::Offer(sd) => vec![SignalEvent::RecvOffer(sd.sdp)],
        Resp::Answer(sd) => vec![SignalEvent::SendAnswer(sd.sdp)],
        Resp::Trickle(t) => {
            let conn = if t.target == proto::SignalTarget::Subscriber as i32 {
                Conn::Recv
            } else {
                Conn::Send
            };
            let candidate = serde_json::from_str::<serde_json::Value>(&t.candidate_init)
                .ok()
                .and_then(|v| v.get("candidate")?.as_str().map(str::to_string))
                .unwrap_or_default();
            if candidate.is_empty() {
                Vec::new()
            } else {
                vec![SignalEvent::Candidate(conn, candidate)]
            }
        }
        Resp::TrackPublished(p) => {
            let before = pending.len();
            pending.retain(|cid| *cid != p.cid);
            if before > 0 && pending.is_empty() {
                vec![SignalEvent::PublishReady]
            } else {
                Vec::new()
            }
        }
        Resp::Leave(l) => vec![SignalEvent::Closed(format!(
            "server sent leave (reason {})",
            l.reason
        ))],
        Resp::RequestResponse(r) if r.reason != proto::request_response::Reason::Ok as i32 => {
            vec![SignalEvent::Closed(format!(
                "request refused: {}",
                r.message
            ))]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_and_token() {
        let t = LiveKitTarget {
            url: "http://127.0.0.1:7880/".into(),
            api_key: "devkey".into(),
            api_secret: "secret".into(),
        };
        let tok = token(&t, "r", "p1").unwrap_or_default();
        assert_eq!(tok.split('.').count(), 3);
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_aud = false;
        let data = jsonwebtoken::decode::<serde_json::Value>(
            &tok,
            &jsonwebtoken::DecodingKey::from_secret(b"secret"),
            &v,
        );
        let claims = data.map(|d| d.claims).unwrap_or_default();
        assert_eq!(claims["iss"], "devkey");
        assert_eq!(claims["video"]["room"], "r");
        assert_eq!(claims["video"]["roomJoin"], true);
        let url = rtc_url(&t.url, "T", true);
        assert!(url.contains("protocol=15&sdk=rust"));
        assert!(url.starts_with("ws://127.0.0.1:7880/rtc?access_token=T&auto_subscribe=1"));
    }

    #[test]
    fn server_messages() {
        let mut pending = vec!["a".to_string(), "v".to_string()];
        let published = |cid: &str| {
            Resp::TrackPublished(proto::TrackPublishedResponse {
                cid: cid.into(),
                track: None,
            })
        };
        assert!(on_message(&mut pending, published("a")).is_empty());
        assert!(on_message(&mut pending, published("x")).is_empty());
        assert_eq!(
            on_message(&mut pending, published("v")),
            vec![SignalEvent::PublishReady]
        );
        let offer = Resp::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: "v=0".into(),
            ..Default::default()
        });
        assert_eq!(
            on_message(&mut pending, offer),
            vec![SignalEvent::RecvOffer("v=0".into())]
        );
        let trickle = Resp::Trickle(proto::TrickleRequest {
            candidate_init:
                r#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}"#.into(),
            target: proto::SignalTarget::Subscriber as i32,
            r#final: false,
        });
        assert_eq!(
            on_message(&mut pending, trickle),
            vec![SignalEvent::Candidate(
                Conn::Recv,
                "candidate:1 1 udp 1 127.0.0.1 9 typ host".into()
            )]
        );
        let bad = Resp::Trickle(proto::TrickleRequest {
            candidate_init: "not json".into(),
            ..Default::default()
        });
        assert!(on_message(&mut pending, bad).is_empty());
        let leave = Resp::Leave(proto::LeaveRequest::default());
        assert!(matches!(
            on_message(&mut pending, leave).as_slice(),
            [SignalEvent::Closed(_)]
        ));
    }
}
