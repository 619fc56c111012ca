//! Signaling v1's single peer connection. The client always offers: its own
//! tracks as sendonly sections, and recvonly sections the server fills with
//! what the participant subscribes to. When it runs short of sections, the
//! server asks for more (`MediaSectionsRequirement`), or for a new offer with
//! none added when a section changes hands, and the client offers again.
//!
//! A section carries one subscription at a time. When that ends, the next
//! answer turns it `inactive`; only after that may another subscription take
//! it: a browser fires a new `track` event for a section that goes from
//! inactive to sendonly, and none for one that stays sendonly while its msid
//! changes. So a long meeting's churn does not grow the connection's SDP
//! without end. At most `MAX_SECTIONS` are kept; more stay inactive.
//!
//! str0m answers a section with the msid of the client's offer ("MSID
//! identity" in its `docs/SDP.md`) and the direction of the offer reversed,
//! before the room knows what it will send there. The answer text is
//! therefore rewritten here, after str0m made it: the `a=msid` of a section
//! that carries a track becomes `PA_…|TR_… TR_…` (LiveKit's packed stream
//! id, which livekit-client parses to attribute the track), and a section
//! that carries nothing is answered `inactive`. str0m keeps thinking it may
//! send there; nothing is written to it. Changing str0m to take a direction
//! and msid per answered section would be the upstream fix.

use std::collections::HashMap;
use std::time::Instant;

use str0m::media::Mid;

use super::{MediaRoom, SfuEvent};
use crate::ids::{ParticipantSid, PeerId, TrackKind, TrackSid};
use crate::rewrite::Rewriter;

/// What a client's recvonly section carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SectionUse {
    /// Nothing yet: the next subscription of its kind goes here.
    Free,
    /// A subscribed track.
    Track(TrackSid),
    /// Its subscription ended; the next answer turns it inactive, and it is
    /// free again after that.
    Released,
    /// The client stopped offering it as recvonly: never used again.
    Gone,
}

/// Most send sections one single connection keeps track of (a client that
/// offers more gets the rest answered inactive).
const MAX_SECTIONS: usize = 512;

#[derive(Debug)]
struct Section {
    mid: Mid,
    kind: TrackKind,
    used: SectionUse,
    /// The rewriter of the subscription it last carried: the next one goes
    /// on from its sequence numbers and timestamps (the section keeps its
    /// SSRC, and a receiver drops a stream that jumps back).
    handoff: Option<Rewriter>,
}

/// The send sections of a single connection (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Sections {
    list: Vec<Section>,
    /// Sections asked for and not yet offered, per kind (audio, video).
    requested: [u32; 2],
    /// A new offer was asked for and has not come.
    reoffer_asked: bool,
}

impl Sections {
    /// Marks the section of an ended subscription for release.
    pub(crate) fn release(&mut self, mid: Mid, rewriter: Option<Rewriter>) {
        if let Some(s) = self.list.iter_mut().find(|s| s.mid == mid) {
            if s.used != SectionUse::Gone {
                s.used = SectionUse::Released;
                s.handoff = rewriter.or(s.handoff.take());
            }
        }
    }

    /// After a signal resume: what was asked for may never have reached the
    /// client, so it is asked for again.
    pub(crate) fn forget_requests(&mut self) {
        self.requested = [0, 0];
        self.reoffer_asked = false;
    }
}

/// The answer to a client's offer, with the track each send section carries
/// (LiveKit's `mid_to_track_id`; empty on a v0 publisher connection).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferAnswer {
    pub sdp: String,
    pub mid_to_track: HashMap<String, String>,
}

fn kind_index(kind: TrackKind) -> usize {
    match kind {
        TrackKind::Audio => 0,
        TrackKind::Video => 1,
    }
}

/// One m-section of an SDP, by line range.
struct SdpSection {
    start: usize,
    end: usize,
    kind: Option<TrackKind>,
    mid: Option<String>,
    /// Index of the direction attribute line.
    dir_line: Option<usize>,
    sendonly: bool,
}

fn sections_of(lines: &[&str]) -> Vec<SdpSection> {
    let mut out: Vec<SdpSection> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(m) = line.strip_prefix("m=") {
            if let Some(last) = out.last_mut() {
                last.end = i;
            }
            let kind = match m.split(' ').next() {
                Some("audio") => Some(TrackKind::Audio),
                Some("video") => Some(TrackKind::Video),
                _ => None,
            };
            out.push(SdpSection {
                start: i,
                end: lines.len(),
                kind,
                mid: None,
                dir_line: None,
                sendonly: false,
            });
            continue;
        }
        let Some(s) = out.last_mut() else { continue };
        if let Some(mid) = line.strip_prefix("a=mid:") {
            s.mid = Some(mid.trim().to_string());
        } else if matches!(
            *line,
            "a=sendonly" | "a=recvonly" | "a=sendrecv" | "a=inactive"
        ) {
            s.dir_line = Some(i);
            s.sendonly = *line == "a=sendonly";
        }
    }
    out
}

