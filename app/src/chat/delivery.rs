//! Delivery that means delivered.
//!
//! A stored message starts pending (`sent`) for every recipient. Each of the
//! recipient's sockets gets `receiveMessage` with an ack request; the message
//! becomes `delivered` for that recipient only when one of its clients
//! confirms it (the ack callback, or a `messageReceived` event), and only then
//! is its sender told, with one `messageDelivered` per batch of confirmations
//! (a 1,000-member group gives its sender one event, not 999). What a client
//! never confirms (a half-open or stalled socket, a socket full enough to be
//! disconnected) stays pending and is sent again, oldest first, on the
//! recipient's next connection; clients drop duplicates by `id`.
//!
//! Nothing here waits on a socket: sockets are written without blocking, a
//! socket whose queue is full is disconnected (it is hopelessly behind, and
//! counted offline if even the disconnect cannot get through), and
//! confirmations go to one task that stores them in batches.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::{json, Value};
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{AckError, SendError, SocketError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Chat;
use crate::error::{to_json, Error};
use crate::fanout::{Fanout, Shared};
use crate::metrics::AppMetrics;
use crate::push::Priority;
use crate::store::{Confirmed, Message, Store};

/// Once the first confirmation of a batch is in, how long the others may take
/// before the sender hears of those that came (a batch whose confirmations
/// are all in is told at once). One Node process holding 1,000 sockets takes
/// a few hundred milliseconds to answer them all.
const RECEIPT_LINGER: Duration = Duration::from_secs(2);
/// Pending messages read from the store at once on a connection.
const PENDING_PAGE: i64 = 200;
/// Most pending messages sent on one connection; the rest follow on the next
/// one, once these are confirmed.
const PENDING_PER_CONNECTION: usize = 10_000;
/// How long a connection's pending messages wait for room in its socket's
/// queue before the socket counts as hopelessly slow.
const FULL_GRACE: Duration = Duration::from_secs(5);
/// How long a slow socket is given to take its disconnect packet; after that
/// it is counted offline and gets nothing more.
const EVICT_GRACE: Duration = Duration::from_secs(10);
/// Most confirmations stored in one transaction.
const MAX_CONFIRM_BATCH: usize = 4096;
/// Most ids in one `messageReceived`.
pub const MAX_RECEIVED_IDS: usize = 500;
/// How often presence is reconciled with the sockets the server holds.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);
/// Uploads no message refers to are removed once this old.
const ORPHAN_AFTER: Duration = Duration::from_secs(3600);
/// Orphan uploads are looked for every this many presence reconciles (hourly).
const SWEEP_EVERY_RECONCILES: u64 = 120;

/// The delivery side of the chat service.
pub(super) struct Delivery {
    /// Confirmations, to the one task that stores them and tells senders.
    confirms: mpsc::Sender<Vec<Confirmed>>,
    /// How long a client has to confirm a `receiveMessage`.
    ack_timeout: Duration,
    pub metrics: AppMetrics,
}

impl Delivery {
    pub(super) fn start(
        store: Store,
        fanout: Arc<Fanout>,
        ack_timeout: Duration,
        metrics: AppMetrics,
    ) -> Delivery {
        let (confirms, rx) = mpsc::channel(1024);
        tokio::spawn(confirmer(store, fanout, rx, metrics.clone()));
        Delivery {
            confirms,
            ack_timeout,
            metrics,
        }
    }
}

/// A socket was written to and the client asked to confirm.
type Ack = socketioxide::ack::AckStream<Value>;

/// The message a confirmation refers to.
struct Target<'a> {
    pub seq: i64,
    pub id: &'a str,
    pub chat_id: &'a str,
    pub sender: &'a str,
}

impl Target<'_> {
    /// What confirming it means for `recipient`.
    fn confirmation(&self, recipient: &str) -> Confirmed {
        Confirmed {
            recipient: recipient.to_string(),
            seq: self.seq,
            id: self.id.to_string(),
            chat_id: self.chat_id.to_string(),
            sender: self.sender.to_string(),
        }
    }
}

