//! The SQLite store on a real database file in a temporary directory.

mod common;

use std::sync::Arc;

use nodo_app::calls::machine::Status;
use nodo_app::error::{Error, Missing};
use nodo_app::store::{
    CallTransition, NewCall, NewMeeting, NewMessage, Online, Role, Store, StoredSubscription,
};
use nodo_signaling::webhook::WebhookQueue;

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::open(dir.path()).await;
    (store, dir)
}

fn online(users: &'static [&'static str]) -> Online {
    Arc::new(move |u: &str| users.contains(&u))
}

fn message(id: &str, chat: &str, sender: &str, content: &str) -> NewMessage {
    NewMessage {
        id: id.into(),
        chat_id: chat.into(),
        sender: sender.into(),
        content: content.into(),
        content_type: "text".into(),
        reply_to: None,
        attachment_id: None,
    }
}

async fn users(s: &Store, ids: &[&str]) {
    for id in ids {
        s.create_user(id, id, id, None).await.expect("user");
    }
}

#[tokio::test]
async fn accounts_are_unique_and_app_identities_are_created_once() {
    let (s, _dir) = store().await;
    s.create_user("ana", "ana", "Ana", Some("hash"))
        .await
        .expect("create");
    assert!(matches!(
        s.create_user("ana2", "ana", "Other", None).await,
        Err(Error::UsernameTaken)
    ));
    let (u, created) = s.ensure_user("bob", "Bob").await.expect("ensure");
    assert!(created);
    assert_eq!((u.id.as_str(), u.name.as_str()), ("bob", "Bob"));
    let (_, created) = s.ensure_user("bob", "Bobby").await.expect("again");
    assert!(!created);
    let u = s
        .update_profile("bob", Some("Robert"), Some("https://a/b.png"))
        .await
        .expect("profile");
    assert_eq!(
        (u.name.as_str(), u.avatar.as_str()),
        ("Robert", "https://a/b.png")
    );
    assert!(matches!(
        s.update_profile("nobody", Some("x"), None).await,
        Err(Error::NotFound(Missing::User(_)))
    ));
}

#[tokio::test]
async fn direct_chats_are_made_once_even_when_raced() {
    let (s, _dir) = store().await;
    users(&s, &["a", "b"]).await;
    let (x, y) = tokio::join!(s.direct_chat("a", "b"), s.direct_chat("b", "a"));
    let (x, y) = (x.expect("x"), y.expect("y"));
    assert_eq!(x.0, y.0);
    assert!(x.1 ^ y.1, "exactly one call created it");
    assert_eq!(s.members(&x.0).await.expect("members"), ["a", "b"]);
    assert!(matches!(
        s.require_member(&x.0, "c").await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.require_member("CH_none", "a").await,
        Err(Error::NotFound(Missing::Chat))
    ));
}

#[tokio::test]
async fn sends_are_durable_idempotent_and_carry_receipts() {
    let (s, dir) = store().await;
    users(&s, &["a", "b", "c"]).await;
    let group = s
        .create_group("a", "team", &["b".into(), "c".into()])
        .await
        .expect("group");
    let out = s
        .send(message("m1", &group, "a", "hello"), online(&["b"]))
        .await
        .expect("send");
    assert!(out.inserted);
    assert_eq!(
        out.message.status.get("b").map(String::as_str),
        Some("delivered")
    );
    assert_eq!(
        out.message.status.get("c").map(String::as_str),
        Some("sent")
    );
    // The same id again from the same sender: the stored message, nothing new.
    let again = s
        .send(message("m1", &group, "a", "hello"), online(&[]))
        .await
        .expect("resend");
    assert!(!again.inserted);
    assert_eq!(again.message.created_at, out.message.created_at);
    // The same id from someone else is refused.
    assert!(matches!(
        s.send(message("m1", &group, "b", "hijack"), online(&[]))
            .await,
        Err(Error::MessageIdTaken)
    ));
    // c was offline: it is waiting for c, and delivered once marked.
    let pending = s.undelivered("c").await.expect("pending");
    assert_eq!(
        pending.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m1"]
    );
    s.mark_delivered("c", &["m1".into()])
        .await
        .expect("delivered");
    assert!(s.undelivered("c").await.expect("pending").is_empty());
    let read = s.mark_read(&group, "b").await.expect("read");
    assert_eq!(
        read.get("a").map(Vec::as_slice),
        Some(&["m1".to_string()][..])
    );
    // Reopening the file finds everything.
    drop(s);
    let s = common::open(dir.path()).await;
    let m = s.message_by_id("m1").await.expect("load").expect("kept");
    assert_eq!(m.status.get("b").map(String::as_str), Some("read"));
    assert_eq!(m.status.get("c").map(String::as_str), Some("delivered"));
}

