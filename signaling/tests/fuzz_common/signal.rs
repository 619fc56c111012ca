//! Signal requests for the LiveKit signal fuzz tests (`fuzz_signal.rs`,
//! `fuzz_signal_decode.rs`): a generator of every kind of request the
//! protocol has, with fields that matter (SDP offers and answers mutated line
//! by line, trickle candidates, tracks, subscriptions, settings, metadata,
//! pings), and access tokens for the test room.

// Clients still send fields the protocol marks deprecated.
#![allow(deprecated)]

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use nodo_sfu::str0m::media::{Direction, MediaKind};
use nodo_sfu::str0m::Rtc;
use nodo_signaling::auth::{claims_for, sign_with, VideoGrant};
use proptest::prelude::*;
use proto::signal_request::Message as In;

use super::{json_value, text};

/// The room the signal fuzz tests join.
pub const ROOM: &str = "fuzz";
/// The secret of the test node's API key (`devkey`).
pub const SECRET: &str = "secret";

// ---------------------------------------------------------------------------
// Signal requests.

/// A valid SDP offer from a str0m client (audio, video, data channel).
fn valid_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        let mut rtc = Rtc::new(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
        api.add_channel("_reliable".into());
        let (offer, _) = api.apply().expect("an offer");
        offer.to_sdp_string()
    })
}

#[derive(Debug, Clone)]
enum Sdp {
    Valid,
    DropLine(usize),
    RepeatLine(usize, u8),
    ReplaceLine(usize, String),
    Truncate(usize),
    Any(String),
}

fn sdp() -> impl Strategy<Value = Sdp> {
    prop_oneof![
        2 => Just(Sdp::Valid),
        2 => any::<usize>().prop_map(Sdp::DropLine),
        1 => (any::<usize>(), 2u8..50).prop_map(|(l, n)| Sdp::RepeatLine(l, n)),
        3 => (any::<usize>(), prop_oneof![
            ".{0,80}",
            "[a-z]=[ -~]{0,60}",
            Just("m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 102 103 104 105".to_string()),
            Just("a=ssrc-group:SIM 1 2 3 4 5 6 7 8 9".to_string()),
            Just("a=rtpmap:96 VP8/4294967296".to_string()),
            Just("a=extmap:99999 urn:x".to_string()),
        ]).prop_map(|(l, s)| Sdp::ReplaceLine(l, s)),
        1 => any::<usize>().prop_map(Sdp::Truncate),
        1 => ".{0,200}".prop_map(Sdp::Any),
    ]
}

impl Sdp {
    fn text(&self) -> String {
        let valid = valid_offer();
        let mut lines: Vec<String> = valid.split("\r\n").map(String::from).collect();
        let n = lines.len();
        match self {
            Sdp::Valid => return valid.to_string(),
            Sdp::DropLine(i) => {
                lines.remove(i % n);
            }
            Sdp::RepeatLine(i, k) => {
                let l = lines[i % n].clone();
                for _ in 0..*k {
                    lines.insert(i % n, l.clone());
                }
            }
            Sdp::ReplaceLine(i, s) => lines[i % n] = s.clone(),
            Sdp::Truncate(at) => {
                let mut at = at % (valid.len() + 1);
                while !valid.is_char_boundary(at) {
                    at -= 1;
                }
                return valid[..at].to_string();
            }
            Sdp::Any(s) => return s.clone(),
        }
        lines.join("\r\n")
    }
}

fn candidate_init() -> impl Strategy<Value = String> {
    let candidate = prop_oneof![
        Just("candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host".to_string()),
        Just("candidate:1 1 tcp 2130706431 10.0.0.2 9 typ host tcptype active".to_string()),
        Just(String::new()),
        "candidate:[0-9]{1,3} [0-9] (udp|tcp|UDP|xyz) [0-9]{1,12} [0-9a-f.:]{0,40} [0-9]{1,6} typ (host|srflx|relay|prflx|x)( raddr [0-9.]{0,15} rport [0-9]{1,6})?",
        ".{0,100}",
    ];
    prop_oneof![
        4 => (candidate, prop::option::of("[0-9]{1,3}"), prop::option::of(any::<i64>()))
            .prop_map(|(c, mid, idx)| {
                serde_json::json!({"candidate": c, "sdpMid": mid, "sdpMLineIndex": idx}).to_string()
            }),
        1 => json_value().prop_map(|v| v.to_string()),
        1 => ".{0,60}",
    ]
}

fn small_int() -> impl Strategy<Value = i32> {
    prop_oneof![4 => -1i32..8, 1 => any::<i32>()]
}

fn layer() -> impl Strategy<Value = proto::VideoLayer> {
    (
        small_int(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        "[a-z]{0,2}",
    )
        .prop_map(|(quality, width, height, bitrate, rid)| proto::VideoLayer {
            quality,
            width,
            height,
            bitrate,
            rid,
            ..Default::default()
        })
}

fn codec() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("vp8".to_string()),
        Just("VP9".to_string()),
        Just("h264".to_string()),
        Just("av1".to_string()),
        Just("opus".to_string()),
        Just("video/VP8".to_string()),
        Just("audio/red".to_string()),
        Just("/".to_string()),
        Just("ǅǆ".to_string()),
        text(),
    ]
}

fn sids() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..6)
}

fn session_description() -> impl Strategy<Value = proto::SessionDescription> {
    (
        sdp(),
        prop_oneof![
            Just("offer".to_string()),
            Just("answer".to_string()),
            text()
        ],
        any::<u32>(),
    )
        .prop_map(|(s, t, id)| proto::SessionDescription {
            r#type: t,
            sdp: s.text(),
            id,
            mid_to_track_id: HashMap::new(),
        })
}

