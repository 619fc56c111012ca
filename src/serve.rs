//! `nodo serve`: resolve the configuration, bind every listener, run until a
//! signal, then shut down gracefully.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use std::path::PathBuf;

use axum::serve::ListenerExt;
use clap::Args;
use nodo_sfu::net::{Net, NetConfig};
use tokio::net::TcpListener;

use crate::node::Node;
use crate::{settings, Config};

/// Flags of `nodo serve`; each overrides the config file and environment.
#[derive(Args, Default)]
pub struct ServeArgs {
    /// Config file (also NODO_CONFIG).
    #[arg(long, env = "NODO_CONFIG")]
    pub config: Option<PathBuf>,
    /// Development mode: key devkey/secret, bind 127.0.0.1, data in ./nodo-data.
    #[arg(long)]
    pub dev: bool,
    /// Address to bind every listener to.
    #[arg(long)]
    pub bind: Option<IpAddr>,
    #[arg(long)]
    pub http_port: Option<u16>,
    #[arg(long)]
    pub rtc_tcp_port: Option<u16>,
    #[arg(long)]
    pub rtc_udp_port: Option<u16>,
    /// IP to advertise in ICE candidates (repeatable).
    #[arg(long)]
    pub node_ip: Vec<IpAddr>,
    /// API keys, "key: secret[, key2: secret2]".
    #[arg(long)]
    pub keys: Option<String>,
    #[arg(long)]
    pub data_dir: Option<String>,
    #[arg(long)]
    pub public_url: Option<String>,
    /// URL to POST LiveKit webhook events to (repeatable).
    #[arg(long)]
    pub webhook_url: Vec<String>,
}

/// How long rooms get to tell their participants the node is going away.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub fn main(args: ServeArgs) -> ExitCode {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match resolve(&args, &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    init_tracing(&config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Layers defaults < file < environment < flags and applies `--dev`.
pub fn resolve(args: &ServeArgs, env: &[(String, String)]) -> Result<Config, String> {
    let mut c = settings::load(args.config.as_deref(), env)?;
    if args.dev {
        c.dev = true;
    }
    if let Some(b) = args.bind {
        c.server.bind = b;
    } else if c.dev {
        c.server.bind = IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    if let Some(p) = args.http_port {
        c.server.http_port = p;
    }
    if let Some(p) = args.rtc_tcp_port {
        c.rtc.tcp_port = p;
    }
    if let Some(p) = args.rtc_udp_port {
        c.rtc.udp_port = p;
    }
    if !args.node_ip.is_empty() {
        c.rtc.node_ip = args.node_ip.clone();
    }
    if let Some(k) = &args.keys {
        for (k, s) in settings::parse_keys(k)? {
            c.keys.insert(k, s);
        }
    }
    if let Some(d) = &args.data_dir {
        c.data.dir = d.clone();
    }
    if !args.webhook_url.is_empty() {
        c.webhook.urls = args.webhook_url.clone();
    }
    if let Some(u) = &args.public_url {
        c.server.public_url = u.clone();
    }
    if c.dev && c.keys.is_empty() {
        c.keys.insert("devkey".into(), "secret".into());
    }
    if c.keys.is_empty() {
        return Err(
            "no API keys configured. Set them with --keys \"KEY: SECRET\", \
             LIVEKIT_KEYS, LIVEKIT_API_KEY + LIVEKIT_API_SECRET, or [keys] in config.toml \
             (or run with --dev for local development)"
                .into(),
        );
    }
    c.validate().map_err(|p| p.join("; "))?;
    Ok(c)
}

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Which IPs media candidates advertise, and which sockets serve them.
fn net_config(c: &Config) -> NetConfig {
    let bind = c.server.bind;
    let udp_port = c.rtc.udp_port;
    let (udp, advertised): (Vec<(SocketAddr, IpAddr)>, Vec<IpAddr>) =
        if let Some(first) = c.rtc.node_ip.first() {
            if c.rtc.node_ip.len() > 1 {
                tracing::warn!("only the first rtc.node_ip is advertised for UDP ({first})");
            }
            (
                vec![(SocketAddr::new(bind, udp_port), *first)],
                c.rtc.node_ip.clone(),
            )
        } else if bind.is_unspecified() {
            // One socket per interface address, so each knows which address it serves.
            let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
                .map(|v| {
                    v.into_iter()
                        .map(|i| i.ip())
                        .filter(|ip| ip.is_ipv4())
                        .collect()
                })
                .unwrap_or_default();
            if ips.is_empty() {
                ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
            ips.sort();
            ips.dedup();
            (
                ips.iter()
                    .map(|ip| (SocketAddr::new(*ip, udp_port), *ip))
                    .collect(),
                ips,
            )
        } else {
            (vec![(SocketAddr::new(bind, udp_port), bind)], vec![bind])
        };
    NetConfig {
        udp: if c.rtc.udp_enabled { udp } else { Vec::new() },
        tcp: c
            .rtc
            .tcp_enabled
            .then(|| (SocketAddr::new(bind, c.rtc.tcp_port), advertised)),
    }
}

/// Binds everything, serves until `shutdown` resolves, then drains.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    std::fs::create_dir_all(&config.data.dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", config.data.dir))?;
    let http = TcpListener::bind(SocketAddr::new(config.server.bind, config.server.http_port))
        .await
        .map_err(|e| format!("cannot bind HTTP port {}: {e}", config.server.http_port))?;
    let net = Net::bind(&net_config(&config))
        .await
        .map_err(|e| format!("cannot bind media ports: {e}"))?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let udp: Vec<String> = net.udp_addrs().iter().map(ToString::to_string).collect();
    let tcp: Vec<String> = net.tcp_addrs().iter().map(ToString::to_string).collect();
    // Always printed (whatever the log level): scripts and tests read the chosen ports here.
    println!(
        "nodo listening http={} rtc_udp={} rtc_tcp={}",
        http_addr,
        if udp.is_empty() {
            "off".to_string()
        } else {
            udp.join(",")
        },
        if tcp.is_empty() {
            "off".to_string()
        } else {
            tcp.join(",")
        }
    );
    if config.dev {
        tracing::warn!("development mode: API key devkey / secret secret");
    }
    let node = Node::build(config, net.clone()).await?;
    let rooms = node.livekit.rooms.clone();
    let app = crate::http::router(&node);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        // No Nagle: signal and chat frames are small and latency-bound.
        let http = http.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(http, app)
            .with_graceful_shutdown(async move {
                let _ = stop_rx.await;
            })
            .await
    });
    shutdown.await;
    tracing::info!("shutting down");
    rooms.shutdown(SHUTDOWN_GRACE).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(Ok(Err(e))) => tracing::warn!("http server: {e}"),
        Err(_) => tracing::warn!("http connections still open at shutdown"),
        _ => {}
    }
    net.shutdown();
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
