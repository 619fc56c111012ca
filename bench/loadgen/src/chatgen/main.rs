//! `nodo-chatgen`: one chat message fanned out to a group, measured by a
//! native client. Connects every member of a group over Socket.IO's
//! WebSocket transport (one current-thread runtime, one task per socket),
//! has the first member send a message to the group, and stamps each
//! member's `receiveMessage` as it is read, acking it as a client would.
//!
//! A Node.js process taking in 999 `receiveMessage` events handles them one
//! after the other at tens of microseconds each, so the last of them is
//! stamped tens of milliseconds late whatever the server did; this client
//! stamps a frame as its task reads it, after the frames read before it were
//! parsed and acked (~10 µs each on one core, below the server's ~20 µs per
//! socket written, so it keeps up; on a slower client that would not hold,
//! and the figure would be the client's again). It speaks the
//! event contract of Nodo and of the relay in `bench/peers/relay`, so the
//! same run measures both. Prints one JSON line.

mod sio;
#[allow(dead_code)] // the media generator's helpers; this binary needs one
#[path = "../sysinfo.rs"]
mod sysinfo;

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::sio::Packet;

/// Command-line flags.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "One chat message to a group, each member's receiveMessage stamped natively"
)]
struct Args {
    /// Server base URL, http:// or ws:// (the Socket.IO path is added).
    #[arg(long)]
    url: String,
    /// JSON file holding an array of Socket.IO auth objects, one per member
    /// (e.g. `{"token": …}` for Nodo, `{"userId": …}` for the relay); the
    /// first member sends.
    #[arg(long)]
    auth_file: PathBuf,
    /// The group's chat id, as JSON (`12`, `"abc"`); text that is not JSON
    /// is taken as a string.
    #[arg(long)]
    chat_id: String,
    /// Messages to send, one after the other.
    #[arg(long, default_value_t = 3)]
    runs: u32,
    /// Longest wait for every member to receive one message, seconds.
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// Pause after each message (its confirmations and receipts settle), seconds.
    #[arg(long, default_value_t = 3.0)]
    pause: f64,
    /// Sockets connecting at a time.
    #[arg(long, default_value_t = 50)]
    connect_batch: usize,
    /// The server's pid: each run reports the server's CPU time from the
    /// send to the end of its pause (deliveries, acks, receipts).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Members answer `receiveMessage`'s ack this many milliseconds late
    /// (0: at once, as a client on loopback does; more stands for the
    /// round trip of a real network, and shows what the acks coming back
    /// during the fan-out cost it).
    #[arg(long, default_value_t = 0.0)]
    ack_delay_ms: f64,
}

/// The message being measured.
struct Run {
    id: String,
    t0: Instant,
    want: usize,
    got: Vec<Duration>,
    ack_id: u64,
    ack: Option<(Duration, Value)>,
    done: Option<oneshot::Sender<()>>,
}

type Current = Rc<RefCell<Option<Run>>>;

