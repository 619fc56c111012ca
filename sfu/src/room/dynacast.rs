//! Dynacast and stream states.
//!
//! Dynacast: a publisher is told the highest simulcast layer any subscriber
//! of its video track wants, so that its client pauses the layers above
//! (LiveKit's `subscribed_quality_update`; livekit-client acts on it with
//! `dynacast: true`). More layers are asked for at once; fewer only after
//! they have been wanted for `RoomConfig::dynacast_pause_delay`, so a
//! viewer resizing or scrolling does not make the publisher's encoder flap.
//! Until a track has a first subscriber, its publisher is left alone for
//! [`INITIAL_WAIT`] (a subscriber is usually on its way), then told that
//! nobody watches.
//!
//! Stream states: a subscriber is told when a video stream it receives
//! stops (no layer of it arrives, whoever paused it: the publisher's client,
//! its network, or dynacast) and when it flows again.

use std::time::{Duration, Instant};

use super::{MediaRoom, SfuEvent, StreamState};
use crate::ids::{Layer, TrackKind, TrackSid};
use crate::track::Track;

/// How long a video track without subscribers is sent in full before its
/// publisher is told that nobody receives it (LiveKit waits as long).
pub(crate) const INITIAL_WAIT: Duration = Duration::from_secs(10);

/// How long a new or resumed subscription may go without media before its
/// stream counts as paused (the publisher may be starting a paused layer).
const STREAM_START_GRACE: Duration = Duration::from_secs(2);

/// What the publisher of one video track was told.
#[derive(Debug, Clone)]
pub(crate) struct Dynacast {
    /// The highest layer it was told to send (`Some(None)`: none); `None`
    /// before it was told anything.
    committed: Option<Option<Layer>>,
    /// Since when fewer layers than committed have been wanted.
    lower_since: Option<Instant>,
    /// When the track was announced.
    created: Instant,
}

impl Dynacast {
    pub(crate) fn new(now: Instant) -> Dynacast {
        Dynacast {
            committed: None,
            lower_since: None,
            created: now,
        }
    }

    /// Given the highest layer wanted now, what to tell the publisher, if
    /// anything: more at once, fewer once wanted for `pause_delay`.
    pub(crate) fn decide(
        &mut self,
        wanted: Option<Layer>,
        has_subscribers: bool,
        now: Instant,
        pause_delay: Duration,
    ) -> Option<Option<Layer>> {
        let Some(committed) = self.committed else {
            if has_subscribers || now >= self.created + INITIAL_WAIT {
                self.committed = Some(wanted);
                return Some(wanted);
            }
            return None;
        };
        if wanted >= committed {
            self.lower_since = None;
            if wanted == committed {
                return None;
            }
            self.committed = Some(wanted);
            return Some(wanted);
        }
        let since = *self.lower_since.get_or_insert(now);
        if now < since + pause_delay {
            return None;
        }
        self.lower_since = None;
        self.committed = Some(wanted);
        Some(wanted)
    }
}

impl Track {
    /// The highest layer any subscriber of this track wants (`None`: none
    /// wants video now, every subscription being disabled).
    fn max_wanted(&self) -> Option<Layer> {
        self.subscribers
            .iter()
            .filter(|s| !s.settings.disabled)
            .map(|s| {
                if self.simulcast {
                    self.wanted_layer(&s.settings)
                } else {
                    Layer::High
                }
            })
            .max()
    }

    /// The codec's name as livekit-client names it (`vp8`): the one the
    /// publisher announced, else the one its media arrives in.
    fn codec_name(&self) -> String {
        self.codec.clone().unwrap_or_default()
    }
}

impl MediaRoom {
    /// Dynacast for one track, after its subscriptions changed.
    pub(super) fn dynacast_track(&mut self, track: &TrackSid, now: Instant) {
        let delay = self.config.dynacast_pause_delay;
        let Some(t) = self.tracks.get_mut(track) else {
            return;
        };
        if t.kind != TrackKind::Video {
            return;
        }
        let wanted = t.max_wanted();
        let has_subscribers = !t.subscribers.is_empty();
        if let Some(max) = t.dynacast.decide(wanted, has_subscribers, now, delay) {
            tracing::debug!(track = %t.sid, ?max, "dynacast: subscribed quality");
            self.events.push_back(SfuEvent::SubscribedQuality {
                publisher: t.owner.clone(),
                track: t.sid.clone(),
                codec: t.codec_name(),
                simulcast: t.simulcast,
                max,
            });
        }
    }

