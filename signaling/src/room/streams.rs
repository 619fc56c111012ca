//! What the media room says about streams, told to the clients: dynacast's
//! `subscribed_quality_update` to publishers, `stream_state_update` to
//! subscribers.

use livekit_protocol as proto;
use nodo_sfu::{Layer, StreamState};
use proto::signal_response::Message as Out;

use super::actor::RoomActor;
use crate::ids::{ParticipantSid, TrackSid};

/// The LiveKit quality of a layer.
fn quality(layer: Layer) -> proto::VideoQuality {
    match layer {
        Layer::Low => proto::VideoQuality::Low,
        Layer::Medium => proto::VideoQuality::Medium,
        Layer::High => proto::VideoQuality::High,
    }
}

/// The `subscribed_quality_update` telling a publisher to send the layers up
/// to `max` and pause the rest (`None`: all). A track sent in one layer is
/// all on or all off: livekit-client reads its single encoding as the low
/// quality, whatever its size. The deprecated `subscribed_qualities` is
/// filled too, as LiveKit does, for clients older than `subscribed_codecs`.
#[allow(deprecated)]
pub(crate) fn subscribed_quality_update(
    track: &TrackSid,
    codec: String,
    simulcast: bool,
    max: Option<Layer>,
) -> proto::SubscribedQualityUpdate {
    let qualities: Vec<proto::SubscribedQuality> = Layer::ALL
        .iter()
        .map(|l| proto::SubscribedQuality {
            quality: quality(*l) as i32,
            enabled: match max {
                None => false,
                Some(_) if !simulcast => true,
                Some(m) => *l <= m,
            },
        })
        .collect();
    proto::SubscribedQualityUpdate {
        track_sid: track.to_string(),
        subscribed_qualities: qualities.clone(),
        subscribed_codecs: vec![proto::SubscribedCodec { codec, qualities }],
    }
}

impl RoomActor {
    pub(super) fn subscribed_quality(
        &mut self,
        publisher: &ParticipantSid,
        update: proto::SubscribedQualityUpdate,
    ) {
        if let Some(p) = self.participants.get_mut(publisher) {
            p.send(Out::SubscribedQualityUpdate(update));
        }
    }

    /// Tells each subscriber, in one message, the streams of it that paused
    /// or resumed.
    pub(super) fn stream_states(&mut self, changes: Vec<StreamState>) {
        let mut by_subscriber: Vec<(ParticipantSid, Vec<proto::StreamStateInfo>)> = Vec::new();
        for c in changes {
            let info = proto::StreamStateInfo {
                participant_sid: c.publisher.to_string(),
                track_sid: c.track.to_string(),
                state: if c.paused {
                    proto::StreamState::Paused
                } else {
                    proto::StreamState::Active
                } as i32,
            };
            match by_subscriber.iter_mut().find(|(s, _)| *s == c.subscriber) {
                Some((_, list)) => list.push(info),
                None => by_subscriber.push((c.subscriber, vec![info])),
            }
        }
        for (sid, stream_states) in by_subscriber {
            if let Some(p) = self.participants.get_mut(&sid) {
                p.send(Out::StreamStateUpdate(proto::StreamStateUpdate {
                    stream_states,
                }));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enabled(u: &proto::SubscribedQualityUpdate) -> Vec<bool> {
        u.subscribed_codecs[0]
            .qualities
            .iter()
            .map(|q| q.enabled)
            .collect()
    }

    #[test]
    #[allow(deprecated)]
    fn qualities_up_to_the_highest_wanted() {
        let t = TrackSid::new("TR_v");
        let u = subscribed_quality_update(&t, "vp8".into(), true, Some(Layer::Medium));
        assert_eq!(u.track_sid, "TR_v");
        assert_eq!(u.subscribed_codecs[0].codec, "vp8");
        assert_eq!(enabled(&u), [true, true, false]);
        assert_eq!(u.subscribed_qualities, u.subscribed_codecs[0].qualities);
        let qualities: Vec<i32> = u.subscribed_qualities.iter().map(|q| q.quality).collect();
        assert_eq!(
            qualities,
            [
                proto::VideoQuality::Low as i32,
                proto::VideoQuality::Medium as i32,
                proto::VideoQuality::High as i32
            ]
        );
        assert_eq!(
            enabled(&subscribed_quality_update(&t, "vp8".into(), true, None)),
            [false; 3]
        );
        // One layer: all on while anyone watches, even at a low quality.
        assert_eq!(
            enabled(&subscribed_quality_update(
                &t,
                "vp8".into(),
                false,
                Some(Layer::Low)
            )),
            [true; 3]
        );
    }
}
