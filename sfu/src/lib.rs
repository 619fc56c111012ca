//! nodo-sfu: Nodo's media plane.
//!
//! [`MediaRoom`] is a sans-IO state machine over str0m: it takes time and
//! packets as input and returns packets to send and [`SfuEvent`]s. The
//! [`net`] module is the thin driver that owns the UDP and ICE-TCP sockets
//! and routes datagrams to rooms by ICE ufrag and remote address.
//!
//! # Run-loop contract
//!
//! A [`MediaRoom`] is owned by exactly one task, which makes every call. The
//! room never reads a clock: time is an input, the `now: Instant` passed to
//! [`MediaRoom::handle_receive`], [`MediaRoom::handle_timeout`] and, as the
//! last argument, to every command that changes a peer connection
//! (`add_participant`, `publisher_offer`, `subscriber_answer`,
//! `remote_candidate`, `update_subscription`, `send_data`). Pass the current
//! time; it must not go backwards.
//!
//! The room keeps str0m's contract for each of its `Rtc`s: every mutation is
//! followed by a complete drain of `poll_output`. So **when any method
//! returns, everything it caused is queued**: packets for
//! [`MediaRoom::poll_transmit`], events for [`MediaRoom::poll_event`], and the
//! next deadline for [`MediaRoom::poll_timeout`]. That deadline may already be
//! due: str0m sends some output (keyframe requests, for one) from its timeout
//! path. Nothing a call causes waits for the next packet or timer tick.
//!
//! Subscriber negotiation is batched: commands such as `subscribe`,
//! `unsubscribe` and `unpublish` only mark it due, and
//! [`MediaRoom::poll_event`] makes one offer per subscriber connection once
//! the events before it are taken, then drains what the offer caused at the
//! latest input time.
//!
//! After **every** `&mut self` call other than the `poll_*` ones, the owner must:
//!
//! 1. Send every [`MediaRoom::poll_transmit`] and handle every
//!    [`MediaRoom::poll_event`] until both return `None`. Handling an event
//!    may call the room again, which may queue more of both.
//! 2. Wait for the first of: [`MediaRoom::poll_timeout`], a packet, a command.
//! 3. At the deadline, call [`MediaRoom::handle_timeout`]. Goto 1.

mod dd;
mod dtls;
mod error;
mod gaps;
mod ids;
mod keyframe;
pub mod metrics;
pub mod net;
mod peer;
mod rates;
mod red;
mod rewrite;
mod room;
mod sdp_order;
mod track;

pub use error::SfuError;
pub use ids::{Layer, ParticipantSid, PeerId, PeerIds, PeerRole, TrackKind, TrackSid};
pub use metrics::{RoomMetrics, SfuMetrics};
pub use peer::{DtlsIdentity, LocalCandidates};
pub use room::{MediaRoom, OfferAnswer, RoomConfig, SfuEvent, StreamState};
pub use track::{LayerInfo, SubscriptionSettings};

/// Re-exported so drivers and tests need not depend on str0m directly.
pub use str0m;