/// What confirming `m` means for `recipient`.
fn confirmation(m: &Message, recipient: &str) -> Confirmed {
    Target {
        seq: m.seq,
        id: &m.id,
        chat_id: &m.chat_id,
        sender: &m.sender_chat_path,
    }
    .confirmation(recipient)
}

/// A message as `receiveMessage` carries it. In a group the per-recipient
/// statuses are left out: they are all pending at this point and would grow
/// every packet with the group (history keeps them).
fn live_payload(m: &Message, extra: Option<&Value>) -> Result<Value, Error> {
    let mut payload = to_json(m)?;
    if let Some(obj) = payload.as_object_mut() {
        if m.recipient_chat_path.is_none() {
            obj.remove("status");
        }
        if let Some(Value::Object(extra)) = extra {
            for (k, v) in extra {
                obj.entry(k.clone()).or_insert(v.clone());
            }
        }
    }
    Ok(payload)
}

impl Chat {
    /// Hands a stored message to its members: `receiveMessage` to each of
    /// their sockets (but `except_socket`, whose ack carries the result),
    /// here and on the other nodes, confirmations collected in the
    /// background where each socket is; a webhook app event; a push to
    /// recipients with no socket on any node.
    pub(super) async fn deliver(
        &self,
        message: &Message,
        members: &[String],
        extra: Option<&Value>,
        except_socket: Option<Sid>,
    ) -> Result<(), Error> {
        let payload = live_payload(message, extra)?;
        let target = Target {
            seq: message.seq,
            id: &message.id,
            chat_id: &message.chat_id,
            sender: &message.sender_chat_path,
        };
        let absent = self.deliver_here(&target, &payload, members, except_socket);
        if self.fanout.clustered() {
            self.fanout.publish(Shared::Deliver {
                payload,
                seq: message.seq,
                id: message.id.clone(),
                chat_id: message.chat_id.clone(),
                sender: message.sender_chat_path.clone(),
                members: members.to_vec(),
            });
        }
        // Built only for a webhook that takes it: a group message carries
        // every recipient's status (999 of them in a 1,000-member group).
        if self.webhooks.wants_app_events() {
            self.webhooks
                .app_event("message_sent", json!({"message": message}));
        }
        let preview: String = message.content.chars().take(100).collect();
        // The stored profile's name, so a notification says who wrote.
        let sender_name = extra
            .and_then(|e| e.pointer("/senderProfile/name"))
            .cloned()
            .unwrap_or(Value::Null);
        for to in absent {
            // Connected to another node: it delivers there.
            if self.presence.is_online_elsewhere(to) {
                continue;
            }
            self.push.notify(
                to,
                &json!({"type": "message", "chatId": message.chat_id, "messageId": message.id,
                        "senderId": message.sender_chat_path, "senderName": sender_name, "preview": preview}),
                Priority::Normal,
            );
        }
        Ok(())
    }

    /// A message another node stored (`Shared::Deliver`), for its members'
    /// sockets on this node.
    pub(crate) fn deliver_relayed(&self, relayed: &Shared) {
        if let Shared::Deliver {
            payload,
            seq,
            id,
            chat_id,
            sender,
            members,
        } = relayed
        {
            let target = Target {
                seq: *seq,
                id,
                chat_id,
                sender,
            };
            self.deliver_here(&target, payload, members, None);
        }
    }