#[tokio::test]
async fn concurrent_sends_share_commits_and_lose_nothing() {
    let (s, _dir) = store().await;
    users(&s, &["a", "b"]).await;
    let (chat, _) = s.direct_chat("a", "b").await.expect("chat");
    let sends = (0..300).map(|i| {
        let s = s.clone();
        let chat = chat.clone();
        tokio::spawn(async move {
            s.send(
                message(&format!("id{i}"), &chat, "a", &format!("n{i}")),
                online(&[]),
            )
            .await
        })
    });
    for h in sends {
        assert!(h.await.expect("task").expect("send").inserted);
    }
    let mut seen = 0;
    let mut before = None;
    loop {
        let page = s.history(&chat, 64, before, None).await.expect("page");
        seen += page.messages.len();
        match page.next_cursor {
            Some(c) => before = Some(c.parse().expect("cursor")),
            None => break,
        }
    }
    assert_eq!(seen, 300);
}

/// Sends that share a batch (one multi-row insert) keep per-message
/// outcomes: a resend of an id in the same batch is a duplicate, a message
/// that breaks a constraint is refused alone, and every stored one gets its
/// members and pending statuses, in a group and a direct chat alike.
#[tokio::test]
async fn one_batch_keeps_each_message_its_own_outcome() {
    let (s, _dir) = store().await;
    users(&s, &["a", "b", "c", "d"]).await;
    let (direct, _) = s.direct_chat("a", "b").await.expect("chat");
    let group = s
        .create_group("a", "g", &["b".into(), "c".into(), "d".into()])
        .await
        .expect("group");
    let mut jobs = Vec::new();
    for i in 0..40 {
        let (id, chat) = match i % 4 {
            0 => (format!("d{i}"), direct.clone()),
            1 => (format!("g{i}"), group.clone()),
            // The same id twice, racing in one batch.
            2 => ("twice".to_string(), group.clone()),
            // No such chat: the foreign key refuses it.
            _ => (format!("x{i}"), "CH_missing".to_string()),
        };
        let s = s.clone();
        jobs.push(tokio::spawn(async move {
            (
                id.clone(),
                s.send(message(&id, &chat, "a", "hi"), online(&["c"])).await,
            )
        }));
    }
    let mut twice_inserted = 0;
    for j in jobs {
        let (id, r) = j.await.expect("task");
        match id.chars().next() {
            Some('x') => assert!(r.is_err(), "{id} was stored in a missing chat"),
            Some('d') => {
                let out = r.expect("direct send");
                assert!(out.inserted);
                assert_eq!(out.members, ["a", "b"]);
                assert_eq!(
                    out.message.status.get("b").map(String::as_str),
                    Some("sent")
                );
            }
            Some('g') => {
                let out = r.expect("group send");
                assert!(out.inserted);
                assert_eq!(out.members, ["a", "b", "c", "d"]);
            }
            _ => {
                if r.expect("resend").inserted {
                    twice_inserted += 1;
                }
            }
        }
    }
    assert_eq!(twice_inserted, 1, "one of the same-id sends stores it");
    let g = s.message_by_id("g1").await.expect("load").expect("stored");
    assert_eq!(g.status.get("b").map(String::as_str), Some("sent"));
    assert_eq!(g.status.get("c").map(String::as_str), Some("delivered"));
    assert!(!g.status.contains_key("a"), "no status for the sender");
    assert!(s.message_by_id("x3").await.expect("load").is_none());
}

