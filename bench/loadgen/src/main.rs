//! `nodo-loadgen`: a native WebRTC load generator. Hundreds to thousands of
//! participants in one process, each a str0m connection (RTP mode) on its own
//! UDP socket, driven by a current-thread tokio runtime; synthetic VP8
//! simulcast and Opus with a latency probe in every packet. Prints one JSON
//! line per run (see `scenario`). Speaks LiveKit signaling v0 (Nodo) or the
//! Janus VideoRoom API over HTTP (`--server janus`).

#![recursion_limit = "256"]

mod clock;
mod janus;
mod lane;
mod livekit;
mod media;
mod participant;
mod report;
mod rxstamp;
mod scenario;
mod signal;
mod stats;
mod synth;
mod sysinfo;

use std::net::IpAddr;
use std::process::ExitCode;
use std::rc::Rc;

use clap::Parser;

use crate::janus::JanusTarget;
use crate::livekit::LiveKitTarget;
use crate::participant::Env;
use crate::signal::{LayerChoice, Quality, Target};

/// The workloads (performance.md §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// 1 video+audio publisher -> N subscribers.
    A,
    /// M audio publishers (default 10) -> N listeners.
    B,
    /// M x M meeting: everyone publishes audio+video and receives everyone.
    C,
    /// Join/leave churn at --ramp-rate joins/s for --seconds, with one
    /// publisher (audio; --churn-video adds video); reports CPU per join and
    /// time to first media.
    D,
    /// N idle participants (connected, no media): server RSS per participant.
    E,
}

/// The server's signaling dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Server {
    /// LiveKit signaling v0 (`GET /rtc`), as Nodo speaks it.
    #[value(alias = "livekit")]
    Nodo,
    /// Janus 1.x VideoRoom over the HTTP transport.
    Janus,
}

/// Command-line flags.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "WebRTC load generator for Nodo (LiveKit signaling v0) and Janus (VideoRoom)"
)]
pub struct Args {
    /// Signaling dialect of the server.
    #[arg(long, value_enum, default_value = "nodo")]
    pub server: Server,
    /// Server base URL: http:// or ws:// (Nodo; default
    /// http://127.0.0.1:7880), the Janus API (default
    /// http://127.0.0.1:8088/janus).
    #[arg(long)]
    pub url: Option<String>,
    /// API key tokens are minted with (Nodo).
    #[arg(long, default_value = "devkey")]
    pub api_key: String,
    /// API secret tokens are signed with.
    #[arg(long, default_value = "secret")]
    pub api_secret: String,
    /// Workload to run.
    #[arg(long, value_enum, default_value = "a")]
    pub scenario: Scenario,
    /// Subscribers (A, B), idle participants (E).
    #[arg(long, default_value_t = 10)]
    pub n: u32,
    /// Publishers (B, default 10) or meeting size (C, default 4).
    #[arg(long)]
    pub m: Option<u32>,
    /// Length of the measurement window, seconds.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Wait after everyone is up before measuring, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
    /// Joins per second while ramping up (and the churn rate in D).
    #[arg(long, default_value_t = 20.0)]
    pub ramp_rate: f64,
    /// The server's pid: CPU and RSS are read from /proc/<pid>.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Simulcast layer subscribers ask for.
    #[arg(long, value_enum, default_value = "high")]
    pub quality: Quality,
    /// Ask for layers by rendered size instead of --quality, e.g. 640x360
    /// (the server picks the smallest layer that covers it).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<(u32, u32)>,
    /// Publish one video layer (2.5 Mbps) instead of three simulcast layers.
    #[arg(long)]
    pub no_simulcast: bool,
    /// Video frame rate.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Seconds between periodic keyframes (besides those the server asks for).
    #[arg(long, default_value_t = 3.0)]
    pub keyframe_secs: f64,
    /// Keyframe size as a multiple of a delta frame.
    #[arg(long, default_value_t = 10)]
    pub keyframe_factor: u32,
    /// Opus payload size, bytes (50 packets/s).
    #[arg(long, default_value_t = 100)]
    pub audio_bytes: usize,
    /// D: how long each churning participant stays, seconds.
    #[arg(long, default_value_t = 5.0)]
    pub churn_life: f64,
    /// D: the publisher also sends video (by default audio only, so that
    /// forwarding to the churners costs little next to the joins).
    #[arg(long)]
    pub churn_video: bool,
    /// Percent of incoming RTP datagrams receivers drop before decrypting
    /// them (exercises NACK/RTX; 0 = none).
    #[arg(long, default_value_t = 0.0)]
    pub recv_loss: f64,
    /// Longest wait for everyone to join and receive before measuring anyway, seconds.
    #[arg(long, default_value_t = 60.0)]
    pub ready_timeout: f64,
    /// Local address the media sockets bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: IpAddr,
    /// Room name (default: one per run).
    #[arg(long)]
    pub room: Option<String>,
    /// Run publishers that subscribe to nothing on the main thread too, with
    /// every receiver (by default they get a thread of their own, so that a
    /// burst of receiving does not make their frames late).
    #[arg(long)]
    pub one_thread: bool,
}

impl Args {
    pub fn layer_choice(&self) -> LayerChoice {
        match self.size {
            Some((w, h)) => LayerChoice::Size(w, h),
            None => LayerChoice::Quality(self.quality),
        }
    }
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or("expected WIDTHxHEIGHT")?;
    let w = w.trim().parse().map_err(|_| "bad width")?;
    let h = h.trim().parse().map_err(|_| "bad height")?;
    Ok((w, h))
}

/// A current-thread runtime (one per generator thread). Timers and I/O
/// readiness are checked every few task polls, not the default 61: with
/// hundreds of busy receivers, publishers' frame timers would otherwise fire
/// milliseconds late.
pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .event_interval(8)
        .build()
}

fn main() -> ExitCode {
    let args = Args::parse();
    let nofile = sysinfo::raise_nofile();
    let shared = match stats::Shared::new() {
        Ok(s) => Rc::new(s),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(cert) = str0m::crypto::from_feature_flags()
        .dtls_provider
        .generate_certificate()
    else {
        eprintln!("error: cannot generate a DTLS certificate");
        return ExitCode::FAILURE;
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let target = match args.server {
        Server::Nodo => Target::LiveKit(LiveKitTarget {
            url: args
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:7880".into()),
            api_key: args.api_key.clone(),
            api_secret: args.api_secret.clone(),
        }),
        Server::Janus => {
            let url = args
                .url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8088/janus".into());
            match JanusTarget::new(&url) {
                Ok(t) => Target::Janus(t),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    let env = Rc::new(Env {
        target,
        ip: args.local_ip,
        cert,
        shared,
        clock: clock::Clock::new(),
        video: synth::VideoParams {
            fps: args.fps,
            keyframe_secs: args.keyframe_secs,
            keyframe_factor: args.keyframe_factor,
        },
        audio_bytes: args.audio_bytes,
        recv_loss: (args.recv_loss / 100.0).clamp(0.0, 1.0),
    });
    eprintln!(
        "loadgen: {:?}, scenario {:?} n={} m={:?} (open files limit {})",
        args.server,
        args.scenario,
        args.n,
        args.m,
        nofile.map_or("?".to_string(), |n| n.to_string())
    );
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&runtime, scenario::run(args, env));
    println!("{report}");
    ExitCode::SUCCESS
}
