//! An in-memory world for the sans-IO core: client peers are plain str0m
//! `Rtc`s (frame level), the room is a `MediaRoom`, and packets travel
//! between them through queues. Time is simulated; no sockets, no threads.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use nodo_sfu::str0m::change::{SdpAnswer, SdpOffer};
use nodo_sfu::str0m::channel::ChannelId;
use nodo_sfu::str0m::format::Codec;
use nodo_sfu::str0m::ice::StunMessage;
use nodo_sfu::str0m::media::{
    Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer,
};
use nodo_sfu::str0m::net::{Protocol, Receive, Transmit};
use nodo_sfu::str0m::{Candidate, Event, Input, Output, Rtc};
use nodo_sfu::{
    LayerInfo, LocalCandidates, MediaRoom, ParticipantSid, PeerId, RoomConfig, SfuEvent,
    SfuMetrics, TrackKind, TrackSid,
};

pub const SFU: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7882);

/// One simulated participant: a publisher and a subscriber connection.
pub struct Client {
    pub sid: ParticipantSid,
    pub publisher: Rtc,
    pub subscriber: Rtc,
    pub pub_addr: SocketAddr,
    pub sub_addr: SocketAddr,
    pub pub_timeout: Instant,
    pub sub_timeout: Instant,
    /// Media frames received on the subscriber connection: (mid, payload).
    pub received: Vec<(Mid, Vec<u8>)>,
    /// Data channel messages received on the subscriber connection: (label, bytes).
    pub data: Vec<(String, Vec<u8>)>,
    pub sub_channels: HashMap<ChannelId, String>,
    pub pub_channel: Option<ChannelId>,
    pub pub_channel_open: bool,
    /// Publisher: rids (or None) a keyframe was requested for, not yet answered.
    pub keyframe_requests: Vec<Option<Rid>>,
    /// Publisher: keyframe requests received in all.
    pub keyframe_requests_total: usize,
    pub sub_offers: Vec<String>,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    /// Video frames written per layer (index 0 without simulcast).
    pub video_written: [u64; 3],
    /// Layers this publisher does not send (as a client told by dynacast,
    /// or one whose camera stalled).
    pub paused_layers: [bool; 3],
    /// Publisher: sends no keyframe, periodic or asked for, while set (an
    /// encoder that limits its keyframes); requests wait until it is cleared.
    pub holds_keyframes: bool,
    /// Signaling v1: one connection (`publisher`) carries everything.
    pub single: bool,
    /// Single: the answers the room gave, with their `mid_to_track_id`.
    pub answers: Vec<nodo_sfu::OfferAnswer>,
    /// Single: the recvonly sections it offered.
    pub recv_mids: Vec<Mid>,
    /// Single: sections to offer inactive from the next offer on.
    pub inactive_mids: Vec<Mid>,
}

/// Decides whether a packet on its way at the given instant is lost.
pub type LossFn = Box<dyn FnMut(Instant, &Transmit) -> bool>;

pub struct World {
    pub now: Instant,
    pub room: MediaRoom,
    pub clients: Vec<Client>,
    pub events: Vec<SfuEvent>,
    ufrags: HashMap<String, PeerId>,
    addrs: HashMap<SocketAddr, PeerId>,
    to_clients: Vec<Transmit>,
    to_room: Vec<Transmit>,
    /// Media frames written so far (numbers the frames across `run` calls).
    frame: u64,
    /// Loss on the way from the clients to the room (true: dropped).
    pub uplink_loss: Option<LossFn>,
    /// Loss on the way from the room to the clients.
    pub downlink_loss: Option<LossFn>,
    /// The node-wide media counters the room adds to.
    pub metrics: SfuMetrics,
    /// Times the room's timer came due and `handle_timeout` ran.
    pub room_wakeups: u64,
}

/// True for an SRTP media packet (not RTCP, STUN or DTLS): RTP version 2 and
/// a payload type outside RTCP's 192..=223 range (RFC 5761).
pub fn is_rtp(t: &Transmit) -> bool {
    let c = &t.contents;
    c.len() >= 12 && c[0] >> 6 == 2 && !(192..=223).contains(&c[1])
}

