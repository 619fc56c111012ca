//! Nodo's whole configuration: every key, its default and what it does.
//! Sections that belong to one part are declared in that part's crate
//! (`[room]`, `[limit]`, `[webhook]` in nodo-signaling; `[chat]`, `[calls]`,
//! `[push]` in nodo-app); the node-wide ones are here. `settings` layers
//! defaults < `config.toml` < environment < flags onto [`Config`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use nodo_app::config::{AccountsConfig, CallsConfig, ChatConfig, PushConfig};
use nodo_signaling::config::{LimitConfig, RoomDefaults, WebhookConfig};
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Development mode: API key `devkey` / secret `secret`, bind 127.0.0.1.
    pub dev: bool,
    pub server: ServerConfig,
    pub rtc: RtcConfig,
    /// API keys and their secrets (`key = "secret"`). Tokens must be issued by one of them.
    pub keys: BTreeMap<String, String>,
    pub room: RoomDefaults,
    pub data: DataConfig,
    pub chat: ChatConfig,
    pub accounts: AccountsConfig,
    pub calls: CallsConfig,
    pub push: PushConfig,
    pub webhook: WebhookConfig,
    pub limit: LimitConfig,
    pub log: LogConfig,
    pub tls: TlsConfig,
    pub turn: TurnConfig,
    pub cluster: ClusterConfig,
}

/// Several nodes sharing rooms through Redis. Off (one node, no Redis)
/// unless `redis_url` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[user:password@]host:port[/db]`; empty = a single node.
    /// The node refuses to start when it is set and Redis does not answer.
    pub redis_url: String,
    /// This node's id in the cluster; empty = the host name. Two live nodes
    /// may not share one.
    pub node_id: String,
    /// Where the other nodes reach this node's HTTP port, e.g.
    /// `http://10.0.0.2:7880` (a private address; signal connections and
    /// server API calls for rooms served here are handed over to it).
    /// Required with `redis_url`.
    pub node_url: String,
}

/// The embedded TURN server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// Run it (TURN/UDP; TURN/TLS too when TLS is on).
    pub enabled: bool,
    /// TURN/UDP port. 0 = ephemeral.
    pub udp_port: u16,
    /// TURN/TLS port, opened when TLS is on. 0 = ephemeral.
    pub tls_port: u16,
    /// Also accept TURN/TLS on the HTTPS port (one open TCP port for everything).
    pub on_https_port: bool,
    /// Ports relay sockets are opened on, `low-high`.
    pub relay_ports: String,
    /// Seconds a TURN credential handed out in a join answer stays valid for new
    /// allocations (an allocation in use outlives it).
    pub credential_ttl_secs: u64,
    /// Most allocations one participant may hold.
    pub max_allocations_per_participant: u32,
    /// Most allocations on this node.
    pub max_allocations: u32,
    /// Hand relayed packets to the SFU in process instead of through the
    /// kernel (also spares a NAT hairpin when `node_ip` is a public address
    /// the host does not have).
    pub in_process: bool,
}

impl Default for TurnConfig {
    fn default() -> Self {
        TurnConfig {
            enabled: true,
            udp_port: 3478,
            tls_port: 5349,
            on_https_port: true,
            relay_ports: "30000-40000".into(),
            credential_ttl_secs: 300,
            max_allocations_per_participant: 12,
            max_allocations: 1000,
            in_process: true,
        }
    }
}

