//! Participant updates held back and sent in batches, as LiveKit does.
//!
//! A participant who publishes nothing (a viewer, a listener, an agent
//! waiting) joining, becoming active or leaving is news nobody needs within
//! the millisecond. Sent at once, N such participants joining a room make
//! ~N² signal messages (each join and each activation told to everyone), and
//! a room of a thousand viewers spends its joins writing them. So, in a
//! busy room, those updates wait for the room's next housekeeping tick (at most 500 ms; LiveKit
//! waits up to 3 s) and go out as one `ParticipantUpdate` listing everyone
//! who changed, the newest info of each. Updates about publishers, and every
//! change of name, metadata, attributes or permission, still go at once;
//! one of those drops the held update of the same participant (it carries
//! newer info).
//!
//! Small rooms, and rooms where little happens, do not wait: an update goes
//! at once while the messages sent at once in the current 500 ms window stay
//! within [`IMMEDIATE_BUDGET`] (a viewer joining a call of a few people is
//! seen at once, as before; in a room of 1,000, one announcement per window
//! goes at once and the rest of a burst waits). Once something is held,
//! everything after it is held too, so nothing overtakes. And a held
//! participant who sends data is announced at once, before its packet is
//! forwarded. (Data and signaling travel on different connections, so a
//! client may still see that packet before the update; LiveKit's SDKs then
//! drop it, as they would against LiveKit within its 3 s.)
//!
//! Order is kept where clients depend on it: LiveKit clients take a
//! `DISCONNECTED` info by identity, so a join, or an update sent at once,
//! about a new session of an identity whose old session is still held
//! flushes the batch first; and no one is sent info with its own identity.

use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_response::Message as Out;

use super::actor::RoomActor;
use crate::ids::ParticipantSid;

/// The window in which messages sent at once are counted; the room's
/// housekeeping tick, which flushes what is held, has the same period.
pub(crate) const HOLD: Duration = Duration::from_millis(500);

/// Participant-update messages a room sends at once per [`HOLD`] window
/// before it holds further news for the next tick.
pub(crate) const IMMEDIATE_BUDGET: usize = 1_000;

/// The held updates, in the order they were first queued, at most one per
/// participant session.
pub(crate) struct UpdateBatch {
    infos: Vec<proto::ParticipantInfo>,
    /// Messages that may go at once per window.
    budget: usize,
    /// The current window: when it began and the messages sent at once in it.
    window: Option<(Instant, usize)>,
}

/// What an update sent at once must do about the batch first.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Before {
    /// Nothing held about that identity (or only about that same session,
    /// now dropped as superseded).
    Nothing,
    /// Another session of the identity is held: send the batch first.
    Flush,
}

/// A batch is split into `ParticipantUpdate`s of about this many bytes
/// (LiveKit: 128 KiB), so a mass reconnect does not make one huge message.
pub(crate) const UPDATE_CHUNK_BYTES: usize = 64 * 1024;

impl Default for UpdateBatch {
    fn default() -> Self {
        UpdateBatch::with_budget(IMMEDIATE_BUDGET)
    }
}

impl UpdateBatch {
    pub fn with_budget(budget: usize) -> Self {
        UpdateBatch {
            infos: Vec::new(),
            budget,
            window: None,
        }
    }

    /// Whether news arriving at `now` for `recipients` participants must
    /// wait: not when nothing is held and the window's budget has room for
    /// it (it then goes at once and is counted).
    pub fn must_wait(&mut self, now: Instant, recipients: usize) -> bool {
        let (start, sent) = match self.window {
            Some((start, sent)) if now.saturating_duration_since(start) < HOLD => (start, sent),
            _ => (now, 0),
        };
        if self.infos.is_empty() && sent + recipients <= self.budget {
            self.window = Some((start, sent + recipients));
            return false;
        }
        self.window = Some((start, sent));
        true
    }

    /// Whether an update about session `sid` is held.
    pub fn holds(&self, sid: &str) -> bool {
        self.infos.iter().any(|i| i.sid == sid)
    }

