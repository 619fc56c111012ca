//! Fuzzing the TURN actor (policy + `turn-server-proto`): after a real
//! authenticated allocation, it is fed mutated and arbitrary datagrams over
//! UDP and mutated messages and arbitrary bytes over a stream (TURN over
//! TCP/TLS, cut into arbitrary reads). The stream framer, TURN credentials
//! and STUN discovery are fuzzed in `fuzz_stun_turn.rs`; the helpers both
//! share are in `fuzz_util/`.
//!
//! Properties: no panic anywhere (a panic hook counts them, including those
//! in the actor's spawned tasks), bounded work (every case has a deadline),
//! everything the server sends back is well-formed STUN or ChannelData, and
//! the server still answers a well-behaved client afterwards, over UDP and
//! over a stream.
//!
//! `PROPTEST_CASES` sets the number of cases (defaults below, sized for CI);
//! `scripts/fuzz` runs them for as long as asked.

mod fuzz_util;

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use fuzz_util::*;
use nodo::turn::frame::{pad_for_stream, Framer};
use nodo::turn::{self, RelayConfig, TurnSetup};
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::UdpSocket;
use turn_server_proto::stun::types::attribute::{
    ErrorCode, Nonce, Realm, Username, XorMappedAddress,
};
use turn_server_proto::stun::types::message::{
    IntegrityAlgorithm, LongTermKeyCredentials, Message, MessageClass, MessageWrite,
    MessageWriteExt, MessageWriteVec, BINDING,
};
use turn_server_proto::types::attribute::{
    ChannelNumber, Data, Lifetime, RequestedTransport, XorPeerAddress, XorRelayedAddress,
};
use turn_server_proto::types::message::{ALLOCATE, CHANNEL_BIND, CREATE_PERMISSION, REFRESH, SEND};

const KEY: &str = "devkey";
const SECRET: &str = "secret";
/// The stream listener's key (no socket: streams are handed in directly).
const STREAM_LISTENER: &str = "127.0.0.1:5349";

struct Turn {
    actor: turn::TurnActor,
    udp: SocketAddr,
    media: UdpSocket,
}

async fn start_turn() -> Result<Turn, String> {
    let udp = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let udp_addr = udp.local_addr().map_err(|e| e.to_string())?;
    let media = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let media_addr = media.local_addr().map_err(|e| e.to_string())?;
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let listener: SocketAddr = STREAM_LISTENER.parse().map_err(|_| "addr")?;
    let actor = turn::start(TurnSetup {
        keys: BTreeMap::from([(KEY.to_string(), SECRET.to_string())]),
        udp: Some(udp),
        stream_listeners: vec![listener],
        relay: RelayConfig {
            bind_ip: loopback,
            advertised_ip: loopback,
            // Port 0: the kernel picks each relay's port.
            ports: 0..=0,
            per_participant: 3,
            total: 6,
            media: HashSet::from([media_addr]),
            in_process: None,
        },
    })?;
    Ok(Turn {
        actor,
        udp: udp_addr,
        media,
    })
}

/// A TURN client over UDP or over a stream.
enum Conn {
    Udp(UdpSocket, SocketAddr),
    Stream(DuplexStream, Framer),
}

impl Conn {
    async fn udp(turn: &Turn) -> Result<Conn, String> {
        let s = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        Ok(Conn::Udp(s, turn.udp))
    }

    fn stream(turn: &Turn, port: u16) -> Result<Conn, String> {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let listener: SocketAddr = STREAM_LISTENER.parse().map_err(|_| "addr")?;
        let client_addr = SocketAddr::new(Ipv4Addr::new(192, 0, 2, 1).into(), port);
        turn.actor.serve_stream(server, listener, client_addr);
        Ok(Conn::Stream(client, Framer::default()))
    }

    /// Sends raw bytes (on a stream: exactly these bytes, no padding added).
    async fn send_raw(&mut self, data: &[u8]) -> Result<(), String> {
        match self {
            Conn::Udp(s, to) => s
                .send_to(data, *to)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            // A stream the server closed refuses writes: that is a result, not an error.
            Conn::Stream(s, _) => {
                let _ = s.write_all(data).await;
                Ok(())
            }
        }
    }

