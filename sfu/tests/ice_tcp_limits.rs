//! ICE-TCP connections are bounded: caps per client IP and overall, a
//! deadline to complete ICE, and an idle timeout after it.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodo_sfu::net::{Net, NetPacket, TcpLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

const UFRAG: &str = "lim";

fn framed(packet: &[u8]) -> Vec<u8> {
    let mut out = (packet.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(packet);
    out
}

async fn net(limits: TcpLimits) -> (Arc<Net>, SocketAddr, mpsc::Receiver<NetPacket>) {
    common::tcp_net(limits, UFRAG, 64).await
}

/// Waits for the node to close `s`; returns how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(limit, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn connections_over_the_per_ip_cap_are_closed_at_once() {
    let limits = TcpLimits {
        max_connections: 0,
        max_per_ip: 2,
        ice_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
    };
    let (net, addr, _rx) = net(limits).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_within(&mut third, Duration::from_secs(2))
            .await
            .is_some(),
        "a third connection from one IP stays open"
    );
    // Closing one frees its place.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = TcpStream::connect(addr).await.expect("connect");
    assert!(
        closed_within(&mut again, Duration::from_millis(500))
            .await
            .is_none(),
        "a freed place is not reusable"
    );
    net.shutdown();
}

#[tokio::test]
async fn the_overall_cap_holds() {
    let limits = TcpLimits {
        max_connections: 3,
        max_per_ip: 0,
        ice_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
    };
    let (net, addr, _rx) = net(limits).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut fourth = TcpStream::connect(addr).await.expect("connect");
    assert!(closed_within(&mut fourth, Duration::from_secs(2))
        .await
        .is_some());
    net.shutdown();
}

#[tokio::test]
async fn ice_must_complete_in_time_and_a_live_connection_stays() {
    let limits = TcpLimits {
        max_connections: 0,
        max_per_ip: 0,
        ice_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_secs(2),
    };
    let (net, addr, mut rx) = net(limits).await;

    // Silent: closed at the ICE deadline.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let took = closed_within(&mut silent, Duration::from_secs(3))
        .await
        .expect("a silent connection stays open");
    assert!(
        took >= Duration::from_millis(300),
        "closed too early: {took:?}"
    );

    // Checks for an unknown peer only: closed at the deadline too.
    let mut stranger = TcpStream::connect(addr).await.expect("connect");
    stranger
        .write_all(&framed(&common::stun_binding("nobody", [9; 12])))
        .await
        .expect("write");
    assert!(closed_within(&mut stranger, Duration::from_secs(3))
        .await
        .is_some());

    // Checks for a known peer but never DTLS/media: closed at the deadline.
    let mut stuck = TcpStream::connect(addr).await.expect("connect");
    stuck
        .write_all(&framed(&common::stun_binding(UFRAG, [9; 12])))
        .await
        .expect("write");
    assert!(closed_within(&mut stuck, Duration::from_secs(3))
        .await
        .is_some());
    while rx.try_recv().is_ok() {}

    // A check, then DTLS, then a packet within each idle period: stays open
    // well past the ICE deadline, and its packets reach the room.
    let mut live = TcpStream::connect(addr).await.expect("connect");
    live.write_all(&framed(&common::stun_binding(UFRAG, [9; 12])))
        .await
        .expect("write");
    let dtls = [22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0];
    for _ in 0..6 {
        live.write_all(&framed(&dtls)).await.expect("write");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(closed_within(&mut live, Duration::from_millis(100))
        .await
        .is_none());
    let mut seen = 0;
    while rx.try_recv().is_ok() {
        seen += 1;
    }
    assert_eq!(seen, 7, "the room got every packet of the live connection");
    // Then silence: closed after the idle timeout.
    assert!(closed_within(&mut live, Duration::from_secs(4))
        .await
        .is_some());
    net.shutdown();
}
