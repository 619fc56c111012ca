//! Binding every listener, serving until a shutdown signal, and draining.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nodo_sfu::net::{Net, NetConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cluster::{Cluster, PeerView};
use crate::conn::{ConnLimits, HttpLimits};
use crate::node::Node;
use crate::pgbus::PgPeers;
use crate::tls::{serve_https, HttpsContext, Tls, TurnStreams};
use crate::turn::{self, HttpsTurn, RelayConfig, TurnActor, TurnIce, TurnSetup};
use crate::Config;
use nodo_app::fanout::Shared;

/// How long rooms get to tell their participants the node is going away,
/// and open HTTP connections get to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long the store gets to commit what is queued and close its files.
const STORE_CLOSE_GRACE: Duration = Duration::from_secs(10);

/// Which IPs media candidates advertise, and which sockets serve them. A
/// node bound to every address must find a non-loopback one (or be given
/// `rtc.node_ip`): it never advertises loopback only to remote clients.
pub fn net_config(c: &Config) -> Result<NetConfig, String> {
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
                .map_err(|e| {
                    format!(
                        "cannot list the network interfaces ({e}) to advertise media \
                         addresses: set rtc.node_ip (--node-ip) or bind one address (--bind)"
                    )
                })?
                .into_iter()
                .map(|i| i.ip())
                .filter(|ip| ip.is_ipv4())
                .collect();
            ips.sort();
            ips.dedup();
            if ips.iter().all(IpAddr::is_loopback) {
                return Err(
                    "bound to every address, but the only one found is loopback: remote \
                     clients would get no media. Set rtc.node_ip (--node-ip) to the public IP"
                        .into(),
                );
            }
            (
                ips.iter()
                    .map(|ip| (SocketAddr::new(*ip, udp_port), *ip))
                    .collect(),
                ips,
            )
        } else {
            (vec![(SocketAddr::new(bind, udp_port), bind)], vec![bind])
        };
    Ok(NetConfig {
        udp: if c.rtc.udp_enabled { udp } else { Vec::new() },
        tcp: c
            .rtc
            .tcp_enabled
            .then(|| (SocketAddr::new(bind, c.rtc.tcp_port), advertised)),
        udp_advertised_port: (c.rtc.external_udp_port != 0).then_some(c.rtc.external_udp_port),
        metrics: nodo_sfu::SfuMetrics::default(),
        tcp_limits: nodo_sfu::net::TcpLimits {
            max_connections: c.rtc.tcp_max_connections,
            max_per_ip: c.rtc.tcp_max_connections_per_ip,
            ice_timeout: Duration::from_secs(c.rtc.tcp_ice_timeout_secs.max(1)),
            ..Default::default()
        },
    })
}

/// Asks the configured STUN servers for this host's public IP (the first
/// answer wins); logs each failure with its reason.
async fn discover_public_ip(bind: IpAddr, servers: &[String]) -> Option<IpAddr> {
    for server in servers {
        match crate::stun::public_ip(bind, server, Duration::from_secs(3)).await {
            Ok(ip) => {
                tracing::info!(%server, %ip, "public IP discovered over STUN");
                return Some(ip);
            }
            Err(e) => tracing::error!(%server, "STUN discovery failed: {e}"),
        }
    }
    None
}

/// A TCP listener on `bind:port`; the error names the port and its use.
async fn bind_tcp(bind: IpAddr, port: u16, what: &str) -> Result<TcpListener, String> {
    TcpListener::bind(SocketAddr::new(bind, port))
        .await
        .map_err(|e| format!("cannot bind the {what} port {bind}:{port}/tcp: {e}"))
}

