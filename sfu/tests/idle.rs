//! Connections with no media are not woken at the rate str0m's estimator
//! asks for, and still run their timers.

// Shared by the test files; each uses part of it.
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use harness::World;
use nodo_sfu::SfuEvent;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// str0m's delay-based estimator asks for a timeout every 25 ms even with
/// nothing to estimate, and each one runs all of a connection's timers. A
/// connection with no RTP either way sleeps longer; one carrying media is
/// woken as str0m asks.
#[test]
fn a_connection_without_media_is_not_woken_forty_times_a_second() {
    let mut w = World::new();
    let a = w.join("alice");
    let b = w.join("bob");
    w.run(secs(3));
    let before = w.room_wakeups;
    w.run(secs(2));
    let idle = w.room_wakeups - before;
    // The room's own ticks (layers every 250 ms, speakers every 500 ms) and
    // the two idle subscribers at 4 a second: about 25 in 2 s. The
    // estimators' every 25 ms made it 81.
    assert!(idle <= 45, "{idle} wake-ups in 2 s of an idle room");

    let (audio, video) = w.publish(a, true);
    w.run(secs(1));
    let bob = w.clients[b].sid.clone();
    w.room.subscribe(&bob, &audio).expect("subscribe audio");
    w.room.subscribe(&bob, &video).expect("subscribe video");
    w.run(secs(2));
    let before = w.room_wakeups;
    let frames = w.video_frames(b).len();
    w.run(secs(2));
    let busy = w.room_wakeups - before;
    assert!(busy > 100, "only {busy} wake-ups in 2 s with media flowing");
    let got = w.video_frames(b).len() - frames;
    assert!(
        got >= 55,
        "video stalled: {got} frames in 2 s, {busy} wake-ups"
    );
}

/// Drains that hand a connection no timeout (here, data sent ten times a
/// second) do not put the idle connection's timers off for ever: a client gone
/// silent is still found out by ICE.
#[test]
fn an_idle_connection_sent_data_still_runs_its_timers() {
    let mut w = World::new();
    let a = w.join("alice");
    w.run(secs(3));
    let alice = w.clients[a].sid.clone();
    let sub_addr = w.clients[a].sub_addr;
    // Nothing from alice's subscriber connection reaches the room any more.
    w.uplink_loss = Some(Box::new(move |_, t| t.source == sub_addr));
    let mut lost = false;
    for _ in 0..300 {
        let now = w.now;
        w.room.send_data(&alice, false, b"tick", now);
        w.run(Duration::from_millis(100));
        lost = w.events.iter().any(|e| {
            matches!(e, SfuEvent::Disconnected { participant, role }
                if *participant == alice && *role == nodo_sfu::PeerRole::Subscriber)
        });
        if lost {
            break;
        }
    }
    assert!(lost, "30 s of silence went unnoticed");
}
