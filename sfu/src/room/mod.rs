//! The sans-IO media room: every peer connection of one room, and the
//! forwarding between them. Time and network input come in as arguments;
//! packets to send and events for signaling come out of `poll_*`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use str0m::media::Mid;
use str0m::net::{Receive, Transmit};
use str0m::Input;

use crate::error::SfuError;
use crate::ids::{Layer, ParticipantSid, PeerId, PeerIds, PeerRole, TrackKind, TrackSid};
use crate::metrics::{RoomMetrics, SfuMetrics};
use crate::peer::{DtlsIdentity, LocalCandidates, Peer};
use crate::rewrite::Rewriter;
use crate::track::{LayerInfo, Subscription, SubscriptionSettings, Track};

mod bandwidth;
mod drive;
mod dynacast;
mod forward;
mod keyframes;
mod negotiate;
mod reports;
mod single;
pub(crate) use dynacast::Dynacast;
pub use single::OfferAnswer;
pub(crate) use single::Sections;
#[cfg(test)]
mod tests;

/// What the room tells its owner.
#[derive(Debug, Clone, PartialEq)]
pub enum SfuEvent {
    /// A new server offer for the participant's subscriber connection.
    SubscriberOffer {
        participant: ParticipantSid,
        sdp: String,
    },
    /// A peer connection's ICE+DTLS came up.
    Connected {
        participant: ParticipantSid,
        role: PeerRole,
    },
    /// A peer connection lost ICE connectivity or closed.
    Disconnected {
        participant: ParticipantSid,
        role: PeerRole,
    },
    /// The publisher stopped sending a track: its offer turned the track's
    /// section inactive (the client unpublished it). The track is removed.
    TrackEnded {
        participant: ParticipantSid,
        track: TrackSid,
    },
    /// Media of a published track started flowing.
    TrackMedia {
        participant: ParticipantSid,
        track: TrackSid,
    },
    /// A data-channel message from a participant's publisher connection.
    Data {
        participant: ParticipantSid,
        reliable: bool,
        data: Vec<u8>,
    },
    /// Active speakers changed: `(participant, level 0..1, active)`.
    Speakers(Vec<(ParticipantSid, f32, bool)>),
    /// Periodic connection quality: `(participant, score 1..5)`.
    Quality(Vec<(ParticipantSid, f32)>),
    /// A peer's local ICE ufrag (new peer or ICE restart), for the demultiplexer.
    Ufrag { peer: PeerId, ufrag: String },
    /// A subscription's downstream m-line is negotiated; the subscriber now receives it.
    Subscribed {
        participant: ParticipantSid,
        track: TrackSid,
    },
    /// Dynacast: the highest layer any subscriber of a video track wants
    /// changed (`None`: nobody receives it, every layer may pause). Told to
    /// the publisher as LiveKit's `subscribed_quality_update`.
    SubscribedQuality {
        publisher: ParticipantSid,
        track: TrackSid,
        /// Lower-case codec name (`vp8`), as livekit-client names it.
        codec: String,
        /// Whether the track is sent in simulcast layers.
        simulcast: bool,
        max: Option<Layer>,
    },
    /// Signaling v1: the participant's single connection needs a new offer
    /// from the client, with this many more recvonly sections of each kind
    /// (both 0: an offer with none added). LiveKit's
    /// `MediaSectionsRequirement`.
    MediaSections {
        participant: ParticipantSid,
        audio: u32,
        video: u32,
    },
    /// Subscribed video streams that stopped (no layer the publisher sends
    /// is arriving) or started again; told to the subscribers as LiveKit's
    /// `stream_state_update`.
    StreamStates(Vec<StreamState>),
}

/// One subscription's stream state change (see [`SfuEvent::StreamStates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub subscriber: ParticipantSid,
    pub publisher: ParticipantSid,
    pub track: TrackSid,
    pub paused: bool,
}

