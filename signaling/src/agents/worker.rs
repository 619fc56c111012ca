//! `GET /agent`: an agent worker's WebSocket (protobuf `WorkerMessage` in,
//! `ServerMessage` out). The token needs the `agent` grant; the first
//! message must be a `RegisterWorkerRequest`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use livekit_protocol as proto;
use prost::Message as _;
use proto::worker_message::Message as In;
use tokio::sync::{mpsc, oneshot};

use super::Cmd;
use crate::auth::bearer;
use crate::error::Error;
use crate::ids::{new_sid, WorkerId};
use crate::LiveKit;

/// Largest worker message accepted.
const MAX_FRAME: usize = 1024 * 1024;
/// Time a new connection has to register.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// A worker that sends nothing for this long is gone (livekit-agents sends
/// its status every 2.5 s and pings the socket).
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
/// Messages queued to one worker before it counts as not reading.
const OUT_QUEUE: usize = 256;
/// A worker that takes longer than this to read one message is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest agent name accepted.
const MAX_AGENT_NAME: usize = 256;

/// The JSON error body of the HTTP side of `/agent`.
fn refuse(e: Error) -> Response {
    let kind = e.kind();
    let message = match e.log_internal() {
        Some(id) => format!("internal error ({id})"),
        None => e.to_string(),
    };
    let body = serde_json::json!({"error": kind.code(), "message": message});
    (
        kind.status(),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /agent`: checks the token, then upgrades.
pub async fn connect(
    State(state): State<Arc<LiveKit>>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer)
        .or_else(|| params.get("access_token").map(String::as_str));
    let Some(token) = token else {
        return refuse(Error::MissingAuthorization);
    };
    let claims = match state.keys.verify(token) {
        Ok(c) => c,
        Err(e) => return refuse(e.into()),
    };
    if !claims.video().agent {
        return refuse(Error::NoAgentGrant);
    }
    let Ok(ws) = ws else {
        return refuse(Error::NotWebSocket);
    };
    let agents = state.agents.clone();
    let key = claims.iss;
    ws.max_message_size(MAX_FRAME)
        .on_upgrade(move |socket| serve(socket, agents, key))
}

/// Tells the dispatcher the worker is gone however its connection ends.
struct Registration {
    id: WorkerId,
    tx: mpsc::Sender<Cmd>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let tx = self.tx.clone();
        let id = self.id.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tx.send(Cmd::Gone { id }).await;
            });
        }
    }
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

/// Reads the next protobuf message; `None` when the socket ended.
fn decode(msg: Message) -> Option<Result<In, String>> {
    match msg {
        Message::Binary(b) => Some(
            proto::WorkerMessage::decode(b.as_ref())
                .map_err(|e| format!("malformed WorkerMessage: {e}"))
                .and_then(|m| m.message.ok_or_else(|| "empty WorkerMessage".to_string())),
        ),
        Message::Text(_) => Some(Err("expected binary protobuf messages".to_string())),
        Message::Close(_) => None,
        Message::Ping(_) | Message::Pong(_) => Some(Ok(In::Ping(proto::WorkerPing::default()))),
    }
}

fn check_register(req: &proto::RegisterWorkerRequest) -> Result<(), String> {
    if req.r#type != proto::JobType::JtRoom as i32 {
        let name = proto::JobType::try_from(req.r#type)
            .map(|t| t.as_str_name())
            .unwrap_or("unknown");
        return Err(format!(
            "job type {name} is not supported by this server; workers must take room jobs (JT_ROOM)"
        ));
    }
    if req.agent_name.len() > MAX_AGENT_NAME {
        return Err(format!("agent_name is longer than {MAX_AGENT_NAME} bytes"));
    }
    Ok(())
}

/// Sends one message, giving up on a worker that does not read for
/// [`WRITE_TIMEOUT`].
async fn send(socket: &mut WebSocket, msg: &proto::ServerMessage) -> bool {
    let frame = Message::Binary(msg.encode_to_vec().into());
    matches!(
        tokio::time::timeout(WRITE_TIMEOUT, socket.send(frame)).await,
        Ok(Ok(()))
    )
}

async fn serve(mut socket: WebSocket, agents: super::Agents, key: String) {
    // Registration first.
    let first = tokio::time::timeout(REGISTER_TIMEOUT, socket.recv()).await;
    let req = match first {
        Ok(Some(Ok(msg))) => match decode(msg) {
            Some(Ok(In::Register(r))) => r,
            Some(Ok(_)) => {
                return close(socket, 1008, "the first message must be a register request").await
            }
            Some(Err(e)) => return close(socket, 1003, &e).await,
            None => return,
        },
        Ok(_) => return,
        Err(_) => return close(socket, 1008, "no register request within 10 s").await,
    };
    if let Err(reason) = check_register(&req) {
        tracing::info!(agent = %req.agent_name, "agent worker refused: {reason}");
        return close(socket, 1003, &reason).await;
    }
    let id = WorkerId::new(new_sid("AW_"));
    let (out, mut out_rx) = mpsc::channel(OUT_QUEUE);
    let (reply, registered) = oneshot::channel();
    let tx = agents.sender().clone();
    let cmd = Cmd::Register {
        id: id.clone(),
        key,
        req: Box::new(req),
        out,
        reply,
    };
    if tx.send(cmd).await.is_err() {
        return close(socket, 1011, "agent dispatcher unavailable").await;
    }
    let _registration = Registration {
        id: id.clone(),
        tx: tx.clone(),
    };
    let resp = match registered.await {
        Ok(Some(resp)) => resp,
        Ok(None) => return close(socket, 1013, "too many agent workers on this node").await,
        Err(_) => return close(socket, 1011, "agent dispatcher unavailable").await,
    };
    let first = proto::ServerMessage {
        message: Some(proto::server_message::Message::Register(resp)),
    };
    if !send(&mut socket, &first).await {
        return;
    }
    loop {
        tokio::select! {
            out = out_rx.recv() => {
                let Some(msg) = out else {
                    return close(socket, 1008, "worker did not read its messages").await;
                };
                if !send(&mut socket, &msg).await {
                    return;
                }
            }
            incoming = tokio::time::timeout(SILENCE_LIMIT, socket.recv()) => {
                let msg = match incoming {
                    Ok(Some(Ok(m))) => m,
                    Ok(_) => return,
                    Err(_) => return close(socket, 1001, "worker silent for 30 s").await,
                };
                match decode(msg) {
                    None => return,
                    Some(Err(e)) => return close(socket, 1003, &e).await,
                    Some(Ok(In::Ping(p))) => {
                        if p.timestamp == 0 {
                            continue; // a WebSocket-level ping or pong
                        }
                        let pong = proto::WorkerPong {
                            last_timestamp: p.timestamp,
                            timestamp: crate::auth::unix_now_ms(),
                        };
                        let msg = proto::ServerMessage {
                            message: Some(proto::server_message::Message::Pong(pong)),
                        };
                        if !send(&mut socket, &msg).await {
                            return;
                        }
                    }
                    Some(Ok(In::Register(_))) => {
                        return close(socket, 1008, "already registered").await;
                    }
                    Some(Ok(msg)) => {
                        if tx.send(Cmd::Message { from: id.clone(), msg: Box::new(msg) }).await.is_err() {
                            return close(socket, 1011, "agent dispatcher unavailable").await;
                        }
                    }
                }
            }
        }
    }
}
