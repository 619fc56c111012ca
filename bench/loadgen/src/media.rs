//! One WebRTC peer connection: a str0m `Rtc` in RTP mode on its own UDP
//! socket (the server has one address, so the local port is what tells our
//! connections apart). It sends synthetic media, counts what it receives,
//! and knows nothing about signaling: SDP and candidates go in and out as
//! strings.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::crypto::dtls::DtlsCert;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use crate::clock::Clock;
use crate::stats::Shared;
use crate::synth::{AudioSource, LayerSpec, OutPacket, VideoParams, VideoSource};

/// Socket buffers asked for (the kernel caps them at rmem_max/wmem_max).
const SOCKET_BUFFER: usize = 1 << 20;
/// How often str0m reports stats (NACK/PLI counts come from them).
const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// What a peer tells its participant.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// ICE and DTLS are up.
    Connected,
    /// ICE connectivity lost, or the connection closed.
    Disconnected,
    /// The first RTP packet arrived.
    FirstMedia,
    /// The server added a video m-line; its msid track id.
    RemoteVideo(String),
}

/// What a sending connection publishes.
#[derive(Debug, Clone)]
pub struct SendSpec {
    /// Video layers, the msid track id (LiveKit's cid), simulcast or one layer.
    pub video: Option<(Vec<LayerSpec>, String, bool)>,
    /// The audio msid track id.
    pub audio: Option<String>,
    pub video_params: VideoParams,
    pub audio_bytes: usize,
    /// Tag written into probes (the publisher's index).
    pub tag: u32,
}

struct Outgoing<S> {
    mid: Mid,
    pt: Option<Pt>,
    source: S,
}

struct RxStream {
    video: bool,
    highest: u64,
}

pub struct MediaPeer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    shared: Rc<Shared>,
    clock: Clock,
    next_timeout: Instant,
    connected: bool,
    got_media: bool,
    pending: Option<SdpPendingOffer>,
    video: Option<Outgoing<VideoSource>>,
    audio: Option<Outgoing<AudioSource>>,
    /// Receive m-lines: whether each carries video.
    recv_kinds: HashMap<Mid, bool>,
    rx: HashMap<Ssrc, RxStream>,
    /// Last cumulative (nacks, plis) per stream, ingress and egress.
    feedback: HashMap<(Mid, Option<Rid>, bool), (u64, u64)>,
    out: Vec<OutPacket>,
    events: Vec<PeerEvent>,
    /// How long the datagram being handled waited in our socket.
    rx_lag_ns: u64,
}

fn bind(ip: IpAddr) -> io::Result<UdpSocket> {
    use std::net::UdpSocket as StdUdp;
    let std = StdUdp::bind(SocketAddr::new(ip, 0))?;
    let sock = socket2::Socket::from(std);
    // Best effort: the defaults work too, only with less headroom for bursts.
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    sock.set_nonblocking(true)?;
    let sock = UdpSocket::from_std(sock.into())?;
    crate::rxstamp::enable(&sock)?;
    Ok(sock)
}

