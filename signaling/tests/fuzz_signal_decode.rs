//! Fuzzing what the LiveKit signal service decodes, without a server:
//! signal requests of every kind in protobuf and JSON, mutated encodings of
//! them (bit flips, truncations, lying lengths), arbitrary protobuf wire
//! data and nesting past prost's recursion limit, and access tokens (mutated,
//! cut short, other algorithms, any payload or claim, any string). The
//! signal WebSocket end to end is fuzzed in `fuzz_signal.rs`; the generators
//! are in `fuzz_common/` (`signal.rs` for the signal requests).
//!
//! Properties: decode(encode(x)) == x for signal requests in protobuf and
//! JSON and for signed claims; malformed protobuf is a decode error, never a
//! panic or a hang; token parsing never panics and accepts only what was
//! signed with the secret.
//!
//! `PROPTEST_CASES` sets the number of cases (defaults below, sized for CI);
//! `scripts/fuzz` runs them for as long as asked.

mod fuzz_common;

use std::collections::BTreeMap;
use std::time::Duration;

use fuzz_common::signal::*;
use fuzz_common::*;
use livekit_protocol as proto;
use nodo_signaling::auth::{claims_for, Claims, KeyStore, VideoGrant};
use proptest::prelude::*;
use prost::Message as _;

proptest! {
    #![proptest_config(config(256))]

    /// decode(encode(x)) == x for signal requests, in protobuf.
    #[test]
    fn signal_requests_round_trip_in_protobuf(m in signal_request()) {
        let r = request(m);
        let back = proto::SignalRequest::decode(r.encode_to_vec().as_slice());
        prop_assert_eq!(back.ok(), Some(r));
    }

    /// decode(encode(x)) == x for signal requests, in JSON (livekit-client's
    /// JSON mode), except that an enum number the protocol does not name
    /// has no JSON form: an error, not a panic.
    #[test]
    fn signal_requests_round_trip_in_json(m in signal_request()) {
        let r = request(m);
        let back = serde_json::to_string(&r)
            .and_then(|text| serde_json::from_str::<proto::SignalRequest>(&text));
        match back {
            Ok(back) => prop_assert_eq!(back, r),
            Err(e) => prop_assert!(e.to_string().contains("Invalid variant"), "{}", e),
        }
    }

    /// Malformed protobuf is a decode error, never a panic or a hang.
    #[test]
    fn mutated_protobuf_decodes_or_errs(
        m in signal_request(),
        muts in prop::collection::vec(mutation(), 1..4),
        w in wire(),
    ) {
        let mut b = request(m).encode_to_vec();
        for mu in &muts {
            b = mutate_bytes(b, mu);
        }
        let _ = proto::SignalRequest::decode(b.as_slice());
        let _ = proto::SignalRequest::decode(encode_wire(&w).as_slice());
        // Deeper than prost's recursion limit: an error.
        prop_assert!(proto::SignalRequest::decode(deep_protobuf(1, 200).as_slice()).is_err());
    }
}

// ---------------------------------------------------------------------------
// Access tokens.

#[derive(Debug, Clone)]
enum Tok {
    /// A signed token, its text mutated.
    Mutated(usize, u8),
    /// A signed token cut short.
    Truncated(usize),
    /// One of its three parts replaced.
    Part(usize, String),
    /// A header with another algorithm (`none`, RS256, …).
    Alg(String),
    /// A payload of any JSON, signed or not.
    Payload(serde_json::Value, bool),
    /// A signed, valid token with one claim of any JSON type.
    Claim(String, serde_json::Value),
    Any(String),
}

fn tok() -> impl Strategy<Value = Tok> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Tok::Mutated(a, b)),
        any::<usize>().prop_map(Tok::Truncated),
        (0usize..3, "[A-Za-z0-9_=+/.-]{0,80}").prop_map(|(i, s)| Tok::Part(i, s)),
        prop_oneof![
            Just("none"),
            Just("RS256"),
            Just("HS512"),
            Just("ES256"),
            Just("")
        ]
        .prop_map(|a| Tok::Alg(a.to_string())),
        (json_value(), any::<bool>()).prop_map(|(v, s)| Tok::Payload(v, s)),
        (
            prop_oneof![
                Just("video"),
                Just("attributes"),
                Just("nbf"),
                Just("exp"),
                Just("iss"),
                Just("sub"),
                Just("name"),
                Just("metadata"),
                Just("kind"),
                Just("sha256"),
            ],
            prop_oneof![
                json_value(),
                json_value().prop_map(|v| serde_json::json!({"roomJoin": true, "room": v})),
                json_value()
                    .prop_map(|v| serde_json::json!({"canPublish": v, "canPublishSources": [v]})),
            ],
        )
            .prop_map(|(k, v)| Tok::Claim(k.to_string(), v)),
        ".{0,200}".prop_map(Tok::Any),
    ]
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// `payload` signed with HS256 and the node's secret.
fn signed_json(payload: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        payload,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap_or_default()
}