/// Room-wide tuning, documented where it is set.
#[derive(Debug, Clone)]
pub struct RoomConfig {
    /// Host candidates to advertise.
    pub candidates: LocalCandidates,
    /// Fewest milliseconds between two keyframe requests to a publisher layer.
    pub pli_throttle: Duration,
    /// How often active speakers are computed.
    pub speaker_interval: Duration,
    /// How often connection quality is reported.
    pub quality_interval: Duration,
    /// Where peer ids come from: give every room of a node a clone of one
    /// allocator so ids are unique node-wide.
    pub peer_ids: PeerIds,
    /// The certificate every peer connection presents (share one node-wide).
    pub dtls: DtlsIdentity,
    /// Where the room's counters go (a detached set by default).
    pub metrics: SfuMetrics,
    /// The room's name, as the `room` label of its per-room series.
    pub name: String,
    /// Dynacast: how long fewer layers must be wanted before the publisher
    /// is told to pause the ones above (more are asked for at once).
    pub dynacast_pause_delay: Duration,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            candidates: LocalCandidates::default(),
            pli_throttle: Duration::from_millis(300),
            speaker_interval: Duration::from_millis(500),
            quality_interval: Duration::from_secs(5),
            peer_ids: PeerIds::new(),
            dtls: DtlsIdentity::default(),
            metrics: SfuMetrics::default(),
            name: String::new(),
            dynacast_pause_delay: Duration::from_secs(5),
        }
    }
}

struct ParticipantPeers {
    publisher: PeerId,
    subscriber: PeerId,
}

/// Audio level (dBov magnitude, 0 = loudest) at or below which a packet counts as voiced.
const ACTIVE_LEVEL: i8 = 40;
/// Share of voiced packets in a speaker window for a participant to count as speaking.
const ACTIVE_SHARE: f32 = 0.3;
/// How often layer targets and bitrates are re-evaluated.
const LAYER_TICK: Duration = Duration::from_millis(250);
/// Most peer timeouts one `handle_timeout` call hands out. The packets they
/// release go out when the owner flushes after the call; a turn that timed
/// out every subscriber of a big room at once held the first one's packet
/// back for the whole turn (150 subscribers: ~1.5 ms), which their
/// estimators read as a growing network delay. The rest stay due, and
/// `poll_timeout` says so.
const MAX_TIMEOUTS_PER_CALL: usize = 32;

/// All the media state of one room.
pub struct MediaRoom {
    config: RoomConfig,
    /// Boxed: an `Rtc` is ~10 KiB, and a map of them inline paid that for
    /// every empty slot of its capacity and moved them all on each growth.
    peers: HashMap<PeerId, Box<Peer>>,
    participants: HashMap<ParticipantSid, ParticipantPeers>,
    tracks: HashMap<TrackSid, Track>,
    /// Publisher (peer, mid) -> track.
    track_by_mid: HashMap<(PeerId, Mid), TrackSid>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    /// Peers with output to drain (each also flagged `Peer::dirty`, so marking is O(1)).
    dirty: Vec<PeerId>,
    /// Peer timers, earliest first; an entry is current while it equals `Peer::scheduled`.
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    /// Some subscriber connection has changes waiting for an offer.
    negotiation_due: bool,
    /// Latest input time (see `advance`); `poll_event` drains with it.
    now: Instant,
    speakers: HashSet<ParticipantSid>,
    next_speaker_tick: Instant,
    next_quality_tick: Instant,
    next_layer_tick: Instant,
    last_layer_tick: Instant,
    /// When a held-back keyframe request may go out (see `keyframes`).
    keyframe_retry: Option<Instant>,
    /// This room's counters (flushed to the node's after every drive).
    metrics: RoomMetrics,
}

impl MediaRoom {
    /// An empty room; its peer ids come from `config.peer_ids`.
    pub fn new(config: RoomConfig, now: Instant) -> MediaRoom {
        let metrics = config.metrics.room(&config.name);
        MediaRoom {
            metrics,
            next_speaker_tick: now + config.speaker_interval,
            next_quality_tick: now + config.quality_interval,
            next_layer_tick: now + LAYER_TICK,
            last_layer_tick: now,
            config,
            peers: HashMap::new(),
            participants: HashMap::new(),
            tracks: HashMap::new(),
            track_by_mid: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            timers: BinaryHeap::new(),
            negotiation_due: false,
            now,
            speakers: HashSet::new(),
            keyframe_retry: None,
        }
    }

