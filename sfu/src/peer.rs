//! One str0m `Rtc` plus what the room needs to know about it.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::bwe::Bitrate;
use str0m::change::SdpPendingOffer;
use str0m::channel::ChannelId;
use str0m::config::DtlsCert;
use str0m::media::{Mid, Rid};
use str0m::net::Protocol;
use str0m::{Candidate, PacerReason, Reason, Rtc, RtcConfig};

use crate::ids::{ParticipantSid, PeerId, PeerRole, TrackSid};

/// Local addresses the node advertises as ICE host candidates.
#[derive(Debug, Clone, Default)]
pub struct LocalCandidates {
    /// UDP host candidates (the single media port on each advertised IP).
    pub udp: Vec<SocketAddr>,
    /// ICE-TCP passive host candidates.
    pub tcp: Vec<SocketAddr>,
}

/// One DTLS certificate for every peer connection of a node, as mediasoup
/// keeps one per worker: making a key pair and certificate for each
/// connection cost ~20 % of a core at 20 joins/s (nodo-loadgen scenario D).
/// The default holds none: each connection then makes its own.
#[derive(Clone, Default)]
pub struct DtlsIdentity(Option<DtlsCert>);

impl DtlsIdentity {
    /// A new certificate from str0m's crypto provider (none if it fails,
    /// and connections make their own).
    pub fn generate() -> DtlsIdentity {
        DtlsIdentity(
            str0m::crypto::from_feature_flags()
                .dtls_provider
                .generate_certificate(),
        )
    }
}

impl std::fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DtlsIdentity")
            .field(&self.0.is_some())
            .finish()
    }
}

pub(crate) struct Peer {
    pub id: PeerId,
    pub participant: ParticipantSid,
    pub role: PeerRole,
    pub rtc: Rtc,
    pub next_timeout: Instant,
    /// Earliest timer entry queued for this peer in the room's heap.
    pub scheduled: Option<Instant>,
    /// Queued in the room's dirty list.
    pub dirty: bool,
    /// Subscriber: the offer we sent and wait an answer for.
    pub pending_offer: Option<SdpPendingOffer>,
    /// Subscriber: m-lines to stop at the next negotiation.
    pub stop_mids: Vec<Mid>,
    /// Subscriber: something changed that needs a new offer.
    pub needs_offer: bool,
    /// Subscriber: which forwarded track each of our send m-lines carries.
    pub mid_to_track: HashMap<Mid, TrackSid>,
    /// Single connection: the client's recvonly sections and what they carry.
    pub sections: crate::room::Sections,
    /// Data channels by id, with their label.
    pub channels: HashMap<ChannelId, String>,
    /// Subscriber: our two outgoing data channels and whether they are open.
    pub reliable: Option<(ChannelId, bool)>,
    pub lossy: Option<(ChannelId, bool)>,
    /// Reliable data waiting for the channel to open.
    pub queued_data: VecDeque<Vec<u8>>,
    /// Latest send-side bandwidth estimate (subscriber).
    pub estimate: Option<Bitrate>,
    /// Subscriber: RED is not sent to it for now, though negotiated: its
    /// estimate cannot carry the redundancy on top of its lowest video (see
    /// `MediaRoom::apply_bandwidth_caps`).
    pub red_off: bool,
    /// Subscriber: video may be paused for bandwidth (`set_allow_pause`).
    pub allow_pause: bool,
    /// Subscriber: the bitrate (bits/s) the estimator was last told to probe
    /// up to; 0 before the first.
    pub probe_target: u64,
    /// Subscriber: when the probe target was dipped to be raised again (a
    /// new probe) at the next layer tick.
    pub probe_dip_at: Option<Instant>,
    /// Subscriber: when the probe target may next be re-raised.
    pub next_probe: Option<Instant>,
    /// Packet loss (0..1) seen on this peer, from stats.
    pub loss: f32,
    pub rtt: Option<Duration>,
    pub connected: bool,
    /// Subscriber: restart ICE at the next offer (signal resume).
    pub ice_restart: bool,
    /// Last cumulative repair counts seen in stats, to turn them into deltas.
    pub repairs: Repairs,
    /// When RTP last went either way on this connection (its creation, before
    /// any): see [`Peer::wake_at`].
    pub last_rtp: Instant,
    /// When the room last handed this connection a timeout (its creation,
    /// before any): see [`Peer::wake_at`].
    pub last_timeout: Instant,
    /// Something other than a timeout reached the `Rtc` since the room last
    /// handed it one: a packet written or received, data, a bitrate, a
    /// keyframe request, a negotiation (set by [`Peer::touch`], cleared with
    /// each timeout): see [`Peer::wake_at`].
    touched: bool,
    /// RTP datagrams that left since the room last handed a timeout.
    released: u32,
    /// The sequence number of the last RTP packet that left on each SSRC
    /// (as str0m handed it out), so that a backlog dropped unsent leaves no
    /// gap (see `room::bandwidth::drop_backlog`).
    sent: SentSeqs,
}

