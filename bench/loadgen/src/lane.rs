//! Publishers on a thread of their own. The main thread also reads every
//! subscriber's socket, and at N ≥ 150 one keyframe fanned out to everyone
//! kept it busy for milliseconds: publishers' frames went out late behind
//! that burst and the run was marked `loadgen_pacing`. Participants that
//! publish and do not subscribe (A, B and D's publishers) run here instead,
//! on a current-thread runtime with their own [`Shared`]. Both threads stay
//! on the generator's core (they inherit its affinity); a publisher that
//! sleeps between frames is what the kernel runs first when it wakes.
//!
//! The main thread asks for this thread's counters, and at the end of the
//! window for its histograms, over a channel, and adds them to its own.

use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::participant::{Env, Plan};
use crate::stats::{Histograms, Shared, Totals};

/// The publishers' thread's nice value (-20 is the highest priority).
const PUBLISHER_NICE: i32 = -15;

/// The lane's share of a window's end.
pub struct WindowEnd {
    pub totals: Totals,
    /// What the histograms held when the window closed.
    pub histograms: Histograms,
    pub errors: Vec<String>,
}

enum Cmd {
    /// Start these participants at `rate` per second.
    Ramp(Vec<Plan>, f64),
    Totals(oneshot::Sender<Totals>),
    /// Forget latencies and pacing so far and start recording (the window
    /// opens); answers with the counters at that moment.
    Open(oneshot::Sender<Totals>),
    /// Stop recording (the window closes).
    Close(oneshot::Sender<WindowEnd>),
}

/// The handle the main thread keeps.
pub struct Lane {
    cmds: Option<mpsc::UnboundedSender<Cmd>>,
    thread: Option<JoinHandle<()>>,
}

impl Lane {
    /// Starts the thread with the same target, certificate and clock as
    /// `env` (the clock must be the same: probes carry its time).
    pub fn start(env: &Env, stop: watch::Receiver<bool>) -> Result<Lane, String> {
        let seed = Seed {
            target: env.target.clone(),
            ip: env.ip,
            cert: env.cert.clone(),
            clock: env.clock,
            video: env.video,
            audio_bytes: env.audio_bytes,
            recv_loss: env.recv_loss,
        };
        let shared = Shared::new()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("publishers".into())
            .spawn(move || run(seed, shared, stop, rx))
            .map_err(|e| format!("publisher thread: {e}"))?;
        Ok(Lane {
            cmds: Some(tx),
            thread: Some(thread),
        })
    }

    fn send(&self, cmd: Cmd) {
        if let Some(c) = &self.cmds {
            // A lane that ended answers nothing: the callers' replies fail.
            let _ = c.send(cmd);
        }
    }

    pub fn ramp(&self, plans: Vec<Plan>, rate: f64) {
        self.send(Cmd::Ramp(plans, rate));
    }

    pub async fn totals(&self) -> Totals {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Totals(tx));
        rx.await.unwrap_or_default()
    }

    pub async fn open(&self) -> Totals {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Open(tx));
        rx.await.unwrap_or_default()
    }

    pub async fn close(&self) -> Option<WindowEnd> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Close(tx));
        rx.await.ok()
    }

    /// Waits for the thread: its participants leave once the run's stop
    /// signal is sent, and it ends when this handle's channel closes.
    pub fn finish(mut self) {
        self.cmds = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The `Send` parts of an [`Env`].
struct Seed {
    target: crate::signal::Target,
    ip: std::net::IpAddr,
    cert: str0m::crypto::dtls::DtlsCert,
    clock: crate::clock::Clock,
    video: crate::synth::VideoParams,
    audio_bytes: usize,
    recv_loss: f64,
}

fn run(
    seed: Seed,
    shared: Shared,
    stop: watch::Receiver<bool>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    // Linux keeps a nice value per thread (`None`: this one). Raised
    // priority makes the kernel switch to a publisher as soon as its timer
    // fires; it needs CAP_SYS_NICE (the bench runs as root) and is left as
    // it is without.
    if let Err(e) = rustix::process::setpriority_process(None, PUBLISHER_NICE) {
        eprintln!("loadgen: publishers keep the default priority ({e})");
    }
    let runtime = match crate::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadgen: cannot start the publishers' runtime: {e}");
            return;
        }
    };
    let shared = Rc::new(shared);
    let env = Rc::new(Env {
        target: seed.target,
        ip: seed.ip,
        cert: seed.cert,
        shared: shared.clone(),
        clock: seed.clock,
        video: seed.video,
        audio_bytes: seed.audio_bytes,
        recv_loss: seed.recv_loss,
    });
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let mut ramps = Vec::new();
        while let Some(cmd) = cmds.recv().await {
            match cmd {
                Cmd::Ramp(plans, rate) => {
                    let (env, stop) = (env.clone(), stop.clone());
                    ramps.push(tokio::task::spawn_local(async move {
                        let mut tasks = Vec::new();
                        crate::scenario::ramp(plans, rate, &env, &stop, &mut tasks).await;
                        futures_util::future::join_all(tasks).await;
                    }));
                }
                Cmd::Totals(reply) => {
                    let _ = reply.send(shared.counters.snapshot());
                }
                Cmd::Open(reply) => {
                    shared.reset_latency();
                    shared.measuring.set(true);
                    let _ = reply.send(shared.counters.snapshot());
                }
                Cmd::Close(reply) => {
                    shared.measuring.set(false);
                    let _ = reply.send(WindowEnd {
                        totals: shared.counters.snapshot(),
                        histograms: shared.histograms(),
                        errors: shared.errors.borrow().clone(),
                    });
                }
            }
        }
        // As the main thread does: participants get 5 s to leave.
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::future::join_all(ramps),
        )
        .await;
    });
}