    /// Creates the participant's subscriber connection and queues its first
    /// offer (with the data channels), made at the next `poll_event`. The
    /// publisher connection gets its id now and is built when the client
    /// first offers on it (or trickles a candidate for it): LiveKit clients
    /// told `subscriber_primary` negotiate it only to publish or send data,
    /// and a participant who never does costs one connection, not two.
    pub fn add_participant(&mut self, sid: ParticipantSid, now: Instant) -> Result<(), SfuError> {
        self.add(sid, PeerRole::Subscriber, now)
    }

    /// Creates the participant's one connection of signaling v1, which the
    /// client offers (see `answer_offer`).
    pub fn add_single_participant(
        &mut self,
        sid: ParticipantSid,
        now: Instant,
    ) -> Result<(), SfuError> {
        self.add(sid, PeerRole::Single, now)
    }

    /// Registers a participant with the one connection built at join: its
    /// subscriber (v0; the publisher only gets its id) or its single one.
    fn add(&mut self, sid: ParticipantSid, role: PeerRole, now: Instant) -> Result<(), SfuError> {
        self.advance(now);
        if self.participants.contains_key(&sid) {
            return Err(SfuError::DuplicateParticipant(sid));
        }
        let publisher = self.config.peer_ids.next();
        let subscriber = if role == PeerRole::Single {
            publisher
        } else {
            self.config.peer_ids.next()
        };
        self.create_peer(subscriber, &sid, role, now);
        self.participants.insert(
            sid,
            ParticipantPeers {
                publisher,
                subscriber,
            },
        );
        self.drive(now);
        Ok(())
    }

    /// Builds one peer connection and queues what building it produced (its
    /// ufrag for the demultiplexer, its local candidates; a subscriber's
    /// first offer).
    fn create_peer(&mut self, id: PeerId, sid: &ParticipantSid, role: PeerRole, now: Instant) {
        let mut peer = Peer::new(
            id,
            sid.clone(),
            role,
            &self.config.candidates,
            &self.config.dtls,
            now,
        );
        let ufrag = peer.local_ufrag();
        self.events.push_back(SfuEvent::Ufrag { peer: id, ufrag });
        if role == PeerRole::Subscriber {
            peer.needs_offer = true;
            self.negotiation_due = true;
        }
        peer.scheduled = Some(now);
        self.timers.push(Reverse((now, id)));
        self.peers.insert(id, Box::new(peer));
        // Building the Rtc added the local candidates: drain it.
        self.mark_dirty(id);
    }

    /// The participant's publisher (or single) connection, built on first
    /// use.
    pub(super) fn publisher_peer(
        &mut self,
        sid: &ParticipantSid,
        now: Instant,
    ) -> Result<PeerId, SfuError> {
        let id = self.peer_id(sid, PeerRole::Publisher)?;
        if !self.peers.contains_key(&id) {
            self.create_peer(id, sid, PeerRole::Publisher, now);
        }
        Ok(id)
    }

    /// Peer ids of a participant, `(publisher, subscriber)`.
    pub fn peer_ids(&self, sid: &ParticipantSid) -> Option<(PeerId, PeerId)> {
        self.participants
            .get(sid)
            .map(|p| (p.publisher, p.subscriber))
    }

    /// Closes both connections, unpublishes the participant's tracks and drops
    /// its subscriptions. Returns the tracks that were unpublished.
    pub fn remove_participant(&mut self, sid: &ParticipantSid) -> Vec<TrackSid> {
        let Some(pp) = self.participants.remove(sid) else {
            return Vec::new();
        };
        for id in [pp.publisher, pp.subscriber] {
            if let Some(mut peer) = self.peers.remove(&id) {
                peer.rtc.disconnect();
            }
        }
        self.track_by_mid
            .retain(|(peer, _), _| *peer != pp.publisher);
        let owned: Vec<TrackSid> = self
            .tracks
            .values()
            .filter(|t| &t.owner == sid)
            .map(|t| t.sid.clone())
            .collect();
        for t in &owned {
            self.unpublish(t);
        }
        for track in self.tracks.values_mut() {
            track.subscribers.retain(|s| &s.subscriber != sid);
        }
        self.speakers.remove(sid);
        owned
    }