    /// Sends one message as the transport carries it.
    async fn send(&mut self, msg: &[u8]) -> Result<(), String> {
        let padded = match self {
            Conn::Udp(..) => msg.to_vec(),
            Conn::Stream(..) => pad_for_stream(msg.to_vec()),
        };
        self.send_raw(&padded).await
    }

    /// The next message from the server within `wait`; `Err` for something
    /// that is neither STUN nor ChannelData.
    async fn recv(&mut self, wait: Duration) -> Result<Option<Vec<u8>>, String> {
        let got = match self {
            Conn::Udp(s, _) => {
                let mut buf = vec![0u8; 2048];
                match tokio::time::timeout(wait, s.recv_from(&mut buf)).await {
                    Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
                    _ => None,
                }
            }
            Conn::Stream(s, framer) => {
                let deadline = tokio::time::Instant::now() + wait;
                loop {
                    match framer.next() {
                        Ok(Some(m)) => break Some(m),
                        Ok(None) => {}
                        Err(e) => return Err(format!("server sent a bad stream: {e}")),
                    }
                    let mut buf = vec![0u8; 4096];
                    match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                        Ok(Ok(n)) if n > 0 => framer.push(&buf[..n]),
                        _ => break None,
                    }
                }
            }
        };
        if let Some(m) = &got {
            well_formed(m)?;
        }
        Ok(got)
    }

    /// Everything the server sends within `wait` of the last message.
    async fn drain(&mut self, wait: Duration) -> Result<usize, String> {
        let mut n = 0;
        while self.recv(wait).await?.is_some() {
            n += 1;
        }
        Ok(n)
    }

    /// A request and its answer (skipping other traffic).
    async fn ask(&mut self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let tid = Message::from_bytes(msg)
            .map_err(|e| e.to_string())?
            .transaction_id();
        self.send(msg).await?;
        for _ in 0..16 {
            let Some(m) = self.recv(Duration::from_secs(3)).await? else {
                break;
            };
            if Message::from_bytes(&m).is_ok_and(|r| r.transaction_id() == tid) {
                return Ok(m);
            }
        }
        Err("no answer".into())
    }
}

/// What the server sends is a STUN message or ChannelData.
fn well_formed(m: &[u8]) -> Result<(), String> {
    if Message::from_bytes(m).is_ok() {
        return Ok(());
    }
    if m.len() >= 4 && (0x40..0x50).contains(&m[0]) {
        let len = usize::from(u16::from_be_bytes([m[2], m[3]]));
        if m.len() == 4 + len {
            return Ok(());
        }
    }
    Err(format!(
        "server sent {} bytes of neither STUN nor ChannelData",
        m.len()
    ))
}

/// The messages of an authenticated session, built after a real allocation.
struct Session {
    templates: Vec<Vec<u8>>,
}

fn request(
    method: turn_server_proto::stun::types::message::Method,
    auth: Option<(&LongTermKeyCredentials, &str)>,
    add: impl FnOnce(&mut MessageWriteVec, turn_server_proto::stun::types::message::TransactionId),
) -> Result<Vec<u8>, String> {
    let mut m = Message::builder_request(method, MessageWriteVec::new());
    let tid = m.transaction_id();
    add(&mut m, tid);
    if let Some((creds, nonce)) = auth {
        let e = |e: turn_server_proto::stun::types::message::StunWriteError| e.to_string();
        m.add_attribute(&Username::new(creds.username()).map_err(e)?)
            .map_err(e)?;
        m.add_attribute(&Realm::new(creds.realm()).map_err(e)?)
            .map_err(e)?;
        m.add_attribute(&Nonce::new(nonce).map_err(e)?).map_err(e)?;
        m.add_message_integrity(&creds.clone().into(), IntegrityAlgorithm::Sha1)
            .map_err(e)?;
    }
    Ok(m.finish())
}

fn binding() -> Result<Vec<u8>, String> {
    request(BINDING, None, |_, _| {})
}

