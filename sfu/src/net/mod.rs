//! The network driver: one UDP socket per advertised address on the single
//! media port, and an ICE-TCP listener (RFC 4571 framing). Incoming packets
//! are routed to the owning room by STUN ufrag, then by remote address.

mod tcp;
#[cfg(feature = "test-util")]
pub mod testing;

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use str0m::ice::StunMessage;
use str0m::net::{Protocol, Transmit};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::ids::PeerId;
use crate::metrics::SfuMetrics;
use crate::peer::LocalCandidates;

/// A packet for one peer connection, as read from the network.
#[derive(Debug)]
pub struct NetPacket {
    pub peer: PeerId,
    pub proto: Protocol,
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub data: Vec<u8>,
}

/// Where a room wants its peers' packets delivered.
pub type RoomInbox = mpsc::Sender<NetPacket>;

/// Sockets to open.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// UDP sockets: bind address and the IP to advertise for it (port 0 = ephemeral).
    pub udp: Vec<(SocketAddr, IpAddr)>,
    /// ICE-TCP listener: bind address and advertised IPs; `None` disables ICE-TCP.
    pub tcp: Option<(SocketAddr, Vec<IpAddr>)>,
    /// Port advertised for every UDP socket instead of its bound one, when a
    /// router forwards another public port to it.
    pub udp_advertised_port: Option<u16>,
    /// Caps and timeouts of ICE-TCP connections.
    pub tcp_limits: TcpLimits,
    /// Where socket counters go.
    pub metrics: SfuMetrics,
}

/// What an ICE-TCP connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Open connections in all (0: no cap).
    pub max_connections: u32,
    /// Open connections from one client IP (0: no cap).
    pub max_per_ip: u32,
    /// Time a connection has to complete ICE: to send a STUN check for a
    /// peer the node knows and then its first DTLS or media packet (a
    /// client sends those only once its ICE check succeeded). Connections
    /// that don't are closed.
    pub ice_timeout: Duration,
    /// A connection that sends nothing for this long is closed (ICE consent
    /// checks arrive every few seconds on a live one).
    pub idle_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> Self {
        TcpLimits {
            max_connections: 2_000,
            max_per_ip: 32,
            ice_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// What a room's owner needs from the network: [`Net`] in production, an
/// in-memory fake in tests.
///
/// Shared by every room of a node (`Arc<dyn Transport>`), so every method
/// takes `&self` and none blocks: a room's task calls them in its run loop.
pub trait Transport: Send + Sync + 'static {
    /// Puts one packet on the wire (never blocks). A packet that cannot be
    /// sent at once is dropped, as a congested link would.
    fn send(&self, t: &Transmit);
    /// Routes STUN for `ufrag` (then its source address) to `inbox` as packets of `peer`.
    fn register(&self, ufrag: &str, peer: PeerId, inbox: RoomInbox);
    /// Forgets every route to `peer`. When every room draws its ids from one
    /// [`PeerIds`](crate::PeerIds), this never touches another room's routes.
    fn unregister(&self, peer: PeerId);
    /// Host candidates every peer advertises.
    fn candidates(&self) -> LocalCandidates;
}

impl Transport for Net {
    fn send(&self, t: &Transmit) {
        Net::send(self, t)
    }

    fn register(&self, ufrag: &str, peer: PeerId, inbox: RoomInbox) {
        Net::register(self, ufrag, peer, inbox)
    }

    fn unregister(&self, peer: PeerId) {
        Net::unregister(self, peer)
    }

    fn candidates(&self) -> LocalCandidates {
        Net::candidates(self)
    }
}

#[derive(Clone)]
struct Route {
    peer: PeerId,
    inbox: RoomInbox,
}

#[derive(Default)]
struct Routes {
    by_ufrag: HashMap<String, Route>,
    by_addr: HashMap<SocketAddr, Route>,
    /// What to forget when a peer goes away.
    keys: HashMap<PeerId, (Vec<String>, Vec<SocketAddr>)>,
    /// ICE checks a peer sent to an address that has not yet sent it one,
    /// by STUN transaction id: the answer carries no USERNAME, so it is
    /// routed by the id it echoes (see [`Net::route`]).
    checks: HashMap<[u8; 12], SentCheck>,
    /// When a full `checks` was last swept for old entries.
    checks_swept: Option<Instant>,
    /// Writers of open ICE-TCP connections, by remote address.
    tcp: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
}

/// An ICE check waiting for its answer from an address not yet routed.
struct SentCheck {
    to: SocketAddr,
    route: Route,
    at: Instant,
}

/// Checks remembered at once. A full table is swept of those older than
/// [`CHECK_MEMORY`] at most once a second; a check that finds it still full
/// is not remembered (its answer then waits for the client's own check, as
/// it did before checks were remembered).
const MAX_SENT_CHECKS: usize = 4096;

/// How long an unanswered check is remembered (str0m gives a check up
/// after ~8 s of retransmissions; an answer later than that is useless).
const CHECK_MEMORY: Duration = Duration::from_secs(10);

struct UdpPort {
    socket: Arc<UdpSocket>,
    advertised: SocketAddr,
}

/// The media sockets of a node. Cheap to share: rooms hold an `Arc<Net>`.
pub struct Net {
    routes: RwLock<Routes>,
    udp: Vec<UdpPort>,
    tcp_local: Vec<SocketAddr>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// ICE-TCP caps, and the open connections counted against them.
    tcp_limits: TcpLimits,
    tcp_open: std::sync::Mutex<tcp::OpenCounts>,
    /// The node's TURN relays, when packets to them are handed over in
    /// process. Bound once at start-up (the relays need the bound media
    /// addresses first); until then packets take the kernel path.
    local_relay: std::sync::OnceLock<Arc<dyn LocalRelay>>,
    metrics: SfuMetrics,
}

/// Relayed addresses of this process's own TURN server: a packet for one is
/// handed over directly instead of crossing the kernel (and a NAT's hairpin).
pub trait LocalRelay: Send + Sync + 'static {
    /// Takes a UDP packet the SFU sends from `from` to `to`; false when `to`
    /// is not one of the local relayed addresses.
    fn deliver(&self, from: SocketAddr, to: SocketAddr, data: &[u8]) -> bool;
}