/// Most SSRCs [`SentSeqs`] keeps: a connection sends on two per m-line
/// (media and RTX); past this the oldest entry goes.
const MAX_SENT_SSRCS: usize = 64;

/// The last sequence number sent on each SSRC of a connection, in the order
/// the SSRCs first sent. A short list: one look per packet sent.
#[derive(Debug, Default)]
struct SentSeqs(Vec<(u32, u16)>);

impl SentSeqs {
    fn note(&mut self, ssrc: u32, seq: u16) {
        if let Some(e) = self.0.iter_mut().find(|(s, _)| *s == ssrc) {
            e.1 = seq;
            return;
        }
        if self.0.len() >= MAX_SENT_SSRCS {
            self.0.remove(0);
        }
        self.0.push((ssrc, seq));
    }

    fn get(&self, ssrc: u32) -> Option<u16> {
        self.0.iter().find(|(s, _)| *s == ssrc).map(|(_, q)| *q)
    }
}

/// Cumulative NACK/PLI/loss counts per stream from str0m's stats, kept to
/// report what changed since the previous report.
#[derive(Default)]
pub(crate) struct Repairs {
    ingress: HashMap<(Mid, Option<Rid>), u64>,
    egress: HashMap<(Mid, Option<Rid>), [u64; 3]>,
}

impl Repairs {
    /// NACKs sent on a receive stream since the last report.
    pub fn ingress(&mut self, mid: Mid, rid: Option<Rid>, nacks: u64) -> u64 {
        let seen = self.ingress.entry((mid, rid)).or_default();
        let d = nacks.saturating_sub(*seen);
        *seen = nacks.max(*seen);
        d
    }

    /// NACKs and keyframe requests received, and packets reported lost, on a
    /// send stream since the last report.
    pub fn egress(
        &mut self,
        mid: Mid,
        rid: Option<Rid>,
        nacks: u64,
        plis: u64,
        lost: u64,
    ) -> (u64, u64, u64) {
        let seen = self.egress.entry((mid, rid)).or_default();
        let now = [nacks, plis, lost];
        let mut d = [0; 3];
        for ((d, s), n) in d.iter_mut().zip(seen.iter_mut()).zip(now) {
            *d = n.saturating_sub(*s);
            *s = n.max(*s);
        }
        (d[0], d[1], d[2])
    }
}

/// Video packets a subscriber's connection keeps per stream, queued for the
/// pacer or kept for retransmission (str0m's default is 1,000). 400 is
/// 1.5 s of a 2.5 Mbit/s layer: more than a NACK round trip needs and more
/// than the room lets a pacer queue hold before it moves the subscriber to
/// a lower layer (see `forward`). Each kept packet costs a few hundred bytes
/// per subscriber (its payload is shared).
pub(crate) const SEND_BUFFER_VIDEO: usize = 400;

/// How long a subscriber stream keeps sent packets for retransmission. A
/// NACK needs about one round trip; a packet resent later than a second
/// after it was first sent misses any jitter buffer, and libwebrtc keeps its
/// own history for max(1 s, 3 RTT). str0m's default is 3 s.
pub(crate) const RTX_MAX_AGE: Duration = Duration::from_secs(1);

/// Resends are dropped while they make up more than this share of a
/// stream's bytes in the last second. str0m's default, 0.15, is below what
/// repairing 20 % random loss takes (a fifth of the packets once, a fifth
/// of those again: about 0.2 of the bytes), so past ~13 % loss most NACKs
/// went unanswered and every subscriber stalled until a keyframe (freezes
/// of 3 to 11 s in the 20 % impairment test; 0.7 to 2 s at 0.4). Resends
/// are paced and count against the estimate like any packet; the cap only
/// bounds a NACK storm.
pub(crate) const RTX_RATIO_CAP: f32 = 0.4;

/// RTP quiet for this long on a connection: its estimator's feedback has
/// stopped (see [`Peer::wake_at`]).
const RTP_IDLE: Duration = Duration::from_secs(1);

/// How long a connection with nothing to estimate sleeps between timeouts
/// when only its estimator is due (see [`Peer::wake_at`]).
const IDLE_WAKE: Duration = Duration::from_millis(250);

/// How long a connection that sends no video puts off str0m's immediate
/// pacer timeout when nothing reached it since its last one (see
/// [`Peer::wake_at`]): the pacer's own periodic turn (40 ms in str0m).
const UNPACED_WAKE: Duration = Duration::from_millis(40);

/// Whether an outgoing datagram is RTP (RFC 7983: first byte 128-191; RTCP
/// has a packet type of 192-223 in its second byte).
pub(crate) fn is_rtp(datagram: &[u8]) -> bool {
    matches!(datagram, [128..=191, b, ..] if !(192..=223).contains(b))
}

