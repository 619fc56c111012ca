//! The signaling side of a participant, independent of the dialect: what a
//! server tells us, and what we ask of it. Each dialect (LiveKit v0 for
//! Nodo, Janus VideoRoom over HTTP) maps its own protocol onto these.
//!
//! The model every dialect fits: a *send* connection where we offer and the
//! server answers (publishing), and a *receive* connection where the server
//! offers and we answer (subscribing).

use std::rc::Rc;

use crate::janus::{Janus, JanusTarget};
use crate::livekit::{LiveKit, LiveKitTarget};
use crate::stats::Shared;
use crate::synth::LayerSpec;

/// Which of our two connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conn {
    Send,
    Recv,
}

/// A simulcast layer a subscriber asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Quality {
    Low,
    Medium,
    High,
}

/// How a subscriber picks its layer: by name, or by the size it renders
/// (the server then picks the smallest layer that covers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerChoice {
    Quality(Quality),
    Size(u32, u32),
}

/// A track to publish.
#[derive(Debug, Clone)]
pub enum TrackSpec {
    /// Client track id (the msid track id in our offer), layers (one, or
    /// the simulcast ladder).
    Video {
        cid: String,
        layers: Vec<LayerSpec>,
    },
    Audio {
        cid: String,
    },
}

/// What the server told us.
#[derive(Debug, Clone, PartialEq)]
pub enum SignalEvent {
    /// The server offers media on the receive connection: answer it.
    RecvOffer(String),
    /// The server's answer to our offer on the send connection.
    SendAnswer(String),
    /// A remote ICE candidate (`candidate:…`).
    Candidate(Conn, String),
    /// The tracks we announced are accepted: offer them now.
    PublishReady,
    /// The server ended the session (reason).
    Closed(String),
}

/// Where to connect and how to authenticate, per dialect.
#[derive(Debug, Clone)]
pub enum Target {
    LiveKit(LiveKitTarget),
    Janus(JanusTarget),
}

impl Target {
    /// Readies the room of a run before anyone joins (Janus: creates it;
    /// LiveKit rooms are created by the first join). `idle`: participants
    /// will connect without anyone publishing (Janus needs a placeholder
    /// feed to subscribe to, for a receive connection to exist).
    pub async fn prepare(&self, room: &str, idle: bool) -> Result<(), String> {
        match self {
            Target::LiveKit(_) => Ok(()),
            Target::Janus(t) => crate::janus::create_room(t, room, idle).await,
        }
    }
}

/// One participant's signaling session.
pub enum Signal {
    LiveKit(Box<LiveKit>),
    Janus(Box<Janus>),
}

impl Signal {
    /// Joins `room` as `identity`. `subscribe`: receive what others
    /// publish, in the layer `layer` (Janus asks for it when subscribing).
    pub async fn connect(
        target: &Target,
        room: &str,
        identity: &str,
        subscribe: bool,
        layer: LayerChoice,
        shared: Rc<Shared>,
    ) -> Result<Signal, String> {
        match target {
            Target::LiveKit(t) => Ok(Signal::LiveKit(Box::new(
                LiveKit::connect(t, room, identity, subscribe, shared).await?,
            ))),
            Target::Janus(t) => Ok(Signal::Janus(Box::new(
                Janus::connect(t, room, identity, subscribe, layer, shared).await?,
            ))),
        }
    }

    /// The next server message, as events (possibly none). Cancel safe.
    pub async fn next(&mut self) -> Result<Vec<SignalEvent>, String> {
        match self {
            Signal::LiveKit(s) => s.next().await,
            Signal::Janus(s) => s.next().await,
        }
    }

    /// Announces tracks before offering them; `PublishReady` follows.
    pub async fn announce(&mut self, tracks: &[TrackSpec]) -> Result<(), String> {
        match self {
            Signal::LiveKit(s) => s.announce(tracks).await,
            Signal::Janus(s) => s.announce(tracks).await,
        }
    }

    pub async fn offer(&mut self, sdp: String) -> Result<(), String> {
        match self {
            Signal::LiveKit(s) => s.offer(sdp).await,
            Signal::Janus(s) => s.offer(sdp).await,
        }
    }

    pub async fn answer(&mut self, sdp: String) -> Result<(), String> {
        match self {
            Signal::LiveKit(s) => s.answer(sdp).await,
            Signal::Janus(s) => s.answer(sdp).await,
        }
    }

    pub async fn candidate(&mut self, conn: Conn, candidate: String) -> Result<(), String> {
        match self {
            Signal::LiveKit(s) => s.candidate(conn, candidate).await,
            Signal::Janus(s) => s.candidate(conn, candidate).await,
        }
    }

    /// Asks for one layer of a remote video track (by the id the receive
    /// connection's m-line carries).
    pub async fn set_layer(&mut self, track: String, choice: LayerChoice) -> Result<(), String> {
        match self {
            Signal::LiveKit(s) => s.set_layer(track, choice).await,
            Signal::Janus(s) => s.set_layer(track, choice).await,
        }
    }

    /// Leaves the room (best effort) and closes the session.
    pub async fn leave(&mut self) {
        match self {
            Signal::LiveKit(s) => s.leave().await,
            Signal::Janus(s) => s.leave().await,
        }
    }
}