    /// The layer tick's stream-state pass over every video subscription.
    pub(super) fn stream_state_tick(&mut self, now: Instant) {
        let mut changes = Vec::new();
        for t in self.tracks.values_mut() {
            // A muted track sends (almost) nothing by intent: its state is
            // left as it was until it is unmuted.
            if t.kind != TrackKind::Video || t.muted || t.source.is_none() {
                continue;
            }
            let live = t.any_live(now);
            for s in t.subscribers.iter_mut() {
                if s.settings.disabled || s.mid.is_none() {
                    continue;
                }
                // Within the grace a stream is neither called paused nor,
                // before its media arrives, active again.
                let starting = now.saturating_duration_since(s.enabled_since) < STREAM_START_GRACE;
                let paused = s.bwe_paused || (!live && (!starting || s.stream_paused));
                if paused != s.stream_paused {
                    s.stream_paused = paused;
                    changes.push(StreamState {
                        subscriber: s.subscriber.clone(),
                        publisher: t.owner.clone(),
                        track: t.sid.clone(),
                        paused,
                    });
                }
            }
        }
        if !changes.is_empty() {
            self.events.push_back(SfuEvent::StreamStates(changes));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DELAY: Duration = Duration::from_secs(5);

    #[test]
    fn more_layers_at_once_fewer_after_the_delay() {
        let t0 = Instant::now();
        let mut d = Dynacast::new(t0);
        // The first subscriber is answered at once, whatever it wants.
        assert_eq!(
            d.decide(Some(Layer::Low), true, t0, DELAY),
            Some(Some(Layer::Low))
        );
        assert_eq!(d.decide(Some(Layer::Low), true, t0, DELAY), None);
        // A larger viewer: at once.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            d.decide(Some(Layer::High), true, t1, DELAY),
            Some(Some(Layer::High))
        );
        // It leaves: the high layer goes on for the delay, then pauses.
        assert_eq!(d.decide(Some(Layer::Low), true, t1, DELAY), None);
        assert_eq!(
            d.decide(Some(Layer::Low), true, t1 + Duration::from_secs(4), DELAY),
            None
        );
        assert_eq!(
            d.decide(Some(Layer::Medium), true, t1 + DELAY, DELAY),
            Some(Some(Layer::Medium)),
            "what is wanted when the delay ends is told"
        );
        // Nobody left: every layer pauses after the delay.
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(d.decide(None, false, t2, DELAY), None);
        assert_eq!(d.decide(None, false, t2 + DELAY, DELAY), Some(None));
        // A subscriber back: at once.
        assert_eq!(
            d.decide(Some(Layer::Low), true, t2 + DELAY, DELAY),
            Some(Some(Layer::Low))
        );
    }

    #[test]
    fn a_dip_shorter_than_the_delay_changes_nothing() {
        let t0 = Instant::now();
        let mut d = Dynacast::new(t0);
        assert_eq!(
            d.decide(Some(Layer::High), true, t0, DELAY),
            Some(Some(Layer::High))
        );
        assert_eq!(
            d.decide(Some(Layer::Low), true, t0 + Duration::from_secs(1), DELAY),
            None
        );
        assert_eq!(
            d.decide(Some(Layer::High), true, t0 + Duration::from_secs(3), DELAY),
            None
        );
        // The dip's clock restarted: a new dip waits the whole delay again.
        let t1 = t0 + Duration::from_secs(4);
        assert_eq!(d.decide(Some(Layer::Low), true, t1, DELAY), None);
        assert_eq!(
            d.decide(Some(Layer::Low), true, t1 + Duration::from_secs(4), DELAY),
            None
        );
        assert_eq!(
            d.decide(Some(Layer::Low), true, t1 + DELAY, DELAY),
            Some(Some(Layer::Low))
        );
    }

    #[test]
    fn a_track_nobody_subscribes_to_is_paused_after_the_initial_wait() {
        let t0 = Instant::now();
        let mut d = Dynacast::new(t0);
        assert_eq!(
            d.decide(None, false, t0 + Duration::from_secs(9), DELAY),
            None
        );
        assert_eq!(d.decide(None, false, t0 + INITIAL_WAIT, DELAY), Some(None));
        assert_eq!(
            d.decide(None, false, t0 + Duration::from_secs(30), DELAY),
            None
        );
    }
}
