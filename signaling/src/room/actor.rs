//! The room actor: owns one room's participants and its `MediaRoom`, and is
//! the only task that touches them. Network packets, signal messages and
//! timers all arrive here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use nodo_sfu::net::{NetPacket, ROOM_INBOX_CAPACITY};
use nodo_sfu::str0m::net::Receive;
use nodo_sfu::{MediaRoom, PeerRole, RoomConfig};
use proto::signal_request::Message as In;
use proto::signal_response::Message as Out;
use tokio::sync::{mpsc, oneshot};

use super::participant::Participant;
use super::updates::{Before, UpdateBatch};
use super::{Joined, RoomCmd, RoomManager, RoomSnapshot};
use crate::auth::{unix_now, Claims};
use crate::error::Error;
use crate::ids::{ParticipantIdentity, ParticipantSid, RoomName, RoomSid};
use crate::room::participant::{JoinOptions, V1Join};
use crate::room::SignalSink;

/// Longest the run loop goes on without handing the runtime back. A turn
/// that finds a timer due takes it at once, without awaiting anything, and a
/// room pacing a keyframe out to many subscribers has one due for tens of
/// milliseconds on end; on a one-core node (one tokio worker) the node's UDP
/// reader, the signal and chat sockets and every other room then waited
/// for it, and the audio that arrived meanwhile sat in the socket (A N=50:
/// audio p99.9 16 ms, 3.3 ms since; medians of seven runs). `yield_now`
/// lets the runtime poll its I/O driver before the room goes on.
const MAX_BUSY: Duration = Duration::from_millis(1);

/// One input of the run loop.
enum Input {
    Cmd(RoomCmd),
    Packet(NetPacket),
    Timeout,
    Housekeeping,
}

pub(crate) struct RoomActor {
    pub name: RoomName,
    pub sid: RoomSid,
    pub manager: Arc<RoomManager>,
    pub media: MediaRoom,
    pub participants: HashMap<ParticipantSid, Participant>,
    pub created_at: u64,
    pub metadata: String,
    pub empty_timeout: u32,
    pub departure_timeout: u32,
    pub max_participants: u32,
    /// When the room last became empty, and whether anyone ever joined.
    pub empty_since: Option<Instant>,
    pub ever_joined: bool,
    pub next_session: u64,
    pub inbox: mpsc::Sender<NetPacket>,
    inbox_rx: Option<mpsc::Receiver<NetPacket>>,
    pub closing: bool,
    /// Who waits for the room to be closed (`RoomCmd::Close`).
    pub close_waiters: Vec<oneshot::Sender<()>>,
    /// Participant updates held for the next housekeeping tick (`updates`).
    pub(super) updates: UpdateBatch,
    /// Until when the run loop finds a timer due at every turn (a test's
    /// stand-in for a room pacing out a keyframe).
    #[cfg(test)]
    busy_until: Option<Instant>,
}

impl RoomActor {
    pub fn new(name: RoomName, sid: RoomSid, manager: Arc<RoomManager>) -> Self {
        let now = Instant::now();
        let config = RoomConfig {
            candidates: manager.transport().candidates(),
            peer_ids: manager.peer_ids().clone(),
            metrics: manager.media_metrics().clone(),
            dtls: manager.dtls().clone(),
            name: name.to_string(),
            ..RoomConfig::default()
        };
        let (inbox, inbox_rx) = mpsc::channel(ROOM_INBOX_CAPACITY);
        let d = manager.defaults().clone();
        RoomActor {
            name,
            sid,
            media: MediaRoom::new(config, now),
            participants: HashMap::new(),
            created_at: unix_now(),
            metadata: String::new(),
            empty_timeout: d.empty_timeout,
            departure_timeout: d.departure_timeout,
            max_participants: d.max_participants,
            empty_since: Some(now),
            ever_joined: false,
            next_session: 1,
            inbox,
            inbox_rx: Some(inbox_rx),
            closing: false,
            close_waiters: Vec::new(),
            updates: UpdateBatch::default(),
            #[cfg(test)]
            busy_until: None,
            manager,
        }
    }

