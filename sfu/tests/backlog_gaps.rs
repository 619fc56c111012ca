//! A subscriber whose downlink caps below its layer has the video waiting in
//! its pacer dropped when it is moved down (a stale backlog). Those packets
//! never leave the node, so the stream that does leave must have no gap in
//! its sequence numbers: a gap would read as loss on the subscriber's link,
//! and its NACKs could not be answered (the drop empties the resend cache).

// Shared by the test files; each uses part of it.
#[allow(dead_code)]
mod harness;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use harness::LossFn;

/// Per SSRC sent to `to`: the highest sequence number seen (unwrapped) and
/// how many numbers were skipped over. Resends (lower numbers) are not gaps.
#[derive(Default)]
struct Wire {
    streams: HashMap<u32, (u64, u64)>,
}

impl Wire {
    fn note(&mut self, contents: &[u8]) {
        let seq = u16::from_be_bytes([contents[2], contents[3]]);
        let ssrc = u32::from_be_bytes([contents[8], contents[9], contents[10], contents[11]]);
        let (max, gaps) = self
            .streams
            .entry(ssrc)
            .or_insert((u64::from(seq).wrapping_sub(1), 0));
        // Unwrap against the highest number seen.
        let delta = seq.wrapping_sub(*max as u16);
        if delta != 0 && delta < 0x8000 {
            *gaps += u64::from(delta) - 1;
            *max += u64::from(delta);
        }
    }

    fn skipped(&self) -> u64 {
        self.streams.values().map(|(_, g)| *g).sum()
    }
}

/// Records every RTP packet the room sends to `to`, then lets `inner` decide
/// whether the link drops it.
fn observe(to: SocketAddr, wire: Rc<RefCell<Wire>>, mut inner: LossFn) -> LossFn {
    Box::new(move |now, t| {
        if t.destination == to && harness::is_rtp(t) {
            wire.borrow_mut().note(&t.contents);
        }
        inner(now, t)
    })
}

#[test]
fn a_dropped_backlog_leaves_no_gap_on_the_wire() {
    let (mut w, b) = harness::bob_gets_alices_simulcast();
    let a = 0;
    assert!(w.video_frames(b).len() > 60, "bob receives video first");
    let sub_addr = w.clients[b].sub_addr;
    let wire = Rc::new(RefCell::new(Wire::default()));
    // The link falls under the medium layer while the publisher's encoder
    // sends no keyframe (as in room.rs's stale-backlog test): bob's pacer
    // backs up on the high layer, and what waits there is dropped when he is
    // moved off it.
    w.clients[a].holds_keyframes = true;
    w.downlink_loss = Some(observe(
        sub_addr,
        wire.clone(),
        harness::rate_cap_to(sub_addr, 100_000, 3_125),
    ));
    for _ in 0..50 {
        w.run(Duration::from_millis(100));
        if w.counter("rtp_stale_backlog_dropped_packets") > 0 {
            break;
        }
    }
    w.clients[a].holds_keyframes = false;
    w.run(Duration::from_secs(2));
    w.downlink_loss = Some(observe(sub_addr, wire.clone(), Box::new(|_, _| false)));
    w.run(Duration::from_secs(5));
    let dropped = w.counter("rtp_stale_backlog_dropped_packets");
    assert!(
        dropped > 0,
        "the cap made the room drop a stale backlog (else this test shows nothing)"
    );
    let wire = wire.borrow();
    assert!(
        wire.streams.len() >= 2,
        "audio and video were seen on the wire"
    );
    assert_eq!(
        wire.skipped(),
        0,
        "{dropped} packets were dropped unsent; the numbers on the wire skip none"
    );
}