    /// Writes `receiveMessage` to the members' sockets on this node; returns
    /// the recipients (not the sender) with no socket here.
    fn deliver_here<'m>(
        &self,
        target: &Target<'_>,
        payload: &Value,
        members: &'m [String],
        except_socket: Option<Sid>,
    ) -> Vec<&'m String> {
        let started = Instant::now();
        let mut acks = Vec::new();
        let mut absent = Vec::new();
        // Serialized once, written as is into each socket's packet (the
        // Socket.IO serializer passes a raw JSON value through).
        let payload = match serde_json::value::to_raw_value(payload) {
            Ok(raw) => raw,
            Err(e) => {
                // Not for a Value; were it ever, the message stays pending
                // and goes out when each recipient next connects.
                tracing::warn!("receiveMessage: serializing: {e}");
                return Vec::new();
            }
        };
        // The sockets are those presence counts (each joins its user's room
        // right after); one the server no longer holds is skipped.
        let Some(ns) = self.fanout.io().of("/") else {
            // No namespace yet (the node is starting): nobody has a socket here.
            return members.iter().filter(|m| *m != target.sender).collect();
        };
        let here = self.presence.sockets_of(members);
        let mut here = here.into_iter().peekable();
        for (i, member) in members.iter().enumerate() {
            let recipient = member != target.sender;
            let mut reachable = false;
            while let Some((_, sid)) = here.next_if(|(j, _)| *j == i) {
                // A socket being disconnected for being too slow gets nothing more.
                let Some(s) = ns
                    .get_socket(sid)
                    .filter(|s| s.extensions.get::<Evicting>().is_none())
                else {
                    continue;
                };
                reachable = true;
                if Some(s.id) == except_socket {
                    continue;
                }
                // The sender's other tabs get it too, with an ack request so
                // that clients see one shape; their acks confirm nothing.
                match s
                    .timeout(self.delivery.ack_timeout)
                    .emit_with_ack::<_, Value>("receiveMessage", &payload)
                {
                    Ok(ack) if recipient => acks.push((target.confirmation(member), ack)),
                    Ok(_) => {}
                    Err(e) => self.unreachable(&s, &e),
                }
            }
            if recipient && !reachable {
                absent.push(member);
            }
        }
        tracing::debug!(
            message = %target.id,
            members = members.len(),
            sockets = acks.len(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "message handed to its members' sockets"
        );
        self.delivery.metrics.delivered(acks.len() as u64);
        if !acks.is_empty() {
            tokio::spawn(collect(acks, self.delivery.confirms.clone()));
        }
        absent
    }

    /// Sends a newly connected socket of `user` every message no client of
    /// theirs confirmed yet, oldest first, paced by the socket's queue; the
    /// confirmations are collected in the background. Stops early when the
    /// socket goes away or stays full (it is then disconnected).
    pub async fn deliver_pending(&self, s: &SocketRef, user: &str) -> Result<(), Error> {
        let mut after = 0;
        let mut sent = 0;
        while sent < PENDING_PER_CONNECTION {
            let page = self.store.pending_for(user, after, PENDING_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let full_page = page.len() == PENDING_PAGE as usize;
            let mut acks = Vec::with_capacity(page.len());
            let mut gone = false;
            for m in &page {
                match self.emit_paced(s, &live_payload(m, None)?).await {
                    Some(ack) => acks.push((confirmation(m, user), ack)),
                    None => {
                        gone = true;
                        break;
                    }
                }
                sent += 1;
            }
            if !acks.is_empty() {
                tokio::spawn(collect(acks, self.delivery.confirms.clone()));
            }
            if gone || !full_page {
                break;
            }
        }
        Ok(())
    }

    /// `receiveMessage` to one socket, waiting up to [`FULL_GRACE`] for room
    /// in its queue; `None` when the socket is gone or hopelessly slow.
    async fn emit_paced(&self, s: &SocketRef, payload: &Value) -> Option<Ack> {
        let deadline = Instant::now() + FULL_GRACE;
        loop {
            match s
                .timeout(self.delivery.ack_timeout)
                .emit_with_ack::<_, Value>("receiveMessage", payload)
            {
                Ok(ack) => return Some(ack),
                Err(SendError::Socket(SocketError::InternalChannelFull))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => {
                    self.unreachable(s, &e);
                    return None;
                }
            }
        }
    }

    /// A socket that could not be written: one the server still holds whose
    /// transport is gone is disconnected so that its state is cleaned up; a
    /// full one is a hopelessly slow consumer and is evicted. What they
    /// missed stays pending.
    fn unreachable(&self, s: &SocketRef, e: &SendError) {
        match e {
            SendError::Socket(SocketError::InternalChannelFull) => self.evict(s.clone()),
            SendError::Socket(SocketError::Closed) => {
                let _ = s.clone().disconnect();
            }
            SendError::Serialize(e) => tracing::warn!("receiveMessage: serializing: {e}"),
        }
    }

    /// Disconnects a socket whose queue is full, once the disconnect packet
    /// fits. A socket whose transport does not drain at all (its peer stopped
    /// reading) cannot take even that, and engine.io cannot close it while
    /// its writer is blocked; after [`EVICT_GRACE`] it is counted offline
    /// and gets nothing more, until its connection finally closes.
    fn evict(&self, s: SocketRef) {
        if s.extensions.insert(Evicting).is_some() {
            return;
        }
        tracing::info!(sid = %s.id, "socket too slow (its queue is full): disconnecting it");
        let (presence, fanout) = (self.presence.clone(), self.fanout.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + EVICT_GRACE;
            loop {
                match s.clone().disconnect() {
                    Err(SocketError::InternalChannelFull) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(SocketError::InternalChannelFull) => break,
                    _ => return,
                }
            }
            tracing::warn!(sid = %s.id, "socket stalled (its peer reads nothing): counted offline");
            if let Some((who, true)) = presence.forget_socket(s.id) {
                super::presence::went_offline(&fanout, &presence, &who).await;
            }
        });
    }

    /// `messageReceived {ids}`: `me`'s client confirms messages it has (for
    /// clients that cannot answer the ack of `receiveMessage`). Returns how
    /// many of them were still pending.
    pub async fn received(&self, me: &str, ids: &[String]) -> Result<usize, Error> {
        if ids.len() > MAX_RECEIVED_IDS {
            return Err(Error::too_large(format!(
                "at most {MAX_RECEIVED_IDS} ids in one messageReceived"
            )));
        }
        for id in ids {
            super::check_id("ids", Some(id))?;
        }
        let pending = self.store.pending_by_ids(me, ids).await?;
        let n = pending.len();
        if n > 0 {
            self.delivery
                .confirms
                .send(pending)
                .await
                .map_err(|_| Error::ShuttingDown)?;
        }
        Ok(n)
    }

    /// Drops from presence the sockets the Socket.IO server no longer holds,
    /// and tells the others about users that went offline because of it.
    async fn reconcile_presence(&self) {
        // A node still starting has no namespace yet (the socket handlers
        // are attached after the services are built): nothing to reconcile.
        // `io.sockets()` would panic without one, ending this task.
        let Some(ns) = self.fanout.io().of("/") else {
            return;
        };
        let live: HashSet<Sid> = ns
            .sockets()
            .into_iter()
            .filter(|s| s.connected())
            .map(|s| s.id)
            .collect();
        for gone in self.presence.retain(|sid| live.contains(&sid)) {
            tracing::info!(user = %gone, "presence: no socket left, counted offline");
            super::presence::went_offline(&self.fanout, &self.presence, &gone).await;
        }
    }

    /// Removes uploads no message refers to that are older than
    /// [`ORPHAN_AFTER`] (a send that failed before its cleanup ran, a crash
    /// in between), and files without a record to keep them.
    async fn sweep_uploads(&self) {
        let cutoff = crate::store::now_ms() - ORPHAN_AFTER.as_millis() as i64;
        match self.store.forget_orphan_uploads(cutoff).await {
            Ok(ids) => {
                for id in ids {
                    self.attachments.remove(&id).await;
                }
            }
            Err(e) => e.log_if_internal(),
        }
        let old = self.attachments.older_than(ORPHAN_AFTER).await;
        match self.store.kept_attachments(&old).await {
            Ok(kept) => {
                for id in old.iter().filter(|id| !kept.contains(*id)) {
                    self.attachments.remove(id).await;
                }
            }
            Err(e) => e.log_if_internal(),
        }
    }
}

