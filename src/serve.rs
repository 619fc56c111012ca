//! `nodo serve`: resolve the configuration, bind every listener, run until a
//! signal, then shut down gracefully.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

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
    /// HTTP/WebSocket port: signaling, API, chat, web demo (default 7880; 0 = ephemeral).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// ICE-TCP port, the media fallback when UDP is blocked (default 7881; 0 = ephemeral).
    #[arg(long)]
    pub rtc_tcp_port: Option<u16>,
    /// The single UDP media port (default 7882; 0 = ephemeral).
    #[arg(long)]
    pub rtc_udp_port: Option<u16>,
    /// IP to advertise in ICE candidates (repeatable), e.g. the VPS's public IP.
    #[arg(long, visible_alias = "external-ip")]
    pub node_ip: Vec<IpAddr>,
    /// UDP media port to advertise instead of the bound one (port forwarding).
    #[arg(long)]
    pub external_udp_port: Option<u16>,
    /// STUN server (host:port) to discover the public IP from at start-up (repeatable).
    #[arg(long)]
    pub stun_server: Vec<String>,
    /// API keys, "key: secret[, key2: secret2]".
    #[arg(long)]
    pub keys: Option<String>,
    /// Directory for the database, attachments, VAPID and ACME keys (default ./nodo-data).
    #[arg(long)]
    pub data_dir: Option<String>,
    /// Public base URL (https://media.example.com) used in the URLs the node hands out.
    #[arg(long)]
    pub public_url: Option<String>,
    /// URL to POST LiveKit webhook events to (repeatable).
    #[arg(long)]
    pub webhook_url: Vec<String>,
    /// TLS certificate chain (PEM); with --tls-key, serves HTTPS from these files.
    #[arg(long)]
    pub tls_cert: Option<String>,
    /// TLS private key (PEM) of --tls-cert.
    #[arg(long)]
    pub tls_key: Option<String>,
    /// Public DNS name; without --tls-cert, a certificate is obtained over ACME.
    #[arg(long)]
    pub domain: Option<String>,
    /// Contact e-mail for the ACME account.
    #[arg(long)]
    pub acme_email: Option<String>,
    /// ACME directory URL (default: Let's Encrypt production).
    #[arg(long)]
    pub acme_directory: Option<String>,
    /// CA certificate (PEM) to trust for a private ACME directory, e.g. Pebble's.
    #[arg(long)]
    pub acme_ca_file: Option<String>,
    /// HTTPS/WSS (and TURN/TLS) port when TLS is on (default 443; 0 = ephemeral).
    #[arg(long)]
    pub https_port: Option<u16>,
    /// Plain-HTTP port that redirects to HTTPS and answers ACME HTTP-01 (default 80; 0 = ephemeral).
    #[arg(long)]
    pub http_redirect_port: Option<u16>,
    /// TURN/UDP port (default 3478; 0 = ephemeral).
    #[arg(long)]
    pub turn_udp_port: Option<u16>,
    /// TURN/TLS port, open when TLS is on (default 5349; 0 = ephemeral).
    #[arg(long)]
    pub turn_tls_port: Option<u16>,
    /// Ports TURN relays are opened on, e.g. 30000-40000.
    #[arg(long)]
    pub turn_relay_ports: Option<String>,
    /// Turn the embedded TURN server off.
    #[arg(long)]
    pub no_turn: bool,
    /// PostgreSQL for the store (`postgres://user:password@host/nodo`), shared
    /// by the nodes of a cluster; unset = SQLite in the data dir.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Redis shared by the nodes of a cluster (`redis://host:6379`); unset = one node.
    #[arg(long)]
    pub redis_url: Option<String>,
    /// This node's id in the cluster (default: the host name).
    #[arg(long)]
    pub node_id: Option<String>,
    /// Where the other nodes reach this node's HTTP port (`http://10.0.0.2:7880`).
    #[arg(long)]
    pub node_url: Option<String>,
}

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
    match runtime.block_on(crate::run::run(config, shutdown_signal())) {
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
    if let Some(p) = args.external_udp_port {
        c.rtc.external_udp_port = p;
    }
    if !args.stun_server.is_empty() {
        c.rtc.stun_servers = args.stun_server.clone();
    }
    if let Some(k) = &args.keys {
        for (k, s) in settings::parse_keys(k)? {
            c.keys.insert(k, s);
        }
    }
    if let Some(d) = &args.data_dir {
        c.data.dir = d.clone();
    }
    if let Some(u) = &args.database_url {
        c.data.database_url = u.clone();
    }
    if !args.webhook_url.is_empty() {
        c.webhook.urls = args.webhook_url.clone();
    }
    if let Some(u) = &args.public_url {
        c.server.public_url = u.clone();
    }
    let tls = &mut c.tls;
    for (flag, field) in [
        (&args.tls_cert, &mut tls.cert_file),
        (&args.tls_key, &mut tls.key_file),
        (&args.domain, &mut tls.domain),
        (&args.acme_email, &mut tls.acme_email),
        (&args.acme_directory, &mut tls.acme_directory),
        (&args.acme_ca_file, &mut tls.acme_ca_file),
    ] {
        if let Some(v) = flag {
            *field = v.clone();
        }
    }
    if let Some(p) = args.https_port {
        tls.https_port = p;
    }
    if let Some(p) = args.http_redirect_port {
        tls.http_redirect_port = p;
    }
    if let Some(p) = args.turn_udp_port {
        c.turn.udp_port = p;
    }
    if let Some(p) = args.turn_tls_port {
        c.turn.tls_port = p;
    }
    if let Some(r) = &args.turn_relay_ports {
        c.turn.relay_ports = r.clone();
    }
    if args.no_turn {
        c.turn.enabled = false;
    }
    for (flag, field) in [
        (&args.redis_url, &mut c.cluster.redis_url),
        (&args.node_id, &mut c.cluster.node_id),
        (&args.node_url, &mut c.cluster.node_url),
    ] {
        if let Some(v) = flag {
            *field = v.clone();
        }
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

/// Libraries that log what remote peers do wrong (a TURN client's first,
/// unauthenticated Allocate logs an ERROR there): off unless RUST_LOG asks.
/// The node logs what matters of those itself.
const QUIET_LIBRARIES: &str = "stun_proto=off,stun_types=off,turn_types=off,turn_server_proto=off";

fn init_tracing(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(format!("{level},{QUIET_LIBRARIES}")))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only on a terminal: files and journald get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .try_init();
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
