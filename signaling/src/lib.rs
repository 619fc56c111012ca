//! nodo-signaling: the LiveKit surfaces of Nodo. Access tokens, the client
//! signal WebSocket (`/rtc`), one actor per room owning its media, the Twirp
//! RoomService and LiveKit webhooks. It knows nothing of chat, accounts or
//! push: the app side (nodo-app) reaches it only through [`RoomManager`],
//! [`auth::KeyStore`] and [`webhook::Webhooks`].
//!
//! # Three kinds of "room"
//!
//! - [`nodo_sfu::MediaRoom`]: the media plane of one room: peer connections
//!   and forwarding, sans-IO.
//! - A **room** here is a LiveKit room, as clients and the RoomService API
//!   name it: one [`room`] actor task that owns a `MediaRoom` and every
//!   participant's signaling state, opened on demand by name.
//! - A **meeting** (nodo-app) is an app record (members, moderators,
//!   schedule) that owns one LiveKit room by name; seed frontends call them
//!   "rooms" and reach them at `/rooms`. A one-to-one **call** likewise owns a
//!   LiveKit room named `call-…`.
//!
//! # Webhook queue
//!
//! Webhook deliveries must survive a restart, but this crate holds no store.
//! The queue is the [`webhook::WebhookQueue`] trait: the delivery rules (order
//! per URL, backoff, signing) live here, and the node's store implements the
//! trait (SQLite in nodo-app). [`webhook::MemoryQueue`] serves tests.
//!
//! # Errors
//!
//! One enum, [`Error`], classified once by [`Error::kind`] and mapped to each
//! surface in `error.rs`: plain-text HTTP for `/rtc`, Twirp for the server
//! API. Internal errors are logged with an id and never detailed to clients.

pub mod agents;
pub mod auth;
pub mod config;
pub mod error;
pub mod ids;
pub mod metrics;
pub mod placement;
pub mod room;
mod rtc;
mod twirp;
pub mod webhook;
pub mod ws;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use error::Error;
pub use room::RoomManager;

/// The LiveKit server version Nodo presents itself as (feature gates in clients).
pub const LIVEKIT_COMPAT_VERSION: &str = "1.9.0";
/// LiveKit signal protocol version spoken.
pub const PROTOCOL_VERSION: i32 = 16;

/// What the LiveKit surfaces share: the keys tokens are checked against, and
/// the rooms of this node.
pub struct LiveKit {
    /// API keys and secrets.
    pub keys: auth::KeyStore,
    /// Every open room.
    pub rooms: Arc<RoomManager>,
    /// The agent dispatcher (workers on `/agent`).
    pub agents: agents::Agents,
    /// Where rooms are served when several nodes share them (set once,
    /// before serving); unset on a single node.
    pub placement: std::sync::OnceLock<Arc<dyn placement::Placement>>,
    /// The client requests for rooms served elsewhere are re-sent with.
    pub http: reqwest::Client,
}

impl LiveKit {
    /// The LiveKit side over `rooms`, with its agent dispatcher started
    /// (call inside a Tokio runtime).
    pub fn start(keys: auth::KeyStore, rooms: Arc<RoomManager>) -> LiveKit {
        let agents = agents::Agents::start(rooms.clone(), keys.clone());
        LiveKit::new(keys, rooms, agents)
    }

    /// The LiveKit side over `rooms` and an already started dispatcher.
    pub fn new(keys: auth::KeyStore, rooms: Arc<RoomManager>, agents: agents::Agents) -> LiveKit {
        LiveKit {
            keys,
            rooms,
            agents,
            placement: std::sync::OnceLock::new(),
            http: reqwest::Client::new(),
        }
    }

    /// The cluster's placement, when this node shares rooms with others.
    pub fn placement(&self) -> Option<&Arc<dyn placement::Placement>> {
        self.placement.get()
    }
}

/// The LiveKit routes: `/rtc`, `/rtc/validate`, `/rtc/v1` (404 until v1 is
/// built, so clients fall back), `/agent` (agent workers), and the Twirp
/// `livekit.RoomService` and `livekit.AgentDispatchService`.
pub fn router(state: Arc<LiveKit>) -> Router {
    Router::new()
        .route("/rtc", get(rtc::connect))
        .route("/rtc/validate", get(rtc::validate))
        .route("/rtc/v1", get(rtc::connect_v1))
        .route("/rtc/v1/validate", get(rtc::validate_v1))
        .route("/agent", get(agents::worker::connect))
        .route("/nodo/agents/dispatch", post(agents::peers::dispatch_here))
        .route("/nodo/agents/closed", post(agents::peers::closed_here))
        .route(
            "/twirp/livekit.RoomService/{method}",
            post(twirp::room_service),
        )
        .route(
            "/twirp/livekit.AgentDispatchService/{method}",
            post(twirp::agent_dispatch_service),
        )
        .with_state(state)
}
