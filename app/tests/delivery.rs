//! Delivery state in the store, on a real SQLite file: what each recipient
//! has not confirmed, confirmations stored once, and attachments that live
//! only as long as their message.

mod common;

use std::sync::Arc;

use nodo_app::store::{Attachment, Confirmed, NewMessage, Online, Store};

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::open(dir.path()).await;
    (store, dir)
}

fn nobody() -> Online {
    Arc::new(|_: &str| false)
}

fn message(id: &str, chat: &str, sender: &str, attachment: Option<&str>) -> NewMessage {
    NewMessage {
        id: id.into(),
        chat_id: chat.into(),
        sender: sender.into(),
        content: format!("content of {id}"),
        content_type: "text".into(),
        reply_to: None,
        attachment_id: attachment.map(str::to_string),
    }
}

/// Users `a` and `others`, and a group `a` created with the others in it.
async fn team(s: &Store, others: &[&str]) -> String {
    s.create_user("a", "a", "a", None).await.expect("user");
    for u in others {
        s.create_user(u, u, u, None).await.expect("user");
    }
    let members: Vec<String> = others.iter().map(|u| u.to_string()).collect();
    s.create_group("a", "team", &members).await.expect("group")
}

fn confirmed(recipient: &str, m: &nodo_app::store::Message) -> Confirmed {
    Confirmed {
        recipient: recipient.into(),
        seq: m.seq,
        id: m.id.clone(),
        chat_id: m.chat_id.clone(),
        sender: m.sender_chat_path.clone(),
    }
}

#[tokio::test]
async fn pending_messages_page_in_order_until_confirmed_once() {
    let (s, _dir) = store().await;
    let group = team(&s, &["b", "c"]).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        let out = s
            .send(message(&format!("m{i}"), &group, "a", None), nobody())
            .await
            .expect("send");
        assert_eq!(
            out.message.status.get("b").map(String::as_str),
            Some("sent")
        );
        sent.push(out.message);
    }
    // Pages by seq, oldest first.
    let first = s.pending_for("b", 0, 2).await.expect("page");
    assert_eq!(
        first.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m0", "m1"]
    );
    let rest = s.pending_for("b", first[1].seq, 10).await.expect("page");
    assert_eq!(
        rest.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m2", "m3", "m4"]
    );
    assert!(s.pending_for("a", 0, 10).await.expect("sender").is_empty());

    // Two tabs confirm m0 (and b confirms m1): each counts once.
    let items = [
        confirmed("b", &sent[0]),
        confirmed("b", &sent[0]),
        confirmed("b", &sent[1]),
    ];
    let changed = s.confirm_delivered(&items).await.expect("confirm");
    assert_eq!(
        changed.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["m0", "m1"]
    );
    assert!(s.confirm_delivered(&items).await.expect("again").is_empty());
    let left = s.pending_for("b", 0, 10).await.expect("left");
    assert_eq!(
        left.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m2", "m3", "m4"]
    );
    // c is untouched; a read message is no longer pending nor confirmable.
    assert_eq!(s.pending_for("c", 0, 10).await.expect("c").len(), 5);
    s.mark_read(&group, "c").await.expect("read");
    assert!(s.pending_for("c", 0, 10).await.expect("c").is_empty());
    assert!(s
        .confirm_delivered(&[confirmed("c", &sent[2])])
        .await
        .expect("read stays read")
        .is_empty());
    let m2 = s.message_by_id("m2").await.expect("load").expect("m2");
    assert_eq!(m2.status.get("c").map(String::as_str), Some("read"));

    // By id, for messageReceived: only what is pending for that user.
    let by_id = s
        .pending_by_ids("b", &["m2".into(), "m2".into(), "m0".into(), "nope".into()])
        .await
        .expect("by id");
    assert_eq!(by_id, vec![confirmed("b", &sent[2])]);
    assert!(s
        .pending_by_ids("a", &["m2".into()])
        .await
        .expect("sender")
        .is_empty());

    // A deleted message is not sent again.
    s.edit("m3", "a", None).await.expect("delete");
    let left = s.pending_for("b", 0, 10).await.expect("left");
    assert_eq!(
        left.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m2", "m4"]
    );
}

