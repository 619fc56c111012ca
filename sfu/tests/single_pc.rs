//! Signaling v1's single peer connection, driven with real str0m peers in
//! memory: the client always offers, the room fills its recvonly sections.

// Shared by the test files; each uses part of it.
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use harness::World;
use nodo_sfu::{SfuEvent, TrackSid};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn frames_on(w: &World, i: usize, mid: &str) -> usize {
    w.clients[i]
        .received
        .iter()
        .filter(|(m, _)| m.to_string() == mid)
        .count()
}

fn mid_of(w: &World, i: usize, track: &TrackSid) -> String {
    let answer = w.clients[i].answers.last().expect("an answer");
    answer
        .mid_to_track
        .iter()
        .find(|(_, t)| *t == track.as_str())
        .map(|(m, _)| m.clone())
        .unwrap_or_else(|| panic!("{track} not in {:?}", answer.mid_to_track))
}

/// Alice and Bob on one connection each; Bob subscribes to Alice's audio
/// and video (one layer). Returns the world, their indices and the tracks.
fn alice_to_bob() -> (World, usize, usize, TrackSid, TrackSid) {
    let mut w = World::new();
    let a = w.join_single("alice");
    let b = w.join_single("bob");
    let (audio, video) = w.publish(a, false);
    w.run(secs(1));
    let bob = w.clients[b].sid.clone();
    w.room.subscribe(&bob, &audio).expect("subscribe audio");
    w.room.subscribe(&bob, &video).expect("subscribe video");
    (w, a, b, audio, video)
}

#[test]
fn single_connection_publishes_receives_and_exchanges_data() {
    let (mut w, a, b, _, _) = alice_to_bob();
    let bob = w.clients[b].sid.clone();
    w.run(secs(2));
    // Bob's first offer had one free section of each kind: the room asked
    // for a new offer with none added, and filled them.
    assert!(w.events.iter().any(|e| matches!(
        e,
        SfuEvent::MediaSections {
            audio: 0,
            video: 0,
            ..
        }
    )));
    let answer = w.clients[b].answers.last().expect("answer").clone();
    assert_eq!(answer.mid_to_track.len(), 2, "{:?}", answer.mid_to_track);
    assert!(
        answer.sdp.contains("a=msid:PA_alice|TR_video_0 TR_video_0"),
        "{}",
        answer.sdp
    );
    assert!(w.audio_frames(b) > 40, "bob got {}", w.audio_frames(b));
    assert!(
        w.video_frames(b).len() > 20,
        "bob got {}",
        w.video_frames(b).len()
    );
    assert_eq!(w.video_frames(a).len(), 0, "alice never gets her own media");
    // Alice's answer filled nothing: her free sections are inactive.
    let alice = w.clients[a].answers.first().expect("answer").clone();
    assert!(alice.mid_to_track.is_empty());
    assert!(!alice.sdp.contains("a=sendonly"), "{}", alice.sdp);
    // Data both ways over the channels the client made.
    w.room.send_data(&bob, true, b"hello bob", w.now);
    w.run(Duration::from_millis(200));
    assert!(
        w.clients[b]
            .data
            .iter()
            .any(|(l, d)| l == "_reliable" && d == b"hello bob"),
        "{:?}",
        w.clients[b].data
    );
    let ch = w.clients[b].pub_channel.expect("channel");
    w.clients[b]
        .publisher
        .channel(ch)
        .expect("open channel")
        .write(true, b"from bob")
        .expect("write");
    w.run(Duration::from_millis(200));
    assert!(w.events.iter().any(|e| matches!(
        e,
        SfuEvent::Data { participant, data, .. } if *participant == bob && data == b"from bob"
    )));
}

#[test]
fn more_sections_are_asked_for_and_ended_ones_go_inactive() {
    let mut w = World::new();
    let a = w.join_single("alice");
    let c = w.join("carol");
    let b = w.join_single("bob");
    let (a_audio, a_video) = w.publish(a, false);
    let (c_audio, c_video) = w.publish(c, false);
    w.run(secs(1));
    let bob = w.clients[b].sid.clone();
    for t in [&a_audio, &a_video, &c_audio, &c_video] {
        w.room.subscribe(&bob, t).expect("subscribe");
    }
    w.run(secs(2));
    // Two free sections for four tracks: one more of each kind asked for.
    assert!(w.events.iter().any(|e| matches!(
        e,
        SfuEvent::MediaSections {
            audio: 1,
            video: 1,
            ..
        }
    )));
    let carol_video = mid_of(&w, b, &c_video);
    let alice_video = mid_of(&w, b, &a_video);
    assert_ne!(carol_video, alice_video);
    let before = frames_on(&w, b, &carol_video);
    assert!(before > 20, "bob got {before} frames of carol's video");
    assert!(frames_on(&w, b, &alice_video) > 20);
    // A v0 subscriber receives the single-connection publisher.
    let carol = w.clients[c].sid.clone();
    w.room.subscribe(&carol, &a_video).expect("subscribe");
    w.run(secs(1));
    assert!(
        w.video_frames(c).len() > 10,
        "carol got {}",
        w.video_frames(c).len()
    );
    // Unsubscribing asks for a new offer; the answer turns the section
    // inactive and maps it no more.
    w.room.unsubscribe(&bob, &c_video);
    w.run(Duration::from_millis(500));
    let last = w.clients[b].answers.last().expect("answer").clone();
    assert!(!last.mid_to_track.contains_key(&carol_video));
    assert_eq!(last.mid_to_track.len(), 3);
    let stopped = frames_on(&w, b, &carol_video);
    w.run(secs(1));
    assert_eq!(frames_on(&w, b, &carol_video), stopped);
    assert!(frames_on(&w, b, &alice_video) > before);
    let inactive = last
        .sdp
        .split("\r\nm=")
        .find(|m| m.contains(&format!("a=mid:{carol_video}\r\n")))
        .expect("the section is still in the answer");
    assert!(inactive.contains("a=inactive"), "{inactive}");
    // Answered inactive, the section is free again: the next subscription
    // takes it rather than asking for one more.
    let sections_asked = |w: &World| {
        w.events
            .iter()
            .filter(
                |e| matches!(e, SfuEvent::MediaSections { audio, video, .. } if audio + video > 0),
            )
            .count()
    };
    let asked = sections_asked(&w);
    w.room.subscribe(&bob, &c_video).expect("subscribe again");
    w.run(secs(1));
    let again = mid_of(&w, b, &c_video);
    assert_eq!(again, carol_video);
    assert_eq!(sections_asked(&w), asked);
    assert!(frames_on(&w, b, &again) > stopped + 10);
}

#[test]
fn a_section_the_client_stops_offering_hands_its_track_to_another() {
    let (mut w, _, b, _, video) = alice_to_bob();
    w.run(secs(1));
    let first = mid_of(&w, b, &video);
    // Bob's client makes that section inactive on its side and offers one
    // more video section: the track moves there.
    let mid = w.clients[b]
        .recv_mids
        .iter()
        .copied()
        .find(|m| m.to_string() == first)
        .expect("bob offered it");
    w.clients[b].recv_mids.retain(|m| *m != mid);
    w.clients[b].inactive_mids.push(mid);
    w.offer_single(b, 0, 1);
    w.run(secs(1));
    let moved = mid_of(&w, b, &video);
    assert_ne!(moved, first);
    assert!(
        frames_on(&w, b, &moved) > 10,
        "video arrives on the new section"
    );
}