impl MediaRoom {
    /// Finishes the answer to an offer on a single connection: takes in new
    /// recvonly sections, gives waiting subscriptions a section each,
    /// rewrites the answer (see the module docs), and asks for more sections
    /// if subscriptions are still waiting.
    pub(super) fn single_answer(
        &mut self,
        id: PeerId,
        answer: String,
        now: Instant,
    ) -> OfferAnswer {
        let lines: Vec<&str> = answer.split("\r\n").collect();
        let parsed = sections_of(&lines);
        let Some(peer) = self.peers.get_mut(&id) else {
            return OfferAnswer {
                sdp: answer,
                mid_to_track: HashMap::new(),
            };
        };
        let mut added = [0u32; 2];
        let mut offered: HashMap<Mid, TrackKind> = HashMap::new();
        for s in &parsed {
            let (Some(kind), Some(mid), true) = (s.kind, &s.mid, s.sendonly) else {
                continue;
            };
            offered.insert(Mid::from(mid.as_str()), kind);
        }
        // Sections this offer no longer has as recvonly (of their kind) are
        // gone; a subscription they carried waits for another.
        let mut lost = Vec::new();
        for x in &mut peer.sections.list {
            if offered.get(&x.mid) == Some(&x.kind) || x.used == SectionUse::Gone {
                continue;
            }
            if let SectionUse::Track(t) = &x.used {
                lost.push(t.clone());
                peer.mid_to_track.remove(&x.mid);
            }
            x.used = SectionUse::Gone;
        }
        for s in &parsed {
            let (Some(kind), Some(mid), true) = (s.kind, &s.mid, s.sendonly) else {
                continue;
            };
            let mid = Mid::from(mid.as_str());
            if peer.sections.list.len() < MAX_SECTIONS
                && !peer.sections.list.iter().any(|x| x.mid == mid)
            {
                peer.sections.list.push(Section {
                    mid,
                    kind,
                    used: SectionUse::Free,
                    handoff: None,
                });
                added[kind_index(kind)] += 1;
            }
        }
        for (r, a) in peer.sections.requested.iter_mut().zip(added) {
            *r = r.saturating_sub(a);
        }
        peer.sections.reoffer_asked = false;
        peer.needs_offer = false;
        for track in lost {
            if let Some(sub) = self
                .tracks
                .get_mut(&track)
                .and_then(|t| t.subscribers.iter_mut().find(|s| s.peer == id))
            {
                sub.mid = None;
                sub.rewriter = None;
                sub.current = None;
            }
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return OfferAnswer {
                sdp: answer,
                mid_to_track: HashMap::new(),
            };
        };
        // Subscriptions waiting for a section, in track order.
        let mut waiting: Vec<(TrackSid, TrackKind)> = self
            .tracks
            .values()
            .filter(|t| t.source.is_some())
            .filter(|t| {
                t.subscribers
                    .iter()
                    .any(|s| s.peer == id && s.mid.is_none())
            })
            .map(|t| (t.sid.clone(), t.kind))
            .collect();
        waiting.sort_by(|a, b| a.0.cmp(&b.0));
        let mut assigned = Vec::new();
        for (track, kind) in waiting {
            let Some(section) = peer
                .sections
                .list
                .iter_mut()
                .find(|s| s.kind == kind && s.used == SectionUse::Free)
            else {
                continue;
            };
            section.used = SectionUse::Track(track.clone());
            peer.mid_to_track.insert(section.mid, track.clone());
            assigned.push((track, section.mid, section.handoff.take()));
        }
        let owners: HashMap<Mid, (ParticipantSid, TrackSid)> = peer
            .sections
            .list
            .iter()
            .filter_map(|s| match &s.used {
                SectionUse::Track(t) => {
                    let owner = self.tracks.get(t)?.owner.clone();
                    Some((s.mid, (owner, t.clone())))
                }
                _ => None,
            })
            .collect();
        let sdp = rewrite(&lines, &parsed, &owners);
        // Answered inactive now: free for the next subscription.
        for s in &mut peer.sections.list {
            if s.used == SectionUse::Released {
                s.used = SectionUse::Free;
            }
        }
        let mid_to_track = owners
            .iter()
            .map(|(mid, (_, track))| (mid.to_string(), track.to_string()))
            .collect();
        let participant = peer.participant.clone();
        for (track, mid, handoff) in assigned {
            if let Some(s) = self
                .tracks
                .get_mut(&track)
                .and_then(|t| t.subscribers.iter_mut().find(|s| s.peer == id))
            {
                s.mid = Some(mid);
            }
            self.init_subscription(id, &track, now);
            if let Some(rw) = handoff {
                if let Some(s) = self
                    .tracks
                    .get_mut(&track)
                    .and_then(|t| t.subscribers.iter_mut().find(|s| s.peer == id))
                {
                    s.rewriter = Some(rw);
                }
            }
            self.events.push_back(SfuEvent::Subscribed {
                participant: participant.clone(),
                track,
            });
        }
        self.request_sections(id);
        OfferAnswer { sdp, mid_to_track }
    }