impl MediaPeer {
    /// A new connection on a fresh socket bound to `ip`.
    pub fn new(
        ip: IpAddr,
        cert: &DtlsCert,
        shared: Rc<Shared>,
        clock: Clock,
        now: Instant,
    ) -> io::Result<MediaPeer> {
        let socket = bind(ip)?;
        let local = socket.local_addr()?;
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_dtls_cert(cert.clone())
            .set_stats_interval(Some(STATS_INTERVAL))
            .build(now);
        let candidate =
            Candidate::host(local, Protocol::Udp).map_err(|e| io::Error::other(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        Ok(MediaPeer {
            rtc,
            socket,
            local,
            shared,
            clock,
            next_timeout: now,
            connected: false,
            got_media: false,
            pending: None,
            video: None,
            audio: None,
            recv_kinds: HashMap::new(),
            rx: HashMap::new(),
            feedback: HashMap::new(),
            out: Vec::new(),
            events: Vec::new(),
            rx_lag_ns: 0,
        })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Our host candidate as an SDP attribute value (`candidate:…`).
    pub fn local_candidate(&self) -> String {
        Candidate::host(self.local, Protocol::Udp)
            .map(|c| c.to_sdp_string())
            .unwrap_or_default()
    }

    /// Events since the last call.
    pub fn take_events(&mut self) -> Vec<PeerEvent> {
        std::mem::take(&mut self.events)
    }

    /// When `on_timer` should run next.
    pub fn next_wake(&self) -> Instant {
        let mut t = self.next_timeout;
        if self.connected {
            if let Some(v) = self.video.as_ref().filter(|v| v.pt.is_some()) {
                t = t.min(v.source.next_due());
            }
            if let Some(a) = self.audio.as_ref().filter(|a| a.pt.is_some()) {
                t = t.min(a.source.next_due());
            }
        }
        t
    }

    /// Makes the offer of a sending connection.
    pub fn offer(&mut self, spec: &SendSpec, now: Instant) -> Result<String, String> {
        let mut api = self.rtc.sdp_api();
        let stream_id = format!("loadgen-{}", spec.tag);
        let video = spec.video.as_ref().map(|(layers, cid, simulcast)| {
            let sim = simulcast.then(|| {
                let mut s = Simulcast::new();
                for l in layers {
                    s.add_send_layer(SimulcastLayer::new(l.rid));
                }
                s
            });
            let mid = api.add_media(
                MediaKind::Video,
                Direction::SendOnly,
                Some(stream_id.clone()),
                Some(cid.clone()),
                sim,
            );
            let source = VideoSource::new(layers, *simulcast, spec.video_params, spec.tag, now);
            Outgoing {
                mid,
                pt: None,
                source,
            }
        });
        let audio = spec.audio.as_ref().map(|cid| {
            let mid = api.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(stream_id.clone()),
                Some(cid.clone()),
                None,
            );
            let source = AudioSource::new(spec.audio_bytes, spec.tag, now);
            Outgoing {
                mid,
                pt: None,
                source,
            }
        });
        let (offer, pending) = api.apply().ok_or("nothing to offer")?;
        self.pending = Some(pending);
        self.video = video;
        self.audio = audio;
        self.drain(now);
        Ok(offer.to_sdp_string())
    }

    /// Applies the answer to our offer.
    pub fn accept_answer(&mut self, sdp: &str, now: Instant) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let pending = self.pending.take().ok_or("answer without an offer")?;
        let applied = self
            .rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string());
        if applied.is_ok() {
            if let Some(v) = &mut self.video {
                v.pt = negotiated_pt(&self.rtc, v.mid, Codec::Vp8);
            }
            if let Some(a) = &mut self.audio {
                a.pt = negotiated_pt(&self.rtc, a.mid, Codec::Opus);
            }
        }
        self.drain(now);
        applied
    }

