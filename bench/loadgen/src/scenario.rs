//! A run: who joins (per scenario), the ramp at a fixed join rate, waiting
//! until everyone is up, the settle time, then the measurement window, whose
//! figures `report` turns into one JSON line.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::lane::Lane;
use crate::participant::{self, Env, Plan};
use crate::report::{self, Window};
use crate::stats::Totals;
use crate::synth::SIMULCAST;
use crate::sysinfo::Sample;
use crate::{Args, Scenario};

/// Who takes part in a run.
pub struct Shape {
    /// Joined first; the ramp waits for their media connections.
    pub publishers: Vec<Plan>,
    /// Joined once the publishers are up.
    pub receivers: Vec<Plan>,
    /// Participants expected to receive media (readiness).
    pub expect_receiving: u64,
    /// Receive connections expected up (readiness, for idle participants).
    pub expect_recv_connected: u64,
    /// D: participants leave after this long.
    pub churn_life: Option<Duration>,
}

impl Shape {
    pub fn of(args: &Args, room: &str) -> Shape {
        let video = if args.no_simulcast {
            vec![SIMULCAST[2]]
        } else {
            SIMULCAST.to_vec()
        };
        let plan = |index: u32, video: Option<Vec<_>>, audio: bool, subscribe: bool| Plan {
            index,
            room: room.to_string(),
            video,
            audio,
            subscribe,
            layer: args.layer_choice(),
            lifetime: None,
        };
        let receivers = |first: u32, n: u32| -> Vec<Plan> {
            (first..first + n)
                .map(|i| plan(i, None, false, true))
                .collect()
        };
        let n = args.n;
        match args.scenario {
            Scenario::A => Shape {
                publishers: vec![plan(0, Some(video), true, false)],
                receivers: receivers(1, n),
                expect_receiving: u64::from(n),
                expect_recv_connected: u64::from(n),
                churn_life: None,
            },
            Scenario::B => {
                let m = args.m.unwrap_or(10);
                Shape {
                    publishers: (0..m).map(|i| plan(i, None, true, false)).collect(),
                    receivers: receivers(m, n),
                    expect_receiving: u64::from(n),
                    expect_recv_connected: u64::from(n),
                    churn_life: None,
                }
            }
            Scenario::C => {
                let m = args.m.unwrap_or(4);
                Shape {
                    publishers: (0..m)
                        .map(|i| plan(i, Some(video.clone()), true, true))
                        .collect(),
                    receivers: Vec::new(),
                    expect_receiving: u64::from(m),
                    expect_recv_connected: u64::from(m),
                    churn_life: None,
                }
            }
            Scenario::D => Shape {
                publishers: vec![plan(0, args.churn_video.then_some(video), true, false)],
                receivers: Vec::new(),
                expect_receiving: 0,
                expect_recv_connected: 0,
                churn_life: Some(Duration::from_secs_f64(args.churn_life.max(0.1))),
            },
            Scenario::E => Shape {
                publishers: Vec::new(),
                receivers: receivers(0, n),
                expect_receiving: 0,
                expect_recv_connected: u64::from(n),
                churn_life: None,
            },
        }
    }

    pub fn participants(&self) -> usize {
        self.publishers.len() + self.receivers.len()
    }
}

fn spawn(plan: Plan, env: &Rc<Env>, stop: &watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::task::spawn_local(participant::run(plan, env.clone(), stop.clone()))
}

/// Starts participants at `rate` per second.
pub(crate) async fn ramp(
    plans: Vec<Plan>,
    rate: f64,
    env: &Rc<Env>,
    stop: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) {
    let start = tokio::time::Instant::now();
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    for (i, plan) in plans.into_iter().enumerate() {
        tokio::time::sleep_until(start + gap * i as u32).await;
        tasks.push(spawn(plan, env, stop));
    }
}

/// Both threads' counters now.
async fn totals(env: &Env, lane: Option<&Lane>) -> Totals {
    let mine = env.shared.counters.snapshot();
    match lane {
        Some(l) => mine.plus(&l.totals().await),
        None => mine,
    }
}