/// A rate cap on everything sent to `to`: a token bucket of `bps` holding
/// `burst` bytes; what finds it empty is dropped (a policer).
pub fn rate_cap_to(to: SocketAddr, bps: u64, burst: u64) -> LossFn {
    let mut tokens = burst as f64;
    let mut last: Option<Instant> = None;
    Box::new(move |now, t| {
        if t.destination != to {
            return false;
        }
        let elapsed = last.map_or(0.0, |l| now.saturating_duration_since(l).as_secs_f64());
        last = Some(now);
        tokens = (tokens + elapsed * bps as f64 / 8.0).min(burst as f64);
        let size = t.contents.len() as f64;
        if tokens >= size {
            tokens -= size;
            false
        } else {
            true
        }
    })
}

/// Loss of every `n`th media packet with payload type `pt` sent from `from`
/// (retransmissions, on their own payload type, get through).
pub fn every_nth_rtp_from(from: SocketAddr, pt: u8, n: u64) -> LossFn {
    let mut count = 0u64;
    Box::new(move |_, t| {
        if t.source != from || !is_rtp(t) || t.contents[1] & 0x7f != pt {
            return false;
        }
        count += 1;
        count.is_multiple_of(n)
    })
}

/// Alice (client 0) publishes simulcast video and audio, Bob subscribes to
/// both and has had 4 s of them. Returns the world and Bob's index.
pub fn bob_gets_alices_simulcast() -> (World, usize) {
    let mut w = World::new();
    let a = w.join("alice");
    let b = w.join("bob");
    let (audio, video) = w.publish(a, true);
    w.run(Duration::from_secs(1));
    let bob = w.clients[b].sid.clone();
    w.room.subscribe(&bob, &audio).expect("subscribe audio");
    w.room.subscribe(&bob, &video).expect("subscribe video");
    w.run(Duration::from_secs(4));
    (w, b)
}

impl World {
    pub fn new() -> World {
        let now = Instant::now();
        let metrics = SfuMetrics::default();
        let config = RoomConfig {
            candidates: LocalCandidates {
                udp: vec![SFU],
                tcp: vec![],
            },
            metrics: metrics.clone(),
            ..RoomConfig::default()
        };
        World {
            now,
            room: MediaRoom::new(config, now),
            metrics,
            clients: Vec::new(),
            events: Vec::new(),
            ufrags: HashMap::new(),
            addrs: HashMap::new(),
            to_clients: Vec::new(),
            to_room: Vec::new(),
            frame: 0,
            uplink_loss: None,
            downlink_loss: None,
            room_wakeups: 0,
        }
    }

    /// Adds a participant; returns its index.
    pub fn join(&mut self, name: &str) -> usize {
        self.join_as(name, false)
    }

    /// Adds a participant with a single connection (signaling v1) and makes
    /// its first offer: its data channels and one recvonly section of each
    /// kind. Returns its index.
    pub fn join_single(&mut self, name: &str) -> usize {
        let i = self.join_as(name, true);
        self.offer_single(i, 1, 1);
        i
    }

    /// A single-connection client's new offer, with `audio` and `video`
    /// more recvonly sections (and its data channels the first time), as
    /// livekit-client makes on `MediaSectionsRequirement`.
    pub fn offer_single(&mut self, i: usize, audio: u32, video: u32) {
        let c = &mut self.clients[i];
        let first = c.pub_channel.is_none();
        let mut api = c.publisher.sdp_api();
        // A browser's transceiver stays recvonly when an answer made it
        // inactive; a str0m peer takes the answer's direction as its own.
        for mid in &c.recv_mids {
            api.set_direction(*mid, Direction::RecvOnly);
        }
        for mid in &c.inactive_mids {
            api.set_direction(*mid, Direction::Inactive);
        }
        for (kind, n) in [(MediaKind::Audio, audio), (MediaKind::Video, video)] {
            for _ in 0..n {
                let mid = api.add_media(kind, Direction::RecvOnly, None, None, None);
                c.recv_mids.push(mid);
            }
        }
        if !api.has_changes() {
            // A browser offers again with nothing changed; str0m makes an
            // offer only for a change, and an ICE restart is the smallest.
            api.ice_restart(true);
        }
        let mut channel = None;
        if first {
            channel = Some(api.add_channel("_reliable".into()));
            api.add_channel("_lossy".into());
        }
        let Some((offer, pending)) = api.apply() else {
            return;
        };
        if channel.is_some() {
            c.pub_channel = channel;
        }
        let sid = c.sid.clone();
        let answer = self
            .room
            .answer_offer(&sid, &offer.to_sdp_string(), self.now)
            .expect("answer");
        let parsed = SdpAnswer::from_sdp_string(&answer.sdp).expect("parse answer");
        let c = &mut self.clients[i];
        c.publisher
            .sdp_api()
            .accept_answer(pending, parsed)
            .expect("accept answer");
        c.answers.push(answer);
    }

