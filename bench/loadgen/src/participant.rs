//! One simulated participant: a signaling session plus up to two media
//! connections (send, receive), driven by one task on the current-thread
//! runtime until its lifetime ends or the run stops.

use std::io;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use str0m::crypto::dtls::DtlsCert;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::media::{MediaPeer, PeerEvent, SendSpec};
use crate::rxstamp::{self, Datagram};
use crate::signal::{Conn, LayerChoice, Signal, SignalEvent, Target, TrackSpec};
use crate::stats::Shared;
use crate::synth::{LayerSpec, VideoParams};

/// Datagrams read from one socket in a row before looking at anything else
/// (kept small so a busy generator still fires publishers' timers on time).
const RECV_BATCH: usize = 16;

/// What is common to every participant of a run.
pub struct Env {
    pub target: Target,
    /// Local address the media sockets bind to.
    pub ip: IpAddr,
    /// One DTLS certificate for every connection (generating one per
    /// connection would dominate join cost on our side).
    pub cert: DtlsCert,
    pub shared: Rc<Shared>,
    pub clock: Clock,
    pub video: VideoParams,
    pub audio_bytes: usize,
    /// Share (0..1) of incoming RTP datagrams receivers drop before str0m
    /// sees them, to exercise NACK/RTX.
    pub recv_loss: f64,
}

/// An RTP (not RTCP, STUN, DTLS) datagram (RFC 5761 / RFC 7983).
fn is_rtp(buf: &[u8]) -> bool {
    match buf {
        [b0, b1, ..] => b0 >> 6 == 2 && !(192..=223).contains(b1),
        _ => false,
    }
}

/// What one participant does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub index: u32,
    pub room: String,
    /// Video to publish: one layer, or the simulcast ladder.
    pub video: Option<Vec<LayerSpec>>,
    pub audio: bool,
    /// Receive what others publish.
    pub subscribe: bool,
    /// Layer asked for on each remote video track.
    pub layer: LayerChoice,
    /// Leave after this long (churn); `None`: stay until the run stops.
    pub lifetime: Option<Duration>,
}

impl Plan {
    pub fn identity(&self) -> String {
        format!("lg-{}", self.index)
    }

    fn tracks(&self) -> Vec<TrackSpec> {
        let mut t = Vec::new();
        if let Some(layers) = &self.video {
            t.push(TrackSpec::Video {
                cid: format!("lg-{}-video", self.index),
                layers: layers.clone(),
            });
        }
        if self.audio {
            t.push(TrackSpec::Audio {
                cid: format!("lg-{}-audio", self.index),
            });
        }
        t
    }
}

struct Participant {
    plan: Plan,
    env: Rc<Env>,
    started: Instant,
    sig: Signal,
    send: Option<MediaPeer>,
    recv: Option<MediaPeer>,
}

async fn recv_on(peer: Option<&MediaPeer>, buf: &mut [u8]) -> io::Result<Datagram> {
    match peer {
        Some(p) => rxstamp::recv(p.socket(), buf).await,
        None => std::future::pending().await,
    }
}

/// Feeds one datagram and whatever else is already queued on the socket,
/// dropping RTP at random with probability `loss`.
fn feed(peer: &mut MediaPeer, first: Datagram, buf: &mut [u8], loss: f64, shared: &Shared) {
    let mut next = Some(first);
    for _ in 0..=RECV_BATCH {
        let Some(d) = next else { break };
        let datagram = &buf[..d.len];
        if loss > 0.0 && is_rtp(datagram) && rand::random::<f64>() < loss {
            Shared::inc(&shared.counters.injected_loss);
        } else {
            peer.handle_datagram(Instant::now(), d.from, datagram, d.lag_ns);
        }
        next = rxstamp::try_recv(peer.socket(), buf).ok();
    }
}

/// Runs one participant to its end.
pub async fn run(plan: Plan, env: Rc<Env>, mut stop: watch::Receiver<bool>) {
    let started = Instant::now();
    let shared = env.shared.clone();
    let c = &shared.counters;
    let identity = plan.identity();
    let joining = Signal::connect(
        &env.target,
        &plan.room,
        &identity,
        plan.subscribe,
        plan.layer,
        shared.clone(),
    );
    let sig = match joining.await {
        Ok(s) => s,
        Err(e) => {
            Shared::inc(&c.join_failed);
            shared.error(e);
            return;
        }
    };
    Shared::inc(&c.joined);
    let mut p = Participant {
        plan,
        env,
        started,
        sig,
        send: None,
        recv: None,
    };
    if let Err(e) = p.main_loop(&mut stop).await {
        if !*stop.borrow() {
            shared.error(e);
        }
    }
    let now = Instant::now();
    for peer in [p.send.as_mut(), p.recv.as_mut()].into_iter().flatten() {
        peer.close(now);
    }
    p.sig.leave().await;
    Shared::inc(&c.left);
}

