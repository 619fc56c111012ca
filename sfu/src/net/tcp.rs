//! ICE-TCP (RFC 6544 passive candidates) with RFC 4571 framing: each packet
//! is preceded by its length as a 16-bit big-endian number.

use std::net::SocketAddr;
use std::sync::Arc;

use str0m::net::Protocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::Net;

/// Frames a connection may have queued for writing before more are dropped.
const WRITE_QUEUE: usize = 1024;

pub(super) async fn accept_loop(net: Arc<Net>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                let n = net.clone();
                tokio::spawn(async move { connection(n, stream, remote).await });
            }
            Err(e) => tracing::debug!("ice-tcp accept: {e}"),
        }
    }
}

async fn connection(net: Arc<Net>, stream: TcpStream, remote: SocketAddr) {
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
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    if let Ok(mut r) = net.routes.write() {
        r.tcp.insert(remote, tx);
    }
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
    let mut buf = vec![0u8; 65_536];
    loop {
        let mut len = [0u8; 2];
        if rd.read_exact(&mut len).await.is_err() {
            break;
        }
        let n = usize::from(u16::from_be_bytes(len));
        if rd.read_exact(&mut buf[..n]).await.is_err() {
            break;
        }
        net.deliver(Protocol::Tcp, remote, local, &buf[..n]);
    }
    writer.abort();
    if let Ok(mut r) = net.routes.write() {
        r.tcp.remove(&remote);
        r.by_addr.remove(&remote);
    }
}