/// Starts the chat's housekeeping: presence reconciled with the sockets the
/// server holds, and orphan uploads removed (at start, then hourly). Ends
/// when the service is dropped.
pub(super) fn housekeeping(chat: &Arc<Chat>) {
    let chat: Weak<Chat> = Arc::downgrade(chat);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            tick.tick().await;
            let Some(chat) = chat.upgrade() else { return };
            chat.reconcile_presence().await;
            if n % SWEEP_EVERY_RECONCILES == 0 {
                chat.sweep_uploads().await;
            }
        }
    });
}

/// Marks a socket as being disconnected for being too slow.
#[derive(Clone)]
struct Evicting;

/// Waits for the clients' acks and hands the confirmations on in batches:
/// when all are in, or [`RECEIPT_LINGER`] after the first of a batch. An ack
/// that times out or whose socket closes confirms nothing.
async fn collect(acks: Vec<(Confirmed, Ack)>, confirms: mpsc::Sender<Vec<Confirmed>>) {
    let mut waiting: FuturesUnordered<_> = acks
        .into_iter()
        .map(|(c, ack)| async move {
            match ack.await {
                // Any answer means the client has the message, even one we can't read.
                Ok(_) | Err(AckError::Decode(_)) => Some(c),
                Err(_) => None,
            }
        })
        .collect();
    let mut batch = Vec::new();
    let mut deadline: Option<Instant> = None;
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, waiting.next()).await {
                Ok(next) => next,
                Err(_) => {
                    deadline = None;
                    if confirms.send(std::mem::take(&mut batch)).await.is_err() {
                        return;
                    }
                    continue;
                }
            },
            None => waiting.next().await,
        };
        match next {
            Some(Some(c)) => {
                if batch.is_empty() {
                    deadline = Some(Instant::now() + RECEIPT_LINGER);
                }
                batch.push(c);
            }
            Some(None) => {}
            None => break,
        }
    }
    if !batch.is_empty() {
        let _ = confirms.send(batch).await;
    }
}

