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
}