/// Packets a room may queue before further ones are dropped, as a congested link would.
pub const ROOM_INBOX_CAPACITY: usize = 4096;

impl Net {
    /// Binds every socket and starts the receive loops. An error names the
    /// address and protocol that could not be bound.
    pub async fn bind(config: &NetConfig) -> io::Result<Arc<Net>> {
        let named = |what: &str, addr: &SocketAddr, e: io::Error| {
            io::Error::new(e.kind(), format!("cannot bind the {what} port {addr}: {e}"))
        };
        let mut udp = Vec::new();
        for (bind, ip) in &config.udp {
            let socket = UdpSocket::bind(bind)
                .await
                .map_err(|e| named("media (UDP)", bind, e))?;
            grow_buffers(&socket);
            let port = socket.local_addr()?.port();
            udp.push(UdpPort {
                socket: Arc::new(socket),
                advertised: SocketAddr::new(*ip, config.udp_advertised_port.unwrap_or(port)),
            });
        }
        let mut tcp_listener = None;
        let mut tcp_local = Vec::new();
        if let Some((bind, ips)) = &config.tcp {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|e| named("ICE-TCP", bind, e))?;
            let port = listener.local_addr()?.port();
            tcp_local = ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect();
            tcp_listener = Some(listener);
        }
        let net = Arc::new(Net {
            routes: RwLock::new(Routes::default()),
            udp,
            tcp_local,
            tasks: std::sync::Mutex::new(Vec::new()),
            tcp_limits: config.tcp_limits,
            tcp_open: std::sync::Mutex::new(tcp::OpenCounts::default()),
            local_relay: std::sync::OnceLock::new(),
            metrics: config.metrics.clone(),
        });
        let mut tasks = Vec::new();
        for i in 0..net.udp.len() {
            let n = net.clone();
            tasks.push(tokio::spawn(async move { n.udp_loop(i).await }));
        }
        if let Some(listener) = tcp_listener {
            let n = net.clone();
            tasks.push(tokio::spawn(
                async move { tcp::accept_loop(n, listener).await },
            ));
        }
        if let Ok(mut t) = net.tasks.lock() {
            t.extend(tasks);
        }
        Ok(net)
    }

    /// Host candidates every peer advertises.
    pub fn candidates(&self) -> LocalCandidates {
        LocalCandidates {
            udp: self.udp.iter().map(|u| u.advertised).collect(),
            tcp: self.tcp_local.clone(),
        }
    }

    /// Bound UDP addresses (for the start-up log line).
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|u| u.socket.local_addr().ok())
            .collect()
    }

    /// Advertised ICE-TCP addresses.
    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_local
    }

    /// Stops the receive loops.
    pub fn shutdown(&self) {
        if let Ok(mut t) = self.tasks.lock() {
            for h in t.drain(..) {
                h.abort();
            }
        }
    }

    /// The routing table. Every update to it is a few map operations that
    /// cannot panic midway, so a poisoned lock (a panic elsewhere while it
    /// was held) still holds a consistent table: use it rather than stop
    /// routing every room's packets.
    fn routes(&self) -> std::sync::RwLockReadGuard<'_, Routes> {
        self.routes.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn routes_mut(&self) -> std::sync::RwLockWriteGuard<'_, Routes> {
        self.routes.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Routes STUN requests for `ufrag` (and then their remote address) to `inbox`.
    pub fn register(&self, ufrag: &str, peer: PeerId, inbox: RoomInbox) {
        let mut r = self.routes_mut();
        r.by_ufrag.insert(ufrag.to_string(), Route { peer, inbox });
        r.keys.entry(peer).or_default().0.push(ufrag.to_string());
    }

    /// Forgets everything routed to `peer`.
    pub fn unregister(&self, peer: PeerId) {
        let mut r = self.routes_mut();
        if let Some((ufrags, addrs)) = r.keys.remove(&peer) {
            for u in ufrags {
                if r.by_ufrag.get(&u).is_some_and(|x| x.peer == peer) {
                    r.by_ufrag.remove(&u);
                }
            }
            for a in addrs {
                if r.by_addr.get(&a).is_some_and(|x| x.peer == peer) {
                    r.by_addr.remove(&a);
                }
            }
        }
        if !r.checks.is_empty() {
            r.checks.retain(|_, c| c.route.peer != peer);
        }
    }

    /// Remembers an ICE check a peer sends to an address that has not sent
    /// it one yet. Its answer has no USERNAME to route it by, and the
    /// address is unknown until the client's own check arrives: without
    /// this the answer is dropped whenever it comes first (a client that
    /// answers before it checks, or whose checks start later), and the pair
    /// waits for str0m's retransmission, 250 ms on.
    fn remember_check(&self, t: &Transmit) {
        let Some((id, ufrag)) = sent_check(&t.contents) else {
            return;
        };
        let route = {
            let r = self.routes();
            let Some(route) = r.by_ufrag.get(&ufrag) else {
                return;
            };
            if r.by_addr
                .get(&t.destination)
                .is_some_and(|x| x.peer == route.peer)
            {
                return;
            }
            route.clone()
        };
        let now = Instant::now();
        let mut r = self.routes_mut();
        if r.checks.len() >= MAX_SENT_CHECKS {
            let recent = r
                .checks_swept
                .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1));
            if recent {
                return;
            }
            r.checks_swept = Some(now);
            r.checks
                .retain(|_, c| now.duration_since(c.at) < CHECK_MEMORY);
            if r.checks.len() >= MAX_SENT_CHECKS {
                return;
            }
        }
        let to = t.destination;
        r.checks.insert(id, SentCheck { to, route, at: now });
    }

    /// Puts one packet on the wire. Never blocks: a full socket buffer drops
    /// the packet, as a congested link would.
    pub fn send(&self, t: &Transmit) {
        match t.proto {
            Protocol::Udp => {
                self.remember_check(t);
                if let Some(relay) = self.local_relay.get() {
                    if relay.deliver(t.source, t.destination, &t.contents) {
                        return;
                    }
                }
                let port = self
                    .udp
                    .iter()
                    .find(|u| u.advertised == t.source)
                    .or_else(|| self.udp.first());
                if let Some(u) = port {
                    if let Err(e) = u.socket.try_send_to(&t.contents, t.destination) {
                        self.metrics.udp_send_dropped();
                        if e.kind() != io::ErrorKind::WouldBlock {
                            tracing::debug!(dst = %t.destination, "udp send: {e}");
                        }
                    }
                }
            }
            Protocol::Tcp => {
                let writer = self.routes().tcp.get(&t.destination).cloned();
                if let Some(w) = writer {
                    let _ = w.try_send(t.contents.to_vec());
                }
            }
            _ => {}
        }
    }

    /// Finds the route for a packet and remembers the address of a STUN sender.
    fn route(&self, source: SocketAddr, data: &[u8]) -> Option<Route> {
        if let Some(ufrag) = stun_ufrag(data) {
            let route = self.routes().by_ufrag.get(&ufrag).cloned()?;
            let known = self
                .routes()
                .by_addr
                .get(&source)
                .is_some_and(|r| r.peer == route.peer);
            if !known {
                let mut r = self.routes_mut();
                r.by_addr.insert(source, route.clone());
                r.keys.entry(route.peer).or_default().1.push(source);
                // Answers from here are routed by address now.
                if !r.checks.is_empty() {
                    r.checks.retain(|_, c| c.to != source);
                }
            }
            return Some(route);
        }
        if let Some(route) = self.routes().by_addr.get(&source).cloned() {
            return Some(route);
        }
        // The answer to a check sent before the address sent one: the
        // transaction id it echoes names the peer, and proves that whoever
        // answers got our check.
        let id = check_answer(data)?;
        let mut r = self.routes_mut();
        let sent = r.checks.remove(&id)?;
        if sent.to != source {
            r.checks.insert(id, sent);
            return None;
        }
        let route = sent.route;
        r.by_addr.insert(source, route.clone());
        r.keys.entry(route.peer).or_default().1.push(source);
        Some(route)
    }

    /// Hands packets for the node's own TURN relayed addresses to `relay`.
    /// Called once; a second call is ignored.
    pub fn set_local_relay(&self, relay: Arc<dyn LocalRelay>) {
        let _ = self.local_relay.set(relay);
    }

    /// A UDP packet from a local TURN relay, as if it had arrived on the
    /// media socket at `destination` from `source` (the relayed address).
    pub fn inject_udp(&self, source: SocketAddr, destination: SocketAddr, data: &[u8]) {
        let _ = self.deliver(Protocol::Udp, source, destination, data);
    }

    /// Hands a packet to its peer's room; false when no peer is known for it.
    fn deliver(
        &self,
        proto: Protocol,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        let Some(route) = self.route(source, data) else {
            self.metrics.unrouted();
            return false;
        };
        let pkt = NetPacket {
            peer: route.peer,
            proto,
            source,
            destination,
            data: data.to_vec(),
        };
        if route.inbox.try_send(pkt).is_err() {
            self.metrics.inbox_dropped();
            tracing::trace!(peer = ?route.peer, "room inbox full, dropping packet");
        }
        true
    }

    async fn udp_loop(self: Arc<Self>, index: usize) {
        let Some(port) = self.udp.get(index) else {
            return;
        };
        let socket = port.socket.clone();
        let local = port.advertised;
        let mut buf = vec![0u8; 2048];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, source)) => {
                    self.metrics.udp_received(1, n as u64);
                    self.deliver(Protocol::Udp, source, local, &buf[..n]);
                }
                Err(e) => {
                    // ICMP errors surface here on some platforms; keep serving.
                    tracing::debug!("udp recv: {e}");
                }
            }
        }
    }
}