    fn join_as(&mut self, name: &str, single: bool) -> usize {
        let i = self.clients.len();
        let sid = ParticipantSid::new(format!("PA_{name}"));
        if single {
            self.room
                .add_single_participant(sid.clone(), self.now)
                .expect("join");
        } else {
            self.room
                .add_participant(sid.clone(), self.now)
                .expect("join");
        }
        let ip = Ipv4Addr::new(10, 0, 1, i as u8 + 1);
        let pub_addr = SocketAddr::new(ip.into(), 5000);
        let sub_addr = SocketAddr::new(ip.into(), 6000);
        let mut publisher = Rtc::new(self.now);
        publisher.add_local_candidate(Candidate::host(pub_addr, "udp").expect("candidate"));
        let mut subscriber = Rtc::new(self.now);
        subscriber.add_local_candidate(Candidate::host(sub_addr, "udp").expect("candidate"));
        self.clients.push(Client {
            sid,
            publisher,
            subscriber,
            pub_addr,
            sub_addr,
            pub_timeout: self.now,
            sub_timeout: self.now,
            received: Vec::new(),
            data: Vec::new(),
            sub_channels: HashMap::new(),
            pub_channel: None,
            pub_channel_open: false,
            keyframe_requests: Vec::new(),
            keyframe_requests_total: 0,
            sub_offers: Vec::new(),
            audio_mid: None,
            video_mid: None,
            video_written: [0; 3],
            paused_layers: [false; 3],
            holds_keyframes: false,
            single,
            answers: Vec::new(),
            recv_mids: Vec::new(),
            inactive_mids: Vec::new(),
        });
        i
    }

    /// Announces and negotiates an Opus track and a VP8 track (simulcast q/h/f
    /// when `simulcast`), plus a `_reliable` data channel.
    pub fn publish(&mut self, i: usize, simulcast: bool) -> (TrackSid, TrackSid) {
        let sid = self.clients[i].sid.clone();
        let audio = TrackSid::new(format!("TR_audio_{i}"));
        let video = TrackSid::new(format!("TR_video_{i}"));
        self.room
            .expect_track(
                &sid,
                audio.clone(),
                format!("cid-audio-{i}"),
                TrackKind::Audio,
                vec![],
                None,
            )
            .expect("expect audio");
        let layers = if simulcast {
            vec![
                LayerInfo {
                    layer: nodo_sfu::Layer::Low,
                    width: 320,
                    height: 180,
                },
                LayerInfo {
                    layer: nodo_sfu::Layer::Medium,
                    width: 640,
                    height: 360,
                },
                LayerInfo {
                    layer: nodo_sfu::Layer::High,
                    width: 1280,
                    height: 720,
                },
            ]
        } else {
            vec![]
        };
        self.room
            .expect_track(
                &sid,
                video.clone(),
                format!("cid-video-{i}"),
                TrackKind::Video,
                layers,
                Some("vp8".to_string()),
            )
            .expect("expect video");
        let c = &mut self.clients[i];
        let mut api = c.publisher.sdp_api();
        let a = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some("s".into()),
            Some(format!("cid-audio-{i}")),
            None,
        );
        let sim = simulcast.then(|| {
            let mut s = Simulcast::new();
            for rid in ["q", "h", "f"] {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let v = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some("s".into()),
            Some(format!("cid-video-{i}")),
            sim,
        );
        // A single connection made its channels with its first offer.
        let ch = c
            .pub_channel
            .is_none()
            .then(|| api.add_channel("_reliable".into()));
        let (offer, pending) = api.apply().expect("offer");
        c.audio_mid = Some(a);
        c.video_mid = Some(v);
        if ch.is_some() {
            c.pub_channel = ch;
        }
        let answer = self
            .room
            .publisher_offer(&sid, &offer.to_sdp_string(), self.now)
            .expect("answer");
        let answer = SdpAnswer::from_sdp_string(&answer).expect("parse answer");
        self.clients[i]
            .publisher
            .sdp_api()
            .accept_answer(pending, answer)
            .expect("accept answer");
        (audio, video)
    }

    /// Runs the world for `d` of simulated time, publishing media from every
    /// publishing client: 20 ms Opus frames and ~30 fps VP8 frames per layer.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        let mut next_audio = self.now;
        let mut next_video = self.now;
        let mut frame = self.frame;
        while self.now < end {
            if self.now >= next_audio {
                self.write_audio(frame);
                next_audio += Duration::from_millis(20);
            }
            if self.now >= next_video {
                self.write_video(frame);
                frame += 1;
                next_video += Duration::from_millis(33);
            }
            self.step();
            self.now += Duration::from_millis(1);
        }
        self.frame = frame;
    }