/// A chat's members are read as one JSON array per chat: ids that need
/// escaping come back as they are, in id order, a membership change shows
/// in the next send, and a missing chat has none.
#[tokio::test]
async fn members_come_back_exact_and_current() {
    let (s, _dir) = store().await;
    let odd = "q\"uo\\te-é-\u{1F600}";
    users(&s, &["a", "b", "c", odd]).await;
    let group = s
        .create_group("a", "g", &["c".into(), odd.into()])
        .await
        .expect("group");
    let mut want = vec!["a", "c", odd];
    want.sort_unstable();
    assert_eq!(s.members(&group).await.expect("members"), want);
    let out = s
        .send(message("m1", &group, "a", "hi"), online(&[]))
        .await
        .expect("send");
    assert_eq!(out.members, want);
    assert_eq!(
        out.message.status.get(odd).map(String::as_str),
        Some("sent")
    );

    s.add_member(&group, "b").await.expect("add");
    assert!(s.remove_member(&group, "c").await.expect("remove"));
    let out = s
        .send(message("m2", &group, "a", "again"), online(&[]))
        .await
        .expect("send");
    let mut want = vec!["a", "b", odd];
    want.sort_unstable();
    assert_eq!(out.members, want);
    assert!(
        !out.message.status.contains_key("c"),
        "a removed member gets no status"
    );
    assert_eq!(s.members(&group).await.expect("members"), want);

    assert!(s.members("CH_missing").await.expect("members").is_empty());

    // Everyone gone: an empty list (PostgreSQL's json_agg gives NULL there).
    for user in want {
        assert!(s.remove_member(&group, user).await.expect("remove"));
    }
    assert!(s.members(&group).await.expect("members").is_empty());
}

#[tokio::test]
async fn history_pages_newest_first_with_cursors() {
    let (s, _dir) = store().await;
    users(&s, &["a", "b"]).await;
    let (chat, _) = s.direct_chat("a", "b").await.expect("chat");
    for i in 0..5 {
        s.send(
            message(&format!("h{i}"), &chat, "a", &format!("n{i}")),
            online(&[]),
        )
        .await
        .expect("send");
    }
    let p1 = s.history(&chat, 2, None, None).await.expect("p1");
    assert_eq!(
        p1.messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["n4", "n3"]
    );
    let c1: i64 = p1.next_cursor.expect("more").parse().expect("cursor");
    let p2 = s.history(&chat, 2, Some(c1), None).await.expect("p2");
    assert_eq!(
        p2.messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["n2", "n1"]
    );
    let c2: i64 = p2.next_cursor.expect("more").parse().expect("cursor");
    let p3 = s.history(&chat, 2, Some(c2), None).await.expect("p3");
    assert_eq!(p3.messages.len(), 1);
    assert_eq!(p3.next_cursor, None, "the start of the chat");
    // Newer than a cursor.
    let newer = s.history(&chat, 10, None, Some(c1)).await.expect("after");
    assert_eq!(
        newer
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>(),
        ["n4"]
    );
}

