//! A participant's signaling state inside its room actor.
// Clients still read several fields the protocol marks deprecated.
#![allow(deprecated)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use nodo_sfu::PeerRole;
use tokio::sync::mpsc;

use crate::auth::{Claims, KeyStore, VideoGrant};
use crate::ids::{ParticipantSid, TrackSid};
use crate::room::{Outgoing, SharedResponse, SignalSink};

/// How often a connected participant is sent a fresh token
/// (`refresh_token`), as LiveKit does: a client resumes with the latest one,
/// so a call outlives the token it joined with.
pub(crate) const TOKEN_REFRESH_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Validity of a refreshed token, at least: twice the interval, so one
/// missed refresh (a signal drop) still leaves a valid token to resume with.
pub(crate) const REFRESHED_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

/// Options from the `/rtc` query string.
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    /// Subscribe to every track automatically (`auto_subscribe`, default on).
    pub auto_subscribe: bool,
    /// Resume an existing session (`reconnect=1&sid=PA_…`).
    pub resume_sid: Option<String>,
    /// Client protocol version (`protocol`).
    pub protocol: i32,
    /// Adaptive stream requested (`adaptive_stream=1`).
    pub adaptive_stream: bool,
    /// SDK name (`sdk`), for logs.
    pub sdk: String,
    /// Video the participant receives may be paused when its downlink
    /// cannot carry the lowest layer (`subscriber_allow_pause`, default off).
    pub allow_pause: bool,
    /// Signaling v1: one peer connection, always offered by the client.
    pub single_pc: bool,
    /// Signaling v1: what the join request carried beyond the options,
    /// taken at the join.
    pub v1: Option<Box<V1Join>>,
}

/// What a v1 `join_request` carries for the join itself.
#[derive(Debug, Clone, Default)]
pub struct V1Join {
    /// The client's first offer, answered right after the join response.
    pub offer: Option<proto::SessionDescription>,
    /// Tracks announced with the join, as `add_track` requests.
    pub add_tracks: Vec<proto::AddTrackRequest>,
    /// Replaces the token's metadata when not empty (needs the grant to
    /// update one's own metadata).
    pub metadata: String,
    /// Set over the token's attributes (same grant).
    pub attributes: HashMap<String, String>,
}

pub(crate) struct Participant {
    pub info: proto::ParticipantInfo,
    pub grant: VideoGrant,
    pub options: JoinOptions,
    /// Current signal session; `None` while the WebSocket is down.
    pub signal: Option<SignalSink>,
    pub session: u64,
    /// When the signal dropped, for the reconnect window.
    pub signal_lost_at: Option<Instant>,
    /// Tracks announced with `add_track`, by client id, not yet carrying media.
    pub pending: Vec<(String, proto::TrackInfo)>,
    /// Whether `ParticipantInfo.state` reached ACTIVE: it does when the
    /// primary connection first connects, as in LiveKit.
    pub active: bool,
    /// The connection whose first connect makes the participant ACTIVE: the
    /// subscriber when the join said `subscriber_primary`, else the
    /// publisher (or the single connection of signaling v1).
    pub primary: PeerRole,
    /// The claims it joined with: a refreshed token keeps them (key,
    /// identity, kind, room) with the participant's current name, metadata,
    /// attributes and permissions.
    claims: Claims,
    /// When the next `refresh_token` is due.
    pub refresh_due: Instant,
    /// Who may receive this participant's tracks (`subscription_permission`);
    /// `None` when everyone may.
    pub subscription_permission: Option<proto::SubscriptionPermission>,
    /// Tracks this participant wants but whose owner does not allow it.
    pub withheld: HashSet<TrackSid>,
}

impl Participant {
    pub fn new(
        sid: &ParticipantSid,
        claims: &Claims,
        options: JoinOptions,
        signal: SignalSink,
        session: u64,
    ) -> Self {
        let grant = claims.video();
        let now_ms = crate::auth::unix_now() as i64 * 1000;
        let info = proto::ParticipantInfo {
            sid: sid.to_string(),
            identity: claims.identity().to_string(),
            name: claims.name.clone(),
            metadata: claims.metadata.clone(),
            attributes: claims.attributes.clone(),
            state: proto::participant_info::State::Joined as i32,
            joined_at: now_ms / 1000,
            joined_at_ms: now_ms,
            version: 1,
            permission: Some(permission(&grant)),
            kind: kind_from(&claims.kind) as i32,
            client_protocol: 0,
            ..Default::default()
        };
        Participant {
            info,
            grant,
            options,
            signal: Some(signal),
            session,
            signal_lost_at: None,
            pending: Vec::new(),
            active: false,
            primary: PeerRole::Subscriber,
            claims: claims.clone(),
            refresh_due: Instant::now(),
            subscription_permission: None,
            withheld: HashSet::new(),
        }
    }

