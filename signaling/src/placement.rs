//! Which node serves a room, when several nodes share the work.
//!
//! A room lives on one node. With a [`Placement`] wired in (the node's
//! cluster registry), `/rtc` and the RoomService ask it where a room is
//! before touching the local [`RoomManager`](crate::RoomManager), and hand a
//! request for a room served elsewhere to that node: a signal WebSocket is
//! piped to the owner's `/rtc` (media then goes straight to the owner's
//! addresses, which its join answer carries), a Twirp call is re-sent to the
//! owner's API. Clients never learn which node they reached.
//!
//! A request one node hands to another carries [`FORWARDED`], so the owner
//! serves it itself and never sends it on (no loops while ownership moves).
//! Without a placement (one node), nothing here runs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self as tg, client::IntoClientRequest};

use crate::error::Error;
use crate::ids::RoomName;
use crate::ws::{self, Socket, Upgrade};

/// Header marking a request another node handed over.
pub const FORWARDED: &str = "x-nodo-forwarded";

/// How long a hand-over waits to reach the owner.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a handed-over API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// Where a room is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// On this node.
    Here,
    /// On another node, reached at `url` (its HTTP base, e.g. `http://10.0.0.2:7880`).
    There { node: String, url: String },
}

/// A boxed future, as the trait's methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The cluster's answer to "where is this room".
pub trait Placement: Send + Sync + 'static {
    /// The node serving `room`. When no live node holds it and `claim` is
    /// set, one is chosen (by load) and recorded before this returns; when
    /// `claim` is not set, an unheld room is [`Location::Here`] (the local
    /// node then answers that it does not exist).
    fn locate<'a>(
        &'a self,
        room: &'a RoomName,
        claim: bool,
    ) -> BoxFuture<'a, Result<Location, Error>>;
    /// HTTP bases of the other live nodes.
    fn peers(&self) -> BoxFuture<'_, Result<Vec<String>, Error>>;
}

/// Whether another node handed this request over.
pub fn forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED)
}

/// The target URL for `path_and_query` on the node at `base`, with the
/// scheme switched to WebSocket when `ws` is set.
fn target(base: &str, path_and_query: &str, ws: bool) -> String {
    let base = base.trim_end_matches('/');
    let base = if ws {
        if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_string()
        }
    } else {
        base.to_string()
    };
    format!("{base}{path_and_query}")
}

/// The refusal for a hand-over that failed: the details (addresses,
/// transport errors) go to the log, not to the client.
fn handover_failed(base: &str, detail: impl std::fmt::Display) -> Error {
    tracing::warn!(node = %base, "cluster: handing a request over failed: {detail}");
    Error::NodeUnreachable("retry in a few seconds".into())
}

/// Pipes a client's signal WebSocket to the same path on the node at `base`.
/// The owner is reached before the client's upgrade is accepted, so a refusal
/// there (a bad token, a full room) reaches the client as the owner's own
/// HTTP answer, and an unreachable owner as a 503.
pub async fn proxy_ws(
    ws: Upgrade,
    base: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    config: tg::protocol::WebSocketConfig,
) -> Result<Response, Error> {
    // Both sides use the signal socket's limits and buffers (tungstenite's
    // default read buffer, 128 KiB, made a handed-over connection cost
    // ~270 KB on the handing node).
    let url = target(base, path_and_query, true);
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| handover_failed(base, e))?;
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        req.headers_mut()
            .insert(header::AUTHORIZATION, auth.clone());
    }
    req.headers_mut()
        .insert(FORWARDED, HeaderValue::from_static("1"));
    let connect = tokio_tungstenite::connect_async_with_config(req, Some(config), true);
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => return Err(handover_failed(base, "timed out")),
        Ok(Err(tg::Error::Http(resp))) => {
            // The owner refused the join: its answer is the client's.
            let (parts, body) = resp.into_parts();
            let status = StatusCode::from_u16(parts.status.as_u16())
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return Ok((status, body.unwrap_or_default()).into_response());
        }
        Ok(Err(e)) => return Err(handover_failed(base, e)),
        Ok(Ok((stream, _))) => stream,
    };
    Ok(ws.on_upgrade(config, move |client| pipe(client, upstream)))
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Longest a hand-over waits for one side to take a message.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies messages both ways until either side closes. A close from the
/// client goes to the owner, whose reply comes back to the client (a clean
/// close handshake); a side that stops taking messages ends the pipe.
async fn pipe(client: Socket, upstream: Upstream) {
    let (mut c_tx, mut c_rx) = client.split();
    let (mut u_tx, mut u_rx) = upstream.split();
    let up = async {
        while let Some(Ok(m)) = c_rx.next().await {
            if matches!(m, tg::Message::Frame(_)) {
                continue;
            }
            if !matches!(
                tokio::time::timeout(SEND_TIMEOUT, ws::send(&mut u_tx, m)).await,
                Ok(Ok(()))
            ) {
                break;
            }
        }
        // The client closed or is gone: the owner is told, and its close
        // reply (relayed by `down`) ends the pipe, or this wait does.
        let _ = tokio::time::timeout(SEND_TIMEOUT, u_tx.close()).await;
        tokio::time::sleep(SEND_TIMEOUT).await;
    };
    let down = async {
        while let Some(Ok(m)) = u_rx.next().await {
            let last = match m {
                tg::Message::Frame(_) => continue,
                tg::Message::Close(_) => true,
                _ => false,
            };
            let sent = tokio::time::timeout(SEND_TIMEOUT, ws::send(&mut c_tx, m)).await;
            if last || !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        let _ = tokio::time::timeout(SEND_TIMEOUT, c_tx.close()).await;
    };
    // The owner's side ending (its close relayed, or the connection lost)
    // ends the pipe; the client's ends it once the owner has answered its
    // close, or after `SEND_TIMEOUT`.
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

/// Re-sends an API call to the same path on the node at `base` and answers
/// with the owner's answer.
pub async fn proxy_call(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let url = target(base, path, false);
    let mut req = http
        .post(&url)
        .timeout(CALL_TIMEOUT)
        .header(FORWARDED, "1")
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(v) = headers.get(&name) {
            req = req.header(name.as_str(), v.as_bytes());
        }
    }
    let resp = req.send().await.map_err(|e| handover_failed(base, e))?;
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    let bytes = resp.bytes().await.map_err(|e| handover_failed(base, e))?;
    let mut out = (status, bytes).into_response();
    if let Some(ct) = content_type {
        out.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_the_path_and_switch_the_scheme() {
        assert_eq!(
            target("http://10.0.0.2:7880/", "/rtc?access_token=x", true),
            "ws://10.0.0.2:7880/rtc?access_token=x"
        );
        assert_eq!(
            target("https://b.example", "/rtc", true),
            "wss://b.example/rtc"
        );
        assert_eq!(
            target("http://b:1", "/twirp/livekit.RoomService/ListRooms", false),
            "http://b:1/twirp/livekit.RoomService/ListRooms"
        );
    }

    #[test]
    fn forwarded_requests_are_marked() {
        let mut h = HeaderMap::new();
        assert!(!forwarded(&h));
        h.insert(FORWARDED, HeaderValue::from_static("1"));
        assert!(forwarded(&h));
    }
}