/// Socket buffers asked for on busy UDP sockets: the default (about 200 KiB)
/// holds under 2 ms of video at 50k packets/s, so bursts overflow it. The
/// kernel caps the request at `net.core.rmem_max` / `wmem_max`.
pub const UDP_BUFFER: usize = 4 * 1024 * 1024;

/// Asks for [`UDP_BUFFER`] in both directions; a refusal only costs bursts.
pub fn grow_buffers(socket: &UdpSocket) {
    let s = socket2::SockRef::from(socket);
    if let Err(e) = s.set_recv_buffer_size(UDP_BUFFER) {
        tracing::debug!("UDP receive buffer: {e}");
    }
    if let Err(e) = s.set_send_buffer_size(UDP_BUFFER) {
        tracing::debug!("UDP send buffer: {e}");
    }
}

/// The local ufrag of a STUN binding request (`USERNAME` = `local:remote`).
fn stun_ufrag(data: &[u8]) -> Option<String> {
    // RFC 7983: STUN packets start with 0..=3.
    if data.first().is_none_or(|b| *b > 3) {
        return None;
    }
    let msg = StunMessage::parse(data).ok()?;
    let (local, _) = msg.split_username()?;
    Some(local.to_string())
}

/// The transaction id of a STUN binding request we send, and our local
/// ufrag in it (`USERNAME` = `remote:local`).
fn sent_check(data: &[u8]) -> Option<([u8; 12], String)> {
    // Type 0x0001: a binding request; anything else on the wire goes by.
    if data.len() < 20 || data[0] != 0 || data[1] != 1 {
        return None;
    }
    let msg = StunMessage::parse(data).ok()?;
    let (_, local) = msg.split_username()?;
    Some((transaction_id(data)?, local.to_string()))
}