/// HTTPS: certificate files, or certificates obtained over ACME for `domain`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first). With `key_file`, serves these
    /// files, reloaded when they change and on SIGHUP.
    pub cert_file: String,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// The node's public DNS name. Without certificate files, a certificate
    /// for it is obtained and renewed over ACME. Also the host in the URLs
    /// the node hands out.
    pub domain: String,
    /// Contact address given to the ACME directory (`mailto:` added if missing).
    pub acme_email: String,
    /// ACME directory URL.
    pub acme_directory: String,
    /// PEM CA certificate(s) trusted for the ACME directory (a private
    /// directory such as Pebble); empty: the public web roots.
    pub acme_ca_file: String,
    /// ACME challenge: `tls-alpn-01` (answered on the HTTPS port) or
    /// `http-01` (answered on `http_redirect_port`).
    pub acme_challenge: String,
    /// HTTPS (and WSS, and TURN/TLS) port, used when TLS is on. 0 = ephemeral.
    pub https_port: u16,
    /// Plain-HTTP port that redirects to HTTPS and answers HTTP-01
    /// challenges, when TLS is on. 0 = ephemeral; set `redirect = false` to close it.
    pub http_redirect_port: u16,
    /// Whether to open `http_redirect_port` at all.
    pub redirect: bool,
    /// Send `Strict-Transport-Security` on HTTPS answers.
    pub hsts: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: String::new(),
            key_file: String::new(),
            domain: String::new(),
            acme_email: String::new(),
            acme_directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            acme_ca_file: String::new(),
            acme_challenge: "tls-alpn-01".into(),
            https_port: 443,
            http_redirect_port: 80,
            redirect: true,
            hsts: true,
        }
    }
}

impl TlsConfig {
    /// Whether the node serves HTTPS (certificate files or a domain).
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() || !self.domain.is_empty()
    }

    /// Whether certificates come from ACME (a domain and no files).
    pub fn acme(&self) -> bool {
        self.cert_file.is_empty() && !self.domain.is_empty()
    }
}

/// HTTP and WebSocket listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address every listener binds to.
    pub bind: IpAddr,
    /// HTTP/WebSocket port (signaling, API, chat, web demo). 0 = ephemeral.
    pub http_port: u16,
    /// Public base URL (e.g. `https://media.example.com`); derived from the request when empty.
    pub public_url: String,
    /// Open HTTP/HTTPS connections in all, WebSockets (chat, `/rtc`)
    /// included; further clients get a `503` and are closed. 0: no cap.
    pub max_connections: u32,
    /// Open connections from one client address (IPv6: one /64). Behind a
    /// reverse proxy every client shares the proxy's address: raise it or
    /// set 0 (no cap) there.
    pub max_connections_per_ip: u32,
    /// New connections one client address may open per second, sustained
    /// (a token bucket; 0: no rate). Lifted with `max_connections_per_ip = 0`.
    pub new_connections_per_ip_per_sec: f64,
    /// New connections one client address may open at once.
    pub new_connections_per_ip_burst: u32,
    /// Seconds a client has to send a complete request head, from the
    /// connection's start and between requests on a kept-alive connection;
    /// also the longest pause allowed inside a request body. Slow or idle
    /// clients are disconnected after it.
    pub http_idle_timeout_secs: u64,
    /// Bearer token `/metrics` requires (`Authorization: Bearer <token>`).
    /// Empty: `/metrics` is open, as for a node scraped on a private network.
    pub metrics_token: String,
    /// Serve the web app from this directory (the output of `node
    /// web-demo/build.mjs --watch`) instead of the copy built into the
    /// binary: for working on the page without rebuilding the node. Empty:
    /// the built-in copy.
    pub web_dir: String,
}

