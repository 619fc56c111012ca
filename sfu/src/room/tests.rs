//! Unit tests of the room's bookkeeping.

use std::collections::HashSet;
use std::time::Instant;

use super::{MediaRoom, RoomConfig};
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