fn main() -> ExitCode {
    let args = Args::parse();
    sysinfo::raise_nofile();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(args)) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<Value, String> {
    let text = std::fs::read_to_string(&args.auth_file)
        .map_err(|e| format!("{}: {e}", args.auth_file.display()))?;
    let auths: Vec<Value> = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a JSON array: {e}", args.auth_file.display()))?;
    if auths.len() < 2 {
        return Err("a group needs at least two members".into());
    }
    let chat_id = serde_json::from_str::<Value>(&args.chat_id)
        .unwrap_or_else(|_| Value::String(args.chat_id.clone()));
    let url = socket_url(&args.url)?;
    let current: Current = Rc::new(RefCell::new(None));

    let t_connect = Instant::now();
    let mut senders = Vec::with_capacity(auths.len());
    for batch in auths.chunks(args.connect_batch.max(1)) {
        let mut waits = Vec::with_capacity(batch.len());
        for auth in batch {
            let (tx, rx) = mpsc::unbounded_channel();
            let (ready_tx, ready_rx) = oneshot::channel();
            let socket = Socket {
                url: url.clone(),
                auth: auth.clone(),
                out: rx,
                own: tx.clone(),
                ack_delay: Duration::from_secs_f64(args.ack_delay_ms.max(0.0) / 1000.0),
                current: current.clone(),
            };
            tokio::task::spawn_local(socket.run(ready_tx));
            senders.push(tx);
            waits.push(ready_rx);
        }
        for wait in waits {
            match wait.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(format!("a member could not connect: {e}")),
                Err(_) => return Err("a member's socket ended while connecting".into()),
            }
        }
    }
    let connect_s = t_connect.elapsed().as_secs_f64();
    eprintln!(
        "chatgen: {} members connected in {connect_s:.1} s",
        auths.len()
    );
    // Let the connect burst (presence to everyone) drain first.
    if let Some(pid) = args.server_pid {
        quiet(pid, Duration::from_secs(30)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.pause)).await;

    let mut runs = Vec::new();
    for n in 0..args.runs {
        let id = format!("chatgen-{}-{n}", std::process::id());
        let ack_id = u64::from(n) + 1;
        let (done_tx, done_rx) = oneshot::channel();
        let frame = sio::event(
            Some(ack_id),
            "sendMessage",
            &[json!({"id": id, "chatId": chat_id, "content": format!("fan-out {n}")})],
        );
        let cpu0 = args.server_pid.and_then(|p| sysinfo::cpu(&p.to_string()));
        let t0 = Instant::now();
        *current.borrow_mut() = Some(Run {
            id,
            t0,
            want: auths.len() - 1,
            got: Vec::with_capacity(auths.len()),
            ack_id,
            ack: None,
            done: Some(done_tx),
        });
        senders[0]
            .send(frame)
            .map_err(|_| "the sender's socket has closed".to_string())?;
        let timeout = Duration::from_secs_f64(args.timeout);
        let _ = tokio::time::timeout(timeout, done_rx).await;
        // The sender's ack may come after the last delivery.
        let ack_wait = Instant::now();
        while current.borrow().as_ref().is_some_and(|r| r.ack.is_none())
            && ack_wait.elapsed() < timeout
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let Some(r) = current.borrow_mut().take() else {
            return Err("the run's state is gone".into());
        };
        tokio::time::sleep(Duration::from_secs_f64(args.pause)).await;
        let cpu1 = args.server_pid.and_then(|p| sysinfo::cpu(&p.to_string()));
        let mut run = summary(r);
        if let (Some(a), Some(b), Value::Object(obj)) = (cpu0, cpu1, &mut run) {
            let ms = |ticks: u64| ticks as f64 * 1000.0 / sysinfo::ticks_per_sec() as f64;
            obj.insert(
                "server_user_ms".into(),
                json!(ms(b.user.saturating_sub(a.user))),
            );
            obj.insert(
                "server_sys_ms".into(),
                json!(ms(b.sys.saturating_sub(a.sys))),
            );
        }
        runs.push(run);
    }
    let p99s: Vec<f64> = runs
        .iter()
        .filter_map(|r| r.get("p99_ms").and_then(Value::as_f64))
        .collect();
    Ok(json!({
        "members": auths.len(),
        "connect_s": connect_s,
        "runs": runs,
        "p99_ms_median": median(&p99s),
    }))
}

/// Waits (at most `max`) until the server used at most 2 clock ticks of CPU
/// in half a second, as `bench/chat-vs.mjs` does between its steps.
async fn quiet(pid: u32, max: Duration) {
    let pid = pid.to_string();
    let start = Instant::now();
    let busy = |c: sysinfo::Cpu| c.user + c.sys;
    let Some(mut before) = sysinfo::cpu(&pid) else {
        return;
    };
    while start.elapsed() < max {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(now) = sysinfo::cpu(&pid) else {
            return;
        };
        if busy(now).saturating_sub(busy(before)) <= 2 {
            return;
        }
        before = now;
    }
    eprintln!("chatgen: the server was still busy after {max:?}; measuring anyway");
}

/// One run's figures: milliseconds from the send to each delivery.
fn summary(mut r: Run) -> Value {
    r.got.sort();
    let ms: Vec<f64> = r.got.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let (ack_ms, ack) = match r.ack {
        Some((at, v)) => (Some(at.as_secs_f64() * 1000.0), v),
        None => (None, Value::Null),
    };
    json!({
        "received": ms.len(),
        "missing": r.want.saturating_sub(ms.len()),
        "first_ms": ms.first(),
        "p50_ms": pct(&ms, 0.5),
        "p99_ms": pct(&ms, 0.99),
        "max_ms": ms.last(),
        "ack_ms": ack_ms,
        "ack": ack,
    })
}

/// The value below which a share `p` of the sorted `xs` falls (as
/// `bench/chat-vs.mjs` reads it).
fn pct(xs: &[f64], p: f64) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let i = ((xs.len() as f64) * p).floor() as usize;
    xs.get(i.min(xs.len() - 1)).copied()
}