/// Allocates for `participant` as a client does (a 401 with a nonce, then the
/// signed request) and builds the messages of the rest of a session.
async fn allocate(
    conn: &mut Conn,
    media: SocketAddr,
    participant: &str,
) -> Result<Session, String> {
    let transport = |m: &mut MessageWriteVec, _| {
        let _ = m.add_attribute(&RequestedTransport::new(RequestedTransport::UDP));
    };
    let first = request(ALLOCATE, None, transport)?;
    let answer = conn.ask(&first).await?;
    let msg = Message::from_bytes(&answer).map_err(|e| e.to_string())?;
    let code = msg.attribute::<ErrorCode>().map_err(|e| e.to_string())?;
    if code.code() != 401 {
        return Err(format!("first Allocate answered {}", code.code()));
    }
    let nonce = msg
        .attribute::<Nonce>()
        .map_err(|e| e.to_string())?
        .nonce()
        .to_string();
    let expires = nodo_signaling::auth::unix_now() + 600;
    let (user, pass) = turn::mint(KEY, SECRET, participant, expires);
    let creds = LongTermKeyCredentials::new(user, pass, turn::REALM.to_string());
    let auth = Some((&creds, nonce.as_str()));
    let alloc = request(ALLOCATE, auth, transport)?;
    let answer = conn.ask(&alloc).await?;
    let msg = Message::from_bytes(&answer).map_err(|e| e.to_string())?;
    if !msg.has_class(MessageClass::Success) {
        let code = msg.attribute::<ErrorCode>().map(|c| c.code()).ok();
        return Err(format!("signed Allocate refused: {code:?}"));
    }
    msg.attribute::<XorRelayedAddress>()
        .map_err(|e| format!("no relayed address: {e}"))?;
    let peer = |m: &mut MessageWriteVec, tid| {
        let _ = m.add_attribute(&XorPeerAddress::new(media, tid));
    };
    // Not the media node's IP (the policy allows peers by IP).
    let elsewhere: SocketAddr = "192.0.2.1:22".parse().map_err(|_| "addr")?;
    let mut templates = vec![
        binding()?,
        first,
        alloc,
        request(REFRESH, auth, |m, _| {
            let _ = m.add_attribute(&Lifetime::new(600));
        })?,
        request(CREATE_PERMISSION, auth, peer)?,
        request(CHANNEL_BIND, auth, |m, tid| {
            let _ = m.add_attribute(&ChannelNumber::new(0x4001));
            let _ = m.add_attribute(&XorPeerAddress::new(media, tid));
        })?,
        request(CREATE_PERMISSION, auth, |m, tid| {
            let _ = m.add_attribute(&XorPeerAddress::new(elsewhere, tid));
        })?,
        request(REFRESH, auth, |m, _| {
            let _ = m.add_attribute(&Lifetime::new(0));
        })?,
    ];
    let mut send = Message::builder_indication(SEND, MessageWriteVec::new());
    let tid = send.transaction_id();
    let _ = send.add_attribute(&XorPeerAddress::new(media, tid));
    let _ = send.add_attribute(&Data::new(b"hello media"));
    templates.push(send.finish());
    let mut channel = vec![0x40, 0x01, 0x00, 0x05];
    channel.extend_from_slice(b"media");
    templates.push(channel);
    Ok(Session { templates })
}

/// What a fuzz step sends.
#[derive(Debug, Clone)]
enum Op {
    /// A session message as it is.
    Template(usize),
    Truncate(usize, usize),
    Flip(usize, Vec<(usize, u8)>),
    /// The header's length field says something else.
    LieLength(usize, u16),
    /// The n-th attribute's length field says something else.
    LieAttribute(usize, usize, u16),
    /// Bytes overwritten at a position.
    Splice(usize, usize, Vec<u8>),
    /// Two messages in one datagram or write.
    Concat(usize, usize),
    /// A STUN header (magic cookie included) over arbitrary attributes.
    StunLike {
        method: u16,
        attrs: Vec<(u16, Vec<u8>)>,
        len: Option<u16>,
    },
    /// ChannelData for any channel, with any length field.
    Channel {
        channel: u16,
        len: u16,
        data: Vec<u8>,
    },
    /// Arbitrary bytes.
    Random(Vec<u8>),
}

