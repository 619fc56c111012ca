//! The room actor in-process, against a recording fake of the network: the
//! signal messages it sends, the routes it registers, the events it reports,
//! and, with a str0m client playing the browser, data it forwards.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use nodo_sfu::net::testing::RecordingTransport;
use nodo_sfu::str0m::change::{SdpAnswer, SdpOffer};
use nodo_sfu::str0m::net::{Protocol, Receive};
use nodo_sfu::str0m::{Candidate, Event, Input, Output, Rtc};
use nodo_sfu::PeerId;
use proto::signal_request::Message as In;
use proto::signal_response::Message as Out;
use tokio::sync::mpsc;

use super::{
    AdminOp, AdminReply, JoinOptions, Joined, RoomCmd, RoomEvent, RoomHandle, RoomManager,
    RoomSettings, SIGNAL_QUEUE,
};
use crate::auth::{claims_for, VideoGrant};
use crate::config::{LimitConfig, RoomDefaults};
use crate::error::Error;
use crate::ids::RoomName;

const SFU: &str = "10.0.0.1:7882";

fn manager(limits: LimitConfig) -> (Arc<RoomManager>, Arc<RecordingTransport>) {
    let transport = RecordingTransport::new(SFU.parse().expect("addr"));
    let rooms = RoomManager::new(transport.clone(), RoomDefaults::default(), limits);
    (rooms, transport)
}

/// A participant's signal session, as `/rtc` would hold it.
struct Session {
    handle: RoomHandle,
    joined: Joined,
    rx: mpsc::Receiver<super::Outgoing>,
}

impl Session {
    /// The next signal message, within a second.
    async fn next(&mut self) -> Out {
        let r = tokio::time::timeout(Duration::from_secs(1), self.rx.recv())
            .await
            .expect("a signal message within a second")
            .expect("the signal channel is open");
        r.into_response().message.expect("a message")
    }

    /// Skips messages until one matches.
    async fn until<T>(&mut self, mut f: impl FnMut(Out) -> Option<T>) -> T {
        for _ in 0..50 {
            if let Some(t) = f(self.next().await) {
                return t;
            }
        }
        panic!("no matching signal message in 50");
    }

    async fn send(&self, msg: In) {
        self.handle
            .tx
            .send(RoomCmd::Signal {
                sid: self.joined.sid.clone(),
                session: self.joined.session,
                msg: Box::new(msg),
            })
            .await
            .expect("room is open");
    }
}

async fn join(rooms: &Arc<RoomManager>, room: &str, identity: &str) -> Result<Session, Error> {
    join_with(rooms, room, identity, VideoGrant::default()).await
}

async fn join_with(
    rooms: &Arc<RoomManager>,
    room: &str,
    identity: &str,
    grant: VideoGrant,
) -> Result<Session, Error> {
    let grant = VideoGrant {
        room_join: true,
        room: room.into(),
        ..grant
    };
    let claims = claims_for("devkey", identity, Duration::from_secs(600), Some(grant));
    let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
    let options = JoinOptions {
        auto_subscribe: true,
        ..JoinOptions::default()
    };
    let (handle, joined) = rooms
        .join(&RoomName::new(room), claims, options, tx)
        .await?;
    Ok(Session { handle, joined, rx })
}