#[tokio::test]
async fn attachments_live_as_long_as_their_message() {
    let (s, _dir) = store().await;
    for u in ["a", "b"] {
        s.create_user(u, u, u, None).await.expect("user");
    }
    let (chat, _) = s.direct_chat("a", "b").await.expect("chat");
    let att = |id: &str| Attachment {
        id: id.into(),
        chat_id: chat.clone(),
        file_name: "f.png".into(),
        content_type: "image/png".into(),
        size: 3,
    };
    // An upload no message refers to is not served, and can be forgotten.
    s.add_attachment(&att("AT_orphan"), "a").await.expect("add");
    assert!(s
        .live_attachment("AT_orphan")
        .await
        .expect("live")
        .is_none());
    assert!(s.forget_upload("AT_orphan").await.expect("forget"));
    assert!(s.attachment("AT_orphan").await.expect("gone").is_none());

    // One that a message carries is served until the message is deleted.
    s.add_attachment(&att("AT_kept"), "a").await.expect("add");
    let out = s
        .send(message("with-file", &chat, "a", Some("AT_kept")), nobody())
        .await
        .expect("send");
    assert!(
        !s.forget_upload("AT_kept").await.expect("kept"),
        "its message refers to it"
    );
    assert_eq!(
        s.live_attachment("AT_kept")
            .await
            .expect("live")
            .map(|a| a.id),
        Some("AT_kept".to_string())
    );
    assert_eq!(
        s.kept_attachments(&["AT_kept".into(), "AT_unknown".into()])
            .await
            .expect("kept")
            .into_iter()
            .collect::<Vec<_>>(),
        ["AT_kept"]
    );
    s.edit("with-file", "a", None).await.expect("delete");
    assert_eq!(
        s.remove_attachment_of(out.message.seq)
            .await
            .expect("remove"),
        Some("AT_kept".to_string())
    );
    assert!(s.live_attachment("AT_kept").await.expect("live").is_none());
    assert!(s
        .kept_attachments(&["AT_kept".into()])
        .await
        .expect("kept")
        .is_empty());

    // Orphans older than the cutoff are swept; fresh ones stay.
    s.add_attachment(&att("AT_fresh"), "a").await.expect("add");
    let now = nodo_app::store::now_ms();
    assert!(s
        .forget_orphan_uploads(now - 3_600_000)
        .await
        .expect("sweep")
        .is_empty());
    assert_eq!(
        s.forget_orphan_uploads(now + 1).await.expect("sweep"),
        vec!["AT_fresh".to_string()]
    );
}

/// More confirmations than one statement takes (500): every chunk's
/// statement runs in the one transaction, and every confirmation is stored.
#[tokio::test]
async fn confirmations_beyond_one_statement_are_all_stored() {
    let (s, _dir) = store().await;
    let group = team(&s, &["b", "c"]).await;
    let mut items = Vec::new();
    for i in 0..620 {
        let out = s
            .send(message(&format!("m{i}"), &group, "a", None), nobody())
            .await
            .expect("send");
        items.push(confirmed("b", &out.message));
        items.push(confirmed("c", &out.message));
    }
    // 1,240 confirmations: three statements.
    let changed = s.confirm_delivered(&items).await.expect("confirm");
    assert_eq!(changed.len(), items.len());
    assert!(s.pending_for("b", 0, 1000).await.expect("b").is_empty());
    assert!(s.pending_for("c", 0, 1000).await.expect("c").is_empty());
    assert!(s.confirm_delivered(&items).await.expect("again").is_empty());
}

/// A confirmation batch the database refuses leaves no transaction open:
/// the same batch is stored once the refusal is gone, and so are new
/// messages.
#[tokio::test]
async fn a_refused_confirmation_batch_leaves_the_writer_usable() {
    let (s, dir) = store().await;
    let group = team(&s, &["b"]).await;
    let mut items = Vec::new();
    for i in 0..3 {
        let m = s
            .send(message(&format!("m{i}"), &group, "a", None), nobody())
            .await
            .expect("send")
            .message;
        items.push(confirmed("b", &m));
    }
    // Another connection to the same database installs a trigger that
    // aborts the UPDATE (SQLite undoes that statement and keeps the
    // transaction open, PostgreSQL refuses everything after it: either way
    // it must be rolled back, not left to the next user of the connection).
    common::execute_beside(
        dir.path(),
        "CREATE TRIGGER refuse AFTER UPDATE ON message_status \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$; \
         CREATE TRIGGER refuse AFTER UPDATE ON message_status \
         FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .await;
    assert!(s.confirm_delivered(&items).await.is_err());
    assert_eq!(s.pending_for("b", 0, 10).await.expect("pending").len(), 3);

    common::execute_beside(
        dir.path(),
        "DROP TRIGGER refuse",
        "DROP TRIGGER refuse ON message_status",
    )
    .await;
    // Had the transaction stayed open, BEGIN would now fail ("cannot start
    // a transaction within a transaction") and the send would wait on it.
    let changed = s.confirm_delivered(&items).await.expect("confirm");
    assert_eq!(changed.len(), 3);
    s.send(message("m3", &group, "a", None), nobody())
        .await
        .expect("send after the refusal");
    assert_eq!(s.pending_for("b", 0, 10).await.expect("pending").len(), 1);
}