/// Keeps `limits` trusting the addresses of the cluster's other nodes (as
/// the heartbeat last saw them; resolved again when that list changes).
/// Not this node's own address: clients may come from it (a local proxy).
async fn trust_peers(
    cluster: Arc<Cluster>,
    limits: Arc<ConnLimits>,
    mut stop: watch::Receiver<bool>,
) {
    let mut trusted_for = None;
    loop {
        let urls = cluster.peer_urls();
        if trusted_for.as_ref() != Some(&urls) {
            let mut ips = Vec::new();
            let mut resolved = true;
            for url in &urls {
                // Node URLs are `http://host[:port][/...]` (checked at start).
                let hostport = url
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or_default();
                let hostport = if hostport.contains(':') {
                    hostport.to_string()
                } else {
                    format!("{hostport}:80")
                };
                match tokio::net::lookup_host(hostport).await {
                    Ok(addrs) => ips.extend(addrs.map(|a| a.ip())),
                    Err(_) => resolved = false,
                }
            }
            ips.sort();
            ips.dedup();
            limits.trust(ips);
            // A name that did not resolve is tried again next time.
            trusted_for = resolved.then_some(urls);
        }
        tokio::select! {
            _ = tokio::time::sleep(crate::cluster::HEARTBEAT) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Heartbeats between two `Present` of this node's users on the bus.
const PRESENT_EVERY: u64 = 5;

/// Tells the app which nodes are gone, so the users of a node that died or
/// left stop counting as online and, on a shared database, the webhook
/// deliveries it queued are taken over by one live node. A node counts as
/// gone when two heartbeats in a row missed it: one that just started may
/// speak on the bus before this node's heartbeat has seen it.
async fn follow_peers(
    cluster: Arc<dyn crate::cluster::PeerView>,
    app: Arc<nodo_app::App>,
    mut stop: watch::Receiver<bool>,
) {
    let mut missed: std::collections::HashMap<String, u32> = Default::default();
    let mut beats: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(crate::cluster::HEARTBEAT) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !cluster.healthy() {
            continue;
        }
        let live = cluster.peer_ids();
        let heard = app.chat.presence().nodes_elsewhere();
        beats += 1;
        if live.iter().any(|n| !heard.contains(n)) {
            // A node this one knows nothing of (new, or back after it was
            // counted gone): every node says who is online with it.
            app.fanout.publish(Shared::Hello);
        }
        if beats.is_multiple_of(PRESENT_EVERY) {
            // Mends what a dropped event or a late snapshot left wrong.
            app.fanout.publish(Shared::Present {
                users: app.chat.presence().here(),
            });
        }
        let mut known = heard;
        match app.store.webhook_nodes().await {
            Ok(nodes) => known.extend(nodes),
            Err(e) => e.log_if_internal(),
        }
        known.sort();
        known.dedup();
        let mut gone = Vec::new();
        for node in known {
            if node == cluster.id() || live.contains(&node) {
                missed.remove(&node);
                continue;
            }
            let n = missed.entry(node.clone()).or_default();
            *n += 1;
            if *n >= 2 {
                missed.remove(&node);
                gone.push(node);
            }
        }
        app.forget_nodes(&gone).await;
        for node in &gone {
            match app.take_over_webhooks(node, cluster.id()).await {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(%node, "took over {n} webhook deliveries of a node that is gone")
                }
                Err(e) => e.log_if_internal(),
            }
        }
    }
}

/// Ends the connected calls whose media room is open on no node: its node
/// died, and nobody rejoined (the room's events, which end a call, died
/// with it). A room counts as gone at two checks in a row, `every` apart;
/// every node checks, and the first to end a call wins.
async fn end_calls_of_lost_rooms(
    cluster: Arc<Cluster>,
    rooms: Arc<nodo_signaling::RoomManager>,
    store: nodo_app::store::Store,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    use nodo_signaling::placement::{Location, Placement};
    let mut suspects: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        if !cluster.healthy() {
            continue;
        }
        let before = nodo_app::store::now_ms() - every.as_millis() as i64;
        let calls = match store.connected_calls(before).await {
            Ok(c) => c,
            Err(e) => {
                e.log_if_internal();
                continue;
            }
        };
        let mut gone = HashSet::new();
        for (id, room) in calls {
            let name = nodo_signaling::ids::RoomName::new(room);
            let open = match cluster.locate(&name, false).await {
                Ok(Location::There { .. }) => true,
                Ok(Location::Here) => rooms.exists(&name),
                // Unknown: left for the next check.
                Err(_) => true,
            };
            if open {
                continue;
            }
            if !suspects.contains(&id) {
                gone.insert(id);
                continue;
            }
            match store.end_call_room_lost(&id).await {
                Ok(true) => {
                    tracing::info!(call = %id, "ended a call whose media room's node is gone")
                }
                Ok(false) => {}
                Err(e) => e.log_if_internal(),
            }
        }
        suspects = gone;
    }
}

/// Logs SIGHUP instead of dying of it.
fn ignore_hangup() {
    #[cfg(unix)]
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: no certificate files to reload");
            }
        });
    }
}

/// A UDP socket on `bind:port`; the error names the port and its use.
async fn bind_udp(bind: IpAddr, port: u16, what: &str) -> Result<tokio::net::UdpSocket, String> {
    tokio::net::UdpSocket::bind(SocketAddr::new(bind, port))
        .await
        .map_err(|e| format!("cannot bind the {what} port {bind}:{port}/udp: {e}"))
}

