//! Closing a room whose actor panicked.
//!
//! A panic in a room actor is a bug, and the room's own state can no longer
//! be trusted, so nothing here asks the media room to do more than look up a
//! peer's ids. What other parts of the node share is put right: the room's
//! name is freed, every participant is told to leave and its routes are
//! dropped, reserved tracks are given back, waiting callers are answered,
//! and `room_finished` / `RoomClosed` are reported as for a normal close (so
//! the app ends the calls held in it).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use livekit_protocol as proto;
use proto::signal_response::Message as Out;
use tokio::sync::mpsc;

use super::actor::RoomActor;
use super::{RoomCmd, RoomEvent};
use crate::ids::ParticipantIdentity;

/// The message a panic carried, for the log.
fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

impl RoomActor {
    pub(super) fn crash_close(
        mut self,
        panic: Box<dyn Any + Send>,
        cmds: &mut mpsc::Receiver<RoomCmd>,
    ) {
        tracing::error!(
            room = %self.name,
            participants = self.participants.len(),
            "room actor panicked ({}): closing the room",
            panic_message(panic.as_ref())
        );
        self.manager.remove(&self.name, &self.sid);
        let room = self.room_info();
        let transport = self.manager.transport().clone();
        let participants: Vec<_> = self.participants.drain().collect();
        for (sid, mut p) in participants {
            p.send(Out::Leave(proto::LeaveRequest {
                can_reconnect: false,
                reason: proto::DisconnectReason::RoomClosed as i32,
                action: proto::leave_request::Action::Disconnect as i32,
                regions: None,
            }));
            let media = &self.media;
            if let Ok(Some((a, b))) = catch_unwind(AssertUnwindSafe(|| media.peer_ids(&sid))) {
                transport.unregister(a);
                transport.unregister(b);
            }
            self.manager
                .release_tracks(p.info.tracks.len() + p.pending.len());
            p.info.state = proto::participant_info::State::Disconnected as i32;
            p.info.disconnect_reason = proto::DisconnectReason::RoomClosed as i32;
            self.manager
                .webhook("participant_left", room.clone(), Some(p.info.clone()), None);
            self.manager.notify(RoomEvent::ParticipantLeft {
                room: self.name.clone(),
                identity: ParticipantIdentity::new(p.info.identity.clone()),
            });
        }
        self.refuse_queued(cmds);
        self.manager.webhook("room_finished", room, None, None);
        self.manager.notify(RoomEvent::RoomClosed {
            room: self.name.clone(),
            sid: self.sid.clone(),
        });
        for done in self.close_waiters.drain(..) {
            let _ = done.send(());
        }
    }
}
