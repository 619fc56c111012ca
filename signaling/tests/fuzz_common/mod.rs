//! Generators shared by the signaling fuzz tests: protobuf and JSON
//! mutations of valid messages (truncations, bit flips, lying lengths, deep
//! nesting), arbitrary protobuf wire data and JSON values. `runner` runs the
//! cases (and counts panics, also in spawned tasks); `signal` holds the
//! LiveKit signal requests and tokens of the signal fuzz tests.
#![allow(dead_code)]

use proptest::prelude::*;
use serde_json::Value;

pub mod runner;
pub mod signal;

// Not every test binary that includes this module uses all of them.
#[allow(unused_imports)]
pub use runner::{cases, config, run_case, watch_panics};

/// Strings that matter to a server: empty, short, arbitrary Unicode (case
/// changes that change length), ids that look real, long ones.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9_]{0,12}",
        2 => ".{0,40}",
        1 => Just(String::new()),
        1 => prop_oneof![Just("TR_"), Just("PA_"), Just("RM_")].prop_flat_map(|p| {
            "[a-zA-Z0-9]{0,12}".prop_map(move |s| format!("{p}{s}"))
        }),
        1 => prop_oneof![Just("ǅ"), Just("ß"), Just("İ"), Just("\u{0}"), Just("/"), Just("a/b/c")]
            .prop_map(String::from),
        1 => (1usize..300_000).prop_map(|n| "x".repeat(n)),
    ]
}

// ---------------------------------------------------------------------------
// Protobuf.

/// A protobuf field on the wire, any tag and wire type, nested arbitrarily.
#[derive(Debug, Clone)]
pub enum Wire {
    Varint(u32, u64),
    Fixed64(u32, u64),
    Fixed32(u32, u32),
    Bytes(u32, Vec<u8>),
    Nested(u32, Vec<Wire>),
    /// A field key with a wire type that does not exist (6, 7) or a group.
    Odd(u32, u8),
}

fn tag() -> impl Strategy<Value = u32> {
    prop_oneof![8 => 1u32..32, 1 => any::<u32>()]
}

pub fn wire() -> impl Strategy<Value = Vec<Wire>> {
    let leaf = prop_oneof![
        (tag(), any::<u64>()).prop_map(|(t, v)| Wire::Varint(t, v)),
        (tag(), any::<u64>()).prop_map(|(t, v)| Wire::Fixed64(t, v)),
        (tag(), any::<u32>()).prop_map(|(t, v)| Wire::Fixed32(t, v)),
        (tag(), prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(t, b)| Wire::Bytes(t, b)),
        (tag(), 3u8..8).prop_map(|(t, w)| Wire::Odd(t, w)),
    ];
    let tree = leaf.prop_recursive(8, 64, 6, |inner| {
        (tag(), prop::collection::vec(inner, 0..6)).prop_map(|(t, f)| Wire::Nested(t, f))
    });
    prop::collection::vec(tree, 0..8)
}

pub fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn key(tag: u32, wire_type: u8, out: &mut Vec<u8>) {
    varint((u64::from(tag) << 3) | u64::from(wire_type), out);
}

pub fn encode_wire(fields: &[Wire]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        match f {
            Wire::Varint(t, v) => {
                key(*t, 0, &mut out);
                varint(*v, &mut out);
            }
            Wire::Fixed64(t, v) => {
                key(*t, 1, &mut out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Wire::Fixed32(t, v) => {
                key(*t, 5, &mut out);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Wire::Bytes(t, b) => {
                key(*t, 2, &mut out);
                varint(b.len() as u64, &mut out);
                out.extend_from_slice(b);
            }
            Wire::Nested(t, inner) => {
                let body = encode_wire(inner);
                key(*t, 2, &mut out);
                varint(body.len() as u64, &mut out);
                out.extend_from_slice(&body);
            }
            Wire::Odd(t, w) => key(*t, *w, &mut out),
        }
    }
    out
}

/// `depth` messages nested in field `tag` (past prost's recursion limit of 100).
pub fn deep_protobuf(tag: u32, depth: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..depth {
        let mut outer = Vec::new();
        key(tag, 2, &mut outer);
        varint(body.len() as u64, &mut outer);
        outer.extend_from_slice(&body);
        body = outer;
    }
    body
}

/// A change to a valid encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    Truncate(usize),
    Flip(Vec<(usize, u8)>),
    /// Bytes overwritten at a position.
    Splice(usize, Vec<u8>),
    /// Bytes inserted at a position.
    Insert(usize, Vec<u8>),
    /// The first length-delimited field's length varint replaced.
    LieLength(u64),
    /// A slice repeated.
    Repeat(usize, usize, u8),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..6).prop_map(Mutation::Flip),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(a, b)| Mutation::Splice(a, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(a, b)| Mutation::Insert(a, b)),
        prop_oneof![
            any::<u64>(),
            Just(u64::MAX),
            Just(u64::from(u32::MAX)),
            0u64..64,
            Just(1u64 << 31)
        ]
        .prop_map(Mutation::LieLength),
        (any::<usize>(), any::<usize>(), 2u8..20).prop_map(|(a, b, n)| Mutation::Repeat(a, b, n)),
    ]
}