/// Most reliable messages queued before the data channel opens.
const MAX_QUEUED_DATA: usize = 256;

impl Peer {
    pub fn new(
        id: PeerId,
        participant: ParticipantSid,
        role: PeerRole,
        candidates: &LocalCandidates,
        dtls: &DtlsIdentity,
        now: Instant,
    ) -> Peer {
        let mut config = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, true)
            .enable_vp8(true)
            .enable_h264(true)
            .enable_vp9(true)
            .enable_av1(true)
            .set_extension(crate::dd::ID, crate::dd::extension())
            .set_stats_interval(Some(Duration::from_secs(1)))
            .set_crypto_provider(crate::dtls::provider());
        if let Some(cert) = &dtls.0 {
            config = config.set_dtls_cert(cert.clone());
        }
        if role.subscribes() {
            config = config
                .enable_bwe(Some(Bitrate::kbps(1_500)))
                .set_send_buffer_video(SEND_BUFFER_VIDEO);
        }
        let mut rtc = config.build(now);
        for addr in &candidates.udp {
            match Candidate::host(*addr, Protocol::Udp) {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(%addr, "skipping UDP candidate: {e}"),
            }
        }
        for addr in &candidates.tcp {
            match Candidate::builder()
                .tcp()
                .host(*addr)
                .tcptype(str0m::net::TcpType::Passive)
                .build()
            {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => tracing::warn!(%addr, "skipping TCP candidate: {e}"),
            }
        }
        Peer {
            id,
            participant,
            role,
            rtc,
            next_timeout: now,
            scheduled: None,
            dirty: false,
            pending_offer: None,
            stop_mids: Vec::new(),
            needs_offer: false,
            mid_to_track: HashMap::new(),
            sections: Default::default(),
            channels: HashMap::new(),
            reliable: None,
            lossy: None,
            queued_data: VecDeque::new(),
            estimate: None,
            red_off: false,
            allow_pause: false,
            probe_target: 0,
            probe_dip_at: None,
            next_probe: None,
            loss: 0.0,
            rtt: None,
            connected: false,
            ice_restart: false,
            repairs: Repairs::default(),
            last_rtp: now,
            last_timeout: now,
            touched: false,
            released: 0,
            sent: SentSeqs::default(),
        }
    }

    /// Notes an outgoing RTP datagram (see [`is_rtp`]): its SSRC and
    /// sequence number are in the clear under SRTP.
    pub fn note_sent_rtp(&mut self, datagram: &[u8]) {
        self.released = self.released.saturating_add(1);
        if let [_, _, s0, s1, _, _, _, _, r0, r1, r2, r3, ..] = *datagram {
            self.sent.note(
                u32::from_be_bytes([r0, r1, r2, r3]),
                u16::from_be_bytes([s0, s1]),
            );
        }
    }

    /// The sequence number of the last RTP packet sent on `ssrc`, if any.
    pub fn last_sent_seq(&self, ssrc: u32) -> Option<u16> {
        self.sent.get(ssrc)
    }

    /// When to next hand the connection a timeout, for str0m asking for one
    /// at `t`. str0m's delay-based estimator asks every 25 ms even when there
    /// is nothing to estimate (no RTP sent, so no transport-wide feedback
    /// coming), and each timeout runs all of the connection's timers (ICE,
    /// SCTP, DTLS, stats, the estimator): 40 wake-ups a second per idle
    /// subscriber, ~10 % of a core for 300 idle participants. When that
    /// estimator is what asks and no RTP went either way for
    /// [`RTP_IDLE`], the wake-up waits until [`IDLE_WAKE`] after the last
    /// timeout the connection was handed. What else str0m had due by then
    /// waits at most as long: ICE's consent and SCTP's retransmissions count
    /// in seconds. Counting from the last timeout, not from `now`, keeps
    /// drains that hand no timeout (data the server sends, say, ten times a
    /// second to a client gone silent) from putting it off for ever.
    ///
    /// And: after each packet it releases, str0m's pacer will release no
    /// other until a timeout has run, and asks for one a microsecond later
    /// (`PacerReason::Immediate`). For a connection that sends no video
    /// (an audio listener: unpaced audio, nothing to probe for), that was
    /// handed nothing since its last timeout and whose queues held no more
    /// than what left since, the timeout would release nothing: it waits
    /// until [`UNPACED_WAKE`] after the last one, and the next packet
    /// written (which asks for a timeout of its own) brings it forward. A
    /// listener of ten speakers then costs one timeout per packet instead of
    /// ~1.7. A connection that sends video keeps them all: str0m sends its
    /// probes through the same timeouts.
    pub fn wake_at(&mut self, t: Instant, now: Instant) -> Instant {
        let reason = self.rtc.last_timeout_reason();
        if self.connected
            && reason == Reason::BweDelayControl
            && now.saturating_duration_since(self.last_rtp) >= RTP_IDLE
        {
            t.max(self.last_timeout + IDLE_WAKE)
        } else if !self.touched
            && reason == Reason::Pacer(PacerReason::Immediate)
            && !self.sends_video()
            && self.queued_at_last_timeout() <= self.released as usize
        {
            t.max(self.last_timeout + UNPACED_WAKE)
        } else {
            t
        }
    }

    /// Whether any m-line the connection sends on is video (a subscription,
    /// paused or not).
    fn sends_video(&self) -> bool {
        self.mid_to_track
            .keys()
            .any(|mid| self.rtc.media(*mid).is_some_and(|m| m.kind().is_video()))
    }

    /// Packets str0m's pacer saw queued on the connection's m-lines at the
    /// last timeout (its snapshot, taken before that timeout released any).
    fn queued_at_last_timeout(&mut self) -> usize {
        let mut api = self.rtc.direct_api();
        self.mid_to_track
            .keys()
            .filter_map(|mid| {
                api.stream_tx_by_mid(*mid, None)
                    .and_then(|tx| tx.queue_info().map(|q| q.packet_count()))
            })
            .sum()
    }

    /// Hands the `Rtc` a timeout at `now`; true when the peer is newly due
    /// a drain (the caller queues it, as with [`Peer::touch`]). The timeout
    /// is not an input in [`Peer::wake_at`]'s sense: it saw every input
    /// before it, so `touched` and `released` start again from it.
    pub fn hand_timeout(&mut self, now: Instant) -> bool {
        self.last_timeout = now;
        if let Err(e) = self.rtc.handle_input(str0m::Input::Timeout(now)) {
            tracing::debug!(peer = ?self.id, "timeout rejected: {e}");
        }
        self.touched = false;
        self.released = 0;
        !std::mem::replace(&mut self.dirty, true)
    }

    /// Notes an input to the `Rtc` other than a timeout (see
    /// [`Peer::touched`]); true when the peer is newly due a drain (the
    /// caller queues it).
    pub fn touch(&mut self) -> bool {
        self.touched = true;
        !std::mem::replace(&mut self.dirty, true)
    }

    /// The ICE username fragment remote STUN requests carry for this peer.
    pub fn local_ufrag(&mut self) -> String {
        self.rtc.direct_api().local_ice_credentials().ufrag
    }

    /// Sends a data message on the server-created channel; reliable messages
    /// wait for the channel to open.
    pub fn send_data(&mut self, reliable: bool, data: &[u8]) {
        let slot = if reliable { self.reliable } else { self.lossy };
        // A single connection's channels come from the client: until it has
        // opened them, reliable data waits as for a channel not yet open.
        let open = match slot {
            Some((_, open)) => open,
            None if self.role == PeerRole::Single => false,
            None => return,
        };
        if !open {
            if reliable && self.queued_data.len() < MAX_QUEUED_DATA {
                self.queued_data.push_back(data.to_vec());
            }
            return;
        }
        let Some((id, _)) = slot else { return };
        if let Some(mut ch) = self.rtc.channel(id) {
            if let Err(e) = ch.write(true, data) {
                tracing::debug!(peer = ?self.id, "data channel write failed: {e}");
            }
        }
    }

    /// Forgets a closed channel; a single connection's data waits for the
    /// client's next one of the same label.
    pub fn channel_closed(&mut self, id: ChannelId) {
        self.channels.remove(&id);
        if self.role == PeerRole::Single {
            if self.reliable.is_some_and(|(r, _)| r == id) {
                self.reliable = None;
            }
            if self.lossy.is_some_and(|(l, _)| l == id) {
                self.lossy = None;
            }
        }
    }

    /// Marks a channel open; flushes queued reliable data.
    pub fn channel_opened(&mut self, id: ChannelId, label: String) {
        if self.role == PeerRole::Single {
            // The client made the channels of a single connection: the
            // server answers on the ones it opened (LiveKit's labels).
            // The newest channel of a label wins: a client that made its
            // channels again (livekit-client does on some resumes) is
            // answered on the new ones.
            match label.as_str() {
                "_reliable" => self.reliable = Some((id, false)),
                "_lossy" => self.lossy = Some((id, false)),
                _ => {}
            }
        }
        self.channels.insert(id, label);
        if let Some((rid, open)) = self.reliable.as_mut() {
            if *rid == id {
                *open = true;
                while let Some(d) = self.queued_data.pop_front() {
                    self.send_data(true, &d);
                }
            }
        }
        if let Some((lid, open)) = self.lossy.as_mut() {
            if *lid == id {
                *open = true;
            }
        }
    }
}
