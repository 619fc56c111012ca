//! Listeners of several speakers (audio only): each forwarded packet costs
//! their connection one timeout, without the extra one str0m's pacer asks
//! for after the last packet it released, and no
//! packet waits for the timeouts it no longer gets (the speakers write at
//! the same instant, so each listener's queue holds several at once).

// Shared by the test files; each uses part of it.
#[allow(dead_code)]
mod harness;

use std::time::Duration;

use harness::World;

const SPEAKERS: usize = 3;
const LISTENERS: usize = 4;

#[test]
fn audio_listeners_cost_one_timeout_per_packet_and_get_every_packet_at_once() {
    let mut w = World::new();
    let mut audio = Vec::new();
    for i in 0..SPEAKERS {
        let s = w.join(&format!("speaker{i}"));
        let (a, _video) = w.publish(s, false);
        // Speakers only: the video m-line is negotiated and never written.
        w.clients[s].video_mid = None;
        audio.push(a);
    }
    let listeners: Vec<usize> = (0..LISTENERS)
        .map(|i| w.join(&format!("listener{i}")))
        .collect();
    w.run(Duration::from_secs(1));
    for &l in &listeners {
        let sid = w.clients[l].sid.clone();
        for a in &audio {
            w.room.subscribe(&sid, a).expect("subscribe");
        }
    }
    w.run(Duration::from_secs(3));
    let heard: Vec<usize> = listeners.iter().map(|&l| w.audio_frames(l)).collect();
    assert!(heard.iter().all(|&n| n > 0), "listeners heard {heard:?}");

    let timeouts = w.counter("peer_timeouts");
    let forwarded = w.counter("rtp_forwarded_packets");
    let window = Duration::from_secs(4);
    w.run(window);
    let timeouts = w.counter("peer_timeouts") - timeouts;
    let forwarded = w.counter("rtp_forwarded_packets") - forwarded;

    // 20 ms frames from each speaker to each listener.
    let frames = (window.as_millis() / 20) as usize * SPEAKERS;
    assert_eq!(forwarded as usize, frames * LISTENERS, "forwarded");
    for (&l, before) in listeners.iter().zip(&heard) {
        let got = w.audio_frames(l) - before;
        // All but the speakers' last frame, still on its way.
        assert!(
            got + SPEAKERS >= frames,
            "listener {l} got {got} of {frames} frames in the window"
        );
    }
    // The listeners' own timeouts (one per packet) and everyone's periodic
    // ones (the speakers' connections, feedback, stats): 1.12 per packet.
    // Handing each listener str0m's immediate pacer timeout after its last
    // packet too made it 1.47.
    let per_packet = timeouts as f64 / forwarded as f64;
    assert!(
        per_packet < 1.3,
        "{timeouts} timeouts for {forwarded} forwarded packets ({per_packet:.2} each)"
    );
}