fn op() -> impl Strategy<Value = Op> {
    let t = 0usize..64;
    prop_oneof![
        3 => t.clone().prop_map(Op::Template),
        2 => (t.clone(), any::<usize>()).prop_map(|(i, n)| Op::Truncate(i, n)),
        3 => (t.clone(), prop::collection::vec((any::<usize>(), any::<u8>()), 1..6))
            .prop_map(|(i, f)| Op::Flip(i, f)),
        2 => (t.clone(), any::<u16>()).prop_map(|(i, l)| Op::LieLength(i, l)),
        2 => (t.clone(), any::<usize>(), any::<u16>()).prop_map(|(i, n, l)| Op::LieAttribute(i, n, l)),
        1 => (t.clone(), any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, at, b)| Op::Splice(i, at, b)),
        1 => (t.clone(), t).prop_map(|(a, b)| Op::Concat(a, b)),
        2 => (
            any::<u16>(),
            prop::collection::vec(
                (
                    prop_oneof![any::<u16>(), 0x0001u16..0x0030, 0x8000u16..0x8030],
                    prop::collection::vec(any::<u8>(), 0..40),
                ),
                0..40,
            ),
            prop::option::of(any::<u16>()),
        )
            .prop_map(|(method, attrs, len)| Op::StunLike { method, attrs, len }),
        1 => (0x4000u16..0x5000, any::<u16>(), prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(channel, len, data)| Op::Channel { channel, len, data }),
        1 => prop::collection::vec(any::<u8>(), 0..1500).prop_map(Op::Random),
    ]
}

