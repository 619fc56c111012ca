//! HTTP connections: caps on how many are open (overall and per client
//! address), timeouts on what a connection may withhold, and the one accept
//! loop and HTTP/1.1 connection driver the plain and HTTPS ports share.
//!
//! A permit is taken when a connection is accepted and travels *inside* the
//! connection's I/O ([`Limited`]), so a connection upgraded to a WebSocket
//! (the chat socket, `/rtc`) keeps counting until the socket closes.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::config::ServerConfig;

/// Limits applied to every HTTP-serving port.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Open connections in all (0: no cap).
    pub max_connections: u32,
    /// Open connections from one client address, IPv6 counted per /64 (0: no
    /// cap, and no rate below either).
    pub max_per_ip: u32,
    /// New connections one client address may open per second, sustained,
    /// and at once (a token bucket); 0: no rate.
    pub new_per_ip_per_sec: f64,
    pub new_per_ip_burst: u32,
    /// Time a client has to send a complete request head, counted from the
    /// connection's start and, on a kept-alive connection, from the previous
    /// response: a slow or idle client is disconnected after it. Also the
    /// longest a write to a client may wait for it to read.
    pub idle: Duration,
}

impl HttpLimits {
    pub fn from_config(c: &ServerConfig) -> HttpLimits {
        HttpLimits {
            max_connections: c.max_connections,
            max_per_ip: c.max_connections_per_ip,
            new_per_ip_per_sec: c.new_connections_per_ip_per_sec,
            new_per_ip_burst: c.new_connections_per_ip_burst,
            idle: Duration::from_secs(c.http_idle_timeout_secs.max(1)),
        }
    }
}

/// The addresses counted together: an IPv4 address, or an IPv6 /64 (what
/// one subscriber line usually gets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u64),
}

impl From<IpAddr> for ClientKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.into()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.into()),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `max_connections` already.
    Total,
    /// This client address holds `max_per_ip` already.
    PerClient,
    /// This client address opens connections faster than its rate.
    Rate,
}

/// One client address: its open connections and its new-connection bucket.
#[derive(Debug, Clone, Copy)]
struct Client {
    open: u32,
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
struct Counts {
    total: u32,
    /// Addresses with open connections or a bucket not yet full again;
    /// others are swept (`sweep`), so the table stays as small as the
    /// clients that are actually around.
    per_client: HashMap<ClientKey, Client>,
    admits: u32,
}

/// Admissions between two sweeps of the client table.
const SWEEP_EVERY: u32 = 1024;

/// Open-connection counts, shared by the ports that serve HTTP.
pub struct ConnLimits {
    limits: HttpLimits,
    counts: Mutex<Counts>,
    /// Addresses the per-address caps do not apply to: the other nodes of
    /// a cluster, which hand over many clients' connections each.
    trusted: std::sync::RwLock<Vec<IpAddr>>,
}

/// One open connection's place in the counts; released on drop.
pub struct Permit {
    owner: Arc<ConnLimits>,
    key: ClientKey,
}

impl ConnLimits {
    pub fn new(limits: HttpLimits) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            limits,
            counts: Mutex::new(Counts::default()),
            trusted: std::sync::RwLock::new(Vec::new()),
        })
    }

    pub fn limits(&self) -> HttpLimits {
        self.limits
    }

    /// Exempts `ips` (and only them, replacing the earlier set) from the
    /// per-address caps; the total cap still counts them.
    pub fn trust(&self, ips: Vec<IpAddr>) {
        *self
            .trusted
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = ips;
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.trusted
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&ip)
    }

    /// Counts a connection from `ip`, or says why it can't be taken.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        self.admit_at(ip, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Permit, Refusal> {
        let mut l = self.limits;
        if self.trusted(ip) {
            l.max_per_ip = 0;
        }
        let key = ClientKey::from(ip);
        // A poisoned lock still holds valid counts (they are plain numbers
        // updated in one step), so carry on with them rather than fail open.
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.admits = c.admits.wrapping_add(1);
        if c.admits.is_multiple_of(SWEEP_EVERY) {
            sweep(&mut c.per_client, &l, now);
        }
        if l.max_connections > 0 && c.total >= l.max_connections {
            return Err(Refusal::Total);
        }
        let burst = f64::from(l.new_per_ip_burst.max(1));
        let client = c.per_client.entry(key).or_insert(Client {
            open: 0,
            tokens: burst,
            at: now,
        });
        if l.max_per_ip > 0 {
            if client.open >= l.max_per_ip {
                return Err(Refusal::PerClient);
            }
            if l.new_per_ip_per_sec > 0.0 {
                let gained =
                    now.saturating_duration_since(client.at).as_secs_f64() * l.new_per_ip_per_sec;
                client.tokens = (client.tokens + gained).min(burst);
                client.at = now;
                if client.tokens < 1.0 {
                    return Err(Refusal::Rate);
                }
                client.tokens -= 1.0;
            }
        }
        client.open += 1;
        c.total += 1;
        Ok(Permit {
            owner: self.clone(),
            key,
        })
    }

    /// Open connections in all, and from `ip`'s group.
    pub fn open(&self, ip: IpAddr) -> (u32, u32) {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let key = ClientKey::from(ip);
        (c.total, c.per_client.get(&key).map_or(0, |x| x.open))
    }

    /// Client addresses remembered.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.per_client.len()
    }
}

