//! ICE-TCP (RFC 6544 passive candidates) with RFC 4571 framing: each packet
//! is preceded by its length as a 16-bit big-endian number.
//!
//! Anyone can open a connection to the port, so each one is bounded: caps on
//! open connections (overall and per client IP, [`TcpLimits`]), a deadline to
//! complete ICE, and an idle timeout once it has.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{Net, TcpLimits};

/// Frames a connection may have queued for writing before more are dropped.
const WRITE_QUEUE: usize = 1024;

/// Open ICE-TCP connections, in all and per client IP.
#[derive(Debug, Default)]
pub(super) struct OpenCounts {
    total: u32,
    per_ip: HashMap<IpAddr, u32>,
}

/// A connection's place in [`OpenCounts`], given back on drop.
struct Slot {
    net: Arc<Net>,
    ip: IpAddr,
}

impl Slot {
    fn take(net: &Arc<Net>, ip: IpAddr) -> Option<Slot> {
        let limits = net.tcp_limits;
        // Plain counters stay valid in a poisoned lock: carry on with them.
        let mut open = net.tcp_open.lock().unwrap_or_else(|p| p.into_inner());
        let mine = open.per_ip.get(&ip).copied().unwrap_or(0);
        if (limits.max_connections > 0 && open.total >= limits.max_connections)
            || (limits.max_per_ip > 0 && mine >= limits.max_per_ip)
        {
            return None;
        }
        open.total += 1;
        open.per_ip.insert(ip, mine + 1);
        Some(Slot {
            net: net.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.net.tcp_open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.per_ip.remove(&self.ip);
            }
        }
    }
}

pub(super) async fn accept_loop(net: Arc<Net>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let ip = match remote.ip() {
                    IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
                    v4 => v4,
                };
                let Some(slot) = Slot::take(&net, ip) else {
                    tracing::debug!(%remote, "ice-tcp connection refused: over the cap");
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let n = net.clone();
                tokio::spawn(async move { connection(n, stream, remote, slot).await });
            }
            Err(e) => {
                // EMFILE and friends: wait a moment instead of spinning.
                tracing::debug!("ice-tcp accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How far a connection has got, which sets how long it may stay silent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Progress {
    /// No STUN check for a known peer yet.
    Opened,
    /// Its checks reach a peer; no DTLS or media yet.
    Checking,
    /// DTLS or media flows: ICE is complete on this connection.
    Connected,
}

/// A STUN message starts with two zero bits (RFC 7983 demultiplexing).
fn is_stun(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| *b < 4)
}

async fn connection(net: Arc<Net>, stream: TcpStream, remote: SocketAddr, _slot: Slot) {
    let Ok(local_bound) = stream.local_addr() else {
        return;
    };
    // Packets are addressed to the advertised candidate, as str0m knows it.
    let local = net
        .tcp_local
        .iter()
        .find(|a| a.ip() == local_bound.ip())
        .or_else(|| net.tcp_local.first())
        .copied()
        .unwrap_or(local_bound);
    let limits: TcpLimits = net.tcp_limits;
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    net.routes_mut().tcp.insert(remote, tx);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let Ok(len) = u16::try_from(frame.len()) else {
                continue;
            };
            let mut buf = Vec::with_capacity(frame.len() + 2);
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&frame);
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let ice_deadline = Instant::now() + limits.ice_timeout;
    let mut progress = Progress::Opened;
    let mut buf = vec![0u8; 65_536];
    loop {
        let deadline = match progress {
            Progress::Connected => Instant::now() + limits.idle_timeout,
            _ => ice_deadline,
        };
        let read = async {
            let mut len = [0u8; 2];
            rd.read_exact(&mut len).await?;
            let n = usize::from(u16::from_be_bytes(len));
            rd.read_exact(&mut buf[..n]).await?;
            Ok::<usize, std::io::Error>(n)
        };
        let n = match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(n)) => n,
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::debug!(%remote, ?progress, "ice-tcp connection timed out");
                break;
            }
        };
        let packet = &buf[..n];
        let routed = net.deliver(Protocol::Tcp, remote, local, packet);
        progress = match (progress, routed, is_stun(packet)) {
            (Progress::Opened, true, true) => Progress::Checking,
            (Progress::Checking | Progress::Connected, true, false) => Progress::Connected,
            (p, _, _) => p,
        };
    }
    writer.abort();
    let mut r = net.routes_mut();
    r.tcp.remove(&remote);
    r.by_addr.remove(&remote);
}
