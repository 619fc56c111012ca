//! A subscriber that allows it (LiveKit's `subscriber_allow_pause`) has its
//! video paused when its downlink cannot carry even the lowest layer, keeps
//! its audio, and gets the video back when the link recovers.

// Shared by the test files; each uses part of it.
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use harness::World;
use nodo_sfu::SfuEvent;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn bob_states(w: &World, bob: &nodo_sfu::ParticipantSid) -> Vec<bool> {
    w.events
        .iter()
        .filter_map(|e| match e {
            SfuEvent::StreamStates(list) => Some(
                list.iter()
                    .filter(|s| &s.subscriber == bob)
                    .map(|s| s.paused)
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

fn capped_run(allow_pause: bool) -> (World, Vec<bool>, usize, usize, usize) {
    let mut w = World::new();
    let a = w.join("alice");
    let b = w.join("bob");
    let (audio, video) = w.publish(a, true);
    w.run(secs(1));
    let bob = w.clients[b].sid.clone();
    w.room.set_allow_pause(&bob, allow_pause);
    w.room.subscribe(&bob, &audio).expect("subscribe audio");
    w.room.subscribe(&bob, &video).expect("subscribe video");
    w.run(secs(4));
    assert!(
        w.video_frames(b).len() > 60,
        "bob receives video before the cap"
    );
    // The lowest layer costs ~60 kbit/s with headers; audio ~25.
    let sub_addr = w.clients[b].sub_addr;
    w.downlink_loss = Some(harness::rate_cap_to(sub_addr, 40_000, 2_000));
    let audio_before = w.audio_frames(b);
    w.run(secs(8));
    let video_mid_cap = w.video_frames(b).len();
    w.run(secs(4));
    let video_late_cap = w.video_frames(b).len() - video_mid_cap;
    let audio_in_cap = w.audio_frames(b) - audio_before;
    w.downlink_loss = None;
    let before_lift = w.video_frames(b).len();
    w.run(secs(20));
    let after_lift = w.video_frames(b).len() - before_lift;
    let states = bob_states(&w, &bob);
    (w, states, video_late_cap, audio_in_cap, after_lift)
}

#[test]
fn video_pauses_under_the_lowest_layer_and_resumes_when_the_link_recovers() {
    let (_, states, late, audio, after) = capped_run(true);
    assert!(
        states.first() == Some(&true),
        "bob is told the stream paused: {states:?}"
    );
    assert_eq!(
        states.last(),
        Some(&false),
        "and that it resumed: {states:?}"
    );
    assert!(
        late < 10,
        "{late} video frames reached bob in the last 4 s of the cap"
    );
    assert!(audio > 400, "bob got {audio} audio frames in 12 s of cap");
    assert!(
        after > 150,
        "bob got {after} video frames in the 20 s after the cap"
    );
}

#[test]
fn without_allow_pause_the_lowest_layer_keeps_going() {
    let (_, states, late, _, after) = capped_run(false);
    assert!(!states.contains(&true), "never called paused: {states:?}");
    assert!(
        late > 20,
        "only {late} video frames reached bob in the last 4 s of the cap"
    );
    assert!(after > 150);
}