fn median(xs: &[f64]) -> Option<f64> {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    pct(&v, 0.5).map(|_| v[(v.len() - 1) / 2])
}

/// `ws://host/socket.io/?EIO=4&transport=websocket` from the server's base URL.
fn socket_url(base: &str) -> Result<String, String> {
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("ws://"))
        .ok_or_else(|| format!("{base}: expected http:// or ws://"))?;
    let host = rest.trim_end_matches('/');
    Ok(format!("ws://{host}/socket.io/?EIO=4&transport=websocket"))
}

/// One member's socket.
struct Socket {
    url: String,
    auth: Value,
    out: mpsc::UnboundedReceiver<String>,
    /// The sending side of `out`, for acks sent late.
    own: mpsc::UnboundedSender<String>,
    ack_delay: Duration,
    current: Current,
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

impl Socket {
    async fn run(mut self, ready: oneshot::Sender<Result<(), String>>) {
        let mut ws = match self.connect().await {
            Ok(ws) => {
                let _ = ready.send(Ok(()));
                ws
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        loop {
            tokio::select! {
                msg = ws.next() => {
                    let Some(Ok(msg)) = msg else { return };
                    let Message::Text(text) = msg else { continue };
                    let at = Instant::now();
                    if !self.handle(&mut ws, sio::parse(text.as_str()), at).await {
                        return;
                    }
                }
                frame = self.out.recv() => {
                    let Some(frame) = frame else { return };
                    if ws.send(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// The WebSocket handshake, Engine.IO's open and the namespace connect.
    async fn connect(&mut self) -> Result<Ws, String> {
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(&self.url, None, true)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent_connect = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, ws.next())
                .await
                .map_err(|_| "no Socket.IO connect in 20 s".to_string())?;
            let Some(Ok(Message::Text(text))) = msg else {
                return Err("the socket closed while connecting".into());
            };
            match sio::parse(text.as_str()) {
                Packet::Open if !sent_connect => {
                    sent_connect = true;
                    ws.send(Message::text(sio::connect(&self.auth)))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Packet::Ping => {
                    let _ = ws.send(Message::text(sio::PONG)).await;
                }
                Packet::Connected => return Ok(ws),
                Packet::ConnectError(e) => return Err(e),
                Packet::Close => return Err("the server closed the socket".into()),
                _ => {}
            }
        }
    }

    /// Handles one packet read at `at`; false when the socket is done.
    async fn handle(&mut self, ws: &mut Ws, packet: Packet, at: Instant) -> bool {
        match packet {
            Packet::Ping => ws.send(Message::text(sio::PONG)).await.is_ok(),
            Packet::Close => false,
            Packet::Event { ack, name, args } => {
                if name == "receiveMessage" {
                    self.delivered(args.first(), at);
                }
                let Some(id) = ack else { return true };
                let frame = sio::ack(id, &[json!({"ok": true})]);
                if self.ack_delay.is_zero() {
                    return ws.send(Message::text(frame)).await.is_ok();
                }
                let (own, delay) = (self.own.clone(), self.ack_delay);
                tokio::task::spawn_local(async move {
                    tokio::time::sleep(delay).await;
                    let _ = own.send(frame);
                });
                true
            }
            Packet::Ack { id, args } => {
                if let Some(r) = self.current.borrow_mut().as_mut() {
                    if r.ack_id == id && r.ack.is_none() {
                        let v = args.into_iter().next().unwrap_or(Value::Null);
                        r.ack = Some((at.saturating_duration_since(r.t0), v));
                    }
                }
                true
            }
            _ => true,
        }
    }

    fn delivered(&self, message: Option<&Value>, at: Instant) {
        let mut current = self.current.borrow_mut();
        let Some(r) = current.as_mut() else { return };
        if message.and_then(|m| m.get("id")).and_then(Value::as_str) != Some(r.id.as_str()) {
            return;
        }
        r.got.push(at.saturating_duration_since(r.t0));
        if r.got.len() >= r.want {
            if let Some(done) = r.done.take() {
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_url_is_built_from_the_base() {
        assert_eq!(
            socket_url("http://127.0.0.1:7880/").as_deref(),
            Ok("ws://127.0.0.1:7880/socket.io/?EIO=4&transport=websocket")
        );
        assert!(socket_url("ftp://x").is_err());
    }

    #[test]
    fn percentiles_read_as_the_node_harness_reads_them() {
        let xs: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(pct(&xs, 0.99), Some(991.0));
        assert_eq!(pct(&xs, 0.5), Some(501.0));
        assert_eq!(pct(&[], 0.5), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
    }
}
