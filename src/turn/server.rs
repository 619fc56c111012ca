//! The TURN actor: one task owns the sans-IO TURN servers (one for UDP, one
//! per stream listener), the relay sockets and the rules; sockets and
//! connections feed it through a mailbox. Relays reach only the SFU's own
//! media sockets.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant as StdInstant};

use nodo_sfu::net::{LocalRelay, Net};

use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use turn_server_proto::api::{
    SocketAllocateError, TcpConnectError, Transmit, TurnServerApi, TurnServerPollRet,
};
use turn_server_proto::server::TurnServer;
use turn_server_proto::stun::types::TransportType;
use turn_server_proto::types::{AddressFamily, Instant};

use super::frame::{pad_for_stream, Framer};
use super::policy::{Policy, Verdict};

/// The realm in every TURN challenge.
pub const REALM: &str = "nodo";
/// Messages the actor may have queued before sockets drop (UDP) or wait (streams).
const INBOX: usize = 4096;
/// Frames one stream client may have queued before it counts as stuck.
const STREAM_QUEUE: usize = 512;
/// A stream client that sends nothing for this long is disconnected
/// (allocations are refreshed every few minutes).
const STREAM_IDLE: Duration = Duration::from_secs(15 * 60);

/// What the actor is told.
pub enum Input {
    /// A datagram on the TURN UDP port.
    Udp { from: SocketAddr, data: Vec<u8> },
    /// A stream client connected to `listener` (its key).
    StreamOpen {
        listener: SocketAddr,
        client: SocketAddr,
        writer: mpsc::Sender<Vec<u8>>,
    },
    /// One whole message from a stream client.
    Stream {
        listener: SocketAddr,
        client: SocketAddr,
        frame: Vec<u8>,
    },
    /// A stream client went away.
    StreamClosed {
        listener: SocketAddr,
        client: SocketAddr,
    },
    /// A datagram from the SFU to a relayed address.
    Relay {
        relayed: SocketAddr,
        from: SocketAddr,
        data: Vec<u8>,
    },
}

/// Where relays are opened and how many.
#[derive(Clone)]
pub struct RelayConfig {
    /// Local IP relay sockets bind to.
    pub bind_ip: IpAddr,
    /// IP clients are told their relayed address is on.
    pub advertised_ip: IpAddr,
    pub ports: RangeInclusive<u16>,
    pub per_participant: usize,
    pub total: usize,
    /// The SFU's media sockets, the only peers (address and port) a relay reaches.
    pub media: HashSet<SocketAddr>,
    /// The SFU's network, when relayed packets are handed over in process
    /// instead of crossing the kernel twice (and a NAT's hairpin).
    pub in_process: Option<Arc<Net>>,
}

/// The relayed addresses of this server, for the SFU's network to hand
/// packets over to in process.
pub struct RelayHook {
    relayed: Arc<RwLock<HashSet<SocketAddr>>>,
    inbox: mpsc::Sender<Input>,
}

impl LocalRelay for RelayHook {
    fn deliver(&self, from: SocketAddr, to: SocketAddr, data: &[u8]) -> bool {
        if !self
            .relayed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&to)
        {
            return false;
        }
        let input = Input::Relay {
            relayed: to,
            from,
            data: data.to_vec(),
        };
        if self.inbox.try_send(input).is_err() {
            tracing::trace!("turn inbox full; relayed datagram dropped");
        }
        true
    }
}

/// Which server an allocation lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ServerKey {
    Udp,
    Stream(SocketAddr),
}

struct Relay {
    socket: Arc<UdpSocket>,
    task: JoinHandle<()>,
    participant: String,
    server: ServerKey,
}

struct Actor {
    base: StdInstant,
    policy: Policy,
    relay: RelayConfig,
    /// The TURN/UDP server, its socket and the socket's local address.
    udp: Option<(TurnServer, Arc<UdpSocket>, SocketAddr)>,
    streams: HashMap<SocketAddr, TurnServer>,
    writers: HashMap<(SocketAddr, SocketAddr), mpsc::Sender<Vec<u8>>>,
    relays: HashMap<SocketAddr, Relay>,
    users: HashSet<String>,
    /// Allocate requests seen, by client 5-tuple: the participant asking.
    asking: HashMap<(ServerKey, SocketAddr), String>,
    per_participant: HashMap<String, usize>,
    inbox: mpsc::Sender<Input>,
    /// The relayed addresses, shared with the [`RelayHook`].
    relayed: Arc<RwLock<HashSet<SocketAddr>>>,
}

