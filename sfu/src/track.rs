//! Published tracks, their subscriptions and simulcast layer choice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use str0m::format::PayloadParams;
use str0m::media::{KeyframeRequestKind, Mid, Pt};
use str0m::rtp::Ssrc;

use crate::ids::{Layer, ParticipantSid, PeerId, TrackKind, TrackSid};
use crate::rewrite::Rewriter;

/// A layer the publisher announced (LiveKit `VideoLayer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    pub layer: Layer,
    pub width: u32,
    pub height: u32,
}

/// What a subscriber asked for (LiveKit `UpdateTrackSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionSettings {
    /// Paused: nothing is forwarded.
    pub disabled: bool,
    /// Highest layer wanted.
    pub max_layer: Layer,
    /// Rendered size, when the client reports it (adaptive stream); picks the
    /// smallest layer at least this wide/high.
    pub size: Option<(u32, u32)>,
}

impl Default for SubscriptionSettings {
    fn default() -> Self {
        SubscriptionSettings {
            disabled: false,
            max_layer: Layer::High,
            size: None,
        }
    }
}

/// How a publisher payload type goes out to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutPt {
    /// As it came, under the subscriber's number for the codec.
    Plain(Pt),
    /// RED to a subscriber that negotiated it: under its RED number, the
    /// block headers renumbered when its Opus number differs.
    Red { red: Pt, opus_from: Pt, opus_to: Pt },
    /// RED to a subscriber that did not negotiate it: the primary block
    /// alone, as Opus under the subscriber's number.
    Unred { opus_from: Pt, opus_to: Pt },
}

/// A layer counts as live when it delivered a packet this recently.
const LAYER_LIVE: Duration = Duration::from_millis(1500);

pub(crate) struct Track {
    pub sid: TrackSid,
    pub owner: ParticipantSid,
    pub kind: TrackKind,
    /// Publisher peer and m-line, once the media is negotiated.
    pub source: Option<(PeerId, Mid)>,
    pub cid: String,
    pub layers: Vec<LayerInfo>,
    pub simulcast: bool,
    /// Last packet per layer (index = Layer as usize); index 0 for non-simulcast.
    pub last_packet: [Option<Instant>; 3],
    /// What each layer sends (bits/s in `rates.rate`).
    pub rates: crate::rates::LayerRates,
    /// Last keyframe request per layer, to throttle PLIs towards the publisher.
    pub last_pli: [Option<Instant>; 3],
    /// Per layer, the publisher stream (SSRC) whose losses Nodo NACKs (see
    /// `MediaRoom::forward`): set once per stream, again if the SSRC changes.
    pub nack_ssrc: [Option<Ssrc>; 3],
    /// A keyframe request per layer that could not go out yet (throttled, or the
    /// publisher's stream for the layer not seen yet); sent as soon as it can.
    pub pending_pli: [Option<KeyframeRequestKind>; 3],
    /// Per layer, when the first keyframe request the publisher has not
    /// answered yet went out: requests are lost on lossy links, so they are
    /// repeated until a keyframe starts (see `MediaRoom::retry_keyframes`).
    pub awaiting_keyframe: [Option<Instant>; 3],
    /// Per layer, the gaps in what the publisher sent, to ask for a keyframe
    /// once one is beyond repair.
    pub gaps: [crate::gaps::Gaps; 3],
    pub subscribers: Vec<Subscription>,
    /// Audio: loudest level (dBov, 0 loudest) and voiced packets in the current window.
    pub audio_active_packets: u32,
    pub audio_packets: u32,
    pub audio_level_sum: f32,
    /// Publisher payload type -> codec, learned from the publisher's negotiation.
    pub codecs: HashMap<Pt, PayloadParams>,
    /// Codec name the publisher asked to send (`vp9`, `av1`…), first in our answer.
    pub codec: Option<String>,
    pub muted: bool,
    /// What the publisher was last told to send (video).
    pub dynacast: crate::room::Dynacast,
    /// Audio: the highest sequence number received and its timestamp, to
    /// find the packets a RED packet's redundancy can stand in for.
    pub audio_last: Option<(u64, u32)>,
}