fn read_varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().enumerate().take(10) {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

pub fn mutate_bytes(mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
    match m {
        Mutation::Truncate(n) => b.truncate(n % (b.len() + 1)),
        Mutation::Flip(flips) if !b.is_empty() => {
            for (at, bit) in flips {
                let at = at % b.len();
                b[at] ^= 1 << (bit % 8);
            }
        }
        Mutation::Splice(at, bytes) if !b.is_empty() => {
            let at = at % b.len();
            for (k, x) in bytes.iter().enumerate() {
                if let Some(y) = b.get_mut(at + k) {
                    *y = *x;
                }
            }
        }
        Mutation::Insert(at, bytes) => {
            let at = at % (b.len() + 1);
            b.splice(at..at, bytes.iter().copied());
        }
        Mutation::LieLength(len) => {
            if let Some((k, n)) = read_varint(&b) {
                if k & 7 == 2 {
                    if let Some((_, m)) = read_varint(&b[n..]) {
                        let mut lie = Vec::new();
                        varint(*len, &mut lie);
                        b.splice(n..n + m, lie);
                    }
                }
            }
        }
        Mutation::Repeat(a, l, n) if !b.is_empty() => {
            let a = a % b.len();
            let l = 1 + l % (b.len() - a).min(64);
            let piece = b[a..a + l].to_vec();
            for _ in 0..*n {
                b.splice(a..a, piece.iter().copied());
            }
        }
        _ => {}
    }
    b
}

// ---------------------------------------------------------------------------
// JSON.

/// Any JSON value, nested a little.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        Just(Value::from(-1)),
        Just(Value::from(4_294_967_296u64)),
        text().prop_map(Value::String),
        "[0-9]{1,25}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-zA-Z_]{0,12}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A change to a valid JSON value or its text.
#[derive(Debug, Clone)]
pub enum JsonMutation {
    /// The n-th node (pre-order) replaced by a value.
    Replace(usize, Value),
    /// A key of the n-th object dropped.
    Drop(usize),
    /// The value wrapped in `depth` arrays or objects.
    Nest(usize, bool),
    /// The text cut short.
    Truncate(usize),
    /// A byte of the text changed.
    Byte(usize, u8),
}

pub fn json_mutation() -> impl Strategy<Value = JsonMutation> {
    prop_oneof![
        4 => (any::<usize>(), json_value()).prop_map(|(n, v)| JsonMutation::Replace(n, v)),
        1 => any::<usize>().prop_map(JsonMutation::Drop),
        1 => (1usize..5000, any::<bool>()).prop_map(|(d, o)| JsonMutation::Nest(d, o)),
        1 => any::<usize>().prop_map(JsonMutation::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(a, b)| JsonMutation::Byte(a, b)),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

fn replace_nth(v: &mut Value, n: usize, with: Value) {
    // A pre-order walk that replaces in place.
    fn walk(v: &mut Value, n: &mut usize, with: &mut Option<Value>) {
        if with.is_none() {
            return;
        }
        if *n == 0 {
            if let Some(w) = with.take() {
                *v = w;
            }
            return;
        }
        *n -= 1;
        match v {
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, n, with)),
            Value::Object(o) => o.values_mut().for_each(|x| walk(x, n, with)),
            _ => {}
        }
    }
    let mut n = n % count(v);
    walk(v, &mut n, &mut Some(with));
}

fn drop_key(v: &mut Value, n: usize) {
    fn walk(v: &mut Value, n: &mut usize) -> bool {
        match v {
            Value::Object(o) => {
                if *n == 0 {
                    let k = o.keys().next().cloned();
                    if let Some(k) = k {
                        o.remove(&k);
                    }
                    return true;
                }
                *n -= 1;
                o.values_mut().any(|x| walk(x, n))
            }
            Value::Array(a) => a.iter_mut().any(|x| walk(x, n)),
            _ => false,
        }
    }
    let mut n = n % count(v);
    walk(v, &mut n);
}

/// The JSON text of `v` after `m`.
pub fn mutate_json(mut v: Value, m: &JsonMutation) -> String {
    match m {
        JsonMutation::Replace(n, with) => {
            replace_nth(&mut v, *n, with.clone());
            v.to_string()
        }
        JsonMutation::Drop(n) => {
            drop_key(&mut v, *n);
            v.to_string()
        }
        JsonMutation::Nest(depth, object) => {
            let (open, close) = if *object {
                ("{\"a\":", "}")
            } else {
                ("[", "]")
            };
            format!("{}{v}{}", open.repeat(*depth), close.repeat(*depth))
        }
        JsonMutation::Truncate(n) => {
            let s = v.to_string();
            let mut at = n % (s.len() + 1);
            while !s.is_char_boundary(at) {
                at -= 1;
            }
            s[..at].to_string()
        }
        JsonMutation::Byte(at, b) => {
            let mut s = v.to_string().into_bytes();
            if !s.is_empty() {
                let at = at % s.len();
                s[at] = *b;
            }
            String::from_utf8_lossy(&s).into_owned()
        }
    }
}