    /// Announces a track the participant is about to publish (LiveKit
    /// `add_track`); media is matched to it by `cid` (the msid track id), or by
    /// kind when no cid matches.
    pub fn expect_track(
        &mut self,
        owner: &ParticipantSid,
        sid: TrackSid,
        cid: String,
        kind: TrackKind,
        layers: Vec<LayerInfo>,
        codec: Option<String>,
    ) -> Result<(), SfuError> {
        if !self.participants.contains_key(owner) {
            return Err(SfuError::UnknownParticipant(owner.clone()));
        }
        self.tracks.insert(
            sid.clone(),
            Track {
                sid,
                owner: owner.clone(),
                kind,
                source: None,
                cid,
                simulcast: layers.len() > 1,
                layers,
                last_packet: [None; 3],
                rates: Default::default(),
                last_pli: [None; 3],
                pending_pli: [None; 3],
                awaiting_keyframe: [None; 3],
                gaps: Default::default(),
                nack_ssrc: [None; 3],
                subscribers: Vec::new(),
                audio_active_packets: 0,
                audio_packets: 0,
                audio_level_sum: 0.0,
                codecs: HashMap::new(),
                codec,
                muted: false,
                dynacast: Dynacast::new(self.now),
                audio_last: None,
            },
        );
        Ok(())
    }

    /// Removes a published track and stops it at every subscriber.
    pub fn unpublish(&mut self, track: &TrackSid) {
        let Some(t) = self.tracks.remove(track) else {
            return;
        };
        if let Some(src) = t.source {
            self.track_by_mid.remove(&src);
        }
        for sub in t.subscribers {
            self.stop_sub_mline(sub.peer, sub.mid, sub.rewriter);
        }
    }

    /// Sets a track's mute flag (packets keep flowing; clients stop rendering).
    pub fn set_muted(&mut self, track: &TrackSid, muted: bool) {
        if let Some(t) = self.tracks.get_mut(track) {
            if t.muted && !muted {
                // Its media restarts: not a paused stream while it does.
                let now = self.now;
                t.subscribers.iter_mut().for_each(|s| s.enabled_since = now);
            }
            t.muted = muted;
        }
    }

    /// The publisher's client track id and kind of a track.
    pub fn track_kind(&self, track: &TrackSid) -> Option<TrackKind> {
        self.tracks.get(track).map(|t| t.kind)
    }

