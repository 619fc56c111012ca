//! The HTTPS port: TLS handshakes, ACME TLS-ALPN-01 validations, and after
//! the handshake either HTTP/1.1 (with WebSocket upgrades) or TURN/TLS,
//! told apart by ALPN (`stun.turn`) or, without it, by the first byte: a
//! STUN message starts with two zero bits, an HTTP request with a letter.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue};
use axum::Router;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;

use super::{Prefixed, Tls, ALPN_TURN};
use crate::conn::{accept_loop, serve_http1, ConnLimits, Limited};

/// How long a client gets to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client gets to send its first bytes after the handshake.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// `Strict-Transport-Security` sent on HTTPS answers.
const HSTS: &str = "max-age=31536000";

/// A TLS stream after the handshake, as handed to TURN.
pub trait TlsStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> TlsStream for T {}

/// Takes TURN/TLS connections that arrive on the HTTPS port.
pub trait TurnStreams: Send + Sync + 'static {
    /// Serves one TURN client over `stream` (plaintext, TLS already done).
    fn serve(&self, stream: Box<dyn TlsStream>, client: SocketAddr, local: SocketAddr);
}

/// What the HTTPS port serves.
#[derive(Clone)]
pub struct HttpsContext {
    pub tls: Tls,
    pub router: Router,
    pub turn: Option<Arc<dyn TurnStreams>>,
    pub hsts: bool,
    /// The node's connection caps and timeouts, shared with the HTTP port.
    pub limits: Arc<ConnLimits>,
}

/// Accepts on `listener` until `shutdown` changes, within the node's
/// connection caps; open HTTP connections then finish their request in
/// flight and close (the caller bounds the wait).
pub async fn serve_https(
    listener: TcpListener,
    ctx: HttpsContext,
    shutdown: watch::Receiver<bool>,
) {
    let limits = ctx.limits.clone();
    let stall = limits.limits().idle;
    let stop = shutdown.clone();
    accept_loop(
        listener,
        limits,
        shutdown,
        false,
        move |tcp, peer, permit| {
            let ctx = ctx.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let io = Limited::new(tcp, permit, stall);
                if let Err(why) = connection(io, peer, ctx, stop).await {
                    tracing::info!(%peer, "https connection closed: {why}");
                }
            });
        },
    )
    .await;
}

async fn connection(
    tcp: Limited<TcpStream>,
    peer: SocketAddr,
    ctx: HttpsContext,
    shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let local = tcp.get_ref().local_addr().map_err(|e| e.to_string())?;
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor)
        .await
        .map_err(|_| "no TLS ClientHello within 10 s".to_string())?
        .map_err(|e| format!("not a TLS ClientHello: {e}"))?;
    let hello = start.client_hello();
    let sni = hello.server_name().map(str::to_string);
    let alpn_turn = hello.alpn().is_some_and(|mut a| a.any(|p| p == ALPN_TURN));
    if let Some(challenge) = &ctx.tls.challenge {
        if rustls_acme::is_tls_alpn_challenge(&hello) {
            tracing::info!(%peer, "answering an ACME TLS-ALPN-01 validation");
            let _ = start.into_stream(challenge.clone()).await;
            return Ok(());
        }
    }
    let mut stream =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(ctx.tls.server.clone()))
            .await
            .map_err(|_| "TLS handshake took longer than 10 s".to_string())?
            .map_err(|e| match &sni {
                Some(name) => format!("TLS handshake failed (SNI {name}): {e}"),
                None => format!("TLS handshake failed (no SNI): {e}"),
            })?;
    let mut first = vec![0u8; 1];
    let n = tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.read(&mut first))
        .await
        .map_err(|_| "nothing sent within 10 s of the handshake".to_string())?
        .map_err(|e| format!("read after the handshake: {e}"))?;
    if n == 0 {
        return Ok(());
    }
    let stream = Prefixed::new(first.clone(), stream);
    // STUN messages (a TURN client's first request) start with bits 00.
    if alpn_turn || first[0] < 0x40 {
        return match &ctx.turn {
            Some(turn) => {
                turn.serve(Box::new(stream), peer, local);
                Ok(())
            }
            None => Err("a TURN client, but TURN is off".into()),
        };
    }
    let adjust: fn(&mut axum::response::Response) = if ctx.hsts {
        |resp| {
            resp.headers_mut().insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            );
        }
    } else {
        |_| {}
    };
    let limits = ctx.limits.limits();
    serve_http1(stream, peer, ctx.router, limits, shutdown, true, adjust)
        .await
        .map_err(|e| format!("http: {e}"))
}
