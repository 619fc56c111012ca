//! Fuzzing ICE-TCP framing (RFC 4571: a 16-bit big-endian length before
//! each packet) through the real listener of [`Net`]: streams of valid STUN
//! binding requests and arbitrary frames, cut into arbitrary writes, with
//! truncated tails and lying lengths. Every complete frame reaches the room
//! exactly once and in order (from the first STUN request that names a
//! registered ufrag on), nothing partial does, and packets the node sends
//! come out framed so that deframing gives them back (`decode(encode(x)) ==
//! x`). A fresh [`Net`] per case, so a dead or wedged listener shows.
//!
//! `PROPTEST_CASES` sets the number of cases (default below, small enough for
//! CI); `scripts/fuzz` runs them for as long as asked.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nodo_sfu::net::{Net, NetPacket};
use nodo_sfu::str0m::ice::StunMessage;
use nodo_sfu::str0m::net::{Protocol, Transmit};
use nodo_sfu::PeerId;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

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

const UFRAG: &str = "fuzz";
/// Longest any one case may take before it counts as a hang.
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// The ufrag `Net` routes a packet by: the local part of the USERNAME of a
/// STUN binding request (RFC 7983: STUN starts with 0..=3).
fn stun_ufrag(data: &[u8]) -> Option<String> {
    if data.first().is_none_or(|b| *b > 3) {
        return None;
    }
    let m = StunMessage::parse(data).ok()?;
    m.split_username().map(|(l, _)| l.to_string())
}

#[derive(Debug, Clone)]
enum Frame {
    /// A binding request for the registered ufrag (or another one).
    Stun { ours: bool, tid: [u8; 12] },
    /// A valid binding request with bits flipped.
    Flipped {
        tid: [u8; 12],
        flips: Vec<(usize, u8)>,
    },
    /// Arbitrary bytes, correctly framed.
    Bytes(Vec<u8>),
    /// An empty frame.
    Empty,
    /// The largest frame the length field can say.
    Max(u8),
}

impl Frame {
    fn payload(&self) -> Vec<u8> {
        match self {
            Frame::Stun { ours, tid } => {
                common::stun_binding(if *ours { UFRAG } else { "other" }, *tid)
            }
            Frame::Flipped { tid, flips } => {
                let mut m = common::stun_binding(UFRAG, *tid);
                for (at, bit) in flips {
                    let i = at % m.len();
                    m[i] ^= 1 << (bit % 8);
                }
                m
            }
            Frame::Bytes(b) => b.clone(),
            Frame::Empty => Vec::new(),
            Frame::Max(fill) => vec![*fill; 65_535],
        }
    }
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        4 => (any::<bool>(), any::<[u8; 12]>()).prop_map(|(ours, tid)| Frame::Stun { ours, tid }),
        2 => (any::<[u8; 12]>(), prop::collection::vec((any::<usize>(), any::<u8>()), 1..4))
            .prop_map(|(tid, flips)| Frame::Flipped { tid, flips }),
        4 => prop::collection::vec(any::<u8>(), 0..300).prop_map(Frame::Bytes),
        1 => Just(Frame::Empty),
        1 => any::<u8>().prop_map(Frame::Max),
    ]
}

/// How a stream ends after its whole frames.
#[derive(Debug, Clone)]
enum Tail {
    /// Clean end.
    None,
    /// Only part of a length prefix.
    HalfLength(u8),
    /// A length prefix that promises more than follows.
    Lying { says: u16, sends: Vec<u8> },
}

fn tail() -> impl Strategy<Value = Tail> {
    prop_oneof![
        Just(Tail::None),
        any::<u8>().prop_map(Tail::HalfLength),
        (1u16.., prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(says, mut sends)| {
            sends.truncate(usize::from(says) - 1);
            Tail::Lying { says, sends }
        }),
    ]
}

fn encode(frames: &[Vec<u8>], tail: &Tail) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    match tail {
        Tail::None => {}
        Tail::HalfLength(b) => out.push(*b),
        Tail::Lying { says, sends } => {
            out.extend_from_slice(&says.to_be_bytes());
            out.extend_from_slice(sends);
        }
    }
    out
}

/// Splits `data` at the given cut points (arbitrary write boundaries).
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|c| c % (data.len() + 1))
        .collect::<Vec<_>>();
    at.push(0);
    at.push(data.len());
    at.sort_unstable();
    at.dedup();
    at.windows(2).map(|w| data[w[0]..w[1]].to_vec()).collect()
}

async fn listener() -> (Arc<Net>, SocketAddr, mpsc::Receiver<NetPacket>) {
    // Framing is under test here, not the connection caps.
    let no_caps = nodo_sfu::net::TcpLimits {
        max_connections: 0,
        max_per_ip: 0,
        ..Default::default()
    };
    common::tcp_net(no_caps, UFRAG, 4096).await
}

