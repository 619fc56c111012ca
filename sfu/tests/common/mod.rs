//! Helpers shared by the `Net` tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use nodo_sfu::net::{Net, NetConfig, NetPacket, TcpLimits};
use nodo_sfu::PeerId;
use tokio::sync::mpsc;

/// A `Net` with only an ICE-TCP listener on loopback under `limits`, and
/// `ufrag` routed to peer 1 through an inbox of `inbox` packets: the
/// net, the listener's address and the inbox.
pub async fn tcp_net(
    limits: TcpLimits,
    ufrag: &str,
    inbox: usize,
) -> (Arc<Net>, SocketAddr, mpsc::Receiver<NetPacket>) {
    let config = NetConfig {
        udp: Vec::new(),
        tcp: Some((
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
            vec![Ipv4Addr::LOCALHOST.into()],
        )),
        udp_advertised_port: None,
        tcp_limits: limits,
        metrics: Default::default(),
    };
    let net = Net::bind(&config).await.expect("bind");
    let addr = net.tcp_addrs()[0];
    let (tx, rx) = mpsc::channel(inbox);
    net.register(ufrag, PeerId(1), tx);
    (net, addr, rx)
}

/// A STUN binding request whose USERNAME names `ufrag` (as `ufrag:remote`),
/// with PRIORITY and a MESSAGE-INTEGRITY-sized attribute: what `Net` routes
/// by, built by hand so that tests can also break it.
pub fn stun_binding(ufrag: &str, tid: [u8; 12]) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().div_ceil(4) * 4, 0);
    }
    let mut attrs = Vec::new();
    attr(&mut attrs, 0x0006, format!("{ufrag}:remote").as_bytes());
    attr(&mut attrs, 0x0024, &[0x6e, 0x00, 0x01, 0xff]);
    attr(&mut attrs, 0x0008, &[0xab; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(&tid);
    m.extend_from_slice(&attrs);
    m
}
