//! Fuzzing STUN and TURN: the stream framer (TURN over TCP/TLS), the TURN
//! actor (policy + `turn-server-proto`) fed mutated and arbitrary datagrams
//! and streams after a real authenticated allocation, TURN credentials, and
//! public-IP discovery against a STUN server that answers nonsense.
//!
//! Properties: no panic anywhere (a panic hook counts them, including those
//! in spawned tasks), bounded work (every case has a deadline), everything
//! the server sends back is well-formed STUN or ChannelData, the server
//! still answers a well-behaved client afterwards, and where there is an
//! encoder, decoding gives back what was encoded.
//!
//! `PROPTEST_CASES` sets the number of cases (defaults below, sized for CI);
//! `scripts/fuzz` runs them for as long as asked.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once, PoisonError};
use std::time::Duration;

use nodo::turn::frame::{pad_for_stream, Framer, NotTurn};
use nodo::turn::{self, CredentialError, RelayConfig, TurnSetup};
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

/// Cases per property: `PROPTEST_CASES`, else `default` times `FUZZ_SCALE`
/// (1 when unset; `scripts/fuzz` raises it).
fn cases(default: u32) -> u32 {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
    env("PROPTEST_CASES").unwrap_or_else(|| default.saturating_mul(env("FUZZ_SCALE").unwrap_or(1)))
}

/// The proptest configuration of a property: `PROPTEST_CASES` cases, else
/// `default`; no regression files written into the tree (a failure prints
/// its input and `scripts/fuzz` its seed).
fn config(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: cases(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Names of the case threads that panicked (one entry per panic).
static PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The prefix of the names of the threads that run a case's tasks.
const CASE_THREAD: &str = "fuzz-case-";

/// Counts every panic in this process, also those tokio catches in spawned
/// tasks (the TURN actor's), which would otherwise only print.
fn watch_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Only the cases' runtime threads: other tests in this binary
            // run (and fail, by panicking) on their own threads meanwhile.
            if let Some(name) = std::thread::current().name() {
                if name.starts_with(CASE_THREAD) {
                    PANICKED
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(name.to_string());
                }
            }
            previous(info);
        }));
    });
}

/// Runs one case on a fresh runtime (its tasks die with it), within a
/// deadline; fails on any panic in the case's tasks.
fn run_case<F: Future<Output = Result<(), String>>>(f: F) -> Result<(), TestCaseError> {
    watch_panics();
    static CASES: AtomicUsize = AtomicUsize::new(0);
    let name = format!("{CASE_THREAD}{}", CASES.fetch_add(1, Ordering::SeqCst));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name.clone())
        .enable_all()
        .build()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let out = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), f)
            .await
            .unwrap_or_else(|_| Err("the case hung".into()))
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    let panics = {
        let mut all = PANICKED.lock().unwrap_or_else(PoisonError::into_inner);
        let before = all.len();
        all.retain(|n| *n != name);
        before - all.len()
    };
    if panics > 0 {
        return Err(TestCaseError::fail(format!(
            "{panics} panic(s) during the case"
        )));
    }
    out.map_err(TestCaseError::fail)
}

// ---------------------------------------------------------------------------
// The stream framer.

/// A message as it travels on a TURN stream.
#[derive(Debug, Clone)]
enum Wire {
    /// STUN: first byte 0x00..=0x3f, length field = body length.
    Stun {
        first: u8,
        second: u8,
        body: Vec<u8>,
    },
    /// ChannelData: channel 0x4000..=0x4fff, padded to four bytes on a stream.
    Channel { channel: u16, data: Vec<u8> },
}

impl Wire {
    /// The message (what the framer must give back).
    fn message(&self) -> Vec<u8> {
        match self {
            Wire::Stun {
                first,
                second,
                body,
            } => {
                let mut m = vec![first & 0x3f, *second];
                m.extend_from_slice(&(body.len() as u16).to_be_bytes());
                m.extend_from_slice(&[0u8; 16]);
                m.extend_from_slice(body);
                m
            }
            Wire::Channel { channel, data } => {
                let mut m = (0x4000 | (channel & 0x0fff)).to_be_bytes().to_vec();
                m.extend_from_slice(&(data.len() as u16).to_be_bytes());
                m.extend_from_slice(data);
                m
            }
        }
    }
}