fn build(op: &Op, templates: &[Vec<u8>]) -> Vec<u8> {
    let t = |i: &usize| templates[i % templates.len()].clone();
    match op {
        Op::Template(i) => t(i),
        Op::Truncate(i, n) => {
            let mut m = t(i);
            m.truncate(n % (m.len() + 1));
            m
        }
        Op::Flip(i, flips) => {
            let mut m = t(i);
            for (at, bit) in flips {
                let at = at % m.len();
                m[at] ^= 1 << (bit % 8);
            }
            m
        }
        Op::LieLength(i, len) => {
            let mut m = t(i);
            m[2..4].copy_from_slice(&len.to_be_bytes());
            m
        }
        Op::LieAttribute(i, n, len) => {
            let mut m = t(i);
            // Attribute headers from byte 20: type, length, value padded to 4.
            let mut offsets = Vec::new();
            let mut at = 20;
            while at + 4 <= m.len() {
                offsets.push(at);
                let l = usize::from(u16::from_be_bytes([m[at + 2], m[at + 3]]));
                at += 4 + l.div_ceil(4) * 4;
            }
            if !offsets.is_empty() {
                let at = offsets[n % offsets.len()];
                m[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
            }
            m
        }
        Op::Splice(i, at, bytes) => {
            let mut m = t(i);
            let at = at % m.len();
            for (k, b) in bytes.iter().enumerate() {
                if let Some(x) = m.get_mut(at + k) {
                    *x = *b;
                }
            }
            m
        }
        Op::Concat(a, b) => {
            let mut m = t(a);
            m.extend_from_slice(&t(b));
            m
        }
        Op::StunLike { method, attrs, len } => {
            let mut body = Vec::new();
            for (typ, value) in attrs {
                body.extend_from_slice(&typ.to_be_bytes());
                body.extend_from_slice(&(value.len() as u16).to_be_bytes());
                body.extend_from_slice(value);
                body.resize(body.len().div_ceil(4) * 4, 0);
            }
            let mut m = (method & 0x3fff).to_be_bytes().to_vec();
            let real = u16::try_from(body.len()).unwrap_or(u16::MAX);
            m.extend_from_slice(&len.unwrap_or(real).to_be_bytes());
            m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
            m.extend_from_slice(&[0x5a; 12]);
            m.extend_from_slice(&body);
            m
        }
        Op::Channel { channel, len, data } => {
            let mut m = channel.to_be_bytes().to_vec();
            m.extend_from_slice(&len.to_be_bytes());
            m.extend_from_slice(data);
            m
        }
        Op::Random(b) => b.clone(),
    }
}

/// The server still answers: a Binding request on a new connection gets its
/// mapped address.
async fn still_answers(turn: &Turn, stream: bool) -> Result<(), String> {
    let mut conn = if stream {
        Conn::stream(turn, 65_000)?
    } else {
        Conn::udp(turn).await?
    };
    let answer = conn.ask(&binding()?).await?;
    let msg = Message::from_bytes(&answer).map_err(|e| e.to_string())?;
    if !msg.has_class(MessageClass::Success) || msg.attribute::<XorMappedAddress>().is_err() {
        return Err("Binding answered without a mapped address".into());
    }
    Ok(())
}

async fn fuzz_turn(stream: bool, ops: Vec<Op>, cuts: Vec<usize>) -> Result<(), String> {
    let turn = start_turn().await?;
    let media = turn.media.local_addr().map_err(|e| e.to_string())?;
    let mut conn = if stream {
        Conn::stream(&turn, 40_000)?
    } else {
        Conn::udp(&turn).await?
    };
    let session = allocate(&mut conn, media, "PA_fuzz").await?;
    let mut bytes = Vec::new();
    for op in &ops {
        let m = build(op, &session.templates);
        if stream {
            // One stream: messages back to back, padded as a client would.
            bytes.extend_from_slice(&pad_for_stream(m));
        } else {
            conn.send_raw(&m).await?;
            conn.drain(Duration::from_millis(1)).await?;
        }
    }
    if stream {
        for c in chunks(&bytes, &cuts) {
            conn.send_raw(&c).await?;
            tokio::task::yield_now().await;
        }
    }
    conn.drain(Duration::from_millis(20)).await?;
    still_answers(&turn, stream).await?;
    still_answers(&turn, !stream).await
}

/// Arbitrary bytes from the first byte of a stream, before any TURN.
async fn fuzz_raw_stream(data: Vec<u8>, cuts: Vec<usize>) -> Result<(), String> {
    let turn = start_turn().await?;
    let mut conn = Conn::stream(&turn, 41_000)?;
    for c in chunks(&data, &cuts) {
        conn.send_raw(&c).await?;
    }
    conn.drain(Duration::from_millis(20)).await?;
    still_answers(&turn, true).await
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn turn_udp_takes_mutated_and_arbitrary_datagrams(ops in prop::collection::vec(op(), 1..24)) {
        run_case(fuzz_turn(false, ops, Vec::new()))?;
    }

    #[test]
    fn turn_streams_take_mutated_and_arbitrary_messages(
        ops in prop::collection::vec(op(), 1..24),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        run_case(fuzz_turn(true, ops, cuts))?;
    }

    #[test]
    fn turn_streams_take_arbitrary_bytes(
        data in prop::collection::vec(any::<u8>(), 0..3000),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        run_case(fuzz_raw_stream(data, cuts))?;
    }
}

/// The session the fuzzer mutates is a real one: data sent through the
/// allocation reaches the media socket.
#[test]
fn the_fuzzed_session_relays_to_the_media_node() {
    run_case(async {
        let turn = start_turn().await?;
        let media = turn.media.local_addr().map_err(|e| e.to_string())?;
        let mut conn = Conn::udp(&turn).await?;
        let s = allocate(&mut conn, media, "PA_check").await?;
        // CreatePermission toward the media node succeeds, elsewhere is refused.
        let ok = Message::from_bytes(&conn.ask(&s.templates[4]).await?)
            .map_err(|e| e.to_string())?
            .has_class(MessageClass::Success);
        let refused = conn.ask(&s.templates[6]).await?;
        let code = Message::from_bytes(&refused)
            .map_err(|e| e.to_string())?
            .attribute::<ErrorCode>()
            .map(|c| c.code())
            .ok();
        if !ok || code != Some(403) {
            return Err(format!("permission: ok {ok}, elsewhere {code:?}"));
        }
        conn.send(&s.templates[8]).await?;
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(3), turn.media.recv_from(&mut buf))
            .await
            .map_err(|_| "nothing relayed")?
            .map_err(|e| e.to_string())?;
        if &buf[..n] != b"hello media" {
            return Err(format!("relayed {:?}", &buf[..n]));
        }
        Ok(())
    })
    .expect("relayed");
}
