//! nodo-sfu: Nodo's media plane.
//!
//! [`MediaRoom`] is a sans-IO state machine over str0m: it takes time and
//! packets as input and returns packets to send and [`SfuEvent`]s. The
//! [`net`] module is the thin driver that owns the UDP and ICE-TCP sockets
//! and routes datagrams to rooms by ICE ufrag and remote address.

mod dd;
mod error;
mod ids;
mod keyframe;
pub mod net;
mod peer;
mod rewrite;
mod room;
mod sdp_order;
mod track;

pub use error::SfuError;
pub use ids::{Layer, ParticipantSid, PeerId, PeerRole, TrackKind, TrackSid};
pub use peer::LocalCandidates;
pub use room::{MediaRoom, RoomConfig, SfuEvent};
pub use track::{LayerInfo, SubscriptionSettings};

/// Re-exported so drivers and tests need not depend on str0m directly.
pub use str0m;
