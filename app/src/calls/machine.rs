//! The call state machine, as a pure function (no I/O, no time).

use serde::{Deserialize, Serialize};

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ringing,
    Accepted,
    Connected,
    Ended,
    Rejected,
    Missed,
    Cancelled,
    Busy,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ringing => "ringing",
            Status::Accepted => "accepted",
            Status::Connected => "connected",
            Status::Ended => "ended",
            Status::Rejected => "rejected",
            Status::Missed => "missed",
            Status::Cancelled => "cancelled",
            Status::Busy => "busy",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "ringing" => Status::Ringing,
            "accepted" => Status::Accepted,
            "connected" => Status::Connected,
            "ended" => Status::Ended,
            "rejected" => Status::Rejected,
            "missed" => Status::Missed,
            "cancelled" => Status::Cancelled,
            "busy" => Status::Busy,
            _ => return None,
        })
    }

    /// Ringing, accepted or connected: the call still occupies both people.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Ringing | Status::Accepted | Status::Connected)
    }
}

/// Who does something to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Caller,
    Callee,
    /// The node itself (ring timeout, media room events).
    System,
}

/// What happens to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Reject,
    Cancel,
    End,
    RingTimeout,
    /// Both people joined the media room.
    BothJoined,
    /// An accepted call was not connected in time.
    ConnectTimeout,
}

/// The next status, or why the action is refused.
pub fn next(status: Status, action: Action, by: Party) -> Result<Status, String> {
    use Action::*;
    use Status::*;
    if !status.is_active() {
        return Err(format!("the call is already {}", status.as_str()));
    }
    match (status, action, by) {
        (Ringing, Accept, Party::Callee) => Ok(Accepted),
        (Ringing, Reject, Party::Callee) => Ok(Rejected),
        (Ringing, Cancel, Party::Caller) => Ok(Cancelled),
        // Hanging up while it rings: the caller cancels, the callee rejects.
        (Ringing, End, Party::Caller) => Ok(Cancelled),
        (Ringing, End, Party::Callee) => Ok(Rejected),
        (Ringing, RingTimeout, Party::System) => Ok(Missed),
        (Accepted, BothJoined, Party::System) => Ok(Connected),
        (Accepted, ConnectTimeout, Party::System) => Ok(Ended),
        (Accepted | Connected, End, _) => Ok(Ended),
        (_, Accept | Reject, Party::Caller) => Err("only the person called can answer".into()),
        (_, Cancel, Party::Callee) => Err("only the caller can cancel".into()),
        (s, a, _) => Err(format!("cannot {a:?} a call that is {}", s.as_str()).to_lowercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn happy_path() {
        let s = next(Status::Ringing, Action::Accept, Party::Callee).unwrap();
        assert_eq!(s, Status::Accepted);
        let s = next(s, Action::BothJoined, Party::System).unwrap();
        assert_eq!(s, Status::Connected);
        assert_eq!(next(s, Action::End, Party::Caller).unwrap(), Status::Ended);
    }

    #[test]
    fn endings_while_ringing() {
        assert_eq!(
            next(Status::Ringing, Action::Reject, Party::Callee),
            Ok(Status::Rejected)
        );
        assert_eq!(
            next(Status::Ringing, Action::Cancel, Party::Caller),
            Ok(Status::Cancelled)
        );
        assert_eq!(
            next(Status::Ringing, Action::RingTimeout, Party::System),
            Ok(Status::Missed)
        );
        assert_eq!(
            next(Status::Ringing, Action::End, Party::Caller),
            Ok(Status::Cancelled)
        );
        assert_eq!(
            next(Status::Ringing, Action::End, Party::Callee),
            Ok(Status::Rejected)
        );
    }

    #[test]
    fn refusals() {
        assert!(next(Status::Ringing, Action::Accept, Party::Caller).is_err());
        assert!(next(Status::Ringing, Action::Cancel, Party::Callee).is_err());
        assert!(next(Status::Accepted, Action::Accept, Party::Callee).is_err());
        assert!(next(Status::Accepted, Action::RingTimeout, Party::System).is_err());
        assert_eq!(
            next(Status::Accepted, Action::ConnectTimeout, Party::System),
            Ok(Status::Ended)
        );
        assert!(next(Status::Connected, Action::ConnectTimeout, Party::System).is_err());
        for done in [
            Status::Ended,
            Status::Rejected,
            Status::Missed,
            Status::Cancelled,
            Status::Busy,
        ] {
            let e = next(done, Action::End, Party::Caller).unwrap_err();
            assert!(e.contains("already"), "{e}");
        }
    }
}