/// Frames the room should see: a binding request naming our ufrag, and
/// once one has routed the connection, every later frame that names no
/// other ufrag.
fn expected(frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut routed = false;
    let mut out = Vec::new();
    for f in frames {
        let deliver = match stun_ufrag(f) {
            Some(u) => u == UFRAG,
            None => routed,
        };
        routed = routed || deliver;
        if deliver {
            out.push(f.clone());
        }
    }
    out
}

async fn run_stream(frames: Vec<Frame>, tail: Tail, cuts: Vec<usize>) -> Result<(), String> {
    let (net, addr, mut rx) = listener().await;
    let payloads: Vec<Vec<u8>> = frames.iter().map(Frame::payload).collect();
    let want = expected(&payloads);
    let mut client = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    client.set_nodelay(true).map_err(|e| e.to_string())?;
    for c in chunks(&encode(&payloads, &tail), &cuts) {
        client.write_all(&c).await.map_err(|e| e.to_string())?;
        tokio::task::yield_now().await;
    }
    let mut got = Vec::new();
    while got.len() < want.len() {
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(p)) => {
                if p.proto != Protocol::Tcp || p.peer != PeerId(1) {
                    return Err(format!("packet of the wrong kind: {p:?}"));
                }
                got.push(p.data);
            }
            _ => break,
        }
    }
    if got != want {
        return Err(format!(
            "room got {} frames, expected {} (lengths {:?} vs {:?})",
            got.len(),
            want.len(),
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            want.iter().map(Vec::len).collect::<Vec<_>>()
        ));
    }
    // Nothing more: a partial tail is never delivered.
    client.shutdown().await.ok();
    if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await {
        return Err(format!("an extra packet of {} bytes", p.data.len()));
    }
    // The listener still serves a well-behaved client afterwards.
    let mut second = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let stun = common::stun_binding(UFRAG, [7; 12]);
    second
        .write_all(&encode(std::slice::from_ref(&stun), &Tail::None))
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(p)) if p.data == stun => {}
        other => return Err(format!("second connection not served: {other:?}")),
    }
    net.shutdown();
    Ok(())
}

/// Packets the node sends on a connection come out length-prefixed, in
/// order; one too large for the 16-bit length is dropped, not truncated.
async fn run_send(packets: Vec<Vec<u8>>) -> Result<(), String> {
    let (net, addr, mut rx) = listener().await;
    let mut client = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let local = client.local_addr().map_err(|e| e.to_string())?;
    // Once a packet from the client has arrived, its writer is registered.
    let stun = common::stun_binding(UFRAG, [1; 12]);
    client
        .write_all(&encode(&[stun], &Tail::None))
        .await
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(_)) => {}
        other => return Err(format!("first packet not delivered: {other:?}")),
    }
    for p in &packets {
        net.send(&Transmit {
            proto: Protocol::Tcp,
            source: addr,
            destination: local,
            contents: p.clone().into(),
        });
    }
    let want: Vec<&Vec<u8>> = packets.iter().filter(|p| p.len() <= 65_535).collect();
    for (i, w) in want.iter().enumerate() {
        let mut len = [0u8; 2];
        let read = async {
            client.read_exact(&mut len).await?;
            let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
            client.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let got = tokio::time::timeout(Duration::from_secs(5), read)
            .await
            .map_err(|_| format!("packet {i} never arrived"))?
            .map_err(|e| format!("packet {i}: {e}"))?;
        if &got != *w {
            return Err(format!(
                "packet {i} differs: {} vs {} bytes",
                got.len(),
                w.len()
            ));
        }
    }
    net.shutdown();
    Ok(())
}

fn block_on<F: std::future::Future<Output = Result<(), String>>>(f: F) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        tokio::time::timeout(CASE_LIMIT, f)
            .await
            .unwrap_or_else(|_| Err("the case hung".into()))
    })
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn ice_tcp_streams_deframe_exactly(
        frames in prop::collection::vec(frame(), 0..12),
        tail in tail(),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
    ) {
        block_on(run_stream(frames, tail, cuts)).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn ice_tcp_sends_frame_what_it_is_given(
        packets in prop::collection::vec(
            prop_oneof![
                6 => prop::collection::vec(any::<u8>(), 0..1500),
                1 => (65_534usize..65_538).prop_map(|n| vec![0x5a; n]),
            ],
            1..10,
        ),
    ) {
        block_on(run_send(packets)).map_err(TestCaseError::fail)?;
    }
}

/// A stream that is only a length prefix promising 65,535 bytes, then silence:
/// nothing is delivered and the listener keeps serving.
#[test]
fn a_lying_length_delivers_nothing() {
    let tail = Tail::Lying {
        says: u16::MAX,
        sends: vec![0; 10],
    };
    block_on(run_stream(Vec::new(), tail, Vec::new())).expect("served");
}