    /// Sends a fresh token signed with the key of the one it joined with,
    /// valid for [`REFRESHED_TOKEN_TTL`] (never less than the original), and
    /// schedules the next one.
    pub fn refresh_token(&mut self, keys: &KeyStore, now: Instant) {
        self.refresh_due = now + TOKEN_REFRESH_INTERVAL;
        let unix = crate::auth::unix_now();
        let mut claims = self.claims.clone();
        claims.iat = Some(unix);
        claims.nbf = Some(unix);
        claims.exp = claims.exp.max(unix + REFRESHED_TOKEN_TTL.as_secs());
        claims.name = self.info.name.clone();
        claims.metadata = self.info.metadata.clone();
        claims.attributes = self.info.attributes.clone();
        claims.video = Some(self.grant.clone());
        match keys.sign(&claims.iss, &claims) {
            Ok(token) => self.send(proto::signal_response::Message::RefreshToken(token)),
            // The key left the configuration since the join: the client
            // keeps the token it has.
            Err(e) => tracing::warn!(participant = %self.info.identity, "no refreshed token: {e}"),
        }
    }

    pub fn sid(&self) -> ParticipantSid {
        ParticipantSid::new(&self.info.sid)
    }

    /// An agent, egress or recorder: present only for the people in the
    /// room, so it does not keep the room open (LiveKit's "dependent").
    pub fn dependent(&self) -> bool {
        use proto::participant_info::Kind;
        let kind = Kind::try_from(self.info.kind).unwrap_or(Kind::Standard);
        matches!(kind, Kind::Agent | Kind::Egress) || self.grant.agent || self.grant.recorder
    }

    pub fn hidden(&self) -> bool {
        self.grant.hidden
    }

    /// Bumps the version so clients accept the new info.
    pub fn touch(&mut self) {
        self.info.version += 1;
    }

    pub fn track_mut(&mut self, sid: &TrackSid) -> Option<&mut proto::TrackInfo> {
        self.info.tracks.iter_mut().find(|t| t.sid == sid.as_str())
    }

    /// Queues a message on the participant's signal socket. A full queue means
    /// the client stopped reading: the socket is dropped and the client resumes.
    pub fn send(&mut self, msg: proto::signal_response::Message) {
        let resp = Box::new(proto::SignalResponse { message: Some(msg) });
        self.queue(Outgoing::One(resp));
    }

    /// Queues a message shared with other participants' sockets.
    pub fn send_shared(&mut self, msg: &Arc<SharedResponse>) {
        self.queue(Outgoing::Shared(msg.clone()));
    }

    fn queue(&mut self, out: Outgoing) {
        let Some(sink) = &self.signal else { return };
        match sink.try_send(out) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(participant = %self.info.identity, "signal queue full; dropping the socket");
                self.signal = None;
                self.signal_lost_at = Some(Instant::now());
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.signal = None;
                self.signal_lost_at.get_or_insert_with(Instant::now);
            }
        }
    }

    /// Whether this participant may publish a track of the given source.
    pub fn may_publish(&self, source: i32) -> Result<(), String> {
        if !self.grant.can_publish() {
            return Err("participant is not allowed to publish".into());
        }
        if self.grant.can_publish_sources.is_empty() {
            return Ok(());
        }
        let name = source_name(source);
        if self.grant.can_publish_sources.iter().any(|s| s == name) {
            Ok(())
        } else {
            Err(format!("participant is not allowed to publish {name}"))
        }
    }
}

/// The permission a grant gives, in protocol form.
pub fn permission(g: &VideoGrant) -> proto::ParticipantPermission {
    proto::ParticipantPermission {
        can_subscribe: g.can_subscribe(),
        can_publish: g.can_publish(),
        can_publish_data: g.can_publish_data(),
        can_publish_sources: g
            .can_publish_sources
            .iter()
            .filter_map(|s| source_from_name(s))
            .map(|s| s as i32)
            .collect(),
        hidden: g.hidden,
        recorder: g.recorder,
        can_update_metadata: g.can_update_own_metadata(),
        agent: g.agent,
        ..Default::default()
    }
}

fn kind_from(kind: &str) -> proto::participant_info::Kind {
    use proto::participant_info::Kind;
    match kind {
        "ingress" => Kind::Ingress,
        "egress" => Kind::Egress,
        "sip" => Kind::Sip,
        "agent" => Kind::Agent,
        _ => Kind::Standard,
    }
}

fn source_name(source: i32) -> &'static str {
    use proto::TrackSource;
    match TrackSource::try_from(source).unwrap_or(TrackSource::Unknown) {
        TrackSource::Camera => "camera",
        TrackSource::Microphone => "microphone",
        TrackSource::ScreenShare => "screen_share",
        TrackSource::ScreenShareAudio => "screen_share_audio",
        _ => "unknown",
    }
}

fn source_from_name(s: &str) -> Option<proto::TrackSource> {
    use proto::TrackSource;
    Some(match s {
        "camera" => TrackSource::Camera,
        "microphone" => TrackSource::Microphone,
        "screen_share" => TrackSource::ScreenShare,
        "screen_share_audio" => TrackSource::ScreenShareAudio,
        _ => return None,
    })
}
