//! The Janus VideoRoom dialect (Janus 1.x, multistream), over the HTTP
//! transport: JSON requests `POST`ed to `<url>`, `<url>/<session>` and
//! `<url>/<session>/<handle>`; asynchronous events read with a long poll
//! `GET <url>/<session>?maxev=…`, which Janus also counts as the session's
//! keepalive (it hands the core a `keepalive` for each one, and answers an
//! idle poll after 30 s), so no separate keepalive requests are needed.
//!
//! Each participant is one session with a publisher handle (joined as a
//! passive publisher, which is also how it hears of feeds; its `publish`
//! with our offer is the send connection) and, once there is something to
//! receive, one subscriber handle whose single multistream connection
//! carries every feed (the receive connection). New feeds are added with
//! `subscribe`, and Janus sends a fresh offer (a renegotiation); when a feed
//! leaves it renegotiates by itself (`autoupdate`). The simulcast layer is
//! the `substream` of each subscription (0 = q, 1 = h, 2 = f); Janus is told
//! our rids go low to high (`rid_order: lmh`).
//!
//! Janus runs ICE-lite in the benchmark; str0m is then the controlling side
//! on both connections (it offers on one; the other's offer says ice-lite).

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::signal::{Conn, LayerChoice, Quality, SignalEvent, TrackSpec};
use crate::stats::Shared;
use crate::synth::SIMULCAST;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Janus answers an idle long poll after 30 s.
const POLL_TIMEOUT: Duration = Duration::from_secs(45);
/// Events fetched per long poll at most.
const MAX_EVENTS: u32 = 16;
/// Most publishers a room the generator creates accepts.
const ROOM_PUBLISHERS: u32 = 10_000;
/// Janus error: the room exists already.
const ROOM_EXISTS: i64 = 427;
const PLUGIN: &str = "janus.plugin.videoroom";

/// A Janus server: its API URL (`http://host:port/janus`) and the HTTP client
/// every participant shares (one connection per request in flight).
#[derive(Debug, Clone)]
pub struct JanusTarget {
    pub url: String,
    pub client: reqwest::Client,
}

impl JanusTarget {
    pub fn new(url: &str) -> Result<JanusTarget, String> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| format!("http client: {e}"))?;
        Ok(JanusTarget {
            url: url.trim_end_matches('/').to_string(),
            client,
        })
    }

    async fn post(&self, path: &str, mut body: Value) -> Result<Value, String> {
        body["transaction"] = json!(transaction());
        let url = format!("{}{path}", self.url);
        let resp = self
            .client
            .post(&url)
            .timeout(REQUEST_TIMEOUT)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("janus request: {e}"))?;
        let text = resp
            .text()
            .await
            .map_err(|e| format!("janus response: {e}"))?;
        let v: Value =
            serde_json::from_str(&text).map_err(|e| format!("janus response not JSON: {e}"))?;
        if v["janus"] == "error" {
            return Err(format!(
                "janus error {}: {}",
                v["error"]["code"], v["error"]["reason"]
            ));
        }
        Ok(v)
    }

    /// `create` (a session) or `attach` (a handle): the new id.
    async fn new_id(&self, path: &str, body: Value) -> Result<u64, String> {
        let v = self.post(path, body).await?;
        v["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("janus reply without an id: {v}"))
    }

    /// A plugin message (with an optional JSEP) on a handle.
    async fn message(
        &self,
        session: u64,
        handle: u64,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            req["jsep"] = j;
        }
        let v = self.post(&format!("/{session}/{handle}"), req).await?;
        match plugin_error(&v) {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }
}

fn transaction() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A VideoRoom error in a reply or event (`error_code`, `error`).
fn plugin_error(v: &Value) -> Option<String> {
    let data = &v["plugindata"]["data"];
    let code = data["error_code"].as_i64()?;
    Some(format!(
        "videoroom error {code}: {}",
        data["error"].as_str().unwrap_or("?")
    ))
}

/// The numeric room id of a room name: the name itself if it is a number
/// (a room from Janus' config file), else a 52-bit FNV-1a hash of it.
pub fn room_id(room: &str) -> u64 {
    if let Ok(n) = room.parse::<u64>() {
        return n;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in room.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h & ((1 << 52) - 1)).max(1)
}

