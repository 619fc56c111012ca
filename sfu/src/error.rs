//! Errors of the media plane.

use crate::ids::{ParticipantSid, TrackSid};

/// Everything the SFU can refuse.
///
/// Non-exhaustive: match with a wildcard arm, new refusals may be added.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum SfuError {
    /// `add_participant` for a participant that is already in the room.
    #[error("participant {0} is already in the room")]
    DuplicateParticipant(ParticipantSid),
    /// The participant is not (or no longer) in the room.
    #[error("unknown participant {0}")]
    UnknownParticipant(ParticipantSid),
    /// The participant is known but the peer connection asked for is gone.
    #[error("unknown peer connection")]
    UnknownPeer,
    /// The track is not (or no longer) published in the room.
    #[error("unknown track {0}")]
    UnknownTrack(TrackSid),
    /// A participant tried to subscribe to a track it publishes.
    #[error("a participant cannot subscribe to its own track")]
    OwnTrack,
    /// An offer or answer that does not parse or that str0m refuses.
    #[error("invalid session description: {0}")]
    BadSdp(String),
    /// A trickled ICE candidate that does not parse.
    #[error("invalid ICE candidate: {0}")]
    BadCandidate(String),
    /// A subscriber answer arrived while no server offer was outstanding.
    #[error("no offer is waiting for an answer")]
    NoPendingOffer,
    /// A socket error of the network driver.
    #[error("network: {0}")]
    Io(String),
}
