//! Fuzzing STUN and TURN around the TURN actor: the stream framer (TURN over
//! TCP/TLS), TURN credentials, and public-IP discovery against a STUN server
//! that answers nonsense. The TURN actor itself is fuzzed in
//! `fuzz_turn_actor.rs`; the helpers both share are in `fuzz_util/`.
//!
//! Properties: no panic anywhere (a panic hook counts them, including those
//! in spawned tasks), bounded work (every case has a deadline, and the framer
//! moves each byte once), only an intact answer names a public IP, and where
//! there is an encoder, decoding gives back what was encoded.
//!
//! `PROPTEST_CASES` sets the number of cases (defaults below, sized for CI);
//! `scripts/fuzz` runs them for as long as asked.

mod fuzz_util;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use fuzz_util::*;
use nodo::turn::frame::{pad_for_stream, Framer, NotTurn};
use nodo::turn::{self, CredentialError};
use proptest::prelude::*;
use tokio::net::UdpSocket;
use turn_server_proto::stun::types::attribute::{ErrorCode, XorMappedAddress};
use turn_server_proto::stun::types::message::{
    Message, MessageWrite, MessageWriteExt, MessageWriteVec, BINDING,
};

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