/// The simulcast substream (0..=2) for a layer choice.
pub fn substream(choice: LayerChoice) -> u8 {
    match choice {
        LayerChoice::Quality(Quality::Low) => 0,
        LayerChoice::Quality(Quality::Medium) => 1,
        LayerChoice::Quality(Quality::High) => 2,
        // The smallest layer that covers the rendered size.
        LayerChoice::Size(w, h) => SIMULCAST
            .iter()
            .position(|l| u32::from(l.width) >= w && u32::from(l.height) >= h)
            .map_or(2, |i| i as u8),
    }
}

/// Creates the room of a run (VP8 + Opus, simulcast as published, enough
/// publishers) unless it exists, with a session of its own. `placeholder`:
/// with Janus' dummy publisher (an Opus and a VP8 stream that never send),
/// so that idle participants (scenario E) subscribe to it and have a receive
/// connection up without media, as a Nodo subscriber connection is.
pub async fn create_room(t: &JanusTarget, room: &str, placeholder: bool) -> Result<(), String> {
    let session = t.new_id("", json!({"janus": "create"})).await?;
    let result = async {
        let handle = t
            .new_id(
                &format!("/{session}"),
                json!({"janus": "attach", "plugin": PLUGIN}),
            )
            .await?;
        let body = json!({
            "request": "create",
            "room": room_id(room),
            "description": room,
            "publishers": ROOM_PUBLISHERS,
            "audiocodec": "opus",
            "videocodec": "vp8",
            "bitrate": 0,
            "fir_freq": 0,
            "notify_joining": false,
            "transport_wide_cc_ext": true,
            "dummy_publisher": placeholder,
        });
        let v = t
            .post(
                &format!("/{session}/{handle}"),
                json!({"janus": "message", "body": body}),
            )
            .await?;
        let data = &v["plugindata"]["data"];
        match data["error_code"].as_i64() {
            None | Some(ROOM_EXISTS) => Ok(()),
            Some(_) => Err(plugin_error(&v).unwrap_or_default()),
        }
    }
    .await;
    let _ = t
        .post(&format!("/{session}"), json!({"janus": "destroy"}))
        .await;
    result
}

/// What one Janus event means, before acting on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// Our publisher joined; the feeds already publishing.
    Joined(Vec<u64>),
    /// New feeds started publishing.
    Publishers(Vec<u64>),
    /// A feed stopped publishing (or left).
    Gone(u64),
    /// The answer to our publish offer.
    Answer(String),
    /// An offer on the subscriber handle (first one, or a renegotiation).
    Offer(String),
    /// The subscription's video m-lines (their mids), from its layout.
    VideoMids(Vec<String>),
    Candidate(Conn, String),
    /// The session or a connection ended, or a request failed.
    Closed(String),
}

fn feed_ids(list: &Value) -> Vec<u64> {
    list.as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_u64()).collect())
        .unwrap_or_default()
}

/// Maps one event of the long poll; `subscriber` is our subscriber handle
/// (the event's `sender` says which handle it is for; any other is taken
/// for the publisher's).
pub fn notes(ev: &Value, subscriber: Option<u64>) -> Vec<Note> {
    let sender = ev["sender"].as_u64();
    let conn = if sender.is_some() && sender == subscriber {
        Conn::Recv
    } else {
        Conn::Send
    };
    match ev["janus"].as_str().unwrap_or("") {
        "event" => {}
        "trickle" => {
            let c = ev["candidate"]["candidate"].as_str().unwrap_or("");
            return if c.is_empty() {
                Vec::new()
            } else {
                vec![Note::Candidate(conn, c.to_string())]
            };
        }
        "hangup" => {
            return vec![Note::Closed(format!(
                "janus hung up the {} connection: {}",
                if conn == Conn::Recv {
                    "receive"
                } else {
                    "send"
                },
                ev["reason"].as_str().unwrap_or("?")
            ))]
        }
        "timeout" => return vec![Note::Closed("janus session timed out".into())],
        "error" => {
            return vec![Note::Closed(format!(
                "janus error {}: {}",
                ev["error"]["code"], ev["error"]["reason"]
            ))]
        }
        // keepalive, ack, webrtcup, media, slowlink, detached, …
        _ => return Vec::new(),
    }
    if let Some(e) = plugin_error(ev) {
        return vec![Note::Closed(e)];
    }
    let data = &ev["plugindata"]["data"];
    let sdp = ev["jsep"]["sdp"].as_str().map(str::to_string);
    let mut out = Vec::new();
    match (conn, data["videoroom"].as_str().unwrap_or("")) {
        (Conn::Send, "joined") => out.push(Note::Joined(feed_ids(&data["publishers"]))),
        (Conn::Send, "event") => {
            let feeds = feed_ids(&data["publishers"]);
            if !feeds.is_empty() {
                out.push(Note::Publishers(feeds));
            }
            for key in ["unpublished", "leaving"] {
                if let Some(id) = data[key].as_u64() {
                    out.push(Note::Gone(id));
                }
            }
            if let (Some(sdp), "answer") = (sdp, ev["jsep"]["type"].as_str().unwrap_or("")) {
                out.push(Note::Answer(sdp));
            }
        }
        (Conn::Recv, "attached" | "updated") => {
            if let Some(streams) = data["streams"].as_array() {
                let mids = streams
                    .iter()
                    .filter(|s| s["type"] == "video")
                    .filter_map(|s| s["mid"].as_str().map(str::to_string))
                    .collect();
                out.push(Note::VideoMids(mids));
            }
            if let (Some(sdp), "offer") = (sdp, ev["jsep"]["type"].as_str().unwrap_or("")) {
                out.push(Note::Offer(sdp));
            }
        }
        _ => {}
    }
    out
}

