//! Configuration of the LiveKit side: room defaults, admission limits and
//! webhooks. The binary layers defaults < `config.toml` < environment < flags
//! and hands each section to the part that uses it.

use serde::{Deserialize, Serialize};

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