pub(crate) struct Subscription {
    pub subscriber: ParticipantSid,
    pub peer: PeerId,
    /// Send m-line on the subscriber connection; `None` until negotiated.
    pub mid: Option<Mid>,
    pub settings: SubscriptionSettings,
    /// Layer being forwarded now, `None` before the first keyframe.
    pub current: Option<Layer>,
    /// Layer we want to switch to.
    pub target: Layer,
    pub rewriter: Option<Rewriter>,
    /// Publisher PT -> how the subscriber receives it.
    pub pt_map: Vec<(Pt, OutPt)>,
    /// Bandwidth cap from the subscriber's estimate.
    pub bwe_cap: Layer,
    /// Whether `bwe_cap` has been set from an estimate yet. The first cap is
    /// where the subscription starts (a connection's first estimate is
    /// str0m's start value), not a congestion: it holds nothing back.
    pub bwe_decided: bool,
    /// After the cap went down, it may not go up before this instant.
    pub bwe_hold_until: Option<Instant>,
    /// When forwarding last stopped because the subscriber's pacer backed up.
    pub congested_at: Option<Instant>,
    /// The current hold after a congestion (see `BWE_HOLD`).
    pub bwe_hold: Duration,
    /// Since when it has been subscribed and not disabled (a new or resumed
    /// subscription is not called paused while its media starts).
    pub enabled_since: Instant,
    /// Whether the subscriber was last told the stream is paused.
    pub stream_paused: bool,
    /// Paused for the subscriber's bandwidth: its estimate cannot carry even
    /// the lowest layer, and the subscriber allows pausing (see
    /// `MediaRoom::set_allow_pause`).
    pub bwe_paused: bool,
}

impl Track {
    /// For an audio packet `seq` (timestamp `ts`, RED when `red` names the
    /// Opus number inside): the packets lost just before it that its RED
    /// blocks carry (see [`crate::red::recover`]).
    pub fn red_recover(
        &mut self,
        seq: u64,
        ts: u32,
        payload: &[u8],
        red: Option<u8>,
    ) -> Vec<(u64, u32, std::sync::Arc<[u8]>)> {
        let last = self.audio_last;
        if last.is_none_or(|(l, _)| seq > l) {
            self.audio_last = Some((seq, ts));
        }
        match (red, last) {
            (Some(opus), Some(last)) => crate::red::recover(last, seq, ts, payload, opus),
            _ => Vec::new(),
        }
    }

    pub fn layer_index(layer: Option<Layer>) -> usize {
        layer.map_or(0, |l| l as usize)
    }

    pub fn live(&self, layer: Layer, now: Instant) -> bool {
        self.last_packet[layer as usize]
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_LIVE)
    }

    /// Whether any layer of the track delivered media lately.
    pub fn any_live(&self, now: Instant) -> bool {
        Layer::ALL.iter().any(|l| self.live(*l, now))
    }

    /// The highest layer a subscriber's settings ask for: its quality,
    /// lowered to the smallest layer that covers its rendered size. What
    /// the subscriber's bandwidth allows is not part of it.
    pub fn wanted_layer(&self, settings: &SubscriptionSettings) -> Layer {
        let mut want = settings.max_layer;
        if let Some((w, h)) = settings.size {
            let fit = self
                .layers
                .iter()
                .filter(|l| l.width >= w || l.height >= h)
                .map(|l| l.layer)
                .min()
                .or_else(|| self.layers.iter().map(|l| l.layer).max());
            if let Some(fit) = fit {
                want = want.min(fit);
            }
        }
        want
    }

    /// The layer a subscriber should receive: the wanted one, capped by bandwidth,
    /// falling back to the nearest live layer.
    pub fn choose_layer(&self, sub: &Subscription, now: Instant) -> Layer {
        let want = self.wanted_layer(&sub.settings).min(sub.bwe_cap);
        if self.live(want, now) {
            return want;
        }
        // Nearest live layer below, else above.
        let below = Layer::ALL
            .iter()
            .rev()
            .find(|l| **l < want && self.live(**l, now));
        let above = Layer::ALL
            .iter()
            .find(|l| **l > want && self.live(**l, now));
        below.or(above).copied().unwrap_or(want)
    }
}
