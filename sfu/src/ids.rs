//! Newtype ids that cross the SFU boundary.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Wraps an id string.
            pub fn new(s: impl AsRef<str>) -> Self {
                Self(Arc::from(s.as_ref()))
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

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }
    };
}

string_id!(
    /// Server-assigned participant id, `PA_…` in LiveKit terms.
    ParticipantSid
);
string_id!(
    /// Server-assigned track id, `TR_…` in LiveKit terms.
    TrackSid
);

/// One peer connection inside a media room. Unique per node, so the network
/// demultiplexer can route packets by it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// The node-wide source of [`PeerId`]s.
///
/// Every room of a node draws from clones of one allocator, so no two peer
/// connections of the node ever share an id and the network demultiplexer can
/// route, register and unregister by id alone. Clones share the counter;
/// [`PeerIds::new`] (and `Default`) starts an independent one at 1.
#[derive(Clone, Debug)]
pub struct PeerIds(Arc<AtomicU64>);

impl PeerIds {
    /// A fresh allocator; its first id is `PeerId(1)`.
    pub fn new() -> PeerIds {
        PeerIds(Arc::new(AtomicU64::new(1)))
    }

    /// An id never returned before by this allocator or any of its clones.
    pub fn next(&self) -> PeerId {
        // Uniqueness is all that matters: no other memory is ordered by it.
        PeerId(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

impl Default for PeerIds {
    fn default() -> PeerIds {
        PeerIds::new()
    }
}

/// Which peer connection of a participant: one of the two of LiveKit's v0
/// dual-PC mode, or the only one of signaling v1.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum PeerRole {
    /// The client offers; it sends media and data to the server.
    Publisher,
    /// The server offers; it sends media and data to the client.
    Subscriber,
    /// Signaling v1's single connection: the client always offers, with
    /// its own tracks and recvonly sections the server sends in.
    Single,
}

impl PeerRole {
    /// Whether the connection carries the participant's own media and data.
    pub fn publishes(self) -> bool {
        matches!(self, PeerRole::Publisher | PeerRole::Single)
    }

    /// Whether the connection carries what the participant subscribed to.
    pub fn subscribes(self) -> bool {
        matches!(self, PeerRole::Subscriber | PeerRole::Single)
    }
}

/// Audio or video.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TrackKind {
    Audio,
    Video,
}

/// A simulcast layer, ordered low to high. LiveKit clients name them `q`, `h`, `f`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Layer {
    Low,
    Medium,
    High,
}

impl Layer {
    /// The RTP stream id LiveKit clients use for this layer.
    pub fn rid(self) -> &'static str {
        match self {
            Layer::Low => "q",
            Layer::Medium => "h",
            Layer::High => "f",
        }
    }

    /// Parses a LiveKit rid.
    pub fn from_rid(rid: &str) -> Option<Layer> {
        match rid {
            "q" => Some(Layer::Low),
            "h" => Some(Layer::Medium),
            "f" => Some(Layer::High),
            _ => None,
        }
    }

    pub const ALL: [Layer; 3] = [Layer::Low, Layer::Medium, Layer::High];
}
