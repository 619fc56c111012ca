//! Errors of the media plane.

use crate::ids::{ParticipantSid, TrackSid};

/// Everything the SFU can refuse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SfuError {
    #[error("participant {0} is already in the room")]
    DuplicateParticipant(ParticipantSid),
    #[error("unknown participant {0}")]
    UnknownParticipant(ParticipantSid),
    #[error("unknown peer connection")]
    UnknownPeer,
    #[error("unknown track {0}")]
    UnknownTrack(TrackSid),
    #[error("a participant cannot subscribe to its own track")]
    OwnTrack,
    #[error("invalid session description: {0}")]
    BadSdp(String),
    #[error("invalid ICE candidate: {0}")]
    BadCandidate(String),
    #[error("no offer is waiting for an answer")]
    NoPendingOffer,
    #[error("network: {0}")]
    Io(String),
}