/// Media transport.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RtcConfig {
    /// The single UDP port all media uses. 0 = ephemeral.
    pub udp_port: u16,
    /// ICE-TCP port, the fallback when UDP is blocked. 0 = ephemeral.
    pub tcp_port: u16,
    /// Whether to offer ICE-TCP candidates at all.
    pub tcp_enabled: bool,
    /// Whether to offer UDP candidates. Turn off only to force ICE-TCP.
    pub udp_enabled: bool,
    /// IPs advertised as ICE candidates (public IPs behind 1:1 NAT). Empty: the
    /// bind address, or the host's outbound and loopback addresses when binding all.
    pub node_ip: Vec<IpAddr>,
    /// UDP port advertised instead of `udp_port`, when a router forwards
    /// another public port to it. 0: the bound port.
    pub external_udp_port: u16,
    /// STUN servers (`host:port`) asked for the public IP at start-up when
    /// `node_ip` is empty. Empty: no discovery.
    pub stun_servers: Vec<String>,
    /// Open ICE-TCP connections in all; further ones are closed at once. 0: no cap.
    pub tcp_max_connections: u32,
    /// Open ICE-TCP connections from one client IP. 0: no cap.
    pub tcp_max_connections_per_ip: u32,
    /// Seconds an ICE-TCP connection has to complete ICE (a STUN check for a
    /// known participant, then DTLS or media); it is closed otherwise.
    pub tcp_ice_timeout_secs: u64,
}

/// Persistent state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Directory for `nodo.db` and attachments.
    pub dir: String,
    /// Bound on the database's write-ahead log (`nodo.db-wal`), in MiB: the
    /// writer checkpoints and restarts the log once it passes half of this,
    /// so sustained load cannot fill the disk with it. At least 1.
    pub wal_limit_mib: u64,
    /// A PostgreSQL database for the store instead of `<dir>/nodo.db`
    /// (`postgres://user:password@host:5432/nodo`), which several nodes can
    /// share. Empty = SQLite. Attachments and avatars stay files in `dir`.
    pub database_url: String,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter directive.
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: IpAddr::from([0, 0, 0, 0]),
            http_port: 7880,
            public_url: String::new(),
            max_connections: 10_000,
            max_connections_per_ip: 500,
            new_connections_per_ip_per_sec: 50.0,
            new_connections_per_ip_burst: 500,
            http_idle_timeout_secs: 30,
            metrics_token: String::new(),
            web_dir: String::new(),
        }
    }
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            udp_port: 7882,
            tcp_port: 7881,
            tcp_enabled: true,
            udp_enabled: true,
            node_ip: Vec::new(),
            external_udp_port: 0,
            stun_servers: Vec::new(),
            tcp_max_connections: 2_000,
            tcp_max_connections_per_ip: 32,
            tcp_ice_timeout_secs: 10,
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: "./nodo-data".into(),
            wal_limit_mib: 64,
            database_url: String::new(),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// Shortest API secret accepted outside `--dev` (HS256 keys of 256 bits).
pub const MIN_SECRET_CHARS: usize = 32;

impl Config {
    /// Checks what serde cannot: returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (k, s) in &self.keys {
            if k.is_empty() {
                problems.push("keys: an API key is empty".to_string());
            }
            if s.chars().count() < MIN_SECRET_CHARS && !self.dev {
                problems.push(format!(
                    "keys.{k}: the secret has {} characters; outside --dev it needs at least \
                     {MIN_SECRET_CHARS}, as anyone who guesses it can mint tokens. Generate one \
                     with `openssl rand -base64 32`",
                    s.chars().count()
                ));
            }
        }
        if self.server.http_port != 0
            && self.rtc.tcp_enabled
            && self.server.http_port == self.rtc.tcp_port
        {
            problems.push("rtc.tcp_port must differ from server.http_port".into());
        }
        if !self.server.public_url.is_empty()
            && !["http://", "https://", "ws://", "wss://"]
                .iter()
                .any(|p| self.server.public_url.starts_with(p))
        {
            problems.push("server.public_url must start with http(s):// or ws(s)://".into());
        }
        let db = &self.data.database_url;
        if !(db.is_empty() || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            problems.push(
                "data.database_url must be empty (SQLite) or start with postgres:// or postgresql://"
                    .into(),
            );
        }
        if self.data.wal_limit_mib == 0 {
            problems.push("data.wal_limit_mib must be at least 1".into());
        }
        if !self.rtc.udp_enabled && !self.rtc.tcp_enabled {
            problems.push("rtc: at least one of udp_enabled and tcp_enabled must be true".into());
        }
        let metrics = self.server.metrics_token.chars().count();
        if metrics > 0 && metrics < 16 && !self.dev {
            problems.push(format!(
                "server.metrics_token has {metrics} characters; use at least 16 \
                 (`openssl rand -hex 16`)"
            ));
        }
        if self.keys.is_empty() && !self.dev {
            problems.push(
                "no API keys: `serve` would refuse to start. Set [keys], LIVEKIT_KEYS, \
                 LIVEKIT_API_KEY + LIVEKIT_API_SECRET or --keys (or use --dev locally)"
                    .into(),
            );
        }
        problems.extend(self.chat.problems());
        problems.extend(self.accounts.problems());
        problems.extend(self.calls.problems());
        problems.extend(self.tls_problems());
        problems.extend(self.turn_problems());
        problems.extend(self.port_clashes());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// Whether `name` is a DNS name a certificate can be issued for.