    /// Whether an update about any session of `identity` is held.
    pub fn holds_identity(&self, identity: &str) -> bool {
        self.infos.iter().any(|i| i.identity == identity)
    }

    /// Holds `info`, replacing what was held for the same session (in place:
    /// its place in the order is that of its first update).
    pub fn queue(&mut self, info: proto::ParticipantInfo) {
        match self.infos.iter_mut().find(|i| i.sid == info.sid) {
            Some(held) => *held = info,
            None => self.infos.push(info),
        }
    }

    /// Called before `info` is sent at once.
    pub fn before_immediate(&mut self, info: &proto::ParticipantInfo) -> Before {
        if self
            .infos
            .iter()
            .any(|i| i.identity == info.identity && i.sid != info.sid)
        {
            return Before::Flush;
        }
        self.infos.retain(|i| i.sid != info.sid);
        Before::Nothing
    }

    pub fn is_empty(&self) -> bool {
        self.infos.is_empty()
    }

    /// Everything held, as chunks of at most about `UPDATE_CHUNK_BYTES`
    /// encoded (an info larger than that is a chunk of its own).
    pub fn take_chunks(&mut self) -> Vec<Vec<proto::ParticipantInfo>> {
        use prost::Message as _;
        let mut chunks = Vec::new();
        let mut chunk = Vec::new();
        let mut size = 0;
        for info in self.infos.drain(..) {
            let len = info.encoded_len();
            if !chunk.is_empty() && size + len > UPDATE_CHUNK_BYTES {
                chunks.push(std::mem::take(&mut chunk));
                size = 0;
            }
            size += len;
            chunk.push(info);
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        chunks
    }
}

impl RoomActor {
    /// A participant joined, became active or left: a publisher's news goes
    /// at once; anyone else's too while the window's budget allows and
    /// nothing is held, else it waits for the next flush (module doc).
    /// `except` is the participant itself, which a flush never tells about
    /// itself anyway.
    pub fn announce(&mut self, info: &proto::ParticipantInfo, except: Option<&ParticipantSid>) {
        // Everyone but the participant itself (gone already, for a leave).
        let recipients = self
            .participants
            .values()
            .filter(|p| p.info.sid != info.sid)
            .count();
        if info.is_publisher || !self.updates.must_wait(Instant::now(), recipients) {
            self.broadcast_update(info, except);
        } else {
            self.updates.queue(info.clone());
        }
    }

    /// Sends participant `sid`'s held update now (it is about to be named
    /// in something the others receive, such as its data).
    pub fn release_update(&mut self, sid: &ParticipantSid) {
        if !self.updates.holds(sid.as_str()) {
            return;
        }
        if let Some(info) = self.participants.get(sid).map(|p| p.info.clone()) {
            self.broadcast_update(&info, Some(sid));
        }
    }