/// What the poll task and the participant share.
#[derive(Default)]
struct State {
    /// Our publisher joined the room.
    joined: bool,
    /// Tracks were announced: say `PublishReady` once joined.
    want_publish: bool,
    subscriber: Option<u64>,
    /// Feeds subscribed to.
    feeds: HashSet<u64>,
    video_mids: Vec<String>,
}

struct Ctx {
    target: JanusTarget,
    shared: Rc<Shared>,
    room: u64,
    session: u64,
    publisher: u64,
    subscribe: bool,
    layer: LayerChoice,
    state: RefCell<State>,
    events: mpsc::UnboundedSender<SignalEvent>,
}

pub struct Janus {
    ctx: Rc<Ctx>,
    events: mpsc::UnboundedReceiver<SignalEvent>,
    poller: JoinHandle<()>,
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

impl Janus {
    pub async fn connect(
        t: &JanusTarget,
        room: &str,
        identity: &str,
        subscribe: bool,
        layer: LayerChoice,
        shared: Rc<Shared>,
    ) -> Result<Janus, String> {
        let session = t.new_id("", json!({"janus": "create"})).await?;
        let publisher = t
            .new_id(
                &format!("/{session}"),
                json!({"janus": "attach", "plugin": PLUGIN}),
            )
            .await?;
        let room = room_id(room);
        let join = json!({
            "request": "join",
            "ptype": "publisher",
            "room": room,
            "display": identity,
        });
        t.message(session, publisher, join, None).await?;
        let (tx, events) = mpsc::unbounded_channel();
        let ctx = Rc::new(Ctx {
            target: t.clone(),
            shared,
            room,
            session,
            publisher,
            subscribe,
            layer,
            state: RefCell::new(State::default()),
            events: tx,
        });
        let poller = tokio::task::spawn_local(poll(ctx.clone()));
        Ok(Janus {
            ctx,
            events,
            poller,
        })
    }

    pub async fn next(&mut self) -> Result<Vec<SignalEvent>, String> {
        Ok(match self.events.recv().await {
            Some(e) => vec![e],
            None => vec![SignalEvent::Closed("janus poll ended".into())],
        })
    }

    /// Nothing to announce in Janus: publishing is the offer itself, once
    /// our publisher has joined.
    pub async fn announce(&mut self, _tracks: &[TrackSpec]) -> Result<(), String> {
        let mut st = self.ctx.state.borrow_mut();
        st.want_publish = true;
        if st.joined {
            let _ = self.ctx.events.send(SignalEvent::PublishReady);
        }
        Ok(())
    }

    pub async fn offer(&mut self, sdp: String) -> Result<(), String> {
        let c = &self.ctx;
        let jsep = json!({"type": "offer", "sdp": sdp, "rid_order": "lmh"});
        c.target
            .message(
                c.session,
                c.publisher,
                json!({"request": "publish"}),
                Some(jsep),
            )
            .await
            .map(|_| ())
    }

    pub async fn answer(&mut self, sdp: String) -> Result<(), String> {
        let c = &self.ctx;
        let Some(sub) = c.state.borrow().subscriber else {
            return Err("answer without a subscriber handle".into());
        };
        let jsep = json!({"type": "answer", "sdp": sdp});
        c.target
            .message(c.session, sub, json!({"request": "start"}), Some(jsep))
            .await
            .map(|_| ())
    }