    /// Answers a server offer (a receiving connection).
    pub fn accept_offer(&mut self, sdp: &str, now: Instant) -> Result<String, String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| e.to_string())?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map(|a| a.to_sdp_string())
            .map_err(|e| e.to_string());
        self.drain(now);
        answer
    }

    /// A trickled remote candidate (`candidate:…`, with or without `a=`).
    pub fn add_remote_candidate(&mut self, candidate: &str, now: Instant) {
        let line = candidate.strip_prefix("a=").unwrap_or(candidate);
        if let Ok(c) = Candidate::from_sdp_string(line) {
            self.rtc.add_remote_candidate(c);
            self.drain(now);
        }
    }

    /// One datagram from the socket, read `lag_ns` after the kernel queued
    /// it (left out of the latency it carries).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, buf: &[u8], lag_ns: u64) {
        Shared::inc(&self.shared.counters.datagrams_in);
        self.rx_lag_ns = lag_ns;
        let Ok(receive) = Receive::new(Protocol::Udp, from, self.local, buf) else {
            return;
        };
        if self.rtc.handle_input(Input::Receive(now, receive)).is_ok() {
            self.drain(now);
        }
    }

    /// Timers and media due at `now`.
    pub fn on_timer(&mut self, now: Instant) {
        if now >= self.next_timeout {
            Shared::inc(&self.shared.counters.wakes);
            if self.rtc.handle_input(Input::Timeout(now)).is_err() {
                self.rtc.disconnect();
            }
            self.drain(now);
        }
        if self.connected {
            self.send_media(now);
        }
    }

    /// Closes the connection (sends what str0m sends on close).
    pub fn close(&mut self, now: Instant) {
        self.rtc.disconnect();
        self.drain(now);
    }

    fn send_media(&mut self, now: Instant) {
        let ns = self.clock.ns(now);
        let measuring = self.shared.measuring.get();
        if let Some(v) = &mut self.video {
            if let Some(pt) = v.pt.filter(|_| v.source.next_due() <= now) {
                if measuring {
                    self.shared
                        .record_pacing(now.saturating_duration_since(v.source.next_due()));
                }
                v.source.poll(now, ns, &mut self.out);
                write(
                    &mut self.rtc,
                    &self.shared,
                    v.mid,
                    pt,
                    true,
                    &mut self.out,
                    now,
                );
            }
        }
        if let Some(a) = &mut self.audio {
            if let Some(pt) = a.pt.filter(|_| a.source.next_due() <= now) {
                if measuring {
                    self.shared
                        .record_pacing(now.saturating_duration_since(a.source.next_due()));
                }
                a.source.poll(now, ns, &mut self.out);
                write(
                    &mut self.rtc,
                    &self.shared,
                    a.mid,
                    pt,
                    false,
                    &mut self.out,
                    now,
                );
            }
        }
        self.drain(now);
    }

    /// Runs str0m until it waits for time or input (its run-loop contract).
    fn drain(&mut self, now: Instant) {
        loop {
            if !self.rtc.is_alive() {
                self.next_timeout = now + Duration::from_secs(3600);
                if self.connected {
                    self.connected = false;
                    self.events.push(PeerEvent::Disconnected);
                }
                return;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    if self.socket.try_send_to(&t.contents, t.destination).is_err() {
                        Shared::inc(&self.shared.counters.tx_dropped);
                    }
                }
                Ok(Output::Event(e)) => self.on_event(e, now),
                Err(e) => {
                    self.shared.error(format!("peer failed: {e}"));
                    self.rtc.disconnect();
                }
            }
        }
    }

    fn on_event(&mut self, event: Event, now: Instant) {
        match event {
            Event::Connected => {
                self.connected = true;
                self.events.push(PeerEvent::Connected);
                if let Some(v) = &mut self.video {
                    v.source.restart(now);
                }
                if let Some(a) = &mut self.audio {
                    a.source.restart(now);
                }
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.connected = false;
                self.events.push(PeerEvent::Disconnected);
            }
            Event::MediaAdded(m) => {
                let video = m.kind == MediaKind::Video;
                self.recv_kinds.insert(m.mid, video);
                if video {
                    if let Some(media) = self.rtc.media(m.mid) {
                        self.events
                            .push(PeerEvent::RemoteVideo(media.track_id().to_string()));
                    }
                }
            }
            Event::RtpPacket(p) => self.on_rtp(p),
            Event::KeyframeRequest(r) => {
                if let Some(v) = self.video.as_mut().filter(|v| v.mid == r.mid) {
                    v.source.request_keyframe(r.rid.as_deref());
                }
            }
            Event::MediaIngressStats(s) => {
                let (dn, dp) = self.feedback_delta((s.mid, s.rid, false), s.nacks, s.plis + s.firs);
                let c = &self.shared.counters;
                Shared::add(&c.nack_sent, dn);
                Shared::add(&c.pli_sent, dp);
            }
            Event::MediaEgressStats(s) => {
                let (dn, dp) = self.feedback_delta((s.mid, s.rid, true), s.nacks, s.plis + s.firs);
                let c = &self.shared.counters;
                Shared::add(&c.nack_recv, dn);
                Shared::add(&c.pli_recv, dp);
            }
            _ => {}
        }
    }

    fn feedback_delta(
        &mut self,
        key: (Mid, Option<Rid>, bool),
        nacks: u64,
        plis: u64,
    ) -> (u64, u64) {
        let last = self.feedback.insert(key, (nacks, plis)).unwrap_or((0, 0));
        (nacks.saturating_sub(last.0), plis.saturating_sub(last.1))
    }

    fn on_rtp(&mut self, p: RtpPacket) {
        let c = &self.shared.counters;
        let seq = *p.seq_no;
        let ssrc = p.header.ssrc;
        let stream = match self.rx.get_mut(&ssrc) {
            Some(s) => s,
            None => {
                let mid = self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid());
                let video = mid
                    .and_then(|m| self.recv_kinds.get(&m).copied())
                    .unwrap_or(false);
                self.rx.entry(ssrc).or_insert(RxStream {
                    video,
                    highest: seq.saturating_sub(1),
                })
            }
        };
        if seq > stream.highest {
            Shared::add(&c.lost, seq - stream.highest - 1);
            stream.highest = seq;
        } else {
            Shared::inc(&c.late);
        }
        let video = stream.video;
        Shared::inc(&c.rx_packets);
        Shared::add(&c.rx_bytes, p.payload.len() as u64);
        Shared::inc(if video { &c.rx_video } else { &c.rx_audio });
        if !self.got_media {
            self.got_media = true;
            self.events.push(PeerEvent::FirstMedia);
        }
        if self.shared.measuring.get() {
            match crate::synth::read_probe(video, &p.payload) {
                Some((sent, tag)) => {
                    match crate::synth::tag_layer(tag) {
                        0 => Shared::inc(&c.rx_q),
                        1 => Shared::inc(&c.rx_h),
                        2 => Shared::inc(&c.rx_f),
                        _ => {}
                    }
                    // When the kernel queued it on our socket, not when we
                    // got round to reading it.
                    let received = self.clock.ns(p.timestamp).saturating_sub(self.rx_lag_ns);
                    self.shared
                        .record_latency_ns(received.saturating_sub(sent), video);
                    self.shared.record_rx_lag_ns(self.rx_lag_ns);
                }
                None => Shared::inc(&c.no_probe),
            }
        }
    }
}

