//! Binding every listener, serving until a shutdown signal, and draining.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::serve::ListenerExt;
use nodo_sfu::net::{Net, NetConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::Node;
use crate::tls::{serve_https, HttpsContext, Tls};
use crate::Config;

/// How long rooms get to tell their participants the node is going away,
/// and open HTTP connections get to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Which IPs media candidates advertise, and which sockets serve them.
pub fn net_config(c: &Config) -> NetConfig {
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

/// A TCP listener on `bind:port`; the error names the port and its use.
async fn bind_tcp(bind: IpAddr, port: u16, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(SocketAddr::new(bind, port))
        .await
        .map_err(|e| format!("cannot bind the {what} port {bind}:{port}/tcp: {e}"))
}

/// `name=addr` for the listening line, or `name=off`.
fn entry(name: &str, addrs: &[SocketAddr]) -> String {
    if addrs.is_empty() {
        format!("{name}=off")
    } else {
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        format!("{name}={}", list.join(","))
    }
}

/// Binds everything, serves until `shutdown` resolves, then drains.
pub async fn run(
    mut config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    std::fs::create_dir_all(&config.data.dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", config.data.dir))?;
    let bind = config.server.bind;
    let http = bind_tcp(bind, config.server.http_port, "HTTP").await?;
    let tls_on = config.tls.enabled();
    let https = if tls_on {
        Some(bind_tcp(bind, config.tls.https_port, "HTTPS").await?)
    } else {
        None
    };
    let redirect = if tls_on && config.tls.redirect {
        Some(bind_tcp(bind, config.tls.http_redirect_port, "HTTP redirect").await?)
    } else {
        None
    };
    let net = Net::bind(&net_config(&config))
        .await
        .map_err(|e| e.to_string())?;
    let local = |l: &Option<TcpListener>| -> Vec<SocketAddr> {
        l.iter().filter_map(|l| l.local_addr().ok()).collect()
    };
    let https_addrs = local(&https);
    if let (Some(addr), true, true) = (
        https_addrs.first(),
        config.server.public_url.is_empty(),
        !config.tls.domain.is_empty(),
    ) {
        // Tokens carry `wss://<domain>` (with the port unless it is 443).
        let port = match addr.port() {
            443 => String::new(),
            p => format!(":{p}"),
        };
        config.server.public_url = format!("https://{}{port}", config.tls.domain);
    }
    let tls = if tls_on {
        Some(Tls::start(
            &config.tls,
            std::path::Path::new(&config.data.dir),
        )?)
    } else {
        None
    };
    // Always printed (whatever the log level): scripts and tests read the chosen ports here.
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    println!(
        "nodo listening http={http_addr} {} {} {} {} tls={}",
        entry("rtc_udp", &net.udp_addrs()),
        entry("rtc_tcp", net.tcp_addrs()),
        entry("https", &https_addrs),
        entry("http_redirect", &local(&redirect)),
        tls.as_ref().map_or_else(|| "off".to_string(), Tls::state),
    );
    if config.dev {
        tracing::warn!("development mode: API key devkey / secret secret");
    }
    let hsts = config.tls.hsts;
    let https_port = https_addrs.first().map_or(443, SocketAddr::port);
    let domain = config.tls.domain.clone();
    let node = Node::build(config, net.clone()).await?;
    let rooms = node.livekit.rooms.clone();
    let app = crate::http::router(&node);

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    let mut plain = |listener: TcpListener, router: axum::Router| {
        let mut stop = stop_rx.clone();
        servers.push(tokio::spawn(async move {
            // No Nagle: signal and chat frames are small and latency-bound.
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
            {
                tracing::warn!("http server: {e}");
            }
        }));
    };
    plain(http, app.clone());
    if let (Some(listener), Some(tls)) = (redirect, &tls) {
        plain(
            listener,
            crate::tls::redirect_router(https_port, domain, tls.acme_resolver()),
        );
    }
    if let (Some(listener), Some(tls)) = (https, tls) {
        let ctx = HttpsContext {
            tls,
            router: app,
            turn: None,
            hsts,
        };
        servers.push(tokio::spawn(serve_https(listener, ctx, stop_rx.clone())));
    }

    shutdown.await;
    tracing::info!("shutting down");
    rooms.shutdown(SHUTDOWN_GRACE).await;
    let _ = stop_tx.send(true);
    let all = futures_util::future::join_all(servers);
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!("http connections still open at shutdown");
    }
    net.shutdown();
    Ok(())
}