fn add_track() -> impl Strategy<Value = proto::AddTrackRequest> {
    (
        (
            text(),
            text(),
            small_int(),
            small_int(),
            any::<bool>(),
            any::<bool>(),
        ),
        (
            any::<u32>(),
            any::<u32>(),
            prop::collection::vec(layer(), 0..5),
        ),
        prop::collection::vec(
            (codec(), text(), prop::collection::vec(layer(), 0..3)),
            0..3,
        ),
        (
            text(),
            small_int(),
            prop::collection::vec(small_int(), 0..3),
        ),
    )
        .prop_map(
            |(
                (cid, name, typ, source, muted, dtx),
                (width, height, layers),
                codecs,
                (stream, enc, features),
            )| {
                proto::AddTrackRequest {
                    cid,
                    name,
                    r#type: typ,
                    source,
                    muted,
                    disable_dtx: dtx,
                    width,
                    height,
                    layers,
                    simulcast_codecs: codecs
                        .into_iter()
                        .map(|(codec, cid, layers)| proto::SimulcastCodec {
                            codec,
                            cid,
                            layers,
                            ..Default::default()
                        })
                        .collect(),
                    stream,
                    encryption: enc,
                    audio_features: features,
                    ..Default::default()
                }
            },
        )
}

fn metadata() -> impl Strategy<Value = proto::UpdateParticipantMetadata> {
    (
        prop_oneof![4 => text(), 1 => (500_000usize..600_000).prop_map(|n| "m".repeat(n))],
        text(),
        prop::collection::hash_map(text(), text(), 0..4),
        any::<u32>(),
    )
        .prop_map(|(metadata, name, attributes, request_id)| {
            proto::UpdateParticipantMetadata {
                metadata,
                name,
                attributes,
                request_id,
            }
        })
}

/// A signal request of any kind the protocol has, with fields that matter.
pub fn signal_request() -> impl Strategy<Value = In> {
    prop_oneof![
        3 => session_description().prop_map(In::Offer),
        2 => session_description().prop_map(In::Answer),
        3 => (candidate_init(), small_int(), any::<bool>()).prop_map(|(c, target, f)| {
            In::Trickle(proto::TrickleRequest { candidate_init: c, target, r#final: f })
        }),
        3 => add_track().prop_map(In::AddTrack),
        1 => (text(), any::<bool>()).prop_map(|(sid, muted)| In::Mute(proto::MuteTrackRequest { sid, muted })),
        2 => (sids(), any::<bool>(), prop::collection::vec((text(), sids()), 0..3)).prop_map(
            |(track_sids, subscribe, pt)| In::Subscription(proto::UpdateSubscription {
                track_sids,
                subscribe,
                participant_tracks: pt
                    .into_iter()
                    .map(|(p, t)| proto::ParticipantTracks { participant_sid: p, track_sids: t })
                    .collect(),
            })
        ),
        2 => (sids(), any::<bool>(), small_int(), any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(track_sids, disabled, quality, width, height, fps)| {
                In::TrackSetting(proto::UpdateTrackSettings {
                    track_sids,
                    disabled,
                    quality,
                    width,
                    height,
                    fps,
                    priority: 0,
                })
            }),
        1 => (any::<bool>(), small_int(), small_int()).prop_map(|(r, reason, action)| {
            In::Leave(proto::LeaveRequest { can_reconnect: r, reason, action, regions: None })
        }),
        2 => metadata().prop_map(In::UpdateMetadata),
        1 => any::<i64>().prop_map(In::Ping),
        1 => (any::<i64>(), any::<i64>()).prop_map(|(timestamp, rtt)| In::PingReq(proto::Ping { timestamp, rtt })),
        1 => (text(), prop::collection::vec(layer(), 0..4))
            .prop_map(|(track_sid, layers)| In::UpdateLayers(proto::UpdateVideoLayers { track_sid, layers })),
        1 => (any::<bool>(), prop::collection::vec((text(), text(), any::<bool>(), sids()), 0..3)).prop_map(
            |(all, perms)| In::SubscriptionPermission(proto::SubscriptionPermission {
                all_participants: all,
                track_permissions: perms
                    .into_iter()
                    .map(|(ps, pi, all, ts)| proto::TrackPermission {
                        participant_sid: ps,
                        participant_identity: pi,
                        all_tracks: all,
                        track_sids: ts,
                    })
                    .collect(),
            })
        ),
        1 => (session_description(), sids()).prop_map(|(answer, sids)| In::SyncState(proto::SyncState {
            answer: Some(answer),
            subscription: Some(proto::UpdateSubscription { track_sids: sids, ..Default::default() }),
            ..Default::default()
        })),
        1 => Just(In::Simulate(proto::SimulateScenario::default())),
        1 => (text(), prop::collection::vec(small_int(), 0..3))
            .prop_map(|(track_sid, features)| In::UpdateAudioTrack(proto::UpdateLocalAudioTrack { track_sid, features })),
        1 => (text(), any::<u32>(), any::<u32>())
            .prop_map(|(track_sid, width, height)| In::UpdateVideoTrack(proto::UpdateLocalVideoTrack { track_sid, width, height })),
    ]
}

pub fn request(m: In) -> proto::SignalRequest {
    proto::SignalRequest { message: Some(m) }
}

/// A signed access token that lets `identity` join the test room with `grant`.
pub fn token(identity: &str, grant: VideoGrant) -> Result<String, String> {
    let grant = VideoGrant {
        room_join: true,
        room: ROOM.into(),
        ..grant
    };
    let claims = claims_for("devkey", identity, Duration::from_secs(600), Some(grant));
    sign_with(SECRET, &claims).map_err(|e| e.to_string())
}