/// Forgets addresses with nothing open whose bucket is full again: they
/// would be admitted exactly as a new address is.
fn sweep(table: &mut HashMap<ClientKey, Client>, l: &HttpLimits, now: Instant) {
    let burst = f64::from(l.new_per_ip_burst.max(1));
    table.retain(|_, c| {
        let refilled = l.new_per_ip_per_sec <= 0.0
            || c.tokens + now.saturating_duration_since(c.at).as_secs_f64() * l.new_per_ip_per_sec
                >= burst;
        c.open > 0 || !refilled
    });
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.owner.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(x) = c.per_client.get_mut(&self.key) {
            x.open = x.open.saturating_sub(1);
        }
    }
}

/// A connection's I/O carrying its [`Permit`], and a bound on how long a
/// write may make no progress: a peer that stops reading (a stalled or
/// half-open client) would otherwise hold its writer, and anything waiting
/// to close its WebSocket, forever. Past `write_stall` the write fails with
/// `TimedOut`, which ends the connection.
pub struct Limited<T> {
    io: T,
    _permit: Permit,
    write_stall: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> Limited<T> {
    pub fn new(io: T, permit: Permit, write_stall: Duration) -> Self {
        Limited {
            io,
            _permit: permit,
            write_stall,
            stalled: None,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.io
    }

    /// Turns a pending write into an error once it has been pending for
    /// `write_stall`; any progress resets the clock.
    fn bound<R>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        match r {
            Poll::Pending => {
                let stall = self.write_stall;
                let timer = self
                    .stalled
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.stalled = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client read nothing for the write timeout",
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            done => {
                self.stalled = None;
                done
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.bound(cx, r)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.bound(cx, r)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.bound(cx, r)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.bound(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Accepts on `listener` until `shutdown` changes, admitting each
/// connection against `limits` and handing it to `serve`. A refused client
/// gets a `503` with `Retry-After` (plain HTTP) and is closed.
pub async fn accept_loop<F>(
    listener: TcpListener,
    limits: Arc<ConnLimits>,
    mut shutdown: watch::Receiver<bool>,
    plain_http: bool,
    serve: F,
) where
    F: Fn(TcpStream, SocketAddr, Permit) + Send + 'static,
{
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a moment instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        match limits.admit(peer.ip()) {
            Ok(permit) => serve(tcp, peer, permit),
            Err(why) => {
                tracing::debug!(%peer, ?why, "connection refused: over the cap");
                if plain_http {
                    tokio::spawn(refuse(tcp, why));
                }
                // Over TLS the socket is just closed: no handshake is spent on it.
            }
        }
    }
}

/// A short `503` for a client over the cap; bounded in time.
async fn refuse(mut tcp: TcpStream, why: Refusal) {
    let message = match why {
        Refusal::Total => "the node holds as many connections as it is configured to",
        Refusal::PerClient => "too many connections from your address",
        Refusal::Rate => "your address opens connections too fast",
    };
    let body = format!(r#"{{"error":"too_many_connections","message":"{message}"}}"#);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 5\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), tcp.write_all(head.as_bytes())).await;
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it ends or
/// `shutdown` changes (the request in flight then finishes). Every request
/// carries the client's address as axum's `ConnectInfo<SocketAddr>`;
/// `adjust` may edit the response (HSTS on the HTTPS port).
pub async fn serve_http1<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
    https: bool,
    adjust: fn(&mut axum::response::Response),
) -> Result<(), hyper::Error>
where
    I: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let router = router.clone();
        async move {
            req.extensions_mut().insert(ConnectInfo(peer));
            if https {
                // The URLs the node hands out (`wss://…`) follow the scheme
                // the request came in on; a client cannot claim otherwise.
                req.headers_mut().insert(
                    "x-forwarded-proto",
                    axum::http::HeaderValue::from_static("https"),
                );
            }
            let mut resp = match router.oneshot(req).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            adjust(&mut resp);
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    }
}

/// Serves `router` over plain HTTP on `listener` until `shutdown` changes.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    limits: Arc<ConnLimits>,
    shutdown: watch::Receiver<bool>,
) {
    let l = limits.limits();
    let stop = shutdown.clone();
    accept_loop(
        listener,
        limits,
        shutdown,
        true,
        move |tcp, peer, permit| {
            let router = router.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let io = Limited::new(tcp, permit, l.idle);
                if let Err(e) = serve_http1(io, peer, router, l, stop, false, |_| {}).await {
                    tracing::debug!(%peer, "http connection: {e}");
                }
            });
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: u32, per_ip: u32) -> Arc<ConnLimits> {
        ConnLimits::new(HttpLimits {
            max_connections: total,
            max_per_ip: per_ip,
            new_per_ip_per_sec: 0.0,
            new_per_ip_burst: 0,
            idle: Duration::from_secs(1),
        })
    }

    #[test]
    fn trusted_addresses_skip_the_per_address_caps_but_not_the_total() {
        let l = limits(5, 2);
        let peer: IpAddr = "10.0.0.2".parse().expect("ip");
        let other: IpAddr = "203.0.113.9".parse().expect("ip");
        l.trust(vec![peer]);
        let held: Vec<Permit> = (0..4).map(|_| l.admit(peer).expect("trusted")).collect();
        let one = l.admit(other).expect("first");
        assert!(matches!(l.admit(other), Err(Refusal::Total)));
        drop(one);
        assert!(l.admit(other).is_ok());
        drop(held);
        // Trust is replaced, not added to: the peer is capped again.
        l.trust(Vec::new());
        let _a = l.admit(peer).expect("one");
        let _b = l.admit(peer).expect("two");
        assert!(matches!(l.admit(peer), Err(Refusal::PerClient)));
    }

    #[test]
    fn new_connections_per_address_are_rate_limited_and_the_table_stays_small() {
        let l = ConnLimits::new(HttpLimits {
            max_connections: 0,
            max_per_ip: 100,
            new_per_ip_per_sec: 10.0,
            new_per_ip_burst: 5,
            idle: Duration::from_secs(1),
        });
        let a: IpAddr = "203.0.113.5".parse().expect("ip");
        let b: IpAddr = "203.0.113.6".parse().expect("ip");
        let t0 = Instant::now();
        // A burst of five, closed at once: the sixth is refused however few are open.
        for _ in 0..5 {
            drop(l.admit_at(a, t0).expect("within the burst"));
        }
        assert_eq!(l.admit_at(a, t0).err(), Some(Refusal::Rate));
        // Another address has its own bucket.
        drop(l.admit_at(b, t0).expect("other address"));
        // 100 ms later one more token is there, and only one.
        let t1 = t0 + Duration::from_millis(100);
        drop(l.admit_at(a, t1).expect("refilled"));
        assert_eq!(l.admit_at(a, t1).err(), Some(Refusal::Rate));
        // Addresses with nothing open and a full bucket are forgotten.
        let later = t1 + Duration::from_secs(10);
        for i in 0..SWEEP_EVERY {
            let ip = IpAddr::from([198, 51, (i >> 8) as u8, i as u8]);
            drop(l.admit_at(ip, later).expect("new address"));
        }
        let held = l.admit_at(a, later).expect("a");
        // A second later their buckets are full again: the next sweep drops them.
        let after = later + Duration::from_secs(1);
        for i in 0..SWEEP_EVERY {
            let ip = IpAddr::from([192, 0, 2, (i % 200) as u8]);
            let _ = l.admit_at(ip, after + Duration::from_millis(u64::from(i)));
        }
        assert!(
            l.remembered() <= 201,
            "{} addresses remembered",
            l.remembered()
        );
        // One with a connection open is kept.
        assert_eq!(l.open(a).1, 1);
        drop(held);
    }

    #[test]
    fn caps_count_per_address_and_release_on_drop() {
        let l = limits(3, 2);
        let a: IpAddr = "203.0.113.1".parse().expect("ip");
        let b: IpAddr = "203.0.113.2".parse().expect("ip");
        let a1 = l.admit(a).expect("first");
        let _a2 = l.admit(a).expect("second");
        assert_eq!(l.admit(a).err(), Some(Refusal::PerClient));
        let _b1 = l.admit(b).expect("other address");
        assert_eq!(l.admit(b).err(), Some(Refusal::Total));
        drop(a1);
        assert_eq!(l.open(a), (2, 1));
        let _a3 = l.admit(a).expect("a slot freed");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let l = limits(0, 1);
        let x: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let z: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        let _x = l.admit(x).expect("first in the /64");
        assert_eq!(l.admit(y).err(), Some(Refusal::PerClient));
        let _z = l.admit(z).expect("another /64");
        let v4: IpAddr = "198.51.100.7".parse().expect("ip");
        let mapped: IpAddr = "::ffff:198.51.100.7".parse().expect("ip");
        let _v4 = l.admit(v4).expect("v4");
        assert_eq!(l.admit(mapped).err(), Some(Refusal::PerClient));
    }

    #[tokio::test]
    async fn a_write_the_peer_never_reads_fails_after_the_stall_bound() {
        let l = limits(0, 0);
        let ip: IpAddr = "192.0.2.9".parse().expect("ip");
        let (ours, mut theirs) = tokio::io::duplex(1024);
        let permit = l.admit(ip).expect("permit");
        let mut io = Limited::new(ours, permit, Duration::from_millis(200));
        let start = std::time::Instant::now();
        let chunk = vec![7u8; 4096];
        let err = loop {
            if let Err(e) = io.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() >= Duration::from_millis(200));
        drop(io);
        // A reader that keeps up never trips it, however long the stream.
        let (ours, mut theirs2) = tokio::io::duplex(1024);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut theirs2, &mut sink)
                .await
                .map(|_| sink.len())
        });
        let mut io = Limited::new(
            ours,
            l.admit(ip).expect("permit"),
            Duration::from_millis(200),
        );
        for _ in 0..200 {
            io.write_all(&chunk).await.expect("a reading peer");
        }
        io.shutdown().await.expect("shutdown");
        drop(io);
        assert_eq!(reader.await.expect("join").expect("read"), 200 * 4096);
        // The permits went with their connections.
        drop(theirs.shutdown().await);
        assert_eq!(l.open(ip), (0, 0));
    }

    #[test]
    fn zero_means_no_cap() {
        let l = limits(0, 0);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let held: Vec<Permit> = (0..1000).map(|_| l.admit(ip).expect("no cap")).collect();
        assert_eq!(l.open(ip), (1000, 1000));
        drop(held);
        assert_eq!(l.open(ip), (0, 0));
    }
}
