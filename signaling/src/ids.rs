//! Newtype ids of the signaling layer, and LiveKit-style sid generation.

use std::fmt;

use rand::Rng;

pub use nodo_sfu::{ParticipantSid, TrackSid};

macro_rules! name_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string.
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_id!(
    /// A room's name, as clients and tokens spell it.
    RoomName
);
name_id!(
    /// A participant's identity (the token's `sub`; in Nodo also the user id).
    ParticipantIdentity
);
name_id!(
    /// A room's server-assigned id (`RM_…`); a room opened again under the
    /// same name gets a new one.
    RoomSid
);

name_id!(
    /// A registered agent worker (`AW_…`), one per worker connection.
    WorkerId
);
name_id!(
    /// An agent job (`AJ_…`): one agent process in one room.
    JobId
);
name_id!(
    /// An agent dispatch (`AD_…`): "this agent belongs in this room".
    DispatchId
);

impl RoomSid {
    /// A fresh room sid.
    pub fn generate() -> RoomSid {
        RoomSid(new_sid("RM_"))
    }
}

const BASE57: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A LiveKit-style id: prefix plus 12 base57 characters (`RM_…`, `PA_…`, `TR_…`).
pub fn new_sid(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + 12);
    s.push_str(prefix);
    for _ in 0..12 {
        s.push(char::from(BASE57[rng.random_range(0..BASE57.len())]));
    }
    s
}

/// Characters of a time-ordered sid's time part: 57^8 ms is ~3,500 years.
const TIME_CHARS: usize = 8;
/// Random characters after the time part: 57^8 (~1.1e14) values per millisecond.
const RANDOM_CHARS: usize = 8;

/// A sid that sorts by creation time: prefix, the Unix time in ms as 8
/// base57 characters (the alphabet is in ASCII order, so byte order is time
/// order), then 8 random characters. An index on such ids grows at its right
/// edge, as one on a sequence does, where random ids land on a random page of
/// it each: a batch of inserts then dirties one page instead of one per id.
pub fn new_ordered_sid(prefix: &str, unix_ms: u64) -> String {
    let mut s = String::with_capacity(prefix.len() + TIME_CHARS + RANDOM_CHARS);
    s.push_str(prefix);
    let base = BASE57.len() as u64;
    let mut time = [0u8; TIME_CHARS];
    let mut t = unix_ms;
    for c in time.iter_mut().rev() {
        *c = BASE57[(t % base) as usize];
        t /= base;
    }
    s.extend(time.iter().map(|&b| char::from(b)));
    let mut rng = rand::rng();
    for _ in 0..RANDOM_CHARS {
        s.push(char::from(BASE57[rng.random_range(0..BASE57.len())]));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn sid_shape() {
        let s = super::new_sid("PA_");
        assert!(s.starts_with("PA_"));
        assert_eq!(s.len(), 15);
        assert!(s[3..].bytes().all(|b| super::BASE57.contains(&b)));
        assert_ne!(s, super::new_sid("PA_"));
    }

    #[test]
    fn ordered_sids_sort_by_time() {
        let a = super::new_ordered_sid("MS_", 1_765_000_000_000);
        let b = super::new_ordered_sid("MS_", 1_765_000_000_001);
        let c = super::new_ordered_sid("MS_", 1_765_000_057_000);
        assert_eq!(a.len(), 3 + 16);
        assert!(a[3..].bytes().all(|b| super::BASE57.contains(&b)));
        assert!(a < b && b < c, "{a} {b} {c}");
        // Within one millisecond the time part is shared and the rest differs.
        let d = super::new_ordered_sid("MS_", 1_765_000_000_000);
        assert_eq!(a[..11], d[..11]);
        assert_ne!(a, d);
        // The time part is fixed-width from 0 to past the year 5000.
        let zero = super::new_ordered_sid("MS_", 0);
        assert_eq!(&zero[3..11], "22222222");
        let far = super::new_ordered_sid("MS_", 100_000_000_000_000);
        assert_eq!(far.len(), 19);
        assert!(far > c);
    }
}
