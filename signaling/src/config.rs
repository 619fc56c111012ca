//! Nodo's configuration: every key, its default and what it does. The binary
//! layers defaults < `config.toml` < environment < flags onto this struct.

use std::collections::BTreeMap;
use std::net::IpAddr;

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
}

/// LiveKit-compatible webhooks.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// URLs every event is POSTed to.
    pub urls: Vec<String>,
    /// API key whose secret signs the deliveries; empty: the first configured key.
    pub api_key: String,
    /// Also send Nodo's app events (message_sent, call_started, call_ended,
    /// user_registered, room_created) through the same signed queue.
    pub app_events: bool,
}

/// Admission limits of this node; 0 means no limit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    /// Most rooms open at once.
    pub max_rooms: u32,
    /// Most published tracks across all rooms.
    pub max_tracks: u32,
}

/// Web Push (VAPID).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PushConfig {
    /// VAPID contact (`mailto:` or `https:` URL) push services may use to reach the operator.
    pub subject: String,
    /// VAPID private key (raw P-256 scalar, base64url). Empty: generated once and kept in
    /// `<data-dir>/vapid_private_key`.
    pub vapid_private_key: String,
    /// Accept `http://` push endpoints (tests, local push services); off: https only.
    pub allow_insecure_endpoints: bool,
    /// Retries of a failed push (network error, 429, 5xx), with exponential backoff.
    pub retries: u32,
    /// First backoff delay in milliseconds.
    pub retry_base_ms: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            subject: "mailto:admin@localhost".into(),
            vapid_private_key: String::new(),
            allow_insecure_endpoints: false,
            retries: 3,
            retry_base_ms: 500,
        }
    }
}

/// One-to-one calls.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CallsConfig {
    /// Seconds a call rings before it counts as missed.
    pub ring_timeout_secs: u64,
    /// Hours a room token handed out for a call or room stays valid.
    pub token_ttl_hours: u64,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            ring_timeout_secs: 30,
            token_ttl_hours: 2,
        }
    }
}

/// The chat socket, accounts and message limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Origins allowed to open the chat socket and call the API from a browser.
    /// Empty: any origin in `--dev`, same-origin only otherwise. `["*"]`: any.
    pub cors_origins: Vec<String>,
    /// Largest message (serialized payload) accepted, in bytes.
    pub max_message_bytes: usize,
    /// Largest attachment accepted, in bytes.
    pub max_attachment_bytes: usize,
    /// Messages per second a user may send, sustained.
    pub rate_per_sec: f64,
    /// Messages a user may send in a burst above the sustained rate.
    pub rate_burst: u32,
    /// Hours a session token from register/login stays valid.
    pub session_ttl_hours: u64,
    /// Milliseconds a typing indicator lasts without a refresh.
    pub typing_timeout_ms: u64,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            cors_origins: Vec::new(),
            max_message_bytes: 16 * 1024,
            max_attachment_bytes: 10 * 1024 * 1024,
            rate_per_sec: 10.0,
            rate_burst: 20,
            session_ttl_hours: 24,
            typing_timeout_ms: 5000,
        }
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

/// Defaults of rooms created by a join.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RoomDefaults {
    /// Create a room when someone joins one that does not exist.
    pub auto_create: bool,
    /// Seconds a room nobody has joined stays open.
    pub empty_timeout: u32,
    /// Seconds a room stays open after the last participant left.
    pub departure_timeout: u32,
    /// Most participants per room; 0 = no limit.
    pub max_participants: u32,
    /// Seconds a participant whose signal connection dropped may resume.
    pub reconnect_window: u32,
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

impl Default for RoomDefaults {
    fn default() -> Self {
        RoomDefaults {
            auto_create: true,
            empty_timeout: 300,
            departure_timeout: 20,
            max_participants: 0,
            reconnect_window: 20,
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
        if self.chat.rate_per_sec <= 0.0 || self.chat.rate_burst == 0 {
            problems.push("chat: rate_per_sec and rate_burst must be positive".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