/// The one task that stores confirmations (every batch waiting at that
/// moment in one transaction) and tells each sender, in one
/// `messageDelivered` per sender and batch. A batch that cannot be stored is
/// logged; its messages stay pending and come again on the next connection.
async fn confirmer(
    store: Store,
    fanout: Arc<Fanout>,
    mut rx: mpsc::Receiver<Vec<Confirmed>>,
    metrics: AppMetrics,
) {
    while let Some(mut batch) = rx.recv().await {
        while batch.len() < MAX_CONFIRM_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.extend(more),
                Err(_) => break,
            }
        }
        metrics.confirmed(batch.len() as u64);
        match store.confirm_delivered(&batch).await {
            Ok(done) => tell_senders(&fanout, done, &metrics).await,
            Err(e) => e.log_if_internal(),
        }
    }
}

/// One message's confirmations in a batch: (id, chat id, recipients).
type Receipt = (String, String, Vec<String>);

/// One `messageDelivered` per sender: `{id, chatId, to, recipients}` of its
/// first message, and `receipts` with every message of the batch in that
/// shape (`to` is the first of `recipients`, for clients of direct chats).
async fn tell_senders(fanout: &Fanout, done: Vec<Confirmed>, metrics: &AppMetrics) {
    let mut by_sender: BTreeMap<String, BTreeMap<i64, Receipt>> = BTreeMap::new();
    for c in done {
        by_sender
            .entry(c.sender)
            .or_default()
            .entry(c.seq)
            .or_insert_with(|| (c.id, c.chat_id, Vec::new()))
            .2
            .push(c.recipient);
    }
    for (sender, messages) in by_sender {
        let receipts: Vec<Value> = messages
            .into_values()
            .map(|(id, chat_id, mut recipients)| {
                recipients.sort();
                json!({"id": id, "chatId": chat_id, "to": recipients.first(), "recipients": recipients})
            })
            .collect();
        let Some(mut event) = receipts.first().cloned() else {
            continue;
        };
        event["receipts"] = Value::Array(receipts);
        metrics.receipt();
        fanout.emit(vec![sender], "messageDelivered", &event).await;
    }
}
