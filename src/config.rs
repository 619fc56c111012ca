//! Nodo's whole configuration: every key, its default and what it does.
//! Sections that belong to one part are declared in that part's crate
//! (`[room]`, `[limit]`, `[webhook]` in nodo-signaling; `[chat]`, `[calls]`,
//! `[push]` in nodo-app); the node-wide ones are here. `settings` layers
//! defaults < `config.toml` < environment < flags onto [`Config`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use nodo_app::config::{CallsConfig, ChatConfig, PushConfig};
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
    pub calls: CallsConfig,
    pub push: PushConfig,
    pub webhook: WebhookConfig,
    pub limit: LimitConfig,
    pub log: LogConfig,
    pub tls: TlsConfig,
    pub turn: TurnConfig,
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
}

/// Persistent state.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Directory for `nodo.db` and attachments.
    pub dir: String,
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
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: "./nodo-data".into(),
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

impl Config {
    /// Checks what serde cannot: returns every problem found.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        for (k, s) in &self.keys {
            if k.is_empty() {
                problems.push("keys: an API key is empty".to_string());
            }
            if s.len() < 6 && !self.dev {
                problems.push(format!("keys.{k}: secret is shorter than 6 characters"));
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
        if !self.rtc.udp_enabled && !self.rtc.tcp_enabled {
            problems.push("rtc: at least one of udp_enabled and tcp_enabled must be true".into());
        }
        problems.extend(self.chat.problems());
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