fn valid_domain(name: &str) -> bool {
    name.len() <= 253
        && name.contains('.')
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Config {
    fn tls_problems(&self) -> Vec<String> {
        let t = &self.tls;
        let mut p = Vec::new();
        match (t.cert_file.is_empty(), t.key_file.is_empty()) {
            (false, true) => p.push("tls.cert_file is set without tls.key_file".into()),
            (true, false) => p.push("tls.key_file is set without tls.cert_file".into()),
            (false, false) => {
                if let Err(e) = crate::tls::load(
                    std::path::Path::new(&t.cert_file),
                    std::path::Path::new(&t.key_file),
                ) {
                    p.push(format!("tls: {e}"));
                }
            }
            (true, true) => {}
        }
        if !t.domain.is_empty() && !valid_domain(&t.domain) && t.domain != "localhost" {
            p.push(format!(
                "tls.domain {:?} is not a DNS name (letters, digits, '-', dot-separated)",
                t.domain
            ));
        }
        if !["tls-alpn-01", "http-01"].contains(&t.acme_challenge.as_str()) {
            p.push(format!(
                "tls.acme_challenge must be \"tls-alpn-01\" or \"http-01\", not {:?}",
                t.acme_challenge
            ));
        }
        if t.acme() && !t.acme_directory.starts_with("https://") {
            p.push("tls.acme_directory must be an https:// URL".into());
        }
        if t.acme() && t.acme_challenge == "http-01" && !t.redirect {
            p.push(
                "tls.acme_challenge = \"http-01\" needs the redirect port (tls.redirect = true)"
                    .into(),
            );
        }
        if !t.acme_ca_file.is_empty() && std::fs::metadata(&t.acme_ca_file).is_err() {
            p.push(format!(
                "tls.acme_ca_file {} cannot be read",
                t.acme_ca_file
            ));
        }
        p
    }

    fn turn_problems(&self) -> Vec<String> {
        let t = &self.turn;
        let mut p = Vec::new();
        if !t.enabled {
            return p;
        }
        match crate::turn::parse_range(&t.relay_ports) {
            Ok(r) => {
                for (name, port) in [
                    ("rtc.udp_port", self.rtc.udp_port),
                    ("turn.udp_port", t.udp_port),
                ] {
                    if port != 0 && r.contains(&port) {
                        p.push(format!(
                            "turn.relay_ports {} contains {name} {port}",
                            t.relay_ports
                        ));
                    }
                }
            }
            Err(e) => p.push(format!("turn.relay_ports: {e}")),
        }
        if t.credential_ttl_secs == 0 {
            p.push("turn.credential_ttl_secs must be positive".into());
        }
        if t.max_allocations == 0 || t.max_allocations_per_participant == 0 {
            p.push(
                "turn.max_allocations and max_allocations_per_participant must be positive".into(),
            );
        }
        p
    }

    /// Two listeners on one port and protocol (ports 0 are ephemeral and never clash).
    fn port_clashes(&self) -> Vec<String> {
        let tls = self.tls.enabled();
        let turn = self.turn.enabled;
        let tcp: Vec<(&str, u16, bool)> = vec![
            ("server.http_port", self.server.http_port, true),
            ("rtc.tcp_port", self.rtc.tcp_port, self.rtc.tcp_enabled),
            ("tls.https_port", self.tls.https_port, tls),
            (
                "tls.http_redirect_port",
                self.tls.http_redirect_port,
                tls && self.tls.redirect,
            ),
            ("turn.tls_port", self.turn.tls_port, tls && turn),
        ];
        let udp: Vec<(&str, u16, bool)> = vec![
            ("rtc.udp_port", self.rtc.udp_port, self.rtc.udp_enabled),
            ("turn.udp_port", self.turn.udp_port, turn),
        ];
        let mut p = Vec::new();
        for (proto, list) in [("tcp", tcp), ("udp", udp)] {
            let open: Vec<_> = list
                .into_iter()
                .filter(|(_, port, on)| *on && *port != 0)
                .collect();
            for (i, (a, pa, _)) in open.iter().enumerate() {
                for (b, pb, _) in &open[i + 1..] {
                    // rtc.tcp_port vs http_port is reported above already.
                    if pa == pb && !(*a == "server.http_port" && *b == "rtc.tcp_port") {
                        p.push(format!("{a} and {b} are both {pa}/{proto}"));
                    }
                }
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed() -> Config {
        let mut c = Config::default();
        c.keys
            .insert("k".into(), "a-secret-of-at-least-32-characters".into());
        c
    }

    #[test]
    fn short_secrets_and_metrics_tokens_are_refused_outside_dev() {
        let mut c = Config::default();
        c.keys.insert("k".into(), "x".repeat(31));
        c.server.metrics_token = "short".into();
        let e = c.validate().unwrap_err().join("\n");
        assert!(e.contains("keys.k: the secret has 31 characters"), "{e}");
        assert!(e.contains("openssl rand"), "{e}");
        assert!(e.contains("metrics_token has 5 characters"), "{e}");
        c.keys.insert("k".into(), "x".repeat(32));
        c.server.metrics_token = "m".repeat(16);
        assert_eq!(c.validate(), Ok(()));
        // --dev keeps its short `devkey: secret`.
        c.dev = true;
        c.keys.insert("devkey".into(), "secret".into());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn defaults_with_keys_pass_and_without_keys_do_not() {
        assert_eq!(keyed().validate(), Ok(()));
        let e = Config::default().validate().unwrap_err();
        assert!(e.iter().any(|p| p.contains("no API keys")), "{e:?}");
        let dev = Config {
            dev: true,
            ..Config::default()
        };
        assert_eq!(dev.validate(), Ok(()));
    }

    #[test]
    fn tls_turn_and_port_mistakes_are_named() {
        let mut c = keyed();
        c.tls.cert_file = "/nonexistent/cert.pem".into();
        c.tls.domain = "not a domain".into();
        c.tls.acme_challenge = "dns-01".into();
        c.turn.relay_ports = "40000-30000".into();
        c.tls.https_port = 7882; // fine: 7882 is UDP
        c.turn.tls_port = 443;
        c.tls.https_port = 443;
        let e = c.validate().unwrap_err().join("\n");
        for needle in [
            "without tls.key_file",
            "not a DNS name",
            "dns-01",
            "relay_ports",
            "443/tcp",
        ] {
            assert!(e.contains(needle), "{needle} missing in:\n{e}");
        }
        let mut c = keyed();
        c.turn.udp_port = 7882;
        let e = c.validate().unwrap_err().join("\n");
        assert!(
            e.contains("rtc.udp_port and turn.udp_port are both 7882/udp"),
            "{e}"
        );
        assert!(valid_domain("media.example.com") && !valid_domain("-x.example.com"));
    }
}