    /// Our candidate, then end-of-candidates, in one trickle request.
    pub async fn candidate(&mut self, conn: Conn, candidate: String) -> Result<(), String> {
        let c = &self.ctx;
        let handle = match conn {
            Conn::Send => c.publisher,
            Conn::Recv => match c.state.borrow().subscriber {
                Some(h) => h,
                None => return Ok(()),
            },
        };
        let req = json!({
            "janus": "trickle",
            "candidates": [
                {"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0},
                {"completed": true},
            ],
        });
        c.target
            .post(&format!("/{}/{handle}", c.session), req)
            .await
            .map(|_| ())
    }

    /// The layer is part of each subscription already; a different one is
    /// asked for with `configure` on every video m-line of the subscription.
    pub async fn set_layer(&mut self, _track: String, choice: LayerChoice) -> Result<(), String> {
        let c = &self.ctx;
        if choice == c.layer {
            return Ok(());
        }
        let (sub, mids) = {
            let st = c.state.borrow();
            (st.subscriber, st.video_mids.clone())
        };
        let Some(sub) = sub else { return Ok(()) };
        let s = substream(choice);
        let streams: Vec<Value> = mids
            .iter()
            .map(|m| json!({"mid": m, "substream": s}))
            .collect();
        let body = json!({"request": "configure", "streams": streams});
        c.target
            .message(c.session, sub, body, None)
            .await
            .map(|_| ())
    }

    /// Leaves the room and destroys the session (best effort).
    pub async fn leave(&mut self) {
        self.poller.abort();
        let c = &self.ctx;
        let wait = Duration::from_secs(1);
        let leave = c
            .target
            .message(c.session, c.publisher, json!({"request": "leave"}), None);
        let _ = tokio::time::timeout(wait, leave).await;
        let path = format!("/{}", c.session);
        let destroy = c.target.post(&path, json!({"janus": "destroy"}));
        let _ = tokio::time::timeout(wait, destroy).await;
    }
}

/// The long poll, and what the events ask of us (subscribing to feeds).
async fn poll(ctx: Rc<Ctx>) {
    let url = format!("{}/{}?maxev={MAX_EVENTS}", ctx.target.url, ctx.session);
    loop {
        let events = match fetch(&ctx, &url).await {
            Ok(e) => e,
            Err(e) => {
                let _ = ctx.events.send(SignalEvent::Closed(e));
                return;
            }
        };
        for ev in events {
            Shared::inc(&ctx.shared.counters.signal_msgs_in);
            let subscriber = ctx.state.borrow().subscriber;
            for note in notes(&ev, subscriber) {
                if let Err(e) = act(&ctx, note).await {
                    let _ = ctx.events.send(SignalEvent::Closed(e));
                    return;
                }
            }
        }
    }
}

async fn fetch(ctx: &Ctx, url: &str) -> Result<Vec<Value>, String> {
    let resp = ctx
        .target
        .client
        .get(url)
        .timeout(POLL_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("janus poll: {e}"))?;
    let text = resp.text().await.map_err(|e| format!("janus poll: {e}"))?;
    Shared::add(&ctx.shared.counters.signal_bytes_in, text.len() as u64);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(a)) => Ok(a),
        Ok(v) => Ok(vec![v]),
        Err(e) => Err(format!("janus poll: not JSON: {e}")),
    }
}

async fn act(ctx: &Ctx, note: Note) -> Result<(), String> {
    let send = |e: SignalEvent| {
        let _ = ctx.events.send(e);
    };
    match note {
        Note::Joined(feeds) => {
            let publish = {
                let mut st = ctx.state.borrow_mut();
                st.joined = true;
                st.want_publish
            };
            if publish {
                send(SignalEvent::PublishReady);
            }
            subscribe(ctx, feeds).await?;
        }
        Note::Publishers(feeds) => subscribe(ctx, feeds).await?,
        Note::Gone(id) => {
            ctx.state.borrow_mut().feeds.remove(&id);
        }
        Note::Answer(sdp) => send(SignalEvent::SendAnswer(sdp)),
        Note::Offer(sdp) => send(SignalEvent::RecvOffer(sdp)),
        Note::VideoMids(mids) => ctx.state.borrow_mut().video_mids = mids,
        Note::Candidate(conn, c) => send(SignalEvent::Candidate(conn, c)),
        Note::Closed(reason) => send(SignalEvent::Closed(reason)),
    }
    Ok(())
}