    pub async fn run(mut self, mut cmds: mpsc::Receiver<RoomCmd>) {
        let Some(mut net_rx) = self.inbox_rx.take() else {
            return;
        };
        self.manager
            .webhook("room_started", self.room_info(), None, None);
        let mut housekeeping = tokio::time::interval(Duration::from_millis(500));
        let mut yielded_at = Instant::now();
        loop {
            // Also true after the loop slept: one more poll of the driver
            // per wake-up, the price of not telling the two apart.
            if yielded_at.elapsed() >= MAX_BUSY {
                tokio::task::yield_now().await;
                yielded_at = Instant::now();
            }
            let due = self.media.poll_timeout();
            let deadline = tokio::time::Instant::from_std(due);
            // tokio's timer rounds a deadline up to its next millisecond, so
            // a peer whose timer is already due (str0m's pacer asks for one
            // a microsecond after each packet it releases) would wait up to
            // 1 ms for it: a due timer is taken at once instead, still in
            // turn with the other inputs.
            #[cfg(test)]
            let due = match self.busy_until {
                Some(t) if Instant::now() < t => Instant::now(),
                _ => due,
            };
            let due_now = due <= Instant::now();
            let input = tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => Input::Cmd(cmd),
                    None => break,
                },
                Some(pkt) = net_rx.recv() => Input::Packet(pkt),
                () = std::future::ready(()), if due_now => Input::Timeout,
                _ = tokio::time::sleep_until(deadline), if !due_now => Input::Timeout,
                _ = housekeeping.tick() => Input::Housekeeping,
            };
            // A panic here is a bug in this room's code: it must not take
            // the node down or leave this room's participants, routes and
            // counters behind. The room is closed instead (`crash_close`).
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                match input {
                    Input::Cmd(cmd) => self.on_cmd(cmd),
                    Input::Packet(pkt) => {
                        self.on_packet(pkt);
                        // Drain what is already queued before looking at timers again.
                        for _ in 0..64 {
                            match net_rx.try_recv() {
                                Ok(p) => self.on_packet(p),
                                Err(_) => break,
                            }
                        }
                    }
                    Input::Timeout => self.media.handle_timeout(Instant::now()),
                    Input::Housekeeping => self.housekeeping(Instant::now()),
                }
                self.flush();
            }));
            if let Err(panic) = step {
                self.crash_close(panic, &mut cmds);
                return;
            }
            if self.closing {
                break;
            }
        }
        self.close(&mut cmds);
    }

    fn on_packet(&mut self, pkt: NetPacket) {
        let now = Instant::now();
        match Receive::new(pkt.proto, pkt.source, pkt.destination, &pkt.data) {
            Ok(r) => self.media.handle_receive(now, pkt.peer, r),
            Err(e) => tracing::trace!("unparseable packet: {e}"),
        }
    }

    /// The run-loop contract of `nodo_sfu` (see its crate doc): after every
    /// input, send every queued packet and handle every event until both are
    /// empty. Handling an event may call the media room again.
    pub fn flush(&mut self) {
        loop {
            // Polled first: `poll_event` may itself queue packets (a negotiation's drain).
            let event = self.media.poll_event();
            while let Some(t) = self.media.poll_transmit() {
                self.manager.transport().send(&t);
            }
            match event {
                Some(ev) => self.on_sfu_event(ev),
                None => break,
            }
        }
    }

    fn on_cmd(&mut self, cmd: RoomCmd) {
        match cmd {
            RoomCmd::Join {
                claims,
                options,
                signal,
                reply,
            } => {
                let r = self.join(&claims, *options, signal);
                let _ = reply.send(r);
            }
            RoomCmd::Signal { sid, session, msg } => {
                if self
                    .participants
                    .get(&sid)
                    .is_some_and(|p| p.session == session)
                {
                    self.on_signal(&sid, *msg);
                }
            }
            RoomCmd::SignalClosed { sid, session } => {
                if let Some(p) = self.participants.get_mut(&sid) {
                    if p.session == session {
                        p.signal = None;
                        p.signal_lost_at = Some(Instant::now());
                    }
                }
            }
            #[cfg(test)]
            RoomCmd::Crash => panic!("a panic injected by a test"),
            #[cfg(test)]
            RoomCmd::Busy(d) => self.busy_until = Some(Instant::now() + d),
            RoomCmd::Shutdown => {
                let sids: Vec<ParticipantSid> = self.participants.keys().cloned().collect();
                for sid in sids {
                    self.remove_participant(
                        &sid,
                        proto::DisconnectReason::ServerShutdown,
                        proto::leave_request::Action::Reconnect,
                    );
                }
                self.closing = true;
            }
            RoomCmd::Close { done } => {
                self.close_waiters.push(done);
                let sids: Vec<ParticipantSid> = self.participants.keys().cloned().collect();
                for sid in sids {
                    self.remove_participant(
                        &sid,
                        proto::DisconnectReason::RoomDeleted,
                        proto::leave_request::Action::Disconnect,
                    );
                }
                self.closing = true;
            }
            RoomCmd::Configure(s) => {
                if let Some(v) = s.empty_timeout {
                    self.empty_timeout = v;
                }
                if let Some(v) = s.departure_timeout {
                    self.departure_timeout = v;
                }
                if let Some(v) = s.max_participants {
                    self.max_participants = v;
                }
                if let Some(m) = s.metadata {
                    if m != self.metadata {
                        self.metadata = m;
                        let room = self.room_info();
                        for p in self.participants.values_mut() {
                            p.send(Out::RoomUpdate(proto::RoomUpdate {
                                room: Some(room.clone()),
                            }));
                        }
                    }
                }
            }
            RoomCmd::Admin { op, reply } => {
                let _ = reply.send(self.on_admin(*op));
            }
            RoomCmd::Info { reply } => {
                let _ = reply.send(self.snapshot());
            }
        }
    }

    fn snapshot(&self) -> RoomSnapshot {
        RoomSnapshot {
            room: self.room_info(),
            sid: self.sid.clone(),
            name: self.name.clone(),
            participants: self.participants.values().map(|p| p.info.clone()).collect(),
        }
    }

    pub fn room_info(&self) -> proto::Room {
        let publishers = self
            .participants
            .values()
            .filter(|p| !p.info.tracks.is_empty())
            .count();
        proto::Room {
            sid: self.sid.to_string(),
            name: self.name.to_string(),
            empty_timeout: self.empty_timeout,
            departure_timeout: self.departure_timeout,
            max_participants: self.max_participants,
            creation_time: self.created_at as i64,
            creation_time_ms: self.created_at as i64 * 1000,
            metadata: self.metadata.clone(),
            num_participants: self.participants.values().filter(|p| !p.hidden()).count() as u32,
            num_publishers: publishers as u32,
            enabled_codecs: [
                "audio/opus",
                "video/VP8",
                "video/H264",
                "video/VP9",
                "video/AV1",
            ]
            .iter()
            .map(|m| proto::Codec {
                mime: m.to_string(),
                fmtp_line: String::new(),
            })
            .collect(),
            ..Default::default()
        }
    }

    fn server_info(&self) -> proto::ServerInfo {
        proto::ServerInfo {
            edition: proto::server_info::Edition::Standard as i32,
            version: crate::LIVEKIT_COMPAT_VERSION.into(),
            protocol: crate::PROTOCOL_VERSION,
            node_id: self.manager.node_id().to_string(),
            region: String::new(),
            debug_info: format!("nodo {}", env!("CARGO_PKG_VERSION")),
            agent_protocol: 0,
        }
    }

    pub(super) fn join(
        &mut self,
        claims: &Claims,
        options: JoinOptions,
        signal: SignalSink,
    ) -> Result<Joined, Error> {
        if self.closing {
            return Err(Error::RoomClosing);
        }
        if let Some(v1) = options.v1.as_deref() {
            let attributes: usize = v1.attributes.iter().map(|(k, v)| k.len() + v.len()).sum();
            if v1.metadata.len() > super::signal::MAX_METADATA
                || attributes > super::signal::MAX_METADATA
            {
                return Err(Error::InvalidArgument(
                    "join_request metadata or attributes too large",
                ));
            }
        }
        let identity = ParticipantIdentity::new(claims.identity());
        if let Some(resume) = options.resume_sid.clone() {
            return self.resume(&identity, &resume, signal);
        }
        // A new session for an identity that is present evicts the old one.
        if let Some(old) = self.find_identity(&identity) {
            self.remove_participant(
                &old,
                proto::DisconnectReason::DuplicateIdentity,
                proto::leave_request::Action::Disconnect,
            );
        }
        let visible = self.participants.values().filter(|p| !p.hidden()).count() as u32;
        if self.max_participants > 0 && visible >= self.max_participants && !claims.video().hidden {
            return Err(Error::RoomFull);
        }
        let sid = ParticipantSid::new(crate::ids::new_sid("PA_"));
        let mut options = options;
        let v1 = options.v1.take();
        let single = options.single_pc;
        let added = if single {
            self.media
                .add_single_participant(sid.clone(), Instant::now())
        } else {
            self.media.add_participant(sid.clone(), Instant::now())
        };
        added.map_err(Error::Media)?;
        self.media.set_allow_pause(&sid, options.allow_pause);
        let session = self.next_session;
        self.next_session += 1;
        let mut p = Participant::new(&sid, claims, options, signal, session);
        p.info.client_protocol = 0;
        if let Some(v1) = v1.as_deref() {
            // As LiveKit does, only with the grant to change one's own, and
            // within the limits of `update_metadata`.
            if p.grant.can_update_own_metadata() {
                if !v1.metadata.is_empty() {
                    p.info.metadata = v1.metadata.clone();
                }
                for (k, v) in &v1.attributes {
                    if v.is_empty() {
                        p.info.attributes.remove(k);
                    } else {
                        p.info.attributes.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        // A single connection is the client's to offer: nothing is primary
        // on the server's side.
        let subscriber_primary = !single && p.grant.can_subscribe();
        p.primary = if single {
            PeerRole::Single
        } else if subscriber_primary {
            PeerRole::Subscriber
        } else {
            PeerRole::Publisher
        };
        let others: Vec<proto::ParticipantInfo> = self
            .participants
            .values()
            .filter(|o| !o.hidden())
            .map(|o| o.info.clone())
            .collect();
        let join = proto::JoinResponse {
            room: Some(self.room_info()),
            participant: Some(p.info.clone()),
            other_participants: others,
            server_version: crate::LIVEKIT_COMPAT_VERSION.into(),
            ice_servers: self.manager.ice_servers(&sid),
            subscriber_primary,
            ping_timeout: 15,
            ping_interval: 5,
            server_info: Some(self.server_info()),
            sif_trailer: Vec::new(),
            enabled_publish_codecs: Vec::new(),
            fast_publish: p.grant.can_publish(),
            ..Default::default()
        };
        p.send(Out::Join(join));
        if let Some(keys) = self.manager.token_keys() {
            p.refresh_token(keys, Instant::now());
        }
        let auto = p.options.auto_subscribe && p.grant.can_subscribe();
        let hidden = p.hidden();
        let info = p.info.clone();
        let dependent = p.dependent();
        // An earlier session of this identity (just evicted, or gone a moment
        // ago) still held: its departure reaches everyone, the new session
        // excluded, before anything about the new one.
        if self.updates.holds_identity(&info.identity) {
            self.flush_updates();
        }
        self.participants.insert(sid.clone(), p);
        if !dependent {
            self.empty_since = None;
            self.ever_joined = true;
        }
        // Subscribe to what is already flowing.
        if auto {
            let tracks: Vec<_> = self
                .participants
                .values()
                .filter(|o| o.info.sid != sid.as_str())
                .flat_map(|o| {
                    o.info
                        .tracks
                        .iter()
                        .map(|t| nodo_sfu::TrackSid::new(&t.sid))
                })
                .collect();
            for t in tracks {
                let _ = self.subscribe_permitted(&sid, &t);
            }
        }
        // v1: what came with the join, after the subscriptions so that the
        // first answer already fills the client's recvonly sections.
        if let Some(v1) = v1 {
            let V1Join {
                offer, add_tracks, ..
            } = *v1;
            for req in add_tracks {
                self.on_signal(&sid, In::AddTrack(req));
            }
            if let Some(offer) = offer {
                self.on_signal(&sid, In::Offer(offer));
            }
        }
        if !hidden {
            self.announce(&info, Some(&sid));
        }
        tracing::info!(room = %self.name, participant = %info.identity, sid = %sid, single_pc = single, "participant joined");
        self.manager.metrics().joined();
        self.manager.webhook(
            "participant_joined",
            self.room_info(),
            Some(info.clone()),
            None,
        );
        self.manager.notify(super::RoomEvent::ParticipantJoined {
            room: self.name.clone(),
            identity: ParticipantIdentity::new(info.identity.clone()),
        });
        Ok(Joined { sid, session })
    }

    fn resume(
        &mut self,
        identity: &ParticipantIdentity,
        resume_sid: &str,
        signal: SignalSink,
    ) -> Result<Joined, Error> {
        let sid = ParticipantSid::new(resume_sid);
        let session = self.next_session;
        self.next_session += 1;
        let room = self.room_info();
        let server_info = self.server_info();
        let ice_servers = self.manager.ice_servers(&sid);
        let others: Vec<proto::ParticipantInfo> = self
            .participants
            .values()
            .filter(|o| !o.hidden())
            .map(|o| o.info.clone())
            .collect();
        let Some(p) = self
            .participants
            .get_mut(&sid)
            .filter(|p| p.info.identity == identity.as_str())
        else {
            // Nothing to resume: tell the client to start over with a full join.
            let leave = super::Outgoing::One(Box::new(proto::SignalResponse {
                message: Some(Out::Leave(proto::LeaveRequest {
                    can_reconnect: true,
                    reason: proto::DisconnectReason::StateMismatch as i32,
                    action: proto::leave_request::Action::Reconnect as i32,
                    regions: None,
                })),
            }));
            let _ = signal.try_send(leave);
            return Ok(Joined { sid, session: 0 });
        };
        p.signal = Some(signal);
        p.session = session;
        p.signal_lost_at = None;
        p.send(Out::Reconnect(proto::ReconnectResponse {
            ice_servers,
            client_configuration: None,
            server_info: Some(server_info),
            last_message_seq: 0,
        }));
        p.send(Out::Update(proto::ParticipantUpdate {
            participants: others,
        }));
        if let Some(keys) = self.manager.token_keys() {
            p.refresh_token(keys, Instant::now());
        }
        p.send(Out::RoomUpdate(proto::RoomUpdate { room: Some(room) }));
        let _ = self.media.restart_subscriber_ice(&sid);
        tracing::info!(room = %self.name, participant = %identity, "signal resumed");
        Ok(Joined { sid, session })
    }

    pub fn find_identity(&self, identity: &ParticipantIdentity) -> Option<ParticipantSid> {
        self.participants
            .values()
            .find(|p| p.info.identity == identity.as_str())
            .map(|p| p.sid())
    }

    /// Sends a participant's new info to everyone else who can see it, at
    /// once (see `announce` for what may wait).
    pub fn broadcast_update(
        &mut self,
        info: &proto::ParticipantInfo,
        except: Option<&ParticipantSid>,
    ) {
        if self.updates.before_immediate(info) == Before::Flush {
            self.flush_updates();
        }
        // One message, encoded once, for everyone (metadata may be 512 KiB).
        let update = super::SharedResponse::new(proto::SignalResponse {
            message: Some(Out::Update(proto::ParticipantUpdate {
                participants: vec![info.clone()],
            })),
        });
        for (sid, p) in self.participants.iter_mut() {
            if Some(sid) != except {
                p.send_shared(&update);
            }
        }
    }

    /// Removes a participant: tells it why (if its signal is up), unpublishes
    /// its tracks and tells the others it left.
    pub fn remove_participant(
        &mut self,
        sid: &ParticipantSid,
        reason: proto::DisconnectReason,
        action: proto::leave_request::Action,
    ) {
        let Some(mut p) = self.participants.remove(sid) else {
            return;
        };
        p.send(Out::Leave(proto::LeaveRequest {
            can_reconnect: action != proto::leave_request::Action::Disconnect,
            reason: reason as i32,
            action: action as i32,
            regions: None,
        }));
        if let Some((a, b)) = self.media.peer_ids(sid) {
            self.manager.transport().unregister(a);
            self.manager.transport().unregister(b);
        }
        let unpublished = self.media.remove_participant(sid);
        self.manager
            .release_tracks(p.info.tracks.len() + p.pending.len());
        let room = self.room_info();
        if !p.active {
            // Its primary connection never came up.
            self.manager.webhook(
                "participant_connection_aborted",
                room.clone(),
                Some(p.info.clone()),
                None,
            );
        }
        for t in &p.info.tracks {
            self.manager.webhook(
                "track_unpublished",
                room.clone(),
                Some(p.info.clone()),
                Some(t.clone()),
            );
        }
        p.info.state = proto::participant_info::State::Disconnected as i32;
        p.info.disconnect_reason = reason as i32;
        p.info.tracks.clear();
        p.touch();
        if !p.hidden() {
            let info = p.info.clone();
            self.announce(&info, None);
        }
        for t in unpublished {
            for o in self.participants.values_mut() {
                o.send(Out::TrackUnpublished(proto::TrackUnpublishedResponse {
                    track_sid: t.to_string(),
                }));
            }
        }
        // Agents and recorders left alone do not keep the room open.
        if self.empty_since.is_none() && self.participants.values().all(|p| p.dependent()) {
            self.empty_since = Some(Instant::now());
        }
        tracing::info!(room = %self.name, participant = %p.info.identity, ?reason, "participant left");
        self.manager.webhook(
            "participant_left",
            self.room_info(),
            Some(p.info.clone()),
            None,
        );
        self.manager.notify(super::RoomEvent::ParticipantLeft {
            room: self.name.clone(),
            identity: ParticipantIdentity::new(p.info.identity.clone()),
        });
    }

    fn housekeeping(&mut self, now: Instant) {
        if let Some(keys) = self.manager.token_keys() {
            for p in self.participants.values_mut() {
                if p.signal.is_some() && p.refresh_due <= now {
                    p.refresh_token(keys, now);
                }
            }
        }
        let window = Duration::from_secs(u64::from(self.manager.defaults().reconnect_window));
        let lost: Vec<ParticipantSid> = self
            .participants
            .iter()
            .filter(|(_, p)| {
                p.signal_lost_at
                    .is_some_and(|t| now.saturating_duration_since(t) > window)
            })
            .map(|(s, _)| s.clone())
            .collect();
        for sid in lost {
            self.remove_participant(
                &sid,
                proto::DisconnectReason::SignalClose,
                proto::leave_request::Action::Disconnect,
            );
        }
        // After the removals above, so their departures go in this batch.
        self.flush_updates();
        if let Some(since) = self.empty_since {
            let timeout = if self.ever_joined {
                self.departure_timeout
            } else {
                self.empty_timeout
            };
            if now.saturating_duration_since(since) >= Duration::from_secs(u64::from(timeout)) {
                self.closing = true;
            }
        }
    }

    /// Closes the mailbox and answers what is still in it: joins are
    /// refused (the room is closing), close requests wait for the close.
    pub(super) fn refuse_queued(&mut self, cmds: &mut mpsc::Receiver<RoomCmd>) {
        cmds.close();
        while let Ok(cmd) = cmds.try_recv() {
            match cmd {
                RoomCmd::Join { reply, .. } => {
                    let _ = reply.send(Err(Error::RoomClosing));
                }
                RoomCmd::Close { done } => self.close_waiters.push(done),
                _ => {}
            }
        }
    }

    fn close(mut self, cmds: &mut mpsc::Receiver<RoomCmd>) {
        self.manager.remove(&self.name, &self.sid);
        let sids: Vec<ParticipantSid> = self.participants.keys().cloned().collect();
        for sid in sids {
            self.remove_participant(
                &sid,
                proto::DisconnectReason::RoomClosed,
                proto::leave_request::Action::Disconnect,
            );
        }
        self.flush();
        self.refuse_queued(cmds);
        self.manager
            .webhook("room_finished", self.room_info(), None, None);
        self.manager.notify(super::RoomEvent::RoomClosed {
            room: self.name.clone(),
            sid: self.sid.clone(),
        });
        tracing::info!(room = %self.name, "room closed");
        for done in self.close_waiters.drain(..) {
            let _ = done.send(());
        }
    }
}