    /// Sends the held participant updates: one `ParticipantUpdate` (or a few,
    /// for a large batch) to each participant, without its own info.
    pub fn flush_updates(&mut self) {
        if self.updates.is_empty() {
            return;
        }
        let chunks = self.updates.take_chunks();
        for chunk in chunks {
            // One encoding for everyone the chunk says nothing about; those
            // it names get it without themselves, nor another session of
            // their identity (clients would take that info as their own).
            let shared = super::SharedResponse::new(proto::SignalResponse {
                message: Some(Out::Update(proto::ParticipantUpdate {
                    participants: chunk.clone(),
                })),
            });
            for p in self.participants.values_mut() {
                let own = p.info.identity.as_str();
                if !chunk.iter().any(|i| i.identity == own) {
                    p.send_shared(&shared);
                    continue;
                }
                let participants: Vec<proto::ParticipantInfo> = chunk
                    .iter()
                    .filter(|i| i.identity != own)
                    .cloned()
                    .collect();
                if !participants.is_empty() {
                    p.send(Out::Update(proto::ParticipantUpdate { participants }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(identity: &str, sid: &str, version: u32, state: i32) -> proto::ParticipantInfo {
        proto::ParticipantInfo {
            identity: identity.into(),
            sid: sid.into(),
            version,
            state,
            ..Default::default()
        }
    }

    const JOINED: i32 = proto::participant_info::State::Joined as i32;
    const ACTIVE: i32 = proto::participant_info::State::Active as i32;
    const GONE: i32 = proto::participant_info::State::Disconnected as i32;

    #[test]
    fn one_entry_per_session_with_its_newest_info_in_first_order() {
        let mut b = UpdateBatch::default();
        b.queue(info("ann", "PA_1", 1, JOINED));
        b.queue(info("bo", "PA_2", 1, JOINED));
        b.queue(info("ann", "PA_1", 2, ACTIVE));
        // A new session of bo after the old one left: both, old first.
        b.queue(info("bo", "PA_2", 2, GONE));
        b.queue(info("bo", "PA_3", 1, JOINED));
        let chunks = b.take_chunks();
        assert_eq!(chunks.len(), 1);
        let got: Vec<_> = chunks[0]
            .iter()
            .map(|i| (i.sid.as_str(), i.version, i.state))
            .collect();
        assert_eq!(
            got,
            [("PA_1", 2, ACTIVE), ("PA_2", 2, GONE), ("PA_3", 1, JOINED)]
        );
        assert!(b.is_empty());
        assert!(b.take_chunks().is_empty());
    }

    #[test]
    fn an_immediate_update_supersedes_its_session_and_orders_after_an_older_one() {
        let mut b = UpdateBatch::default();
        b.queue(info("ann", "PA_1", 1, JOINED));
        b.queue(info("cy", "PA_5", 1, JOINED));
        // ann publishes: her update goes at once, the held one is dropped.
        assert_eq!(
            b.before_immediate(&info("ann", "PA_1", 3, ACTIVE)),
            Before::Nothing
        );
        let left: Vec<_> = b.take_chunks().concat();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].identity, "cy");
        // cy's old session left (held), a new session publishes at once:
        // the departure must reach clients first.
        b.queue(info("cy", "PA_5", 2, GONE));
        assert_eq!(
            b.before_immediate(&info("cy", "PA_6", 1, ACTIVE)),
            Before::Flush
        );
        assert!(!b.is_empty(), "the caller flushes");
    }

    #[test]
    fn news_goes_at_once_within_the_budget_and_what_follows_waits() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = UpdateBatch::with_budget(10);
        assert!(!b.must_wait(t0, 4), "4 of 10");
        assert!(!b.must_wait(t0 + ms(10), 6), "10 of 10");
        assert!(b.must_wait(t0 + ms(20), 1), "over the budget");
        b.queue(info("bo", "PA_2", 1, JOINED));
        assert!(b.holds("PA_2") && b.holds_identity("bo") && !b.holds("PA_1"));
        // A new window, but something is held: nothing overtakes it.
        assert!(b.must_wait(t0 + ms(600), 1));
        assert_eq!(b.take_chunks().concat().len(), 1);
        assert!(!b.must_wait(t0 + ms(610), 9), "the new window's budget");
        assert!(b.must_wait(t0 + ms(620), 2));
        // A room larger than the budget holds everything.
        let mut big = UpdateBatch::with_budget(10);
        assert!(big.must_wait(t0, 11));
    }

    #[test]
    fn a_large_batch_is_split_by_encoded_size() {
        let mut b = UpdateBatch::default();
        let meta = "m".repeat(1000);
        for n in 0..200 {
            let mut i = info(&format!("u{n}"), &format!("PA_{n}"), 1, JOINED);
            i.metadata = meta.clone();
            b.queue(i);
        }
        let chunks = b.take_chunks();
        assert!(chunks.len() >= 3, "{} chunks", chunks.len());
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 200);
        for c in &chunks {
            let bytes: usize = c.iter().map(prost::Message::encoded_len).sum();
            assert!(bytes <= UPDATE_CHUNK_BYTES, "{bytes}");
        }
        // In order across chunks.
        let flat: Vec<_> = chunks.concat().into_iter().map(|i| i.sid).collect();
        let want: Vec<_> = (0..200).map(|n| format!("PA_{n}")).collect();
        assert_eq!(flat, want);
    }
}