/// Subscribes to the feeds not subscribed yet: a subscriber handle and its
/// `join` the first time, `subscribe` (a renegotiation) after that.
async fn subscribe(ctx: &Ctx, feeds: Vec<u64>) -> Result<(), String> {
    if !ctx.subscribe {
        return Ok(());
    }
    let (new, sub) = {
        let mut st = ctx.state.borrow_mut();
        let new: Vec<u64> = feeds.into_iter().filter(|f| st.feeds.insert(*f)).collect();
        (new, st.subscriber)
    };
    if new.is_empty() {
        return Ok(());
    }
    let s = substream(ctx.layer);
    let streams: Vec<Value> = new
        .iter()
        .map(|f| json!({"feed": f, "substream": s}))
        .collect();
    let t = &ctx.target;
    match sub {
        Some(sub) => {
            let body = json!({"request": "subscribe", "streams": streams});
            t.message(ctx.session, sub, body, None).await?;
        }
        None => {
            let sub = t
                .new_id(
                    &format!("/{}", ctx.session),
                    json!({"janus": "attach", "plugin": PLUGIN}),
                )
                .await?;
            ctx.state.borrow_mut().subscriber = Some(sub);
            let body = json!({
                "request": "join",
                "ptype": "subscriber",
                "room": ctx.room,
                "streams": streams,
            });
            t.message(ctx.session, sub, body, None).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_and_layers() {
        assert_eq!(room_id("1234"), 1234);
        let a = room_id("bench-A-1-2");
        assert!(a > 0 && a < 1 << 52);
        assert_eq!(a, room_id("bench-A-1-2"));
        assert_ne!(a, room_id("bench-A-1-3"));
        assert_eq!(substream(LayerChoice::Quality(Quality::Low)), 0);
        assert_eq!(substream(LayerChoice::Quality(Quality::High)), 2);
        assert_eq!(substream(LayerChoice::Size(640, 360)), 1);
        assert_eq!(substream(LayerChoice::Size(200, 100)), 0);
        assert_eq!(substream(LayerChoice::Size(4000, 4000)), 2);
    }

    #[test]
    fn events() {
        let s = Some(22);
        let joined = json!({"janus": "event", "sender": 11, "plugindata": {"plugin": PLUGIN,
            "data": {"videoroom": "joined", "room": 1, "id": 5,
                     "publishers": [{"id": 7, "streams": []}, {"id": 8}]}}});
        assert_eq!(notes(&joined, s), vec![Note::Joined(vec![7, 8])]);
        let answer = json!({"janus": "event", "sender": 11,
            "plugindata": {"data": {"videoroom": "event", "configured": "ok"}},
            "jsep": {"type": "answer", "sdp": "v=0"}});
        assert_eq!(notes(&answer, s), vec![Note::Answer("v=0".into())]);
        let fresh = json!({"janus": "event", "sender": 11,
            "plugindata": {"data": {"videoroom": "event", "publishers": [{"id": 9}]}}});
        assert_eq!(notes(&fresh, s), vec![Note::Publishers(vec![9])]);
        let gone = json!({"janus": "event", "sender": 11,
            "plugindata": {"data": {"videoroom": "event", "unpublished": 9}}});
        assert_eq!(notes(&gone, s), vec![Note::Gone(9)]);
        let offer = json!({"janus": "event", "sender": 22,
            "plugindata": {"data": {"videoroom": "attached", "streams": [
                {"mid": "0", "type": "audio"}, {"mid": "1", "type": "video"}]}},
            "jsep": {"type": "offer", "sdp": "v=0"}});
        assert_eq!(
            notes(&offer, s),
            vec![Note::VideoMids(vec!["1".into()]), Note::Offer("v=0".into())]
        );
        let err = json!({"janus": "event", "sender": 22,
            "plugindata": {"data": {"videoroom": "event", "error_code": 428, "error": "No such feed"}}});
        let failed = notes(&err, s);
        assert!(matches!(failed.as_slice(), [Note::Closed(_)]));
        let hangup = json!({"janus": "hangup", "sender": 22, "reason": "DTLS alert"});
        let hung = notes(&hangup, s);
        assert!(matches!(hung.as_slice(), [Note::Closed(r)] if r.contains("receive")));
        for quiet in [
            json!({"janus": "keepalive"}),
            json!({"janus": "webrtcup", "sender": 11}),
            json!({"janus": "media", "sender": 22, "type": "video", "receiving": true}),
            json!("not an object"),
            json!({"janus": "event", "sender": 22}),
        ] {
            assert!(notes(&quiet, s).is_empty(), "{quiet}");
        }
        let trickle = json!({"janus": "trickle", "sender": 22,
            "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0"}});
        assert_eq!(
            notes(&trickle, s),
            vec![Note::Candidate(
                Conn::Recv,
                "candidate:1 1 udp 1 127.0.0.1 9 typ host".into()
            )]
        );
    }
}