#[tokio::test]
async fn edits_reactions_and_search() {
    let (s, _dir) = store().await;
    users(&s, &["a", "b", "c"]).await;
    let (chat, _) = s.direct_chat("a", "b").await.expect("chat");
    s.send(
        message("e1", &chat, "a", "the quick brown fox"),
        online(&[]),
    )
    .await
    .expect("send");
    assert!(matches!(
        s.edit("e1", "b", Some("mine now")).await,
        Err(Error::Forbidden(_))
    ));
    let m = s
        .edit("e1", "a", Some("the slow brown fox"))
        .await
        .expect("edit");
    assert!(m.edited_at.is_some());
    let m = s.react("e1", "b", "👍", true).await.expect("react");
    assert_eq!(m.reactions.len(), 1);
    let m = s.react("e1", "b", "👍", true).await.expect("twice");
    assert_eq!(m.reactions.len(), 1, "a reaction counts once per user");
    // Search sees the edit, only for members, and never parses input as FTS syntax.
    assert_eq!(s.search("a", "slow", 10).await.expect("search").len(), 1);
    assert!(s.search("a", "quick", 10).await.expect("search").is_empty());
    assert!(s.search("c", "slow", 10).await.expect("search").is_empty());
    for hostile in ["\"", "NEAR(a b", "slow*) OR (", "' OR 1=1 --", "^$"] {
        s.search("a", hostile, 10)
            .await
            .expect("hostile input is just words");
    }
    let m = s.edit("e1", "a", None).await.expect("delete");
    assert!(m.deleted && m.content.is_empty());
    assert!(matches!(
        s.edit("e1", "a", Some("back")).await,
        Err(Error::Conflict(_))
    ));
    assert!(s.search("a", "slow", 10).await.expect("search").is_empty());
    assert!(matches!(
        s.react("nope", "a", "x", true).await,
        Err(Error::NotFound(Missing::Message))
    ));
}

#[tokio::test]
async fn call_transitions_are_guarded() {
    let (s, _dir) = store().await;
    users(&s, &["a", "b"]).await;
    let call = s
        .insert_call(NewCall {
            id: "CA_1",
            caller: "a",
            callee: "b",
            call_type: "video",
            room_name: "call-CA_1",
            status: Status::Ringing,
        })
        .await
        .expect("insert");
    assert_eq!(call.status, Status::Ringing);
    assert_eq!(
        s.active_call_of("b").await.expect("active").map(|c| c.id),
        Some("CA_1".into())
    );
    let accept = CallTransition {
        id: "CA_1",
        from: Status::Ringing,
        to: Status::Accepted,
        reason: None,
    };
    let accepted = s
        .transition_call(accept)
        .await
        .expect("accept")
        .expect("applied");
    assert!(accepted.answered_at.is_some());
    // The ring timeout decided from the stale status loses the race.
    let late = CallTransition {
        id: "CA_1",
        from: Status::Ringing,
        to: Status::Missed,
        reason: Some("missed"),
    };
    assert!(s.transition_call(late).await.expect("late").is_none());
    let end = CallTransition {
        id: "CA_1",
        from: Status::Accepted,
        to: Status::Ended,
        reason: Some("caller_hangup"),
    };
    let ended = s.transition_call(end).await.expect("end").expect("applied");
    assert_eq!(
        (ended.status, ended.end_reason.as_deref()),
        (Status::Ended, Some("caller_hangup"))
    );
    assert!(s.active_call_of("a").await.expect("active").is_none());
    let busy = s
        .insert_call(NewCall {
            id: "CA_2",
            caller: "b",
            callee: "a",
            call_type: "audio",
            room_name: "call-CA_2",
            status: Status::Busy,
        })
        .await
        .expect("busy");
    assert_eq!(
        (busy.end_reason.as_deref(), busy.ended_at.is_some()),
        (Some("busy"), true)
    );
    let (page, next) = s.call_history("a", 1, None).await.expect("history");
    assert_eq!(page[0].id, "CA_2");
    let (page, next2) = s
        .call_history("a", 1, next.map(|c| c.parse().expect("cursor")))
        .await
        .expect("older");
    assert_eq!((page[0].id.as_str(), next2), ("CA_1", None));
}