    /// Subscribes a participant to a track: adds a send m-line at the next offer.
    pub fn subscribe(
        &mut self,
        subscriber: &ParticipantSid,
        track: &TrackSid,
    ) -> Result<(), SfuError> {
        let peer = self.peer_id(subscriber, PeerRole::Subscriber)?;
        let t = self
            .tracks
            .get_mut(track)
            .ok_or_else(|| SfuError::UnknownTrack(track.clone()))?;
        if &t.owner == subscriber {
            return Err(SfuError::OwnTrack);
        }
        if t.subscribers.iter().any(|s| s.peer == peer) {
            return Ok(());
        }
        t.subscribers.push(Subscription {
            subscriber: subscriber.clone(),
            peer,
            mid: None,
            settings: SubscriptionSettings::default(),
            current: None,
            target: Layer::High,
            rewriter: None,
            pt_map: Vec::new(),
            bwe_cap: Layer::High,
            bwe_decided: false,
            bwe_hold_until: None,
            congested_at: None,
            bwe_hold: Duration::ZERO,
            enabled_since: self.now,
            stream_paused: false,
            bwe_paused: false,
        });
        let track = track.clone();
        self.dynacast_track(&track, self.now);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.needs_offer = true;
            self.negotiation_due = true;
        }
        Ok(())
    }

    /// Ends a subscription; its m-line is stopped at the next offer.
    pub fn unsubscribe(&mut self, subscriber: &ParticipantSid, track: &TrackSid) {
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        let Some(pos) = t
            .subscribers
            .iter()
            .position(|s| &s.subscriber == subscriber)
        else {
            return;
        };
        let sub = t.subscribers.swap_remove(pos);
        self.stop_sub_mline(sub.peer, sub.mid, sub.rewriter);
    }

    /// Whether a participant is subscribed to a track.
    pub fn is_subscribed(&self, subscriber: &ParticipantSid, track: &TrackSid) -> bool {
        self.tracks
            .get(track)
            .is_some_and(|t| t.subscribers.iter().any(|s| &s.subscriber == subscriber))
    }

    /// Applies a subscriber's track settings (pause, quality, rendered size).
    /// A keyframe request for a new target layer is queued on return.
    pub fn update_subscription(
        &mut self,
        subscriber: &ParticipantSid,
        track: &TrackSid,
        settings: SubscriptionSettings,
        now: Instant,
    ) {
        self.advance(now);
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        let Some(sub) = t
            .subscribers
            .iter_mut()
            .find(|s| &s.subscriber == subscriber)
        else {
            return;
        };
        let resumed = sub.settings.disabled && !settings.disabled;
        sub.settings = settings;
        if resumed {
            // Restart at a keyframe.
            sub.current = None;
            sub.enabled_since = now;
        }
        self.dynacast_track(track, now);
        self.retarget(track, now);
        self.drive(now);
    }

    /// Whether video the participant subscribes to may be paused when its
    /// downlink estimate cannot carry even the lowest layer (LiveKit's
    /// `subscriber_allow_pause`; off by default, as in LiveKit: the lowest
    /// layer is then sent whatever the estimate).
    pub fn set_allow_pause(&mut self, sid: &ParticipantSid, allow: bool) {
        if let Ok(id) = self.peer_id(sid, PeerRole::Subscriber) {
            if let Some(p) = self.peers.get_mut(&id) {
                p.allow_pause = allow;
            }
        }
    }

    /// Sends a data message to one participant's subscriber connection. Once
    /// the channel is open, the packet carrying it is queued on return;
    /// reliable messages sent before that wait for it to open.
    pub fn send_data(&mut self, to: &ParticipantSid, reliable: bool, data: &[u8], now: Instant) {
        self.advance(now);
        let Ok(id) = self.peer_id(to, PeerRole::Subscriber) else {
            return;
        };
        if let Some(peer) = self.peers.get_mut(&id) {
            peer.send_data(reliable, data);
            self.mark_dirty(id);
            self.drive(now);
        }
    }

    /// A datagram (or framed TCP packet) for one of our peers.
    pub fn handle_receive(&mut self, now: Instant, peer: PeerId, receive: Receive) {
        self.advance(now);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if let Err(e) = p.rtc.handle_input(Input::Receive(now, receive)) {
            tracing::debug!(?peer, "input rejected: {e}");
        }
        self.mark_dirty(peer);
        self.drive(now);
    }

    /// Advances time: peers whose timers expired (at most
    /// [`MAX_TIMEOUTS_PER_CALL`] of them: more may still be due after it),
    /// periodic speaker/quality/layer work.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance(now);
        let mut handed = 0;
        while let Some(Reverse((at, id))) = self.timers.peek().copied() {
            if at > now || handed == MAX_TIMEOUTS_PER_CALL {
                break;
            }
            self.timers.pop();
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if p.scheduled != Some(at) {
                continue; // superseded by an earlier entry
            }
            p.scheduled = None;
            if p.next_timeout <= now {
                handed += 1;
                if p.hand_timeout(now) {
                    self.dirty.push(id);
                }
            } else {
                let next = p.next_timeout;
                self.schedule(id, next);
            }
        }
        self.metrics.counts.timeouts += handed as u64;
        // Drain the timeouts before the layer tick mutates the same Rtcs again.
        self.drive(now);
        self.flush_keyframe_requests(now);
        if now >= self.next_layer_tick {
            self.layer_tick(now);
        }
        if now >= self.next_speaker_tick {
            self.next_speaker_tick = now + self.config.speaker_interval;
            self.speaker_tick();
        }
        if now >= self.next_quality_tick {
            self.next_quality_tick = now + self.config.quality_interval;
            self.quality_tick();
        }
        self.drive(now);
    }

    /// When `handle_timeout` should next be called.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self
            .next_speaker_tick
            .min(self.next_quality_tick)
            .min(self.next_layer_tick);
        if let Some(k) = self.keyframe_retry {
            t = t.min(k);
        }
        match self.timers.peek() {
            Some(Reverse((at, _))) => t.min(*at),
            None => t,
        }
    }

    /// Next packet to put on the wire.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.transmits.pop_front()?;
        // Counted here, in the room's own integers (flushed with the rest):
        // a node-wide counter bumped per packet by every room's thread would
        // bounce one cache line between the cores.
        self.metrics.counts.sent += 1;
        self.metrics.counts.sent_bytes += t.contents.len() as u64;
        Some(t)
    }

    /// Next event for signaling. Once every earlier event is taken, makes the
    /// offers for all subscriber changes of this turn (one per connection,
    /// however many subscribes led to it) and drains what that caused.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        if self.events.is_empty() && self.negotiation_due {
            self.negotiate_all();
            // Making an offer mutates the Rtc, so it is drained here, not at
            // the next input. poll_event takes no `now` (nor do the commands
            // that made negotiation due), so the drain uses the latest input
            // time: str0m's poll_output needs no time (its clock is the last
            // input it got), and the room only stamps what the drain sees with
            // it. No input has told the room of a later instant, and the layer
            // tick keeps it within LAYER_TICK of the owner's clock.
            let now = self.now;
            self.drive(now);
        }
        self.events.pop_front()
    }

    /// For every subscriber, the participants whose tracks it receives
    /// (each once).
    pub fn publishers_by_subscriber(&self) -> HashMap<ParticipantSid, Vec<ParticipantSid>> {
        let mut out: HashMap<ParticipantSid, Vec<ParticipantSid>> = HashMap::new();
        for t in self.tracks.values() {
            for s in &t.subscribers {
                let owners = out.entry(s.subscriber.clone()).or_default();
                if !owners.contains(&t.owner) {
                    owners.push(t.owner.clone());
                }
            }
        }
        out
    }

    /// Number of peer connections (for metrics).
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Whether every connection the participant has is up (a v0 publisher
    /// connection not offered yet does not count).
    pub fn is_connected(&self, sid: &ParticipantSid) -> bool {
        self.participants.get(sid).is_some_and(|pp| {
            [pp.publisher, pp.subscriber]
                .iter()
                .filter_map(|id| self.peers.get(id))
                .all(|p| p.connected)
        })
    }

    // ---- internals -------------------------------------------------------

    fn peer_id(&self, sid: &ParticipantSid, role: PeerRole) -> Result<PeerId, SfuError> {
        let pp = self
            .participants
            .get(sid)
            .ok_or_else(|| SfuError::UnknownParticipant(sid.clone()))?;
        Ok(match role {
            PeerRole::Publisher | PeerRole::Single => pp.publisher,
            PeerRole::Subscriber => pp.subscriber,
        })
    }

    /// Stops a subscription's m-line at the next negotiation. On a single
    /// connection its section is released, keeping the rewriter so that the
    /// next subscription there continues its sequence numbers.
    fn stop_sub_mline(&mut self, peer: PeerId, mid: Option<Mid>, rewriter: Option<Rewriter>) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if let Some(mid) = mid {
                p.mid_to_track.remove(&mid);
                if p.role == PeerRole::Single {
                    p.sections.release(mid, rewriter);
                } else {
                    p.stop_mids.push(mid);
                }
            }
            p.needs_offer = true;
            self.negotiation_due = true;
        }
    }
}
