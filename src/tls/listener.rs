//! The HTTPS port: TLS handshakes, ACME TLS-ALPN-01 validations, and after
//! the handshake either HTTP/1.1 (with WebSocket upgrades) or TURN/TLS,
//! told apart by ALPN (`stun.turn`) or, without it, by the first byte: a
//! STUN message starts with two zero bits, an HTTP request with a letter.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::LazyConfigAcceptor;
use tower::ServiceExt;

use super::{Prefixed, Tls, ALPN_TURN};

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
}

/// Accepts on `listener` until `shutdown` changes; open HTTP connections
/// then finish their request in flight and close (the caller bounds the wait).
pub async fn serve_https(
    listener: TcpListener,
    ctx: HttpsContext,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a moment instead of spinning.
                    tracing::warn!("https accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(why) = connection(tcp, peer, ctx, shutdown).await {
                tracing::info!(%peer, "https connection closed: {why}");
            }
        });
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: HttpsContext,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let local = tcp.local_addr().map_err(|e| e.to_string())?;
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
    let router = ctx.router.clone();
    let hsts = ctx.hsts;
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let router = router.clone();
        async move {
            // The URLs the node hands out (`wss://…`) follow the scheme the
            // request came in on; a client cannot claim otherwise here.
            req.headers_mut()
                .insert("x-forwarded-proto", HeaderValue::from_static("https"));
            let mut resp = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            if hsts {
                resp.headers_mut().insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static(HSTS),
                );
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let done = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    done.map_err(|e| format!("http: {e}"))
}