#[tokio::test]
async fn meetings_keep_roles_and_never_demote() {
    let (s, _dir) = store().await;
    users(&s, &["mod", "m1", "m2"]).await;
    let m = s
        .create_meeting(
            NewMeeting {
                id: "MT_1",
                name: "sync",
                room_name: "meeting-MT_1",
                created_by: "mod",
                max_participants: 4,
                empty_timeout: 0,
                metadata: "",
                open: false,
            },
            &["m1".into(), "m1".into(), "mod".into()],
        )
        .await
        .expect("create");
    assert_eq!(m.max_participants, 4);
    assert_eq!(
        s.meeting_role("MT_1", "mod").await.expect("role"),
        Some(Role::Moderator)
    );
    assert_eq!(
        s.meeting_role("MT_1", "m1").await.expect("role"),
        Some(Role::Member)
    );
    assert_eq!(s.meeting_role("MT_1", "m2").await.expect("role"), None);
    s.add_meeting_member("MT_1", "m1", Role::Moderator)
        .await
        .expect("promote");
    s.add_meeting_member("MT_1", "m1", Role::Member)
        .await
        .expect("no demotion");
    assert_eq!(
        s.meeting_role("MT_1", "m1").await.expect("role"),
        Some(Role::Moderator)
    );
    assert_eq!(s.meeting_members("MT_1").await.expect("members").len(), 2);
    assert_eq!(
        s.meeting_by_room("meeting-MT_1")
            .await
            .expect("by room")
            .map(|m| m.id),
        Some("MT_1".into())
    );
    s.meeting_started("MT_1").await.expect("start");
    s.meeting_ended("MT_1", 42).await.expect("end");
    let m = s.meeting("MT_1").await.expect("load").expect("kept");
    assert!(m.started_at.is_some());
    assert_eq!(m.ended_at, Some(42));
}

#[tokio::test]
async fn push_subscriptions_move_with_their_endpoint() {
    let (s, _dir) = store().await;
    users(&s, &["a", "b"]).await;
    let sub = StoredSubscription {
        endpoint: "https://push.example/1".into(),
        p256dh: "k".into(),
        auth: "x".into(),
    };
    s.save_push_subscription("a", &sub, 10).await.expect("save");
    // Someone who knows only the endpoint can't take it over.
    let forged = StoredSubscription {
        p256dh: "other".into(),
        ..sub.clone()
    };
    let e = s
        .save_push_subscription("b", &forged, 10)
        .await
        .expect_err("held by a");
    assert_eq!(e.kind(), nodo_app::error::Kind::Conflict);
    assert_eq!(
        s.push_subscriptions("a", 10).await.expect("subs"),
        vec![sub.clone()]
    );
    // The same browser (same keys), now signed in as b: the subscription follows.
    s.save_push_subscription("b", &sub, 10)
        .await
        .expect("resave");
    assert_eq!(s.push_subscription_count("a").await.expect("count"), 0);
    assert_eq!(
        s.push_subscriptions("b", 10).await.expect("subs"),
        vec![sub.clone()]
    );
    assert!(!s
        .delete_push_subscription("a", &sub.endpoint)
        .await
        .expect("not a's"));
    s.forget_push_endpoint(&sub.endpoint).await.expect("gone");
    assert_eq!(s.push_subscription_count("b").await.expect("count"), 0);
}

