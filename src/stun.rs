//! Public-IP discovery: one STUN Binding request (RFC 8489) to a server,
//! answered with the address it saw us from.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use turn_server_proto::stun::types::attribute::XorMappedAddress;
use turn_server_proto::stun::types::message::{
    Message, MessageClass, MessageWrite, MessageWriteVec, BINDING,
};

/// The IP `server` sees this host's UDP packets from.
pub async fn public_ip(bind: IpAddr, server: &str, timeout: Duration) -> Result<IpAddr, String> {
    let target = tokio::net::lookup_host(server)
        .await
        .map_err(|e| format!("cannot resolve {server}: {e}"))?
        .find(|a| a.is_ipv4() == bind.is_ipv4() || bind.is_unspecified())
        .ok_or_else(|| format!("{server} has no address of our family"))?;
    let socket = UdpSocket::bind(SocketAddr::new(bind, 0))
        .await
        .map_err(|e| format!("cannot open a UDP socket: {e}"))?;
    let request = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
    let sent = Message::from_bytes(&request).map_err(|e| e.to_string())?;
    let tid = sent.transaction_id();
    let mut buf = vec![0u8; 1500];
    // Three tries within the timeout, as UDP may lose one.
    for _ in 0..3 {
        socket
            .send_to(&request, target)
            .await
            .map_err(|e| format!("send to {target}: {e}"))?;
        let Ok(r) = tokio::time::timeout(timeout / 3, socket.recv_from(&mut buf)).await else {
            continue;
        };
        let (n, from) = r.map_err(|e| format!("receive: {e}"))?;
        if from != target {
            continue;
        }
        let Ok(msg) = Message::from_bytes(&buf[..n]) else {
            continue;
        };
        if msg.transaction_id() != tid || !msg.has_class(MessageClass::Success) {
            continue;
        }
        let mapped = msg
            .attribute::<XorMappedAddress>()
            .map_err(|_| "the answer has no XOR-MAPPED-ADDRESS".to_string())?;
        return Ok(mapped.addr(tid).ip());
    }
    Err(format!("no answer from {target} within {timeout:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A STUN server in the test: answers one Binding request.
    #[tokio::test]
    async fn asks_a_stun_server() {
        use turn_server_proto::stun::types::message::MessageWriteExt;
        let server = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = server.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut buf = vec![0u8; 1500];
            let (n, from) = server.recv_from(&mut buf).await.expect("recv");
            let req = Message::from_bytes(&buf[..n]).expect("stun");
            let mut resp = Message::builder_success(&req, MessageWriteVec::new());
            let seen = SocketAddr::new("203.0.113.9".parse().expect("ip"), from.port());
            resp.add_attribute(&XorMappedAddress::new(seen, req.transaction_id()))
                .expect("attr");
            server.send_to(&resp.finish(), from).await.expect("send");
        });
        let ip = public_ip(
            "127.0.0.1".parse().expect("ip"),
            &addr.to_string(),
            Duration::from_secs(3),
        )
        .await
        .expect("answer");
        assert_eq!(ip, "203.0.113.9".parse::<IpAddr>().expect("ip"));
        let closed = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let dead = closed.local_addr().expect("addr").to_string();
        drop(closed);
        assert!(public_ip(
            "127.0.0.1".parse().expect("ip"),
            &dead,
            Duration::from_millis(300)
        )
        .await
        .is_err());
    }
}