#[tokio::test]
async fn join_answers_with_the_room_and_a_subscriber_offer() {
    let (rooms, transport) = manager(LimitConfig::default());
    let mut events = rooms.subscribe();
    let mut alice = join(&rooms, "r1", "alice").await.expect("join");
    let Out::Join(j) = alice.next().await else {
        panic!("first message is the join response");
    };
    let room = j.room.expect("room");
    assert_eq!(room.name, "r1");
    assert!(room.sid.starts_with("RM_"));
    assert_eq!(j.participant.expect("me").identity, "alice");
    assert!(j.other_participants.is_empty());
    // The server offers the subscriber connection (data channels) right away.
    let offer = alice
        .until(|m| match m {
            Out::Offer(o) => Some(o.sdp),
            _ => None,
        })
        .await;
    assert!(offer.contains("m=application"), "{offer}");
    assert!(
        offer.contains(SFU.split(':').next().expect("ip")),
        "{offer}"
    );
    // The subscriber connection's ufrag is routed to the room. The publisher
    // connection is built (and routed) at the client's first offer on it:
    // told `subscriber_primary`, a LiveKit client makes none until it
    // publishes or sends data.
    let reg = transport.registered();
    assert_eq!(reg.len(), 1, "{reg:?}");
    // The node hears about the room and the participant.
    let mut seen = Vec::new();
    while let Ok(ev) = events.try_recv() {
        seen.push(match ev {
            RoomEvent::Webhook(w) => w.event,
            RoomEvent::ParticipantJoined { identity, .. } => format!("joined {identity}"),
            RoomEvent::Opened { room, agents } => format!("opened {} {agents:?}", room.name),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        seen,
        [
            "opened r1 None",
            "room_started",
            "participant_joined",
            "joined alice"
        ]
    );
}

#[tokio::test]
async fn others_hear_joins_and_a_duplicate_identity_evicts() {
    let (rooms, transport) = manager(LimitConfig::default());
    let mut alice = join(&rooms, "r", "alice").await.expect("alice");
    let mut bob = join(&rooms, "r", "bob").await.expect("bob");
    let Out::Join(j) = bob.next().await else {
        panic!("join response");
    };
    assert_eq!(j.other_participants.len(), 1);
    let joined = alice
        .until(|m| match m {
            Out::Update(u) => u.participants.into_iter().find(|p| p.identity == "bob"),
            _ => None,
        })
        .await;
    assert_eq!(joined.identity, "bob");
    let alice_peer = transport.registered()[0].0;
    let bob_peer = transport.registered()[1].0;

    // Bob again, from another device: the first session is told why it goes.
    let _bob2 = join(&rooms, "r", "bob").await.expect("bob again");
    let leave = bob
        .until(|m| match m {
            Out::Leave(l) => Some(l),
            _ => None,
        })
        .await;
    assert_eq!(
        leave.reason,
        proto::DisconnectReason::DuplicateIdentity as i32
    );
    // Its routes are gone, and only its routes.
    let gone = transport.unregistered();
    assert!(gone.contains(&bob_peer), "{gone:?}");
    assert!(!gone.contains(&alice_peer), "{gone:?}");
    let names = rooms.identities(&RoomName::new("r")).await;
    assert_eq!(names.len(), 2, "{names:?}");
}

#[tokio::test]
async fn peer_ids_never_repeat_across_rooms() {
    let (rooms, transport) = manager(LimitConfig::default());
    let mut sessions = Vec::new();
    for i in 0..6 {
        sessions.push(
            join(&rooms, &format!("room-{}", i % 3), &format!("p{i}"))
                .await
                .expect("join"),
        );
    }
    let mut peers: Vec<PeerId> = transport.registered().into_iter().map(|r| r.0).collect();
    let n = peers.len();
    assert_eq!(n, 6, "one subscriber connection each");
    peers.sort();
    peers.dedup();
    assert_eq!(peers.len(), n, "a peer id was handed out twice");
}

#[tokio::test]
async fn limits_refuse_with_typed_errors() {
    let (rooms, _t) = manager(LimitConfig {
        max_rooms: 1,
        max_tracks: 0,
    });
    let _a = join(&rooms, "one", "a").await.expect("first room");
    match join(&rooms, "two", "b").await {
        Err(Error::RoomLimit(1)) => {}
        Err(e) => panic!("expected the room limit, got {e}"),
        Ok(_) => panic!("expected the room limit, got a join"),
    }
    rooms
        .create_room(
            &RoomName::new("one"),
            RoomSettings {
                max_participants: Some(1),
                ..RoomSettings::default()
            },
        )
        .await
        .expect("configure");
    assert!(matches!(
        join(&rooms, "one", "c").await,
        Err(Error::RoomFull)
    ));
    // A hidden participant does not count and is not refused.
    let hidden = VideoGrant {
        hidden: true,
        ..VideoGrant::default()
    };
    assert!(join_with(&rooms, "one", "observer", hidden).await.is_ok());
}

#[tokio::test]
async fn admin_operations_and_closing() {
    let (rooms, _t) = manager(LimitConfig::default());
    let mut events = rooms.subscribe();
    let mut alice = join(&rooms, "r", "alice").await.expect("alice");
    let name = RoomName::new("r");
    let AdminReply::Participants(list) = rooms
        .admin(&name, AdminOp::ListParticipants)
        .await
        .expect("list")
    else {
        panic!("participants");
    };
    assert_eq!(list.len(), 1);
    match rooms
        .admin(&name, AdminOp::GetParticipant("nobody".into()))
        .await
    {
        Err(Error::ParticipantNotFound(who)) => assert_eq!(who, "nobody"),
        other => panic!("expected not found, got {other:?}"),
    }
    match rooms
        .admin(
            &RoomName::new("nope"),
            AdminOp::RemoveParticipant("alice".into()),
        )
        .await
    {
        Err(Error::RoomNotFound(r)) => assert_eq!(r.as_str(), "nope"),
        other => panic!("expected room not found, got {other:?}"),
    }
    let sid_before = rooms.snapshot(&name).await.expect("open").sid;
    assert!(rooms.close_room(&name).await);
    let leave = alice
        .until(|m| match m {
            Out::Leave(l) => Some(l),
            _ => None,
        })
        .await;
    assert_eq!(leave.reason, proto::DisconnectReason::RoomDeleted as i32);
    // The room reports its end, then a join opens a fresh room under the same name.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut closed = false;
    while !closed && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Some(RoomEvent::RoomClosed { room, .. })) => closed = room == name,
            Ok(Some(_)) | Err(_) => {}
            Ok(None) => break,
        }
    }
    assert!(closed, "no RoomClosed event");
    let _again = join(&rooms, "r", "alice").await.expect("rejoin");
    let sid_after = rooms.snapshot(&name).await.expect("open").sid;
    assert_ne!(sid_before, sid_after);
}

