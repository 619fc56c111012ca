//! Unit tests of the room's bookkeeping.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{MediaRoom, RoomConfig, MAX_TIMEOUTS_PER_CALL};
use crate::ids::{ParticipantSid, PeerIds};

#[test]
fn rooms_sharing_an_allocator_never_share_a_peer_id() {
    let now = Instant::now();
    let ids = PeerIds::new();
    let config = RoomConfig {
        peer_ids: ids.clone(),
        ..RoomConfig::default()
    };
    let mut rooms = [
        MediaRoom::new(config.clone(), now),
        MediaRoom::new(config, now),
    ];
    let mut seen = HashSet::new();
    // Interleave joins (and leaves) across the rooms, as a node would.
    for n in 0..20 {
        for (r, room) in rooms.iter_mut().enumerate() {
            let sid = ParticipantSid::new(format!("PA_{n}"));
            room.add_participant(sid.clone(), now).expect("join");
            let (publisher, subscriber) = room.peer_ids(&sid).expect("peer ids");
            for id in [publisher, subscriber] {
                assert!(seen.insert(id), "room {r} reused {id:?}");
            }
            if n % 3 == 0 {
                room.remove_participant(&sid);
            }
        }
    }
    assert_eq!(seen.len(), 80);
    // The allocator itself is shared, not copied.
    assert!(!seen.contains(&ids.next()));
}

#[test]
fn one_call_hands_out_a_bounded_number_of_timeouts_and_the_rest_stay_due() {
    let t0 = Instant::now();
    let mut room = MediaRoom::new(RoomConfig::default(), t0);
    let n = MAX_TIMEOUTS_PER_CALL * 2 + 5;
    for i in 0..n {
        let sid = ParticipantSid::new(format!("PA_{i}"));
        room.add_participant(sid, t0).expect("join");
    }
    // Every connection has a timer due by then.
    let t1 = t0 + Duration::from_secs(10);
    let handed = |room: &MediaRoom| room.peers.values().filter(|p| p.last_timeout == t1).count();
    room.handle_timeout(t1);
    assert_eq!(handed(&room), MAX_TIMEOUTS_PER_CALL);
    assert!(room.poll_timeout() <= t1, "the others are still due");
    let mut calls = 1;
    while room.poll_timeout() <= t1 {
        room.handle_timeout(t1);
        calls += 1;
        assert!(calls <= 10, "the due timers never run out");
    }
    assert_eq!(handed(&room), n, "every connection got its timeout");
    assert!(calls >= 3);
}