fn make_token(t: &Tok) -> String {
    let valid = token("alice", VideoGrant::default()).unwrap_or_default();
    let parts: Vec<&str> = valid.split('.').collect();
    match t {
        Tok::Mutated(at, b) => {
            let mut s = valid.into_bytes();
            let at = at % s.len();
            s[at] = *b;
            String::from_utf8_lossy(&s).into_owned()
        }
        Tok::Truncated(n) => valid[..n % (valid.len() + 1)].to_string(),
        Tok::Part(i, s) => {
            let mut p: Vec<String> = parts.iter().map(|x| x.to_string()).collect();
            if let Some(x) = p.get_mut(*i) {
                *x = s.clone();
            }
            p.join(".")
        }
        Tok::Alg(alg) => {
            let header = b64(format!("{{\"alg\":\"{alg}\",\"typ\":\"JWT\"}}").as_bytes());
            format!(
                "{header}.{}.{}",
                parts.get(1).unwrap_or(&""),
                parts.get(2).unwrap_or(&"")
            )
        }
        Tok::Payload(v, true) => signed_json(v),
        Tok::Payload(v, false) => {
            let header = parts.first().copied().unwrap_or("");
            let payload = b64(v.to_string().as_bytes());
            format!("{header}.{payload}.{}", parts.get(2).unwrap_or(&""))
        }
        Tok::Claim(key, v) => {
            let mut claims = serde_json::json!({
                "iss": "devkey",
                "sub": "alice",
                "exp": nodo_signaling::auth::unix_now() + 600,
            });
            claims[key.as_str()] = v.clone();
            signed_json(&claims)
        }
        Tok::Any(s) => s.clone(),
    }
}

fn claims() -> impl Strategy<Value = Claims> {
    (
        "[a-zA-Z0-9_.@-]{1,40}",
        text(),
        text(),
        prop::collection::hash_map("[a-z]{1,8}", text(), 0..3),
        (any::<bool>(), any::<bool>(), any::<bool>(), text()),
        (
            prop::option::of(any::<bool>()),
            prop::option::of(any::<bool>()),
            prop::collection::vec(text(), 0..3),
        ),
    )
        .prop_map(
            |(
                identity,
                name,
                metadata,
                attributes,
                (join, admin, hidden, room),
                (publish, subscribe, sources),
            )| {
                let grant = VideoGrant {
                    room_join: join,
                    room_admin: admin,
                    hidden,
                    room,
                    can_publish: publish,
                    can_subscribe: subscribe,
                    can_publish_sources: sources,
                    ..VideoGrant::default()
                };
                let mut c = claims_for("devkey", &identity, Duration::from_secs(600), Some(grant));
                c.name = name;
                c.metadata = metadata;
                c.attributes = attributes;
                c
            },
        )
}

proptest! {
    #![proptest_config(config(256))]

    /// Any string as a token: a typed refusal, never a panic; a mutated
    /// token is never accepted with other claims than were signed.
    #[test]
    fn tokens_refuse_anything_unsigned(t in tok()) {
        let keys = KeyStore::new(BTreeMap::from([("devkey".into(), SECRET.into())]));
        let text = make_token(&t);
        if let Ok(c) = keys.verify(&text) {
            // Only a token signed with the secret passes (an unchanged one:
            // a mutation that changed nothing, or base64 slack bits), and
            // then it says what was signed: our key, not expired.
            prop_assert_eq!(c.iss.as_str(), "devkey");
            prop_assert!(c.exp + 60 >= nodo_signaling::auth::unix_now());
            if !matches!(t, Tok::Payload(..) | Tok::Claim(..)) {
                prop_assert_eq!(c.identity(), "alice");
            }
        }
    }

    /// decode(encode(x)) == x for claims signed with a configured key.
    #[test]
    fn tokens_round_trip(c in claims()) {
        let keys = KeyStore::new(BTreeMap::from([("devkey".into(), SECRET.into())]));
        let signed = keys.sign("devkey", &c).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back = keys.verify(&signed).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back, c);
    }
}