/// The handle of a running TURN actor.
#[derive(Clone)]
pub struct TurnActor {
    inbox: mpsc::Sender<Input>,
    relayed: Arc<RwLock<HashSet<SocketAddr>>>,
}

impl TurnActor {
    /// Starts the actor with a UDP listener (if any) and the keys of its
    /// stream listeners (TLS on 5349, the HTTPS port).
    pub fn start(
        policy: Policy,
        relay: RelayConfig,
        udp: Option<UdpSocket>,
        stream_listeners: &[SocketAddr],
    ) -> std::io::Result<TurnActor> {
        let (inbox, rx) = mpsc::channel(INBOX);
        let udp = match udp {
            Some(s) => {
                let local = s.local_addr()?;
                nodo_sfu::net::grow_buffers(&s);
                let socket = Arc::new(s);
                tokio::spawn(udp_loop(socket.clone(), inbox.clone()));
                Some((
                    TurnServer::new(TransportType::Udp, local, REALM.to_string()),
                    socket,
                    local,
                ))
            }
            None => None,
        };
        let streams = stream_listeners
            .iter()
            .map(|l| {
                (
                    *l,
                    TurnServer::new(TransportType::Tcp, *l, REALM.to_string()),
                )
            })
            .collect();
        let relayed = Arc::new(RwLock::new(HashSet::new()));
        let actor = Actor {
            relayed: relayed.clone(),
            base: StdInstant::now(),
            policy,
            relay,
            udp,
            streams,
            writers: HashMap::new(),
            relays: HashMap::new(),
            users: HashSet::new(),
            asking: HashMap::new(),
            per_participant: HashMap::new(),
            inbox: inbox.clone(),
        };
        tokio::spawn(actor.run(rx));
        Ok(TurnActor { inbox, relayed })
    }

    /// The hook that lets the SFU's network hand packets to the relays.
    pub fn relay_hook(&self) -> Arc<RelayHook> {
        Arc::new(RelayHook {
            relayed: self.relayed.clone(),
            inbox: self.inbox.clone(),
        })
    }

    /// Serves one stream client (TLS already done) connected to `listener`.
    pub fn serve_stream<S>(&self, stream: S, listener: SocketAddr, client: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        tokio::spawn(stream_loop(self.inbox.clone(), stream, listener, client));
    }
}

async fn udp_loop(socket: Arc<UdpSocket>, inbox: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let data = buf[..n].to_vec();
                if inbox.try_send(Input::Udp { from, data }).is_err() {
                    tracing::trace!("turn inbox full; datagram dropped");
                }
            }
            Err(e) => tracing::debug!("turn udp recv: {e}"),
        }
    }
}