fn wire() -> impl Strategy<Value = Wire> {
    prop_oneof![
        (
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(first, second, body)| Wire::Stun {
                first,
                second,
                body
            }),
        (any::<u16>(), prop::collection::vec(any::<u8>(), 0..200))
            .prop_map(|(channel, data)| Wire::Channel { channel, data }),
        // The largest lengths the 16-bit field can say.
        (any::<u16>(), 65_530usize..=65_535).prop_map(|(channel, n)| Wire::Channel {
            channel,
            data: vec![0x42; n]
        }),
    ]
}

/// Splits `data` at cut points (arbitrary read boundaries).
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    at.extend([0, data.len()]);
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| data[w[0]..w[1]].to_vec()).collect()
}

/// Feeds `stream` to a framer in `cuts`-sized reads, as the stream loop does:
/// every whole message after each read, until the first refusal.
fn deframe(stream: &[u8], cuts: &[usize]) -> (Vec<Vec<u8>>, Option<NotTurn>) {
    let mut f = Framer::default();
    let mut out = Vec::new();
    for c in chunks(stream, cuts) {
        f.push(&c);
        loop {
            match f.next() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

proptest! {
    #![proptest_config(config(256))]

    /// decode(encode(x)) == x: messages padded for a stream come back whole,
    /// without padding, however the reads fall.
    #[test]
    fn framer_gives_back_what_was_padded(
        msgs in prop::collection::vec(wire(), 0..12),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let want: Vec<Vec<u8>> = msgs.iter().map(Wire::message).collect();
        let stream: Vec<u8> = want.iter().flat_map(|m| pad_for_stream(m.clone())).collect();
        let (got, err) = deframe(&stream, &cuts);
        prop_assert_eq!(err, None);
        prop_assert_eq!(got.len(), want.len());
        prop_assert!(got == want, "messages differ");
    }

    /// Arbitrary bytes: no panic, only well-started messages come out, never
    /// more bytes than went in, and a refusal names the first byte it saw.
    #[test]
    fn framer_takes_arbitrary_bytes(
        stream in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let (got, err) = deframe(&stream, &cuts);
        let out: usize = got.iter().map(Vec::len).sum();
        prop_assert!(out <= stream.len());
        for m in &got {
            prop_assert!(m.len() >= 4);
            prop_assert!(m[0] < 0x50, "first byte {:#04x}", m[0]);
        }
        if let Some(NotTurn(b)) = err {
            prop_assert!(b >= 0x50);
        }
    }

    /// A valid stream with a truncated tail or a lying length: the whole
    /// messages come out, the partial one never does.
    #[test]
    fn framer_holds_back_partial_messages(
        msgs in prop::collection::vec(wire(), 1..6),
        cut in any::<usize>(),
        says in any::<u16>(),
    ) {
        let want: Vec<Vec<u8>> = msgs.iter().map(Wire::message).collect();
        let mut stream: Vec<u8> = want.iter().flat_map(|m| pad_for_stream(m.clone())).collect();
        let last = pad_for_stream(want[want.len() - 1].clone());
        let cut = cut % last.len();
        stream.truncate(stream.len() - last.len() + cut);
        if cut >= 4 {
            // The length field of the partial message lies upward.
            let at = stream.len() - cut + 2;
            let real = u16::from_be_bytes([stream[at], stream[at + 1]]);
            let says = says.max(real);
            stream[at..at + 2].copy_from_slice(&says.to_be_bytes());
        }
        let (got, err) = deframe(&stream, &[]);
        prop_assert_eq!(err, None);
        prop_assert!(got == want[..want.len() - 1], "partial message delivered");
    }

    /// TURN credentials: minted ones verify to what was minted; arbitrary
    /// usernames never panic and an accepted one is well-formed.
    #[test]
    fn credentials_round_trip(
        participant in "[^\\x00]{1,40}",
        expires in any::<u64>(),
        now in any::<u64>(),
        junk in ".{0,80}",
    ) {
        let keys = BTreeMap::from([("devkey".to_string(), "secret".to_string())]);
        let (user, pass) = turn::mint("devkey", "secret", &participant, expires);
        match turn::verify(&keys, &user, now) {
            Ok(i) => {
                prop_assert!(now <= expires);
                prop_assert_eq!(i.password, pass);
                prop_assert_eq!(i.participant, participant);
                prop_assert_eq!(i.expires, expires);
            }
            Err(e) => prop_assert!(now > expires && e == CredentialError::Expired, "{e}"),
        }
        if let Ok(i) = turn::verify(&keys, &junk, now) {
            prop_assert!(!i.participant.is_empty());
            prop_assert!(i.expires >= now);
            let prefix = format!("{}:devkey:", i.expires);
            prop_assert!(junk.starts_with(&prefix), "accepted {:?}", junk);
        }
    }
}

/// Regression (bounded work): taking a message used to copy everything after
/// it, so a read full of small messages cost quadratic work (a 64 KiB read
/// of empty ChannelData, 16,384 messages, copied about 512 MiB). Now each
/// byte is moved once: 1 MiB of them is framed in well under a second.
#[test]
fn many_small_messages_cost_linear_work() {
    let chunk: Vec<u8> = [0x40, 0x00, 0x00, 0x00].repeat(32 * 1024);
    let started = std::time::Instant::now();
    let mut f = Framer::default();
    let mut n = 0;
    for _ in 0..8 {
        f.push(&chunk);
        while let Ok(Some(m)) = f.next() {
            assert_eq!(m, [0x40, 0, 0, 0]);
            n += 1;
        }
    }
    assert_eq!(n, 8 * 32 * 1024);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

// ---------------------------------------------------------------------------
// The TURN actor.

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

// ---------------------------------------------------------------------------
// Public-IP discovery against a STUN server that answers nonsense.

#[derive(Debug, Clone)]
enum Reply {
    Random(Vec<u8>),
    /// A success answer, mutated.
    Mutated(Vec<(usize, u8)>, Option<usize>),
    /// A success answer with another transaction id.
    OtherTid,
    /// An error answer.
    Error(u16),
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..600).prop_map(Reply::Random),
        (
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            prop::option::of(any::<usize>())
        )
            .prop_map(|(f, t)| Reply::Mutated(f, t)),
        Just(Reply::OtherTid),
        (300u16..700).prop_map(Reply::Error),
    ]
}

fn answer(reply: &Reply, req: &[u8], seen: SocketAddr) -> Vec<u8> {
    let Ok(req) = Message::from_bytes(req) else {
        return Vec::new();
    };
    let success = |tid| {
        let mut m = Message::builder_success(&req, MessageWriteVec::new());
        let _ = m.add_attribute(&XorMappedAddress::new(seen, tid));
        m.finish()
    };
    match reply {
        Reply::Random(b) => b.clone(),
        Reply::Mutated(flips, cut) => {
            let mut m = success(req.transaction_id());
            for (at, bit) in flips {
                let at = at % m.len();
                m[at] ^= 1 << (bit % 8);
            }
            if let Some(c) = cut {
                m.truncate(c % (m.len() + 1));
            }
            m
        }
        Reply::OtherTid => {
            // An answer to another request.
            let other = Message::builder_request(BINDING, MessageWriteVec::new()).finish();
            match Message::from_bytes(&other) {
                Ok(other) => {
                    let mut m = Message::builder_success(&other, MessageWriteVec::new());
                    let _ = m.add_attribute(&XorMappedAddress::new(seen, other.transaction_id()));
                    m.finish()
                }
                Err(_) => Vec::new(),
            }
        }
        Reply::Error(code) => {
            let mut m = Message::builder_error(&req, MessageWriteVec::new());
            if let Ok(e) = ErrorCode::builder(*code).build() {
                let _ = m.add_attribute(&e);
            }
            m.finish()
        }
    }
}

async fn discover(replies: Vec<Reply>) -> Result<(), String> {
    let server = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let seen: SocketAddr = "203.0.113.9:1234".parse().map_err(|_| "addr")?;
    let answers = replies.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 1500];
        for r in answers {
            let Ok((n, from)) = server.recv_from(&mut buf).await else {
                return;
            };
            let _ = server.send_to(&answer(&r, &buf[..n], seen), from).await;
        }
    });
    let loopback: IpAddr = Ipv4Addr::LOCALHOST.into();
    let found =
        nodo::stun::public_ip(loopback, &addr.to_string(), Duration::from_millis(300)).await;
    // Only an intact success answer (the first reply that is one) may name an address.
    if let Ok(ip) = found {
        let intact = replies.iter().take(3).any(|r| match r {
            Reply::Mutated(..) => true,
            Reply::Random(b) => Message::from_bytes(b).is_ok(),
            _ => false,
        });
        if !intact {
            return Err(format!("{ip} found in answers that hold no address"));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn public_ip_discovery_takes_any_answer(replies in prop::collection::vec(reply(), 1..4)) {
        run_case(discover(replies))?;
    }
}