    /// Asks the client of a single connection for what its subscriptions
    /// need: more recvonly sections, or a new offer when a section changes
    /// hands (taken by a waiting subscription, or released).
    pub(super) fn request_sections(&mut self, id: PeerId) {
        let mut waiting = [0u32; 2];
        for t in self.tracks.values().filter(|t| t.source.is_some()) {
            if t.subscribers
                .iter()
                .any(|s| s.peer == id && s.mid.is_none())
            {
                waiting[kind_index(t.kind)] += 1;
            }
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        peer.needs_offer = false;
        let mut free = [0u32; 2];
        let mut released = false;
        for s in &peer.sections.list {
            match s.used {
                SectionUse::Free => free[kind_index(s.kind)] += 1,
                SectionUse::Released => released = true,
                _ => {}
            }
        }
        let mut need = [0u32; 2];
        for k in 0..2 {
            need[k] = waiting[k].saturating_sub(free[k] + peer.sections.requested[k]);
            peer.sections.requested[k] += need[k];
        }
        let takes_free = (0..2).any(|k| waiting[k] > 0 && free[k] > 0);
        let ask = need != [0, 0] || ((takes_free || released) && !peer.sections.reoffer_asked);
        if ask {
            peer.sections.reoffer_asked = true;
            self.events.push_back(SfuEvent::MediaSections {
                participant: peer.participant.clone(),
                audio: need[0],
                video: need[1],
            });
        }
    }
}

/// The answer with each send section's msid set to the track it carries, and
/// the send sections that carry none made inactive.
fn rewrite(
    lines: &[&str],
    sections: &[SdpSection],
    owners: &HashMap<Mid, (ParticipantSid, TrackSid)>,
) -> String {
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    for s in sections {
        if !s.sendonly || s.kind.is_none() {
            continue;
        }
        let carried = s.mid.as_deref().and_then(|m| owners.get(&Mid::from(m)));
        let Some((owner, track)) = carried else {
            if let Some(d) = s.dir_line {
                out[d] = "a=inactive".into();
            }
            continue;
        };
        let msid = format!("{owner}|{track} {track}");
        let mut has_msid = false;
        for line in &mut out[s.start..s.end] {
            if line.starts_with("a=msid:") {
                *line = format!("a=msid:{msid}");
                has_msid = true;
            } else if let Some(rest) = line.strip_prefix("a=ssrc:") {
                if let Some((ssrc, attr)) = rest.split_once(' ') {
                    if attr.starts_with("msid:") {
                        *line = format!("a=ssrc:{ssrc} msid:{msid}");
                    }
                }
            }
        }
        if !has_msid {
            if let Some(d) = s.dir_line {
                out[d] = format!("a=sendonly\r\na=msid:{msid}");
            }
        }
    }
    out.join("\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=sendonly\r\na=msid:- abc\r\na=ssrc:5 cname:x\r\na=ssrc:5 msid:- abc\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\na=msid:- def\r\n\
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n";

    #[test]
    fn answer_names_carried_tracks_and_silences_the_rest() {
        let lines: Vec<&str> = ANSWER.split("\r\n").collect();
        let parsed = sections_of(&lines);
        assert_eq!(parsed.len(), 4);
        let owners = HashMap::from([(
            Mid::from("1"),
            (ParticipantSid::new("PA_a"), TrackSid::new("TR_b")),
        )]);
        let out = rewrite(&lines, &parsed, &owners);
        assert!(out.contains("a=mid:0\r\na=recvonly\r\n"), "{out}");
        assert!(out.contains("a=mid:1\r\na=sendonly\r\na=msid:PA_a|TR_b TR_b\r\n"));
        assert!(out.contains("a=ssrc:5 msid:PA_a|TR_b TR_b\r\n"));
        assert!(out.contains("a=ssrc:5 cname:x\r\n"));
        assert!(
            out.contains("a=mid:2\r\na=inactive\r\na=msid:- def"),
            "{out}"
        );
        assert!(out.ends_with("a=mid:3\r\n"));
    }
}