impl Participant {
    async fn main_loop(&mut self, stop: &mut watch::Receiver<bool>) -> Result<(), String> {
        let tracks = self.plan.tracks();
        if !tracks.is_empty() {
            self.sig.announce(&tracks).await?;
        }
        let end = self.plan.lifetime.map(|l| self.started + l);
        let far = Instant::now() + Duration::from_secs(86_400);
        let sleep = tokio::time::sleep_until(far.into());
        tokio::pin!(sleep);
        let mut buf_send = vec![0u8; 2048];
        let mut buf_recv = vec![0u8; 2048];
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let wake = [
                self.send.as_ref().map(MediaPeer::next_wake),
                self.recv.as_ref().map(MediaPeer::next_wake),
                end,
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far);
            // Re-arming the timer costs a timer-wheel update: do it only when
            // the wake-up moves earlier (or the timer fired). A later one
            // just means one early wake-up, which recomputes it.
            let wake = tokio::time::Instant::from_std(wake);
            if wake < sleep.deadline() || sleep.is_elapsed() {
                sleep.as_mut().reset(wake);
            }
            tokio::select! {
                biased;
                r = recv_on(self.recv.as_ref(), &mut buf_recv) => {
                    if let (Ok(first), Some(peer)) = (r, self.recv.as_mut()) {
                        feed(peer, first, &mut buf_recv, self.env.recv_loss, &self.env.shared);
                    }
                }
                r = recv_on(self.send.as_ref(), &mut buf_send) => {
                    if let (Ok(first), Some(peer)) = (r, self.send.as_mut()) {
                        feed(peer, first, &mut buf_send, 0.0, &self.env.shared);
                    }
                }
                events = self.sig.next() => {
                    for e in events? {
                        self.on_signal(e).await?;
                    }
                }
                () = &mut sleep => {
                    let now = Instant::now();
                    // Disarmed until the top of the loop sets the next wake-up.
                    sleep.as_mut().reset((now + Duration::from_secs(86_400)).into());
                    if end.is_some_and(|e| now >= e) {
                        return Ok(());
                    }
                    for peer in [self.send.as_mut(), self.recv.as_mut()].into_iter().flatten() {
                        peer.on_timer(now);
                    }
                }
                _ = stop.changed() => return Ok(()),
            }
            self.peer_events().await?;
        }
    }

    fn new_peer(&self) -> Result<MediaPeer, String> {
        MediaPeer::new(
            self.env.ip,
            &self.env.cert,
            self.env.shared.clone(),
            self.env.clock,
            Instant::now(),
        )
        .map_err(|e| format!("media socket: {e}"))
    }

    async fn on_signal(&mut self, e: SignalEvent) -> Result<(), String> {
        let now = Instant::now();
        match e {
            SignalEvent::RecvOffer(sdp) => {
                let first = self.recv.is_none();
                if first {
                    self.recv = Some(self.new_peer()?);
                }
                let Some(peer) = self.recv.as_mut() else {
                    return Ok(());
                };
                let answer = peer.accept_offer(&sdp, now)?;
                let candidate = peer.local_candidate();
                self.sig.answer(answer).await?;
                if first {
                    // As browsers do (the answer carries it too).
                    self.sig.candidate(Conn::Recv, candidate).await?;
                }
            }
            SignalEvent::PublishReady => {
                Shared::inc(&self.env.shared.counters.published);
                let mut peer = self.new_peer()?;
                let spec = SendSpec {
                    video: self.plan.video.as_ref().map(|layers| {
                        (
                            layers.clone(),
                            format!("lg-{}-video", self.plan.index),
                            layers.len() > 1,
                        )
                    }),
                    audio: self
                        .plan
                        .audio
                        .then(|| format!("lg-{}-audio", self.plan.index)),
                    video_params: self.env.video,
                    audio_bytes: self.env.audio_bytes,
                    tag: self.plan.index,
                };
                let offer = peer.offer(&spec, now)?;
                let candidate = peer.local_candidate();
                self.send = Some(peer);
                self.sig.offer(offer).await?;
                self.sig.candidate(Conn::Send, candidate).await?;
            }
            SignalEvent::SendAnswer(sdp) => {
                if let Some(peer) = self.send.as_mut() {
                    peer.accept_answer(&sdp, now)?;
                }
            }
            SignalEvent::Candidate(conn, c) => {
                let peer = match conn {
                    Conn::Send => self.send.as_mut(),
                    Conn::Recv => self.recv.as_mut(),
                };
                if let Some(peer) = peer {
                    peer.add_remote_candidate(&c, now);
                }
            }
            SignalEvent::Closed(reason) => return Err(reason),
        }
        Ok(())
    }

    /// Acts on what the media connections reported.
    async fn peer_events(&mut self) -> Result<(), String> {
        let shared = self.env.shared.clone();
        let c = &shared.counters;
        for conn in [Conn::Send, Conn::Recv] {
            let peer = match conn {
                Conn::Send => self.send.as_mut(),
                Conn::Recv => self.recv.as_mut(),
            };
            let Some(peer) = peer else { continue };
            for e in peer.take_events() {
                match e {
                    PeerEvent::Connected => Shared::inc(match conn {
                        Conn::Send => &c.send_connected,
                        Conn::Recv => &c.recv_connected,
                    }),
                    PeerEvent::Disconnected => {}
                    PeerEvent::FirstMedia => {
                        Shared::inc(&c.receiving);
                        shared.record_first_media(self.started.elapsed());
                    }
                    PeerEvent::RemoteVideo(track) => {
                        self.sig.set_layer(track, self.plan.layer).await?;
                    }
                }
            }
        }
        Ok(())
    }
}