/// The transaction id of a binding response (success or error).
fn check_answer(data: &[u8]) -> Option<[u8; 12]> {
    // Types 0x0101 (success) and 0x0111 (error).
    if data.len() < 20 || data[0] != 1 || (data[1] != 0x01 && data[1] != 0x11) {
        return None;
    }
    StunMessage::parse(data).ok()?;
    transaction_id(data)
}

fn transaction_id(data: &[u8]) -> Option<[u8; 12]> {
    data.get(8..20)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use str0m::ice::TransId;

    use super::*;

    #[tokio::test]
    async fn net_is_a_transport() {
        let config = NetConfig {
            udp: vec![(
                SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0),
                Ipv4Addr::LOCALHOST.into(),
            )],
            tcp: None,
            udp_advertised_port: None,
            tcp_limits: TcpLimits::default(),
            metrics: SfuMetrics::default(),
        };
        let net = Net::bind(&config).await.expect("bind");
        let transport: Arc<dyn Transport> = net.clone();
        let (inbox, _rx) = mpsc::channel(1);
        transport.register("ufrag", PeerId(7), inbox);
        transport.unregister(PeerId(7));
        assert_eq!(transport.candidates().udp, net.candidates().udp);
        net.shutdown();
    }

    fn stun_bytes(msg: StunMessage<'_>) -> Vec<u8> {
        let mut buf = vec![0u8; 1500];
        let n = msg
            .to_bytes(Some(b"password"), &mut buf, |_, _| [7; 20])
            .expect("a STUN message serializes");
        buf.truncate(n);
        buf
    }

    /// The answer to a check the node sent before the client checked it
    /// reaches the peer (routed by its transaction id, from the address
    /// checked only); an answer with another id, or from another address,
    /// does not.
    #[tokio::test]
    async fn an_answer_to_our_check_is_routed_before_the_client_checks() {
        let local = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0);
        let config = NetConfig {
            udp: vec![(local, Ipv4Addr::LOCALHOST.into())],
            tcp: None,
            udp_advertised_port: None,
            tcp_limits: TcpLimits::default(),
            metrics: SfuMetrics::default(),
        };
        let net = Net::bind(&config).await.expect("bind");
        let node = net.candidates().udp[0];
        let (inbox, mut rx) = mpsc::channel(8);
        net.register("nodo", PeerId(7), inbox);
        let client = UdpSocket::bind(local).await.expect("client socket");
        let stranger = UdpSocket::bind(local).await.expect("another socket");
        let to = client.local_addr().expect("client address");

        let id = TransId::new();
        let check = stun_bytes(StunMessage::binding_request(
            "client:nodo",
            id,
            true,
            1,
            100,
            false,
        ));
        let mut buf = [0u8; 1500];
        // A fresh socket is not known to be writable until the runtime has
        // polled it, and a send that would block is dropped: retry.
        let mut n = 0;
        for _ in 0..50 {
            net.send(&Transmit {
                proto: Protocol::Udp,
                source: node,
                destination: to,
                contents: check.clone().into(),
            });
            let wait = Duration::from_millis(100);
            if let Ok(r) = tokio::time::timeout(wait, client.recv_from(&mut buf)).await {
                n = r.expect("the check").0;
                break;
            }
        }
        let got = StunMessage::parse(&buf[..n]).expect("a STUN message");
        assert_eq!(got.trans_id(), id);
        assert_eq!(sent_check(&buf[..n]).map(|c| c.1), Some("nodo".to_string()));

        let other = stun_bytes(StunMessage::binding_reply(TransId::new(), to));
        client.send_to(&other, node).await.expect("send");
        let elsewhere = stun_bytes(StunMessage::binding_reply(id, to));
        stranger.send_to(&elsewhere, node).await.expect("send");
        let answer = stun_bytes(StunMessage::binding_reply(id, to));
        client.send_to(&answer, node).await.expect("send");

        let pkt = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the answer is routed")
            .expect("the inbox is open");
        assert_eq!((pkt.peer, pkt.source), (PeerId(7), to));
        assert_eq!(pkt.data, answer);
        assert!(rx.try_recv().is_err(), "only the answer is routed");
        // The address is known from now on, for DTLS and media.
        client.send_to(&[22, 254, 253], node).await.expect("send");
        let pkt = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("routed by address")
            .expect("the inbox is open");
        assert_eq!(pkt.data, [22, 254, 253]);
        // A check to an address is forgotten once that address checks the
        // peer (its answer is routed by address then), and with its peer.
        let elsewhere = stranger.local_addr().expect("address");
        let check_to = |to: SocketAddr| {
            let check =
                StunMessage::binding_request("client:nodo", TransId::new(), true, 1, 9, false);
            net.send(&Transmit {
                proto: Protocol::Udp,
                source: node,
                destination: to,
                contents: stun_bytes(check).into(),
            });
        };
        check_to(elsewhere);
        assert_eq!(net.routes().checks.len(), 1);
        let theirs =
            StunMessage::binding_request("nodo:client", TransId::new(), false, 2, 9, false);
        let theirs = stun_bytes(theirs);
        stranger.send_to(&theirs, node).await.expect("send");
        let pkt = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("routed by ufrag")
            .expect("the inbox is open");
        assert_eq!((pkt.source, pkt.data), (elsewhere, theirs));
        assert!(net.routes().checks.is_empty());
        check_to(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 9));
        assert_eq!(net.routes().checks.len(), 1);
        net.unregister(PeerId(7));
        assert!(net.routes().checks.is_empty());

        // The table is bounded: past the cap, with nothing old to sweep,
        // a check is not remembered.
        let (inbox, _rx) = mpsc::channel(1);
        net.register("nodo", PeerId(8), inbox);
        for i in 0..=MAX_SENT_CHECKS {
            let check =
                StunMessage::binding_request("client:nodo", TransId::new(), true, 1, 9, false);
            net.remember_check(&Transmit {
                proto: Protocol::Udp,
                source: node,
                destination: SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 10_000 + i as u16),
                contents: stun_bytes(check).into(),
            });
        }
        assert_eq!(net.routes().checks.len(), MAX_SENT_CHECKS);
        net.shutdown();
    }
}