/// The payload type the answer accepted for `codec` on `mid`.
fn negotiated_pt(rtc: &Rtc, mid: Mid, codec: Codec) -> Option<Pt> {
    let media = rtc.media(mid)?;
    let params = rtc.codec_config().params();
    media
        .remote_pts()
        .iter()
        .copied()
        .find(|pt| {
            params
                .iter()
                .any(|p| p.pt() == *pt && p.spec().codec == codec)
        })
        .or_else(|| {
            params
                .iter()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        })
}

/// Writes packets to the send stream of `mid` (and the layer's rid).
fn write(
    rtc: &mut Rtc,
    shared: &Shared,
    mid: Mid,
    pt: Pt,
    video: bool,
    out: &mut Vec<OutPacket>,
    now: Instant,
) {
    let mut api = rtc.direct_api();
    let ext = ExtensionValues {
        // Silence: keeps the server's active-speaker reports quiet.
        audio_level: (!video).then_some(-127),
        voice_activity: (!video).then_some(false),
        ..Default::default()
    };
    for p in out.drain(..) {
        let Some(tx) = api.stream_tx_by_mid(mid, p.rid.map(Rid::from)) else {
            Shared::inc(&shared.counters.tx_dropped);
            continue;
        };
        tx.write_rtp(
            RtpWrite::new(pt, SeqNo::from(p.seq), p.ts, now, p.payload)
                .marker(p.marker)
                .nackable(video)
                .ext_vals(ext.clone()),
        );
        Shared::inc(&shared.counters.tx_packets);
    }
}