    fn write_audio(&mut self, frame: u64) {
        let now = self.now;
        for c in &mut self.clients {
            let Some(mid) = c.audio_mid else { continue };
            let Some(pt) = c
                .publisher
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == Codec::Opus)
                .map(|p| p.pt())
            else {
                continue;
            };
            if let Some(w) = c.publisher.writer(mid) {
                let t = MediaTime::new(frame * 960, Frequency::FORTY_EIGHT_KHZ);
                let _ = w.write(pt, now, t, vec![0xfc, frame as u8, 1, 2, 3]);
            }
        }
    }

    fn write_video(&mut self, frame: u64) {
        let now = self.now;
        for c in &mut self.clients {
            let Some(mid) = c.video_mid else { continue };
            let Some(pt) = c
                .publisher
                .codec_config()
                .params()
                .iter()
                .find(|p| p.spec().codec == Codec::Vp8)
                .map(|p| p.pt())
            else {
                continue;
            };
            let rids: Vec<Option<Rid>> = match c.publisher.media(mid).map(|m| m.rids_tx()) {
                Some(nodo_sfu::str0m::media::Rids::Specific(v)) if !v.is_empty() => {
                    v.iter().copied().map(Some).collect()
                }
                _ => vec![None],
            };
            let requested: Vec<Option<Rid>> = if c.holds_keyframes {
                Vec::new()
            } else {
                std::mem::take(&mut c.keyframe_requests)
            };
            for (layer, rid) in rids.iter().enumerate() {
                if c.paused_layers[layer] {
                    continue;
                }
                // VP8 frame tag: bit 0 clear on key frames. Every 3 s, or on request.
                let key = !c.holds_keyframes
                    && (frame.is_multiple_of(90)
                        || requested.iter().any(|r| r.is_none() || r == rid));
                let mut payload = vec![if key { 0x10 } else { 0x11 }, layer as u8, frame as u8];
                payload.resize(200 + 300 * layer, 0xaa);
                payload[3..11].copy_from_slice(&frame.to_be_bytes());
                if let Some(w) = c.publisher.writer(mid) {
                    let w = match rid {
                        Some(r) => w.rid(*r),
                        None => w,
                    };
                    let t = MediaTime::new(frame * 3000, Frequency::NINETY_KHZ);
                    if w.write(pt, now, t, payload).is_ok() {
                        c.video_written[layer] += 1;
                    }
                }
            }
        }
    }

    /// One round: feed timeouts, move every queued packet, handle events.
    pub fn step(&mut self) {
        let now = self.now;
        for ci in 0..self.clients.len() {
            self.poll_client(ci, now);
        }
        if self.room.poll_timeout() <= now {
            self.room_wakeups += 1;
            self.room.handle_timeout(now);
        }
        loop {
            let mut moved = false;
            while let Some(t) = self.room.poll_transmit() {
                self.to_clients.push(t);
            }
            while let Some(ev) = self.room.poll_event() {
                self.on_room_event(ev);
                moved = true;
            }
            for t in std::mem::take(&mut self.to_clients) {
                moved = true;
                if self
                    .downlink_loss
                    .as_mut()
                    .is_some_and(|lost| lost(now, &t))
                {
                    continue;
                }
                for c in &mut self.clients {
                    let rtc = if t.destination == c.pub_addr {
                        &mut c.publisher
                    } else if t.destination == c.sub_addr {
                        &mut c.subscriber
                    } else {
                        continue;
                    };
                    let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                        .expect("parse");
                    let _ = rtc.handle_input(Input::Receive(now, r));
                }
            }
            for t in std::mem::take(&mut self.to_room) {
                moved = true;
                if self.uplink_loss.as_mut().is_some_and(|lost| lost(now, &t)) {
                    continue;
                }
                let Some(peer) = self.route(&t) else { continue };
                let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                    .expect("parse");
                self.room.handle_receive(now, peer, r);
            }
            for ci in 0..self.clients.len() {
                moved |= self.poll_client(ci, now);
            }
            if !moved {
                break;
            }
        }
    }

    /// Runs rounds at the current instant until the room has nothing due now
    /// (answering an offer, for one, makes ICE checks due at once).
    pub fn settle(&mut self) {
        for _ in 0..10 {
            self.step();
            if self.room.poll_timeout() > self.now {
                return;
            }
        }
        panic!("the room keeps having work due at the same instant");
    }

    /// Everything the room queued for the network, without moving it.
    pub fn take_room_transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.room.poll_transmit()).collect()
    }

    /// Hands packets from the room to the clients they are addressed to, at
    /// the current instant, and drains those clients. Feeds no timeouts and
    /// moves nothing back to the room. Returns how many reached a client.
    pub fn deliver_to_clients(&mut self, transmits: Vec<Transmit>) -> usize {
        let now = self.now;
        let mut delivered = 0;
        for t in transmits {
            for c in &mut self.clients {
                let publisher = if t.destination == c.pub_addr {
                    true
                } else if t.destination == c.sub_addr {
                    false
                } else {
                    continue;
                };
                let rtc = if publisher {
                    &mut c.publisher
                } else {
                    &mut c.subscriber
                };
                let r = Receive::new(Protocol::Udp, t.source, t.destination, &t.contents)
                    .expect("parse");
                rtc.handle_input(Input::Receive(now, r))
                    .expect("client accepts the packet");
                delivered += 1;
                Self::drain_client(c, publisher, &mut self.to_room);
            }
        }
        delivered
    }

    fn route(&mut self, t: &Transmit) -> Option<PeerId> {
        if let Ok(msg) = StunMessage::parse(&t.contents) {
            if let Some((local, _)) = msg.split_username() {
                let peer = *self.ufrags.get(local)?;
                self.addrs.insert(t.source, peer);
                return Some(peer);
            }
        }
        self.addrs.get(&t.source).copied()
    }

    fn on_room_event(&mut self, ev: SfuEvent) {
        match &ev {
            SfuEvent::Ufrag { peer, ufrag } => {
                self.ufrags.insert(ufrag.clone(), *peer);
            }
            SfuEvent::SubscriberOffer { participant, sdp } => {
                let ci = self
                    .clients
                    .iter()
                    .position(|c| &c.sid == participant)
                    .expect("client");
                let offer = SdpOffer::from_sdp_string(sdp).expect("offer parses");
                let answer = self.clients[ci]
                    .subscriber
                    .sdp_api()
                    .accept_offer(offer)
                    .expect("accept offer");
                self.clients[ci].sub_offers.push(sdp.clone());
                let sid = self.clients[ci].sid.clone();
                self.room
                    .subscriber_answer(&sid, &answer.to_sdp_string(), self.now)
                    .expect("answer accepted");
            }
            SfuEvent::MediaSections {
                participant,
                audio,
                video,
            } => {
                let ci = self
                    .clients
                    .iter()
                    .position(|c| &c.sid == participant)
                    .expect("client");
                self.offer_single(ci, *audio, *video);
            }
            _ => {}
        }
        self.events.push(ev);
    }

    /// Feeds due timeouts to one client's two connections and drains them;
    /// true when anything happened.
    fn poll_client(&mut self, ci: usize, now: Instant) -> bool {
        let mut any = false;
        let c = &mut self.clients[ci];
        for publisher in [true, false] {
            let (rtc, timeout) = if publisher {
                (&mut c.publisher, c.pub_timeout)
            } else {
                (&mut c.subscriber, c.sub_timeout)
            };
            if timeout <= now {
                let _ = rtc.handle_input(Input::Timeout(now));
            }
            any |= Self::drain_client(c, publisher, &mut self.to_room);
        }
        any
    }

    /// Drains one client connection to its next timeout, recording what it
    /// received; true when it produced anything.
    fn drain_client(c: &mut Client, publisher: bool, to_room: &mut Vec<Transmit>) -> bool {
        let mut any = false;
        loop {
            let rtc = if publisher {
                &mut c.publisher
            } else {
                &mut c.subscriber
            };
            match rtc.poll_output().expect("client rtc") {
                Output::Timeout(t) => {
                    if publisher {
                        c.pub_timeout = t;
                    } else {
                        c.sub_timeout = t;
                    }
                    return any;
                }
                Output::Transmit(t) => {
                    any = true;
                    to_room.push(t);
                }
                Output::Event(e) => {
                    any = true;
                    let receives = !publisher || c.single;
                    match e {
                        Event::MediaData(d) if receives => {
                            c.received.push((d.mid, d.data.to_vec()))
                        }
                        Event::KeyframeRequest(k) if publisher => {
                            c.keyframe_requests.push(k.rid);
                            c.keyframe_requests_total += 1;
                        }
                        Event::ChannelOpen(id, label) => {
                            if publisher {
                                c.pub_channel_open = true;
                            }
                            if receives {
                                c.sub_channels.insert(id, label);
                            }
                        }
                        Event::ChannelData(d) if receives => {
                            let label = c.sub_channels.get(&d.id).cloned().unwrap_or_default();
                            c.data.push((label, d.data));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Video frames (layer byte, frame byte) client `i` received on `mid`.
    pub fn video_frames(&self, i: usize) -> Vec<(u8, u8)> {
        self.clients[i]
            .received
            .iter()
            .filter(|(_, d)| d.len() >= 200 && (d[0] == 0x10 || d[0] == 0x11))
            .map(|(_, d)| (d[1], d[2]))
            .collect()
    }

    /// Distinct video frame numbers client `i` received, with the mid they came on.
    pub fn video_frame_ids(&self, i: usize) -> std::collections::BTreeSet<(Mid, u64)> {
        self.clients[i]
            .received
            .iter()
            .filter(|(_, d)| d.len() >= 200 && (d[0] == 0x10 || d[0] == 0x11))
            .map(|(m, d)| {
                let mut n = [0u8; 8];
                n.copy_from_slice(&d[3..11]);
                (*m, u64::from_be_bytes(n))
            })
            .collect()
    }

    /// The value of one of the node's counters, by its name in `/metrics`
    /// (without the `_total` suffix), summed over its labels.
    pub fn counter(&self, name: &str) -> u64 {
        let mut registry = prometheus_client::registry::Registry::default();
        self.metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let series = format!("{name}_total");
        text.lines()
            .filter_map(|l| l.strip_prefix(&series))
            .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            .filter_map(|rest| rest.split_whitespace().last()?.parse::<u64>().ok())
            .sum()
    }

    /// Audio frames client `i` received.
    pub fn audio_frames(&self, i: usize) -> usize {
        self.clients[i]
            .received
            .iter()
            .filter(|(_, d)| d.first() == Some(&0xfc))
            .count()
    }
}
