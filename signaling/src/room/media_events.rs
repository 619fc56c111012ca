//! What the media room tells the room actor (`SfuEvent`), turned into
//! signal messages, webhooks and room state.

use std::collections::HashMap;

use livekit_protocol as proto;
use nodo_sfu::SfuEvent;
use proto::signal_response::Message as Out;

use super::actor::RoomActor;
use crate::ids::ParticipantSid;

impl RoomActor {
    pub(super) fn on_sfu_event(&mut self, ev: SfuEvent) {
        match ev {
            SfuEvent::Ufrag { peer, ufrag } => {
                self.manager
                    .transport()
                    .register(&ufrag, peer, self.inbox.clone());
            }
            SfuEvent::SubscriberOffer { participant, sdp } => {
                if let Some(p) = self.participants.get_mut(&participant) {
                    p.send(Out::Offer(proto::SessionDescription {
                        r#type: "offer".into(),
                        sdp,
                        id: 0,
                        mid_to_track_id: HashMap::new(),
                    }));
                }
            }
            SfuEvent::MediaSections {
                participant,
                audio,
                video,
            } => {
                if audio + video > 0 {
                    tracing::info!(%participant, audio, video, "asking for more media sections");
                }
                if let Some(p) = self.participants.get_mut(&participant) {
                    p.send(Out::MediaSectionsRequirement(
                        proto::MediaSectionsRequirement {
                            num_audios: audio,
                            num_videos: video,
                        },
                    ));
                }
            }
            SfuEvent::TrackMedia { participant, track } => self.track_media(&participant, &track),
            SfuEvent::TrackEnded { participant, track } => self.track_ended(&participant, &track),
            SfuEvent::Data {
                participant,
                reliable,
                data,
            } => self.route_data(&participant, reliable, &data),
            SfuEvent::Speakers(list) => {
                let speakers: Vec<proto::SpeakerInfo> = list
                    .into_iter()
                    .map(|(sid, level, active)| proto::SpeakerInfo {
                        sid: sid.to_string(),
                        level,
                        active,
                    })
                    .collect();
                for p in self.participants.values_mut() {
                    p.send(Out::SpeakersChanged(proto::SpeakersChanged {
                        speakers: speakers.clone(),
                    }));
                }
            }
            SfuEvent::Quality(list) => {
                // As LiveKit does: each participant hears its own quality and
                // that of the participants it receives, not everyone's (in a
                // room of 1,000 idle participants, everyone's was 40 Mbit/s
                // of signaling).
                let by_sid: HashMap<ParticipantSid, proto::ConnectionQualityInfo> = list
                    .into_iter()
                    .map(|(sid, score)| {
                        let info = proto::ConnectionQualityInfo {
                            participant_sid: sid.to_string(),
                            quality: quality_of(score) as i32,
                            score,
                        };
                        (sid, info)
                    })
                    .collect();
                let mut sources = self.media.publishers_by_subscriber();
                for (sid, p) in self.participants.iter_mut() {
                    let mut updates: Vec<proto::ConnectionQualityInfo> =
                        by_sid.get(sid).cloned().into_iter().collect();
                    for owner in sources.remove(sid).unwrap_or_default() {
                        if &owner != sid {
                            updates.extend(by_sid.get(&owner).cloned());
                        }
                    }
                    if !updates.is_empty() {
                        p.send(Out::ConnectionQuality(proto::ConnectionQualityUpdate {
                            updates,
                        }));
                    }
                }
            }
            SfuEvent::Connected { participant, role } => {
                if let Some(p) = self.participants.get_mut(&participant) {
                    if !p.active && role == p.primary {
                        p.active = true;
                        p.info.state = proto::participant_info::State::Active as i32;
                        p.touch();
                        let info = p.info.clone();
                        if !p.hidden() {
                            self.announce(&info, Some(&participant));
                        }
                    }
                }
            }
            SfuEvent::Disconnected { participant, role } => {
                tracing::debug!(%participant, ?role, "peer connection lost");
            }
            SfuEvent::Subscribed { participant, track } => {
                let owner = self
                    .participants
                    .values()
                    .find(|p| p.info.tracks.iter().any(|t| t.sid == track.as_str()))
                    .map(|p| p.sid());
                if let Some(owner) = owner.and_then(|o| self.participants.get_mut(&o)) {
                    owner.send(Out::TrackSubscribed(proto::TrackSubscribed {
                        track_sid: track.to_string(),
                    }));
                }
                tracing::debug!(%participant, %track, "subscribed");
            }
            SfuEvent::SubscribedQuality {
                publisher,
                track,
                codec,
                simulcast,
                max,
            } => {
                let update =
                    super::streams::subscribed_quality_update(&track, codec, simulcast, max);
                self.subscribed_quality(&publisher, update);
            }
            SfuEvent::StreamStates(changes) => self.stream_states(changes),
        }
    }
}

fn quality_of(score: f32) -> proto::ConnectionQuality {
    if score >= 4.0 {
        proto::ConnectionQuality::Excellent
    } else if score >= 3.0 {
        proto::ConnectionQuality::Good
    } else {
        proto::ConnectionQuality::Poor
    }
}