async fn stream_loop<S>(
    inbox: mpsc::Sender<Input>,
    stream: S,
    listener: SocketAddr,
    client: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (writer, mut out) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
    if inbox
        .send(Input::StreamOpen {
            listener,
            client,
            writer,
        })
        .await
        .is_err()
    {
        return;
    }
    let write = tokio::spawn(async move {
        while let Some(buf) = out.recv().await {
            if wr.write_all(&buf).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let mut framer = Framer::default();
    let mut buf = vec![0u8; 16 * 1024];
    let why = loop {
        let n = match tokio::time::timeout(STREAM_IDLE, rd.read(&mut buf)).await {
            Err(_) => break "idle".to_string(),
            Ok(Err(e)) => break e.to_string(),
            Ok(Ok(0)) => break "closed".to_string(),
            Ok(Ok(n)) => n,
        };
        framer.push(&buf[..n]);
        let mut bad = None;
        loop {
            match framer.next() {
                Ok(Some(frame)) => {
                    let msg = Input::Stream {
                        listener,
                        client,
                        frame,
                    };
                    if inbox.send(msg).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    bad = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(e) = bad {
            break e;
        }
    };
    tracing::debug!(%client, "turn stream ended: {why}");
    let _ = inbox.send(Input::StreamClosed { listener, client }).await;
    write.abort();
}

async fn relay_loop(socket: Arc<UdpSocket>, relayed: SocketAddr, inbox: mpsc::Sender<Input>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let data = buf[..n].to_vec();
                if inbox
                    .try_send(Input::Relay {
                        relayed,
                        from,
                        data,
                    })
                    .is_err()
                {
                    tracing::trace!("turn inbox full; relayed datagram dropped");
                }
            }
            Err(e) => tracing::debug!(%relayed, "relay recv: {e}"),
        }
    }
}

impl Actor {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.base.elapsed().as_nanos().min(i64::MAX as u128) as i64)
    }

    fn server(&mut self, key: ServerKey) -> Option<&mut TurnServer> {
        match key {
            ServerKey::Udp => self.udp.as_mut().map(|(s, _, _)| s),
            ServerKey::Stream(l) => self.streams.get_mut(&l),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut wake = tokio::time::Instant::now() + Duration::from_secs(1);
        loop {
            tokio::select! {
                input = rx.recv() => match input {
                    Some(i) => self.on_input(i),
                    None => return,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            wake = self.drive();
        }
    }

    fn on_input(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Udp { from, data } => {
                let Some(local) = self.udp.as_ref().map(|(_, _, local)| *local) else {
                    return;
                };
                self.on_client_message(ServerKey::Udp, TransportType::Udp, local, from, data, now);
            }
            Input::StreamOpen {
                listener,
                client,
                writer,
            } => {
                self.writers.insert((listener, client), writer);
            }
            Input::Stream {
                listener,
                client,
                frame,
            } => {
                self.on_client_message(
                    ServerKey::Stream(listener),
                    TransportType::Tcp,
                    listener,
                    client,
                    frame,
                    now,
                );
            }
            Input::StreamClosed { listener, client } => {
                self.writers.remove(&(listener, client));
                self.asking.remove(&(ServerKey::Stream(listener), client));
            }
            Input::Relay {
                relayed,
                from,
                data,
            } => {
                // Only the SFU's media sockets may talk to a relay.
                if !self.relay.media.contains(&from) {
                    return;
                }
                let Some(key) = self.relays.get(&relayed).map(|r| r.server) else {
                    return;
                };
                let Some(server) = self.server(key) else {
                    return;
                };
                let t = Transmit::new(data.as_slice(), TransportType::Udp, from, relayed);
                if let Some(out) = server.recv(t, now) {
                    let out = out.build();
                    self.route(out.transport, out.from, out.to, out.data);
                }
            }
        }
    }

    fn on_client_message(
        &mut self,
        key: ServerKey,
        transport: TransportType,
        local: SocketAddr,
        client: SocketAddr,
        data: Vec<u8>,
        now: Instant,
    ) {
        let unix = nodo_signaling::auth::unix_now();
        let users = &self.users;
        let seen = self
            .policy
            .inspect(&data, client, unix, |u| users.contains(u));
        if let Some((username, issued)) = seen.new_user {
            self.users.insert(username.clone());
            if let Some((s, _, _)) = self.udp.as_mut() {
                s.add_user(username.clone(), issued.password.clone());
            }
            for s in self.streams.values_mut() {
                s.add_user(username.clone(), issued.password.clone());
            }
        }
        if let Some(username) = seen.allocate_by {
            let participant = username.splitn(3, ':').nth(2).unwrap_or_default();
            self.asking.insert((key, client), participant.to_string());
        }
        match seen.verdict {
            Verdict::Reply(bytes) => self.route(transport, local, client, bytes),
            Verdict::Pass => {
                let Some(server) = self.server(key) else {
                    return;
                };
                let t = Transmit::new(data.as_slice(), transport, client, local);
                if let Some(out) = server.recv(t, now) {
                    let out = out.build();
                    self.route(out.transport, out.from, out.to, out.data);
                }
            }
        }
    }

    /// Puts one output of a server on its way.
    fn route(&mut self, transport: TransportType, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        if let Some(relay) = self.relays.get(&from) {
            if self.relay.media.contains(&to) {
                match &self.relay.in_process {
                    Some(net) => net.inject_udp(from, to, &data),
                    None => {
                        if let Err(e) = relay.socket.try_send_to(&data, to) {
                            tracing::trace!(%to, "relay send: {e}");
                        }
                    }
                }
            } else {
                tracing::debug!(%to, "relay to a peer that is not the media node refused");
            }
            return;
        }
        match transport {
            TransportType::Udp => {
                if let Some((_, socket, _)) = &self.udp {
                    if let Err(e) = socket.try_send_to(&data, to) {
                        tracing::trace!(%to, "turn udp send: {e}");
                    }
                }
            }
            TransportType::Tcp => {
                if let Some(w) = self.writers.get(&(from, to)) {
                    if w.try_send(pad_for_stream(data)).is_err() {
                        // A client that does not read: drop it, its relay ends with it.
                        self.writers.remove(&(from, to));
                    }
                }
            }
        }
    }

    /// Polls every server until each waits; returns when to poll again.
    fn drive(&mut self) -> tokio::time::Instant {
        let now = self.now();
        let mut earliest = Duration::from_secs(1);
        let keys: Vec<ServerKey> = self
            .udp
            .iter()
            .map(|_| ServerKey::Udp)
            .chain(self.streams.keys().map(|l| ServerKey::Stream(*l)))
            .collect();
        for key in keys {
            while let Some(server) = self.server(key) {
                match server.poll(now) {
                    TurnServerPollRet::WaitUntil(t) => {
                        let wait =
                            Duration::from_nanos((t.as_nanos() - now.as_nanos()).max(0) as u64);
                        earliest = earliest.min(wait);
                        break;
                    }
                    TurnServerPollRet::AllocateSocket {
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                    } => {
                        let result = self.allocate(key, client_addr, allocation_transport, family);
                        if let Some(server) = self.server(key) {
                            server.allocated_socket(
                                transport,
                                listen_addr,
                                client_addr,
                                allocation_transport,
                                family,
                                result,
                                now,
                            );
                        }
                    }
                    TurnServerPollRet::TcpConnect {
                        relayed_addr,
                        peer_addr,
                        listen_addr,
                        client_addr,
                    } => {
                        // RFC 6062 TCP relays are not offered.
                        if let Some(server) = self.server(key) {
                            server.tcp_connected(
                                relayed_addr,
                                peer_addr,
                                listen_addr,
                                client_addr,
                                Err(TcpConnectError::Forbidden),
                                now,
                            );
                        }
                    }
                    TurnServerPollRet::TcpClose {
                        local_addr,
                        remote_addr,
                    } => {
                        self.writers.remove(&(local_addr, remote_addr));
                    }
                    TurnServerPollRet::SocketClose { listen_addr, .. } => {
                        self.release(listen_addr);
                    }
                }
            }
            while let Some(t) = self.server(key).and_then(|s| s.poll_transmit(now)) {
                self.route(t.transport, t.from, t.to, t.data);
            }
        }
        tokio::time::Instant::now() + earliest
    }

    /// Opens a relay socket for an Allocate, within the caps.
    fn allocate(
        &mut self,
        key: ServerKey,
        client: SocketAddr,
        transport: TransportType,
        family: AddressFamily,
    ) -> Result<SocketAddr, SocketAllocateError> {
        if family != AddressFamily::IPV4 || !self.relay.bind_ip.is_ipv4() {
            return Err(SocketAllocateError::AddressFamilyNotSupported);
        }
        if transport != TransportType::Udp {
            return Err(SocketAllocateError::InsufficientCapacity);
        }
        let participant = self.asking.remove(&(key, client)).unwrap_or_default();
        let mine = self.per_participant.get(&participant).copied().unwrap_or(0);
        if self.relays.len() >= self.relay.total || mine >= self.relay.per_participant {
            tracing::info!(%participant, mine, total = self.relays.len(), "TURN allocation refused: at the cap");
            return Err(SocketAllocateError::InsufficientCapacity);
        }
        let socket = self.bind_relay().ok_or_else(|| {
            tracing::warn!("TURN allocation refused: no free port in the relay range");
            SocketAllocateError::InsufficientCapacity
        })?;
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let relayed = SocketAddr::new(self.relay.advertised_ip, port);
        let socket = Arc::new(socket);
        let task = tokio::spawn(relay_loop(socket.clone(), relayed, self.inbox.clone()));
        *self.per_participant.entry(participant.clone()).or_default() += 1;
        self.relayed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(relayed);
        self.relays.insert(
            relayed,
            Relay {
                socket,
                task,
                participant,
                server: key,
            },
        );
        Ok(relayed)
    }

    fn bind_relay(&self) -> Option<UdpSocket> {
        let (lo, hi) = (*self.relay.ports.start(), *self.relay.ports.end());
        let span = u32::from(hi - lo) + 1;
        let start = rand::rng().random_range(0..span);
        // Try every port of the range once, from a random point.
        for i in 0..span.min(4096) {
            let port = lo + ((start + i) % span) as u16;
            let Ok(s) = std::net::UdpSocket::bind((self.relay.bind_ip, port)) else {
                continue;
            };
            if s.set_nonblocking(true).is_ok() {
                if let Ok(s) = UdpSocket::from_std(s) {
                    // Only with the kernel path does a relay socket carry the media.
                    if self.relay.in_process.is_none() {
                        nodo_sfu::net::grow_buffers(&s);
                    }
                    return Some(s);
                }
            }
        }
        None
    }

    fn release(&mut self, relayed: SocketAddr) {
        if let Some(r) = self.relays.remove(&relayed) {
            r.task.abort();
            self.relayed
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&relayed);
            if let Some(n) = self.per_participant.get_mut(&r.participant) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.per_participant.remove(&r.participant);
                }
            }
        }
    }
}
