//! The server side of the signal WebSocket, on tokio-tungstenite directly
//! rather than axum's `WebSocket`, so that large messages can go out in
//! fragments.
//!
//! tungstenite copies each frame into a write buffer that keeps the
//! capacity of the largest frame it ever held. A join response lists every
//! participant in the room, so in a room of 1,000 each connection kept ~30 KB
//! for its life (heaptrack, `bench/media/run.py --scenario E --n 1000`).
//! Messages over [`FRAGMENT`] bytes are sent as fragments of that size (RFC
//! 6455 §5.4; every WebSocket client reassembles them), which bounds the
//! buffer.

use std::future::Future;

use axum::body::Body;
use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts, HeaderValue, Method, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Sink, SinkExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::error::Error;

/// An accepted signal WebSocket.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Largest frame sent: a longer message goes out in fragments of this size.
pub const FRAGMENT: usize = 4 * 1024;

/// A request to upgrade to a WebSocket (HTTP/1.1, RFC 6455 §4.2.1); anything
/// else is refused with [`Error::NotWebSocket`].
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

fn header_has_token(parts: &Parts, name: header::HeaderName, token: &str) -> bool {
    parts.headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let version_ok = parts
            .headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13");
        if parts.method != Method::GET
            || !header_has_token(parts, header::CONNECTION, "upgrade")
            || !header_has_token(parts, header::UPGRADE, "websocket")
            || !version_ok
        {
            return Err(Error::NotWebSocket);
        }
        let key = parts
            .headers
            .get(header::SEC_WEBSOCKET_KEY)
            .cloned()
            .ok_or(Error::NotWebSocket)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(Error::NotWebSocket)?;
        Ok(Upgrade { key, on_upgrade })
    }
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and, once the connection is
    /// switched, runs `session` on it in a task of its own.
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, session: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = derive_accept_key(self.key.as_bytes());
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    let socket =
                        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                    session(socket).await;
                }
                Err(e) => tracing::debug!("signal WebSocket upgrade failed: {e}"),
            }
        });
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(v) = HeaderValue::from_str(&accept) {
            h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        resp
    }
}

/// Sends one message and flushes it; a text or binary message longer than
/// [`FRAGMENT`] goes out as fragments of that size.
pub async fn send<S>(sink: &mut S, msg: Message) -> Result<(), WsError>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let (data, kind) = match msg {
        Message::Binary(b) if b.len() > FRAGMENT => (b, Data::Binary),
        // A fragment may end inside a UTF-8 sequence: only the whole
        // message has to be valid (RFC 6455 §5.6).
        Message::Text(t) if t.len() > FRAGMENT => (Bytes::from(t), Data::Text),
        other => return sink.send(other).await,
    };
    for frame in fragments(data, kind) {
        sink.feed(Message::Frame(frame)).await?;
    }
    sink.flush().await
}

/// The frames of one message: the first with the message's opcode, the rest
/// continuations, the last final.
fn fragments(data: Bytes, kind: Data) -> Vec<Frame> {
    let n = data.len().div_ceil(FRAGMENT).max(1);
    (0..n)
        .map(|i| {
            let start = i * FRAGMENT;
            let end = (start + FRAGMENT).min(data.len());
            let op = if i == 0 {
                OpCode::Data(kind)
            } else {
                OpCode::Data(Data::Continue)
            };
            Frame::message(data.slice(start..end), op, i + 1 == n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    async fn extract(req: Request<()>) -> Result<Upgrade, Error> {
        let (mut parts, ()) = req.into_parts();
        Upgrade::from_request_parts(&mut parts, &()).await
    }

    fn upgrade_request(version: &str) -> axum::http::request::Builder {
        Request::get("/rtc")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", version)
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    #[tokio::test]
    async fn what_is_not_a_websocket_upgrade_is_refused() {
        let plain = Request::get("/rtc").body(()).expect("request");
        assert!(matches!(extract(plain).await, Err(Error::NotWebSocket)));
        let post = upgrade_request("13")
            .method("POST")
            .body(())
            .expect("request");
        assert!(matches!(extract(post).await, Err(Error::NotWebSocket)));
        let old = upgrade_request("8").body(()).expect("request");
        assert!(matches!(extract(old).await, Err(Error::NotWebSocket)));
        // Headers right, but no connection to take over (not served by hyper).
        let detached = upgrade_request("13").body(()).expect("request");
        assert!(matches!(extract(detached).await, Err(Error::NotWebSocket)));
    }

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_long_message_is_cut_into_continuations_ending_in_a_final_frame() {
        let data = Bytes::from(vec![7u8; FRAGMENT * 2 + 10]);
        let frames = fragments(data, Data::Binary);
        assert_eq!(frames.len(), 3);
        let lens: Vec<usize> = frames.iter().map(|f| f.payload().len()).collect();
        assert_eq!(lens, [FRAGMENT, FRAGMENT, 10]);
        assert_eq!(frames[0].header().opcode, OpCode::Data(Data::Binary));
        assert!(!frames[0].header().is_final);
        assert_eq!(frames[1].header().opcode, OpCode::Data(Data::Continue));
        assert!(!frames[1].header().is_final);
        assert_eq!(frames[2].header().opcode, OpCode::Data(Data::Continue));
        assert!(frames[2].header().is_final);
    }

    #[test]
    fn an_exact_multiple_ends_with_a_full_final_fragment() {
        let frames = fragments(Bytes::from(vec![1u8; FRAGMENT * 2]), Data::Text);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].payload().len(), FRAGMENT);
        assert!(frames[1].header().is_final);
    }
}
