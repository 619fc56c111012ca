//! The sans-IO media core driven with real str0m peers in memory:
//! deterministic simulated time, no sockets.

mod harness;

use std::time::Duration;

use harness::World;
use nodo_sfu::{Layer, SfuEvent, SubscriptionSettings};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn join_publish_and_forward() {
    let mut w = World::new();
    let a = w.join("alice");
    let b = w.join("bob");
    let (audio, video) = w.publish(a, false);
    w.run(secs(1));
    assert!(w
        .events
        .iter()
        .any(|e| matches!(e, SfuEvent::TrackMedia { track, .. } if *track == audio)));
    assert!(w
        .events
        .iter()
        .any(|e| matches!(e, SfuEvent::TrackMedia { track, .. } if *track == video)));
    let bob = w.clients[b].sid.clone();
    w.room.subscribe(&bob, &audio).expect("subscribe audio");
    w.room.subscribe(&bob, &video).expect("subscribe video");
    w.run(secs(2));
    // Alice's two connections and Bob's subscriber came up (Bob never offered to publish).
    let connected = w
        .events
        .iter()
        .filter(|e| matches!(e, SfuEvent::Connected { .. }))
        .count();
    assert_eq!(connected, 3);
    assert!(
        w.audio_frames(b) > 40,
        "bob got {} audio frames",
        w.audio_frames(b)
    );
    let frames = w.video_frames(b);
    assert!(frames.len() > 20, "bob got {} video frames", frames.len());
    // Subscribed events name the tracks; the publisher never receives its own media.
    assert!(w
        .events
        .iter()
        .any(|e| matches!(e, SfuEvent::Subscribed { track, .. } if *track == video)));
    assert_eq!(w.video_frames(a).len(), 0);
    // The subscriber offer carries LiveKit's msid: "PA_…|TR_…" and the track sid.
    let offer = w.clients[b].sub_offers.last().expect("offer");
    assert!(offer.contains("PA_alice|TR_video_0 TR_video_0"), "{offer}");
    assert!(
        w.room.subscribe(&w.clients[a].sid.clone(), &video).is_err(),
        "own track"
    );
}

#[test]
fn simulcast_layer_switch_requests_a_keyframe() {
    let mut w = World::new();
    let a = w.join("alice");
    let b = w.join("bob");
    let (_, video) = w.publish(a, true);
    w.run(secs(1));
    let bob = w.clients[b].sid.clone();
    w.room.subscribe(&bob, &video).expect("subscribe");
    w.run(secs(3));
    let frames = w.video_frames(b);
    let tail: Vec<u8> = frames.iter().rev().take(20).map(|f| f.0).collect();
    assert!(
        tail.len() == 20 && tail.iter().all(|l| *l == 2),
        "expected the high layer, got {tail:?}"
    );

    // Ask for the low layer: the SFU requests a keyframe on q and switches there.
    w.clients[a].keyframe_requests.clear();
    let before = w.video_frames(b).len();
    let now = w.now;
    w.room.update_subscription(
        &bob,
        &video,
        SubscriptionSettings {
            max_layer: Layer::Low,
            ..SubscriptionSettings::default()
        },
        now,
    );
    w.run(secs(2));
    let after: Vec<u8> = w.video_frames(b)[before..].iter().map(|f| f.0).collect();
    assert!(
        after.len() > 30,
        "frames kept flowing after the switch: {}",
        after.len()
    );
    assert!(
        after.iter().rev().take(20).all(|l| *l == 0),
        "expected the low layer, got {after:?}"
    );
    // Frame numbers keep increasing across the switch (no stale frames replayed).
    let numbers: Vec<u8> = w.video_frames(b)[before..].iter().map(|f| f.1).collect();
    assert!(
        numbers
            .windows(2)
            .all(|p| p[1] == p[0].wrapping_add(1) || p[1] > p[0] || p[0] > 250),
        "{numbers:?}"
    );

    // Rendered size picks the smallest layer at least as large: 640 wide -> h.
    let now = w.now;
    w.room.update_subscription(
        &bob,
        &video,
        SubscriptionSettings {
            size: Some((600, 300)),
            ..SubscriptionSettings::default()
        },
        now,
    );
    let before = w.video_frames(b).len();
    w.run(secs(2));
    let tail: Vec<u8> = w.video_frames(b)[before..]
        .iter()
        .rev()
        .take(10)
        .map(|f| f.0)
        .collect();
    assert!(
        tail.iter().all(|l| *l == 1),
        "expected the medium layer, got {tail:?}"
    );

    // Pausing stops forwarding entirely.
    let now = w.now;
    w.room.update_subscription(
        &bob,
        &video,
        SubscriptionSettings {
            disabled: true,
            ..SubscriptionSettings::default()
        },
        now,
    );
    w.run(Duration::from_millis(300));
    let paused_at = w.video_frames(b).len();
    w.run(secs(1));
    assert_eq!(
        w.video_frames(b).len(),
        paused_at,
        "paused subscription still received frames"
    );
}

#[test]
fn data_is_routed_to_the_chosen_subscriber() {
    let mut w = World::new();
    let a = w.join("alice");
    let b = w.join("bob");
    let c = w.join("carol");
    w.publish(a, false);
    w.run(secs(2));
    assert!(
        w.clients[a].pub_channel_open,
        "publisher data channel opened"
    );
    let ch = w.clients[a].pub_channel.expect("channel");
    w.clients[a]
        .publisher
        .channel(ch)
        .expect("open channel")
        .write(true, b"to bob")
        .expect("write");
    w.run(Duration::from_millis(200));
    let got = w
        .events
        .iter()
        .find_map(|e| match e {
            SfuEvent::Data {
                participant,
                reliable,
                data,
            } => Some((participant.clone(), *reliable, data.clone())),
            _ => None,
        })
        .expect("data event");
    assert_eq!(got, (w.clients[a].sid.clone(), true, b"to bob".to_vec()));
    let bob = w.clients[b].sid.clone();
    w.room.send_data(&bob, true, &got.2);
    w.run(Duration::from_millis(200));
    assert_eq!(
        w.clients[b].data,
        vec![("_reliable".to_string(), b"to bob".to_vec())]
    );
    assert!(w.clients[c].data.is_empty());
}

#[test]
fn leave_unpublishes_and_renegotiates() {
    let mut w = World::new();
    let a = w.join("alice");
    let b = w.join("bob");
    let (audio, video) = w.publish(a, false);
    w.run(secs(1));
    let bob = w.clients[b].sid.clone();
    w.room.subscribe(&bob, &audio).expect("sub");
    w.room.subscribe(&bob, &video).expect("sub");
    w.run(secs(1));
    let offers = w.clients[b].sub_offers.len();
    let alice = w.clients[a].sid.clone();
    let mut gone = w.room.remove_participant(&alice);
    gone.sort();
    assert_eq!(gone, vec![audio.clone(), video.clone()]);
    w.clients[a].audio_mid = None;
    w.clients[a].video_mid = None;
    w.run(Duration::from_millis(500));
    assert!(
        w.clients[b].sub_offers.len() > offers,
        "bob got a new offer"
    );
    assert!(!w.room.is_subscribed(&bob, &video));
    let received = w.video_frames(b).len();
    w.run(secs(1));
    assert_eq!(w.video_frames(b).len(), received, "no media after leave");
    assert!(w.room.subscribe(&bob, &video).is_err());
    assert!(w.room.peer_ids(&alice).is_none());
}