/// The TURN server's sockets, bound before anything is served.
struct TurnSockets {
    udp: Option<tokio::net::UdpSocket>,
    tls: Option<TcpListener>,
}

/// `host` for a URL (IPv6 in brackets).
fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Starts the TURN actor over the bound sockets; returns it with the ICE
/// servers participants are told about.
fn start_turn(
    config: &Config,
    net: &Arc<Net>,
    sockets: TurnSockets,
    tls: Option<&Tls>,
    https: Option<SocketAddr>,
) -> Result<(TurnActor, Option<TcpListener>, Arc<TurnIce>), String> {
    let mut media: HashSet<SocketAddr> = net.udp_addrs().into_iter().collect();
    media.extend(net.candidates().udp);
    let advertised_ip = net
        .candidates()
        .udp
        .first()
        .map(SocketAddr::ip)
        .unwrap_or(config.server.bind);
    let relay = RelayConfig {
        bind_ip: config.server.bind,
        advertised_ip,
        ports: turn::parse_range(&config.turn.relay_ports)?,
        per_participant: config.turn.max_allocations_per_participant as usize,
        total: config.turn.max_allocations as usize,
        media,
        in_process: config.turn.in_process.then(|| net.clone()),
    };
    let udp_addr = sockets.udp.as_ref().and_then(|s| s.local_addr().ok());
    let tls_addr = sockets.tls.as_ref().and_then(|l| l.local_addr().ok());
    let https = https.filter(|_| config.turn.on_https_port);
    let stream_listeners: Vec<SocketAddr> = tls_addr.into_iter().chain(https).collect();
    let in_process = relay.in_process.is_some();
    let actor = turn::start(TurnSetup {
        keys: config.keys.clone(),
        udp: sockets.udp,
        stream_listeners,
        relay,
    })?;
    if in_process {
        net.set_local_relay(actor.relay_hook());
    }
    let mut urls = Vec::new();
    if let Some(a) = udp_addr {
        let host = if config.tls.domain.is_empty() {
            url_host(advertised_ip)
        } else {
            config.tls.domain.clone()
        };
        urls.push(format!("turn:{host}:{}?transport=udp", a.port()));
    }
    if let Some(tls) = tls {
        // One TLS URL: the HTTPS port passes the strictest firewalls.
        if let Some(port) = https.or(tls_addr).map(|a| a.port()) {
            urls.push(format!("turns:{}:{port}?transport=tcp", tls.host()));
        }
    }
    let ttl = Duration::from_secs(config.turn.credential_ttl_secs);
    let ice = TurnIce::new(&config.keys, ttl, urls)
        .ok_or("TURN needs an API key to sign its credentials")?;
    Ok((actor, sockets.tls, Arc::new(ice)))
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
    // A cluster node that cannot reach Redis refuses to start.
    let cluster = if config.cluster.redis_url.is_empty() {
        None
    } else {
        Some(Cluster::join(&config.cluster).await?)
    };
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
    let turn_sockets = TurnSockets {
        udp: if config.turn.enabled {
            Some(bind_udp(bind, config.turn.udp_port, "TURN/UDP").await?)
        } else {
            None
        },
        tls: if config.turn.enabled && tls_on {
            Some(bind_tcp(bind, config.turn.tls_port, "TURN/TLS").await?)
        } else {
            None
        },
    };
    if config.rtc.node_ip.is_empty() && !config.rtc.stun_servers.is_empty() {
        match discover_public_ip(bind, &config.rtc.stun_servers).await {
            Some(ip) => config.rtc.node_ip = vec![ip],
            None => tracing::error!(
                "no STUN server answered; advertising the interface addresses instead"
            ),
        }
    }
    let metrics = crate::metrics::NodeMetrics::default();
    let mut net_cfg = net_config(&config)?;
    net_cfg.metrics = metrics.media.clone();
    let net = Net::bind(&net_cfg).await.map_err(|e| e.to_string())?;
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
    if !matches!(
        tls.as_ref().map(|t| &t.source),
        Some(crate::tls::CertSource::Files(_))
    ) {
        // SIGHUP reloads certificate files; without them it must not end the
        // node (its default action), e.g. on `systemctl reload`.
        ignore_hangup();
    }
    let turn_udp_addrs: Vec<SocketAddr> = turn_sockets
        .udp
        .iter()
        .filter_map(|s| s.local_addr().ok())
        .collect();
    let turn_tls_addrs: Vec<SocketAddr> = turn_sockets
        .tls
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let mut turn = if config.turn.enabled {
        Some(start_turn(
            &config,
            &net,
            turn_sockets,
            tls.as_ref(),
            https_addrs.first().copied(),
        )?)
    } else {
        None
    };
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    if config.dev {
        tracing::warn!("development mode: API key devkey / secret secret");
    }
    let hsts = config.tls.hsts;
    let http_limits = HttpLimits::from_config(&config.server);
    let turn_on_https = config.turn.on_https_port;
    let https_port = https_addrs.first().map_or(443, SocketAddr::port);
    let domain = config.tls.domain.clone();
    let ice = turn
        .as_ref()
        .map(|(_, _, ice)| ice.clone() as Arc<dyn nodo_signaling::room::IceServers>);
    let node_config_cluster = config.cluster.clone();
    let lost_room_check = Duration::from_secs(config.calls.lost_room_check_secs);
    let mut node = Node::build(config, net.clone(), ice, metrics).await?;
    let shared_store = node.app.store.backend() == nodo_app::store::Backend::Postgres;
    if let (Some(_), false) = (&cluster, shared_store) {
        tracing::info!(
            "cluster: chat, accounts and calls stay per node (each node has its own SQLite); \
             give every node the same --database-url to share them"
        );
    }
    // A database without Redis: the nodes find each other and share chat
    // through the database alone; media rooms stay per node.
    let pg_peers = match (&cluster, shared_store) {
        (None, true) => {
            // What tells this process apart from another with the same id:
            // a restart of this node (same machine, same address) takes the
            // id back at once; a clone of the machine or its container does not.
            let machine = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
            let holder = format!(
                "{} {} {http_addr}",
                crate::cluster::hostname(),
                machine.trim()
            );
            let peers = PgPeers::join(
                node.app.store.clone(),
                crate::cluster::node_id(&node_config_cluster),
                holder,
            )
            .await?;
            tracing::info!(
                "nodes: chat, presence and rings shared through the database (no Redis: media \
                 rooms stay on the node they were joined through)"
            );
            // As a Redis cluster node prints it.
            println!(
                "nodo cluster node={} peers=[{}] bus=postgres",
                PeerView::id(&*peers),
                peers.others().join(",")
            );
            Some(peers)
        }
        _ => None,
    };
    let (cluster_stop, cluster_stopped) = watch::channel(false);
    // Calls a previous run left behind: a node alone ends them now; with
    // other nodes on the database, only those whose timers died with their
    // node, once past both timeouts.
    let others_share_calls = match (&cluster, &pg_peers) {
        (Some(_), _) => shared_store,
        (None, Some(peers)) => !peers.others().is_empty(),
        (None, None) => false,
    };
    node.app.calls.sweep_calls_left(others_share_calls);
    // The bus over the database stops after the node stopped serving (its
    // sockets chat until then), not with the Redis cluster's registry.
    let (pg_stop, pg_stopped) = watch::channel(false);
    let mut pg_heartbeat = None;
    if let Some(peers) = &pg_peers {
        // Before the node serves: a socket's first events find the bus.
        let bus = crate::pgbus::start(
            peers.clone(),
            node.app.store.clone(),
            node.app.clone(),
            pg_stopped.clone(),
        )
        .await;
        node.app.fanout.set_bus(bus);
        tokio::spawn(follow_peers(
            peers.clone(),
            node.app.clone(),
            pg_stopped.clone(),
        ));
        pg_heartbeat = Some(peers.start(pg_stopped.clone()));
    }
    // Always printed (whatever the log level), once the node can serve:
    // scripts and tests read the chosen ports here.
    println!(
        "nodo listening http={http_addr} {} {} {} {} {} {} tls={}",
        entry("rtc_udp", &net.udp_addrs()),
        entry("rtc_tcp", net.tcp_addrs()),
        entry("https", &https_addrs),
        entry("http_redirect", &local(&redirect)),
        entry("turn_udp", &turn_udp_addrs),
        entry("turn_tls", &turn_tls_addrs),
        tls.as_ref().map_or_else(|| "off".to_string(), Tls::state),
    );
    let rooms = node.livekit.rooms.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(cluster) = &cluster {
        let _ = node.livekit.placement.set(cluster.clone());
        node.cluster = Some(cluster.clone());
        let peers: Vec<String> = match cluster.nodes().await {
            Ok(n) => n
                .into_iter()
                .map(|(id, url)| format!("{id}={url}"))
                .collect(),
            Err(e) => vec![format!("unknown ({e})")],
        };
        // Printed like the listening line: operators and tests read it.
        println!(
            "nodo cluster node={} peers=[{}]",
            cluster.id(),
            peers.join(",")
        );
    }
    let app = crate::http::router(&node);

    let limits = ConnLimits::new(http_limits);
    if let Some(cluster) = &cluster {
        // The other nodes hand over many clients' connections each: the
        // per-address caps do not apply to them.
        tokio::spawn(trust_peers(
            cluster.clone(),
            limits.clone(),
            stop_rx.clone(),
        ));
    }
    let mut servers = Vec::new();
    let mut plain = |listener: TcpListener, router: axum::Router| {
        servers.push(tokio::spawn(crate::conn::serve_plain(
            listener,
            router,
            limits.clone(),
            stop_rx.clone(),
        )));
    };
    plain(http, app.clone());
    if let (Some(listener), Some(tls)) = (redirect, &tls) {
        plain(
            listener,
            crate::tls::redirect_router(https_port, domain, tls.acme_resolver()),
        );
    }
    let turn_tls_listener = turn.as_mut().and_then(|t| t.1.take());
    if let (Some((actor, _, _)), Some(listener), Some(tls)) = (&turn, turn_tls_listener, &tls) {
        servers.push(tokio::spawn(turn::serve_tls(
            listener,
            tls.clone(),
            actor.clone(),
            stop_rx.clone(),
        )));
    }
    if let (Some(listener), Some(tls)) = (https, tls) {
        let turn_streams = match (&turn, https_addrs.first()) {
            (Some((actor, _, _)), Some(addr)) if turn_on_https => {
                Some(Arc::new(HttpsTurn::new(actor.clone(), *addr)) as Arc<dyn TurnStreams>)
            }
            _ => None,
        };
        let ctx = HttpsContext {
            tls,
            router: app,
            turn: turn_streams,
            hsts,
            limits: limits.clone(),
        };
        servers.push(tokio::spawn(serve_https(listener, ctx, stop_rx.clone())));
    }

    // Serving now: the node takes rooms from here on.
    let heartbeat = cluster.as_ref().map(|c| {
        c.start(
            rooms.clone(),
            node.livekit.agents.clone(),
            cluster_stopped.clone(),
        )
    });
    if let Some(cluster) = &cluster {
        // Dispatches no worker here serves go to the nodes whose workers do.
        node.livekit.agents.set_peers(cluster.clone());
    }
    if let (Some(cluster), true) = (&cluster, shared_store) {
        // Chat, receipts, rings and presence reach the other nodes' sockets
        // (only with a shared database: messages are rows of it).
        let (client, conn) = cluster.redis();
        let bus = crate::bus::start(
            cluster.id().to_string(),
            client,
            conn,
            node.app.clone(),
            cluster_stopped.clone(),
        );
        node.app.fanout.set_bus(bus);
        tokio::spawn(end_calls_of_lost_rooms(
            cluster.clone(),
            rooms.clone(),
            node.app.store.clone(),
            lost_room_check,
            cluster_stopped.clone(),
        ));
        tokio::spawn(follow_peers(
            cluster.clone(),
            node.app.clone(),
            cluster_stopped,
        ));
    }

    shutdown.await;
    tracing::info!("shutting down");
    if let Some(h) = heartbeat {
        // Leaves the registry and frees this node's rooms first, so the
        // participants told to leave below rejoin on another node.
        let _ = cluster_stop.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, h).await.is_err() {
            tracing::warn!("cluster: could not leave the registry in time");
        }
    }
    rooms.shutdown(SHUTDOWN_GRACE).await;
    let _ = stop_tx.send(true);
    let all = futures_util::future::join_all(servers);
    if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
        tracing::warn!("http connections still open at shutdown");
    }
    if let Some(h) = pg_heartbeat {
        // Leaves the nodes of the database once nothing here chats any more.
        let _ = pg_stop.send(true);
        if tokio::time::timeout(SHUTDOWN_GRACE, h).await.is_err() {
            tracing::warn!("nodes: could not leave in time");
        }
    }
    // Commits what is queued, folds the log into the database and removes it.
    if tokio::time::timeout(STORE_CLOSE_GRACE, node.app.store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close in time; its log is replayed at the next start");
    }
    net.shutdown();
    Ok(())
}
