//! Configuration of the app side: chat, calls and Web Push. The binary
//! layers defaults < `config.toml` < environment < flags and hands each
//! section here.

use serde::{Deserialize, Serialize};

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

impl ChatConfig {
    /// Checks what serde cannot; returns every problem found.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.rate_per_sec <= 0.0 || self.rate_burst == 0 {
            problems.push("chat: rate_per_sec and rate_burst must be positive".into());
        }
        problems
    }
}
