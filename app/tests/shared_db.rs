//! Two stores on one PostgreSQL database, as two nodes share it: what one
//! node writes the other reads, and races between them resolve once. These
//! run when `NODO_TEST_PG` names a server (`scripts/test` starts one); a
//! SQLite file has one node by design, so without it they do nothing.

mod common;

use std::sync::Arc;

use nodo_app::calls::machine::Status;
use nodo_app::error::Error;
use nodo_app::store::{CallTransition, NewCall, NewMessage, Online, Store};

/// Two stores on one fresh database, or `None` when no server is given.
async fn two_nodes() -> Option<(Store, Store, tempfile::TempDir)> {
    if common::postgres().is_none() {
        eprintln!("skipped: NODO_TEST_PG names no PostgreSQL server");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let a = common::open(dir.path()).await;
    let b = common::open(dir.path()).await;
    Some((a, b, dir))
}

fn nobody() -> Online {
    Arc::new(|_: &str| false)
}

fn message(id: &str, chat: &str, sender: &str) -> NewMessage {
    NewMessage {
        id: id.into(),
        chat_id: chat.into(),
        sender: sender.into(),
        content: format!("body of {id}"),
        content_type: "text".into(),
        reply_to: None,
        attachment_id: None,
    }
}

#[tokio::test]
async fn a_resend_through_another_node_is_stored_once() {
    let Some((a, b, _dir)) = two_nodes().await else {
        return;
    };
    for u in ["ana", "bo"] {
        a.create_user(u, u, u, None).await.expect("user");
    }
    let (chat, _) = b.direct_chat("ana", "bo").await.expect("chat");
    // The same ids sent through both nodes at once: each is stored once,
    // and exactly one of the two sends reports it as new.
    let mut firsts = 0;
    for round in 0..50 {
        let id = format!("m{round}");
        let (x, y) = tokio::join!(
            a.send(message(&id, &chat, "ana"), nobody()),
            b.send(message(&id, &chat, "ana"), nobody()),
        );
        let (x, y) = (x.expect("send via a"), y.expect("send via b"));
        assert_eq!(x.message.seq, y.message.seq, "{id}: one row");
        firsts += usize::from(x.inserted) + usize::from(y.inserted);
    }
    assert_eq!(firsts, 50);
    let page = a.history(&chat, 100, None, None).await.expect("history");
    assert_eq!(page.messages.len(), 50);
    // bo's pending messages are the same seen from either node.
    assert_eq!(
        b.pending_for("bo", 0, 100).await.expect("pending").len(),
        50
    );
    assert_eq!(a.search("bo", "m7", 10).await.expect("search").len(), 1);
}

#[tokio::test]
async fn a_call_answered_on_one_node_cannot_be_missed_on_the_other() {
    let Some((a, b, _dir)) = two_nodes().await else {
        return;
    };
    for u in ["ana", "bo"] {
        a.create_user(u, u, u, None).await.expect("user");
    }
    for round in 0..20 {
        let id = format!("CA_{round}");
        let room = format!("call-{id}");
        a.insert_call(NewCall {
            id: &id,
            caller: "ana",
            callee: "bo",
            call_type: "audio",
            room_name: &room,
            status: Status::Ringing,
        })
        .await
        .expect("ring");
        let accept = CallTransition {
            id: &id,
            from: Status::Ringing,
            to: Status::Accepted,
            reason: None,
        };
        let timeout = CallTransition {
            id: &id,
            from: Status::Ringing,
            to: Status::Missed,
            reason: Some("missed"),
        };
        let (x, y) = tokio::join!(a.transition_call(accept), b.transition_call(timeout));
        let (x, y) = (x.expect("accept"), y.expect("timeout"));
        assert!(
            x.is_some() != y.is_some(),
            "{id}: exactly one transition wins"
        );
        let status = b.call(&id).await.expect("read").expect("call").status;
        assert_eq!(
            status,
            if x.is_some() {
                Status::Accepted
            } else {
                Status::Missed
            }
        );
        let end = CallTransition {
            id: &id,
            from: status,
            to: Status::Ended,
            reason: Some("done"),
        };
        a.transition_call(end).await.expect("end");
    }
}

#[tokio::test]
async fn names_and_profiles_are_one_across_nodes() {
    let Some((a, b, _dir)) = two_nodes().await else {
        return;
    };
    // One username registered through both nodes at once: one wins.
    let (x, y) = tokio::join!(
        a.create_user("u1", "Zoe", "Zoe", Some("h1")),
        b.create_user("u2", "zoe", "Zoe", Some("h2")),
    );
    assert!(
        matches!(
            (&x, &y),
            (Ok(_), Err(Error::UsernameTaken)) | (Err(Error::UsernameTaken), Ok(_))
        ),
        "{x:?} {y:?}"
    );
    let winner = if x.is_ok() { "u1" } else { "u2" };
    // An account and an app identity of one name key, through both nodes at
    // once: never both.
    for round in 0..20 {
        let (id, local, app) = (
            format!("L{round}"),
            format!("Max{round}"),
            format!("max{round}"),
        );
        let (x, y) = tokio::join!(
            a.create_user(&id, &local, "Max", Some("h")),
            b.ensure_app_user(&app, "Max", true),
        );
        let app_ready = matches!(y.expect("ensure"), nodo_app::store::AppUser::Ready(..));
        assert!(
            x.is_ok() != app_ready,
            "round {round}: {x:?}, app identity ready: {app_ready}"
        );
    }
    // A profile read (and cached) on b, changed on a, reads new on b.
    assert_eq!(
        b.profile(winner).await.expect("profile").map(|p| p.0),
        Some("Zoe".to_string())
    );
    a.update_profile(winner, Some("Zoé"), None)
        .await
        .expect("update");
    assert_eq!(
        b.profile(winner).await.expect("profile").map(|p| p.0),
        Some("Zoé".to_string())
    );
    // A session made on a is known on b, and revoked there for both.
    a.create_session("S1", winner, i64::MAX, 5)
        .await
        .expect("session");
    assert!(b.session("S1").await.expect("session").is_some());
    assert!(b.delete_session("S1").await.expect("revoke"));
    assert!(a.session("S1").await.expect("session").is_none());
}

#[tokio::test]
async fn each_node_delivers_the_webhooks_it_queued() {
    use nodo_signaling::webhook::WebhookQueue;
    let Some((a, b, _dir)) = two_nodes().await else {
        return;
    };
    let (qa, qb) = (a.webhook_queue("node-a"), b.webhook_queue("node-b"));
    qa.push(vec!["http://hook".into()], "from a".into())
        .await
        .expect("push a");
    qb.push(vec!["http://hook".into()], "from b".into())
        .await
        .expect("push b");
    let head_a = qa
        .head("http://hook".into())
        .await
        .expect("head")
        .expect("a's");
    let head_b = qb
        .head("http://hook".into())
        .await
        .expect("head")
        .expect("b's");
    assert_eq!(
        (head_a.body.as_str(), head_b.body.as_str()),
        ("from a", "from b")
    );
    qa.delivered(head_a.seq).await.expect("delivered");
    assert!(qa.head("http://hook".into()).await.expect("head").is_none());
    assert!(qb.head("http://hook".into()).await.expect("head").is_some());
    // node-a queues again, then is gone: node-b takes its queue over, once.
    qa.push(vec!["http://hook".into()], "a again".into())
        .await
        .expect("push a");
    let mut nodes = b.webhook_nodes().await.expect("nodes");
    nodes.sort();
    assert_eq!(nodes, vec!["node-a", "node-b"]);
    let (x, y) = tokio::join!(
        a.adopt_webhooks("node-a", "node-b"),
        b.adopt_webhooks("node-a", "node-b")
    );
    assert_eq!(x.expect("adopt") + y.expect("adopt"), 1);
    assert!(qa.head("http://hook".into()).await.expect("head").is_none());
    let first = qb
        .head("http://hook".into())
        .await
        .expect("head")
        .expect("b's");
    assert_eq!(first.body, "from b", "in queue order");
    qb.delivered(first.seq).await.expect("delivered");
    let next = qb
        .head("http://hook".into())
        .await
        .expect("head")
        .expect("adopted");
    assert_eq!(next.body, "a again");
}

#[tokio::test]
async fn nodes_find_each_other_and_a_live_id_is_held() {
    use nodo_app::store::NodeJoin;
    use std::time::Duration;
    let Some((a, b, _dir)) = two_nodes().await else {
        return;
    };
    let ttl = Duration::from_secs(10);
    assert_eq!(
        a.node_join("n1", "host-a :1", ttl).await.expect("join"),
        NodeJoin::Joined(vec![])
    );
    assert_eq!(
        b.node_join("n2", "host-b :2", ttl).await.expect("join"),
        NodeJoin::Joined(vec!["n1".into()])
    );
    // Another process with a live node's id is refused, naming the holder.
    assert_eq!(
        b.node_join("n1", "host-b :3", ttl).await.expect("join"),
        NodeJoin::Taken {
            holder: "host-a :1".into()
        }
    );
    // The same holder (a restart at the same address) takes it back.
    assert!(matches!(
        a.node_join("n1", "host-a :1", ttl).await.expect("join"),
        NodeJoin::Joined(_)
    ));
    assert_eq!(
        a.node_beat("n1", "host-a :1", ttl).await.expect("beat"),
        Some(vec!["n2".to_string()])
    );
    // A lapsed entry is free for anyone (here: a zero TTL).
    assert!(matches!(
        b.node_join("n1", "host-b :3", Duration::ZERO)
            .await
            .expect("join"),
        NodeJoin::Joined(_)
    ));
    assert_eq!(
        a.node_beat("n1", "host-a :1", ttl).await.expect("beat"),
        None
    );
    // Leaving: the others stop seeing it.
    b.node_leave("n1", "host-b :3").await.expect("leave");
    assert_eq!(
        b.node_beat("n2", "host-b :2", ttl).await.expect("beat"),
        Some(vec![])
    );
}

#[tokio::test]
async fn the_bus_carries_events_in_order_and_large_ones_as_rows() {
    let Some((a, b, _dir)) = two_nodes().await else {
        return;
    };
    let mut listener = b.bus_listener().await.expect("listen");
    let big = format!("{{\"n\":2,\"x\":\"{}\"}}", "é".repeat(6000));
    let events = vec![
        "{\"n\":1}".to_string(),
        big.clone(),
        "{\"n\":3}".to_string(),
        "{\"n\":4}".to_string(),
    ];
    a.bus_publish(&events).await.expect("publish");
    let mut got = Vec::new();
    while got.len() < events.len() {
        let payload = tokio::time::timeout(std::time::Duration::from_secs(5), listener.next())
            .await
            .expect("a notification in time")
            .expect("listening")
            .expect("connected");
        got.push(b.bus_event(payload).await.expect("read").expect("kept"));
    }
    assert_eq!(got, events);
    // Nothing is pruned while it is fresh.
    assert_eq!(a.bus_prune().await.expect("prune"), 0);
}