/// Waits until `done` holds or `timeout` passes; reports progress on stderr.
async fn wait_until(
    what: &str,
    env: &Env,
    lane: Option<&Lane>,
    timeout: Duration,
    done: impl Fn(&Totals) -> bool,
) -> bool {
    let start = Instant::now();
    let mut said = Instant::now();
    loop {
        let t = totals(env, lane).await;
        if done(&t) {
            return true;
        }
        if start.elapsed() >= timeout {
            eprintln!("loadgen: gave up waiting for {what} after {timeout:?}: {t:?}");
            return false;
        }
        if said.elapsed() >= Duration::from_secs(5) {
            said = Instant::now();
            eprintln!(
                "loadgen: waiting for {what}: joined {} failed {} recv-connected {} send-connected {} receiving {}",
                t.joined, t.join_failed, t.recv_connected, t.send_connected, t.receiving
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Keeps joining short-lived participants at `rate` until `stop`.
async fn churn(
    template: Plan,
    first: u32,
    rate: f64,
    env: Rc<Env>,
    stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let start = tokio::time::Instant::now();
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    let mut i: u32 = 0;
    while !*stop.borrow() {
        tokio::time::sleep_until(start + gap * i).await;
        let plan = Plan {
            index: first + i,
            ..template.clone()
        };
        tasks.retain(|t| !t.is_finished());
        tasks.push(spawn(plan, &env, &stop));
        i += 1;
    }
    tasks
}

pub async fn run(args: Args, env: Rc<Env>) -> serde_json::Value {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let room = args
        .room
        .clone()
        .unwrap_or_else(|| format!("bench-{:?}-{}-{secs}", args.scenario, std::process::id()));
    let shape = Shape::of(&args, &room);
    let (stop_tx, stop) = watch::channel(false);
    let base = Sample::take(args.server_pid);
    let ready_timeout = Duration::from_secs_f64(args.ready_timeout.max(1.0));
    let mut tasks = Vec::new();

    if let Err(e) = env
        .target
        .prepare(&room, args.scenario == Scenario::E)
        .await
    {
        env.shared.error(format!("preparing room {room}: {e}"));
    }

    let pubs = shape.publishers.len() as u64;
    // Publishers that receive nothing go to a thread of their own (`lane`).
    let (alone, receiving): (Vec<Plan>, Vec<Plan>) = shape
        .publishers
        .iter()
        .cloned()
        .partition(|p| !p.subscribe && !args.one_thread);
    let lane = if alone.is_empty() {
        None
    } else {
        match Lane::start(&env, stop.clone()) {
            Ok(l) => {
                l.ramp(alone, args.ramp_rate);
                Some(l)
            }
            Err(e) => {
                env.shared.error(e);
                None
            }
        }
    };
    ramp(receiving, args.ramp_rate, &env, &stop, &mut tasks).await;
    let mut ready = wait_until("publishers", &env, lane.as_ref(), ready_timeout, |t| {
        t.send_connected >= pubs
    })
    .await;

    let receivers = shape.receivers.clone();
    let ramp_time = Duration::from_secs_f64(receivers.len() as f64 / args.ramp_rate.max(0.001));
    ramp(receivers, args.ramp_rate, &env, &stop, &mut tasks).await;
    let (want_rx, want_conn) = (shape.expect_receiving, shape.expect_recv_connected);
    ready &= wait_until(
        "receivers",
        &env,
        lane.as_ref(),
        ready_timeout + ramp_time,
        |t| t.receiving >= want_rx && t.recv_connected >= want_conn,
    )
    .await;

    let churner = shape.churn_life.map(|life| {
        let template = Plan {
            index: 0,
            room: room.clone(),
            video: None,
            audio: false,
            subscribe: true,
            layer: args.layer_choice(),
            lifetime: Some(life),
        };
        tokio::task::spawn_local(churn(
            template,
            shape.participants() as u32,
            args.ramp_rate,
            env.clone(),
            stop.clone(),
        ))
    });
    let settle = match shape.churn_life {
        // Churn reaches its steady population after one lifetime.
        Some(life) => life.as_secs_f64() + args.settle,
        None => args.settle,
    };
    tokio::time::sleep(Duration::from_secs_f64(settle.max(0.0))).await;

    eprintln!("loadgen: measuring for {} s", args.seconds);
    let shared = &env.shared;
    shared.reset_latency();
    if shape.churn_life.is_some() {
        if let Ok(mut h) = shared.first_media.try_borrow_mut() {
            h.reset();
        }
    }
    let lane_c0 = match &lane {
        Some(l) => l.open().await,
        None => Totals::default(),
    };
    let c0 = shared.counters.snapshot().plus(&lane_c0);
    let s0 = Sample::take(args.server_pid);
    shared.measuring.set(true);
    tokio::time::sleep(Duration::from_secs_f64(args.seconds.max(0.1))).await;
    shared.measuring.set(false);
    let s1 = Sample::take(args.server_pid);
    let mut c1 = shared.counters.snapshot();
    if let Some(l) = &lane {
        match l.close().await {
            Some(end) => {
                c1 = c1.plus(&end.totals);
                shared.absorb(&end.histograms, &end.errors);
            }
            None => shared.error("the publishers' thread ended before the window did"),
        }
    }

    let out = report::build(&Window {
        args: &args,
        shape: &shape,
        room: &room,
        ready,
        base,
        start: s0,
        end: s1,
        delta: c1.since(&c0),
        total: c1,
        shared,
    });

    let _ = stop_tx.send(true);
    if let Some(churner) = churner {
        if let Ok(more) = churner.await {
            tasks.extend(more);
        }
    }
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        futures_util::future::join_all(tasks),
    )
    .await;
    if let Some(l) = lane {
        l.finish();
    }
    out
}