#[tokio::test]
async fn a_user_over_the_subscription_cap_loses_the_least_recently_sent() {
    let (s, _dir) = store().await;
    users(&s, &["a"]).await;
    let sub = |n: u32| StoredSubscription {
        endpoint: format!("https://push.example/{n}"),
        p256dh: "k".into(),
        auth: "x".into(),
    };
    for n in 0..3 {
        assert_eq!(
            s.save_push_subscription("a", &sub(n), 3)
                .await
                .expect("save"),
            0
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // Browser 0 sends its subscription again: now 1 is the stalest.
    s.save_push_subscription("a", &sub(0), 3)
        .await
        .expect("refresh");
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    assert_eq!(
        s.save_push_subscription("a", &sub(3), 3)
            .await
            .expect("save"),
        1
    );
    let mut left: Vec<String> = s
        .push_subscriptions("a", 10)
        .await
        .expect("subs")
        .into_iter()
        .map(|x| x.endpoint)
        .collect();
    left.sort();
    assert_eq!(left, [0, 2, 3].map(|n| sub(n).endpoint));
}

#[tokio::test]
async fn the_webhook_queue_keeps_order_per_url_across_restarts() {
    let (s, dir) = store().await;
    let q = s.webhook_queue("");
    q.push(vec!["http://a".into(), "http://b".into()], "first".into())
        .await
        .expect("push");
    q.push(vec!["http://a".into()], "second".into())
        .await
        .expect("push");
    let head = q
        .head("http://a".into())
        .await
        .expect("head")
        .expect("queued");
    assert_eq!((head.body.as_str(), head.attempts), ("first", 0));
    q.retry_at(head.seq, i64::MAX).await.expect("retry");
    drop((q, s));
    let s = common::open(dir.path()).await;
    let q = s.webhook_queue("");
    let head = q
        .head("http://a".into())
        .await
        .expect("head")
        .expect("still queued");
    // A failing head keeps its place: in order per URL.
    assert_eq!(
        (head.body.as_str(), head.attempts, head.due_ms),
        ("first", 1, i64::MAX)
    );
    q.delivered(head.seq).await.expect("delivered");
    assert_eq!(
        q.head("http://a".into())
            .await
            .expect("head")
            .map(|d| d.body),
        Some("second".into())
    );
    assert_eq!(
        q.head("http://b".into())
            .await
            .expect("head")
            .map(|d| d.body),
        Some("first".into())
    );
    assert_eq!(q.head("http://c".into()).await.expect("head"), None);
}

#[tokio::test]
async fn uploaded_bytes_kept_in_the_database_read_back_and_age() {
    let (s, _dir) = store().await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    s.put_file("attachment", "AT_1", &bytes).await.expect("put");
    s.put_file("avatar", "AT_1", b"other kind")
        .await
        .expect("put");
    assert!(
        s.put_file("attachment", "AT_1", b"again").await.is_err(),
        "ids are unique per kind"
    );
    assert_eq!(
        s.file("attachment", "AT_1").await.expect("get"),
        Some(bytes)
    );
    assert_eq!(
        s.file("avatar", "AT_1").await.expect("get"),
        Some(b"other kind".to_vec())
    );
    assert_eq!(s.file("attachment", "AT_2").await.expect("get"), None);
    assert!(s
        .files_before("attachment", 0)
        .await
        .expect("old")
        .is_empty());
    assert_eq!(
        s.files_before("attachment", i64::MAX).await.expect("old"),
        vec!["AT_1".to_string()]
    );
    s.delete_file("attachment", "AT_1").await.expect("delete");
    s.delete_file("attachment", "AT_1")
        .await
        .expect("delete twice");
    assert_eq!(s.file("attachment", "AT_1").await.expect("get"), None);
}

/// Ages the messages `ids` by `ms`, straight in the database: the read
/// floor only passes messages stored more than ten minutes ago.
async fn age(dir: &std::path::Path, ids: &[&str], ms: i64) {
    let list: Vec<String> = ids.iter().map(|id| format!("'{}'", literal(id))).collect();
    let sql = format!(
        "UPDATE messages SET created_at = created_at - {ms} WHERE id IN ({})",
        list.join(", ")
    );
    common::exec(dir, &sql).await;
}

/// Sets `user`'s status of message `id` straight in the database.
async fn set_status(dir: &std::path::Path, id: &str, user: &str, status: &str) {
    let sql = format!(
        "UPDATE message_status SET status = '{}' WHERE user_id = '{}' \
         AND message_seq = (SELECT seq FROM messages WHERE id = '{}')",
        literal(status),
        literal(user),
        literal(id)
    );
    common::exec(dir, &sql).await;
}

/// A test-made name, checked to be safe inside quotes.
fn literal(s: &str) -> &str {
    assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    s
}

const MINUTE_MS: i64 = 60_000;

async fn unread(s: &Store, user: &str, chat: &str) -> i64 {
    s.chats_of(user)
        .await
        .expect("chats")
        .into_iter()
        .find(|c| c.id == chat)
        .expect("member")
        .unread_count
}

#[tokio::test]
async fn marking_read_raises_a_floor_and_reports_each_message_once() {
    let (s, dir) = store().await;
    let dir = dir.path();
    users(&s, &["a", "b", "c"]).await;
    let group = s
        .create_group("a", "team", &["b".into(), "c".into()])
        .await
        .expect("group");
    let old = ["old0", "old1", "old2", "old3", "old4"];
    for id in old {
        s.send(message(id, &group, "a", "x"), online(&[]))
            .await
            .expect("send");
    }
    age(dir, &old, 20 * MINUTE_MS).await;
    assert_eq!(unread(&s, "b", &group).await, 5);
    let read = s.mark_read(&group, "b").await.expect("read");
    assert_eq!(read.get("a").map(Vec::len), Some(5));
    assert_eq!(unread(&s, "b", &group).await, 0);
    // c's floor is its own.
    assert_eq!(unread(&s, "c", &group).await, 5);
    // b's floor has passed the old messages: below it nothing is looked at
    // again (a status put back by hand is neither counted nor re-read).
    set_status(dir, "old0", "b", "delivered").await;
    assert_eq!(unread(&s, "b", &group).await, 0);
    assert!(s.mark_read(&group, "b").await.expect("read").is_empty());

    for id in ["new0", "new1"] {
        s.send(message(id, &group, "a", "y"), online(&[]))
            .await
            .expect("send");
    }
    // Nine minutes old: still inside the margin, so above the floor after
    // any mark.
    age(dir, &["new0"], 9 * MINUTE_MS).await;
    // b's own message is nobody's unread to b.
    s.send(message("fromb", &group, "b", "z"), online(&[]))
        .await
        .expect("send");
    assert_eq!(unread(&s, "b", &group).await, 2);
    assert_eq!(unread(&s, "c", &group).await, 8);
    let read = s.mark_read(&group, "b").await.expect("read");
    assert_eq!(
        read.get("a").cloned(),
        Some(vec!["new0".to_string(), "new1".to_string()])
    );
    assert_eq!(read.len(), 1);
    // Marked again at once: the recent ones are looked at again, but
    // nothing is reported twice.
    assert!(s.mark_read(&group, "b").await.expect("read").is_empty());
    assert_eq!(unread(&s, "b", &group).await, 0);
    // Above the floor (inside the margin) a status not yet read is found: a
    // message another node numbered lower but committed late.
    set_status(dir, "new0", "b", "delivered").await;
    assert_eq!(unread(&s, "b", &group).await, 1);
    let read = s.mark_read(&group, "b").await.expect("read");
    assert_eq!(read.get("a").cloned(), Some(vec!["new0".to_string()]));

    let read = s.mark_read(&group, "c").await.expect("read");
    assert_eq!(read.get("a").map(Vec::len), Some(7));
    assert_eq!(read.get("b").cloned(), Some(vec!["fromb".to_string()]));
    let m = s.message_by_id("old1").await.expect("load").expect("kept");
    assert_eq!(m.status.get("b").map(String::as_str), Some("read"));
    assert_eq!(m.status.get("c").map(String::as_str), Some("read"));

    // Leaving and joining again starts from no floor: the status put back
    // below b's old floor counts again.
    assert!(s.remove_member(&group, "b").await.expect("leave"));
    s.add_member(&group, "b").await.expect("join");
    assert_eq!(unread(&s, "b", &group).await, 1);
    // A mark by someone who is not a member changes nothing.
    users(&s, &["d"]).await;
    assert!(s.mark_read(&group, "d").await.expect("read").is_empty());
}