/// A str0m peer playing the browser's subscriber connection.
struct Browser {
    rtc: Rtc,
    addr: SocketAddr,
    /// The room's peer id for this connection (to route our packets).
    peer: PeerId,
    data: Vec<Vec<u8>>,
    connected: bool,
}

impl Browser {
    /// Moves packets both ways until nothing is left to do right now.
    fn pump(&mut self, transport: &RecordingTransport) {
        let now = Instant::now();
        for s in transport.take_sent() {
            if s.destination != self.addr {
                continue;
            }
            if let Ok(r) = Receive::new(Protocol::Udp, s.source, s.destination, &s.data) {
                let _ = self.rtc.handle_input(Input::Receive(now, r));
            }
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    transport.deliver(self.peer, self.addr, t.contents.to_vec());
                }
                Ok(Output::Event(Event::Connected)) => self.connected = true,
                Ok(Output::Event(Event::ChannelData(d))) => self.data.push(d.data),
                Ok(Output::Event(_)) => {}
                Ok(Output::Timeout(_)) | Err(_) => break,
            }
        }
    }
}

#[tokio::test]
async fn server_data_reaches_a_subscriber_in_a_room_where_nobody_publishes() {
    let (rooms, transport) = manager(LimitConfig::default());
    let mut alice = join(&rooms, "quiet", "alice").await.expect("join");
    let offer = alice
        .until(|m| match m {
            Out::Offer(o) => Some(o.sdp),
            _ => None,
        })
        .await;
    let addr: SocketAddr = "10.0.9.9:5000".parse().expect("addr");
    let mut rtc = Rtc::new(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").expect("candidate"));
    let answer = rtc
        .sdp_api()
        .accept_offer(SdpOffer::from_sdp_string(&offer).expect("offer parses"))
        .expect("answer");
    alice
        .send(In::Answer(proto::SessionDescription {
            r#type: "answer".into(),
            sdp: answer.to_sdp_string(),
            ..Default::default()
        }))
        .await;
    // The subscriber connection is the participant's one registered peer.
    let peer = transport.registered()[0].0;
    let mut browser = Browser {
        rtc,
        addr,
        peer,
        data: Vec::new(),
        connected: false,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let op = || AdminOp::SendData {
        data: b"hello from the server".to_vec(),
        reliable: true,
        destination_identities: vec![],
        topic: Some("greeting".into()),
    };
    let mut sent = false;
    while browser.data.is_empty() && Instant::now() < deadline {
        browser.pump(&transport);
        if browser.connected && !sent {
            rooms
                .admin(&RoomName::new("quiet"), op())
                .await
                .expect("send data");
            sent = true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(browser.connected, "the subscriber connection never came up");
    let packet = browser.data.first().expect("the data packet arrived");
    let decoded =
        <proto::DataPacket as prost::Message>::decode(packet.as_slice()).expect("a DataPacket");
    let Some(proto::data_packet::Value::User(user)) = decoded.value else {
        panic!("a user packet");
    };
    assert_eq!(user.payload, b"hello from the server");
    assert_eq!(user.topic.as_deref(), Some("greeting"));

    // Her subscriber connection is primary: up, it makes her ACTIVE, though
    // she never offered on the publisher connection (as in LiveKit).
    let name = RoomName::new("quiet");
    let state = |reply| match reply {
        Ok(AdminReply::Participant(p)) => p.state,
        other => panic!("expected the participant, got {other:?}"),
    };
    assert_eq!(
        state(
            rooms
                .admin(&name, AdminOp::GetParticipant("alice".into()))
                .await
        ),
        proto::participant_info::State::Active as i32
    );
    // The publisher connection is built, and routed, at her first offer.
    assert_eq!(transport.registered().len(), 1);
    let mut publisher = Rtc::new(Instant::now());
    let mut api = publisher.sdp_api();
    api.add_channel("_reliable".into());
    let (offer, _pending) = api.apply().expect("an offer");
    alice
        .send(In::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.to_sdp_string(),
            id: 1,
            ..Default::default()
        }))
        .await;
    let answer = alice
        .until(|m| match m {
            Out::Answer(a) => Some(a.sdp),
            _ => None,
        })
        .await;
    assert!(SdpAnswer::from_sdp_string(&answer).is_ok(), "{answer}");
    let reg = transport.registered();
    assert_eq!(reg.len(), 2, "{reg:?}");
    assert_ne!(reg[1].0, peer);
}

#[tokio::test]
async fn a_panicking_room_closes_cleanly_and_the_others_carry_on() {
    let (rooms, transport) = manager(LimitConfig {
        max_rooms: 2,
        max_tracks: 0,
    });
    let mut events = rooms.subscribe();
    let mut alice = join(&rooms, "crashy", "alice").await.expect("join");
    let mut bob = join(&rooms, "calm", "bob").await.expect("join");
    alice
        .send(In::AddTrack(proto::AddTrackRequest {
            cid: "mic".into(),
            name: "mic".into(),
            r#type: proto::TrackType::Audio as i32,
            ..Default::default()
        }))
        .await;
    alice
        .until(|m| matches!(m, Out::TrackPublished(_)).then_some(()))
        .await;
    assert_eq!(rooms.tracks.load(std::sync::atomic::Ordering::SeqCst), 1);
    let alice_peers: Vec<PeerId> = transport.registered()[..1].iter().map(|r| r.0).collect();

    alice.handle.tx.send(RoomCmd::Crash).await.expect("send");

    // Alice is told to leave, for good.
    let leave = alice
        .until(|m| match m {
            Out::Leave(l) => Some(l),
            _ => None,
        })
        .await;
    assert_eq!(leave.reason, proto::DisconnectReason::RoomClosed as i32);
    assert_eq!(
        leave.action,
        proto::leave_request::Action::Disconnect as i32
    );
    // The room is gone, its routes and its reserved track with it, and its
    // closing is reported as for any room (the app ends calls on it).
    assert!(!rooms.exists(&RoomName::new("crashy")));
    assert_eq!(rooms.tracks.load(std::sync::atomic::Ordering::SeqCst), 0);
    let unregistered = transport.unregistered();
    assert!(alice_peers.iter().all(|p| unregistered.contains(p)));
    let mut seen_left = false;
    let mut seen_closed = false;
    while let Ok(ev) = events.try_recv() {
        match ev {
            RoomEvent::ParticipantLeft { room, identity } if room.as_str() == "crashy" => {
                assert_eq!(identity.as_str(), "alice");
                seen_left = true;
            }
            RoomEvent::RoomClosed { room, .. } if room.as_str() == "crashy" => seen_closed = true,
            _ => {}
        }
    }
    assert!(
        seen_left && seen_closed,
        "left {seen_left}, closed {seen_closed}"
    );

    // The other room carries on, and the name can be used again (the room
    // limit of two proves the crashed room's slot was freed).
    let _carol = join(&rooms, "calm", "carol").await.expect("join calm");
    bob.until(|m| match m {
        Out::Update(u) => u
            .participants
            .iter()
            .any(|p| p.identity == "carol")
            .then_some(()),
        _ => None,
    })
    .await;
    let _again = join(&rooms, "crashy", "alice").await.expect("rejoin");
}

#[tokio::test]
async fn a_join_is_sent_a_fresh_token_signed_with_its_key() {
    let (rooms, _transport) = manager(LimitConfig::default());
    let keys = crate::auth::KeyStore::new(
        [(
            "devkey".to_string(),
            "a-secret-of-32-bytes-or-more-xxxx".to_string(),
        )]
        .into(),
    );
    rooms.set_token_keys(keys.clone());
    let grant = VideoGrant {
        can_publish: Some(false),
        ..VideoGrant::default()
    };
    let mut alice = join_with(&rooms, "r1", "alice", grant).await.expect("join");
    let token = alice
        .until(|m| match m {
            Out::RefreshToken(t) => Some(t),
            _ => None,
        })
        .await;
    let claims = keys.verify(&token).expect("the refreshed token verifies");
    assert_eq!(claims.iss, "devkey");
    assert_eq!(claims.identity(), "alice");
    let video = claims.video();
    assert!(video.room_join);
    assert_eq!(video.room, "r1");
    assert_eq!(video.can_publish, Some(false), "grants are kept");
    let now = crate::auth::unix_now();
    assert!(
        claims.exp >= now + 590,
        "valid for ten minutes: exp {} now {now}",
        claims.exp
    );
}

/// A room actor driven by hand (no run loop: the test flushes), and the
/// claims to join it.
fn actor(rooms: &Arc<RoomManager>, room: &str) -> super::actor::RoomActor {
    super::actor::RoomActor::new(
        RoomName::new(room),
        crate::ids::RoomSid::new(format!("RM_{room}")),
        rooms.clone(),
    )
}

fn viewer_claims(room: &str, identity: &str) -> crate::auth::Claims {
    let grant = VideoGrant {
        room_join: true,
        room: room.into(),
        ..VideoGrant::default()
    };
    claims_for("devkey", identity, Duration::from_secs(600), Some(grant))
}

type Rx = mpsc::Receiver<super::Outgoing>;

fn actor_join(a: &mut super::actor::RoomActor, room: &str, identity: &str) -> (Joined, Rx) {
    let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
    let joined = a
        .join(&viewer_claims(room, identity), JoinOptions::default(), tx)
        .expect("join");
    (joined, rx)
}

/// The participant updates waiting in `rx`, one list per message.
fn updates(rx: &mut Rx) -> Vec<Vec<proto::ParticipantInfo>> {
    let mut got = Vec::new();
    while let Ok(m) = rx.try_recv() {
        if let Some(Out::Update(u)) = m.into_response().message {
            got.push(u.participants);
        }
    }
    got
}

#[tokio::test]
async fn viewers_coming_and_going_reach_the_others_in_batches_in_order() {
    let (rooms, _transport) = manager(LimitConfig::default());
    let mut a = actor(&rooms, "r");
    // Room for two messages at once per window: what follows is held.
    a.updates = super::updates::UpdateBatch::with_budget(2);
    let (_, mut alice) = actor_join(&mut a, "r", "alice");
    let mut viewers = Vec::new();
    for n in 0..5 {
        viewers.push(actor_join(&mut a, "r", &format!("v{n}")));
    }
    let old_v0 = viewers[0].0.sid.to_string();
    // v0 again from another device: its first session leaves.
    let (new_v0, mut new_v0_rx) = actor_join(&mut a, "r", "v0");
    let new_v0 = new_v0.sid.to_string();
    a.flush_updates();

    let messages = updates(&mut alice);
    let seen: Vec<(String, String, i32)> = messages
        .iter()
        .flatten()
        .map(|p| (p.identity.clone(), p.sid.clone(), p.state))
        .collect();
    assert!(
        seen.iter().all(|(id, _, _)| id != "alice"),
        "nobody hears of itself"
    );
    for n in 1..5 {
        assert!(
            seen.iter().any(|(id, _, _)| *id == format!("v{n}")),
            "{seen:?}"
        );
    }
    let gone = proto::participant_info::State::Disconnected as i32;
    assert!(
        seen.iter()
            .any(|(_, sid, st)| *sid == old_v0 && *st == gone),
        "{seen:?}"
    );
    assert!(seen.iter().any(|(_, sid, _)| *sid == new_v0), "{seen:?}");
    // v0's join at once (one message, within the budget of two); v1's over
    // it, so held, with everything after it, until v0's rejoin flushes the
    // batch (the old session's departure last in it); the new session's join
    // in the last flush. Three messages, where one per join and one for the
    // eviction would be seven (four if the 500 ms window turned over).
    assert!(
        matches!(messages.len(), 3 | 4),
        "{} messages: {seen:?}",
        messages.len()
    );
    // LiveKit clients take a departure by identity: the old session's must
    // come before anything about the new one.
    let last_old = seen.iter().rposition(|(_, sid, _)| *sid == old_v0);
    let first_new = seen.iter().position(|(_, sid, _)| *sid == new_v0);
    assert!(last_old < first_new, "{seen:?}");
    // One entry per session and batch: v4, held, is listed once.
    assert_eq!(seen.iter().filter(|(id, _, _)| id == "v4").count(), 1);
    // The new v0 session is never told about the old one (its client would
    // take that info as its own), nor about itself: the flush before it
    // joined carried the old session's departure to everyone else.
    let to_new_v0: Vec<_> = updates(&mut new_v0_rx).concat();
    assert!(
        to_new_v0.iter().all(|p| p.identity != "v0"),
        "{to_new_v0:?}"
    );
}

#[tokio::test]
async fn a_held_participant_is_announced_before_its_data_is_forwarded() {
    let (rooms, _transport) = manager(LimitConfig::default());
    let mut a = actor(&rooms, "d");
    a.updates = super::updates::UpdateBatch::with_budget(0);
    let (_, mut alice) = actor_join(&mut a, "d", "alice");
    let (bob, _bob_rx) = actor_join(&mut a, "d", "bob");
    let heard_of_bob = |rx: &mut Rx| updates(rx).iter().flatten().any(|p| p.identity == "bob");
    // With no budget, bob's join is held for the room's next tick.
    assert!(!heard_of_bob(&mut alice));
    let packet = proto::DataPacket {
        value: Some(proto::data_packet::Value::User(proto::UserPacket {
            payload: b"hi".to_vec(),
            ..Default::default()
        })),
        ..Default::default()
    };
    a.route_data(&bob.sid, true, &prost::Message::encode_to_vec(&packet));
    assert!(
        heard_of_bob(&mut alice),
        "bob is announced before his data goes out"
    );
    // And no longer held: the next tick does not announce him again.
    a.flush_updates();
    assert!(!heard_of_bob(&mut alice));
}

#[tokio::test]
async fn a_batch_is_encoded_once_for_everyone_it_does_not_name() {
    let (rooms, _transport) = manager(LimitConfig::default());
    let mut a = actor(&rooms, "s");
    a.updates = super::updates::UpdateBatch::with_budget(0);
    let mut rxs: Vec<Rx> = ["alice", "bob", "cy"]
        .iter()
        .map(|id| actor_join(&mut a, "s", id).1)
        .collect();
    a.flush_updates();
    for rx in &mut rxs {
        updates(rx);
    }
    let (_, mut dee) = actor_join(&mut a, "s", "dee");
    a.flush_updates();
    let shared: Vec<Arc<super::SharedResponse>> = rxs
        .iter_mut()
        .map(|rx| match rx.try_recv() {
            Ok(super::Outgoing::Shared(s)) => s,
            _ => panic!("the batch, shared"),
        })
        .collect();
    assert!(shared.windows(2).all(|w| Arc::ptr_eq(&w[0], &w[1])));
    let sent = <proto::SignalResponse as prost::Message>::decode(shared[0].binary())
        .expect("the shared encoding decodes");
    let Some(Out::Update(u)) = sent.message else {
        panic!("an update")
    };
    assert_eq!(u.participants.len(), 1);
    assert_eq!(u.participants[0].identity, "dee");
    assert!(updates(&mut dee).is_empty(), "dee is not told about itself");
}

/// A room with a timer due at every turn (as when it paces a keyframe out to
/// many subscribers) still hands the runtime back: on one worker thread, as
/// on a one-core node, a task waiting for its timer runs during the busy
/// stretch, not after it.
#[tokio::test]
async fn a_busy_room_leaves_the_runtime_to_other_tasks() {
    let (rooms, _transport) = manager(LimitConfig::default());
    let alice = join(&rooms, "busy", "alice").await.expect("join");
    let busy = Duration::from_millis(600);
    let start = Instant::now();
    alice
        .handle
        .tx
        .send(RoomCmd::Busy(busy))
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let woke = start.elapsed();
    assert!(
        woke < busy / 2,
        "a 5 ms timer woke after {woke:?} beside a room busy for {busy:?}"
    );
    // Busy, the room still answers its mailbox.
    let snapshot = rooms
        .snapshot(&RoomName::new("busy"))
        .await
        .expect("the room is open");
    assert_eq!(snapshot.participants.len(), 1);
}
