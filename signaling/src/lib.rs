//! nodo-signaling: every non-media surface of Nodo. This stage has LiveKit
//! client signaling (`/rtc`), access tokens, health and metrics.

mod api;
pub mod auth;
pub mod calls;
pub mod chat;
pub mod config;
pub mod error;
pub mod ids;
pub mod push;
pub mod room;
mod rtc;
pub mod store;
mod twirp;
pub mod webhook;

use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use nodo_sfu::net::Net;
use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};

pub use config::Config;
pub use room::RoomManager;

/// The LiveKit server version Nodo presents itself as (feature gates in clients).
pub const LIVEKIT_COMPAT_VERSION: &str = "1.9.0";
/// LiveKit signal protocol version spoken.
pub const PROTOCOL_VERSION: i32 = 16;

/// Shared state of the HTTP surface.
pub struct AppState {
    pub config: Config,
    pub keys: auth::KeyStore,
    pub rooms: Arc<RoomManager>,
    pub net: Arc<Net>,
    pub chat: Arc<chat::Chat>,
    pub calls: Arc<calls::Calls>,
    pub push: Arc<push::Push>,
    pub webhooks: Arc<webhook::Webhooks>,
    /// The Socket.IO server handle, to emit from anywhere.
    pub io: SocketIo,
    socket_layer: SocketIoLayer,
}

impl AppState {
    pub fn new(
        config: Config,
        net: Arc<Net>,
        store: store::Store,
    ) -> Result<Arc<AppState>, error::Error> {
        let keys = auth::KeyStore::new(config.keys.clone());
        let rooms = RoomManager::new(net.clone(), config.room.clone(), config.limit.clone());
        let chat = chat::Chat::new(
            store,
            keys.clone(),
            config.chat.clone(),
            config.server.public_url.clone(),
            std::time::Duration::from_secs(config.calls.token_ttl_hours * 3600),
        );
        let (socket_layer, io) = SocketIo::builder()
            .with_state(chat.clone())
            .max_payload(config.chat.max_message_bytes as u64 * 4 + 4096)
            .build_layer();
        chat::attach(&io);
        let calls = calls::Calls::new(
            chat.store.clone(),
            io.clone(),
            rooms.clone(),
            std::time::Duration::from_secs(config.calls.ring_timeout_secs),
        );
        let _ = chat.calls.set(calls.clone());
        let push = push::Push::start(
            chat.store.clone(),
            config.push.clone(),
            std::path::Path::new(&config.data.dir),
        )?;
        let _ = chat.push.set(push.clone());
        let _ = calls.push.set(push.clone());
        let webhooks =
            webhook::Webhooks::start(chat.store.clone(), keys.clone(), &config.webhook, &rooms);
        let _ = chat.webhooks.set(webhooks.clone());
        let _ = calls.webhooks.set(webhooks.clone());
        Ok(Arc::new(AppState {
            config,
            keys,
            rooms,
            net,
            chat,
            calls,
            push,
            webhooks,
            io,
            socket_layer,
        }))
    }
}

/// CORS: LiveKit's `/rtc` paths answer any origin (as LiveKit does); the chat
/// socket and the API answer the configured origins (any in dev mode).
fn cors(config: &Config) -> CorsLayer {
    let any = config.chat.cors_origins.iter().any(|o| o == "*")
        || (config.dev && config.chat.cors_origins.is_empty());
    let allowed: Vec<HeaderValue> = config
        .chat
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, parts| {
            any || parts.uri.path().starts_with("/rtc") || allowed.iter().any(|a| a == origin)
        }))
        .allow_methods(AllowMethods::mirror_request())
        .allow_headers(AllowHeaders::mirror_request())
        .max_age(std::time::Duration::from_secs(86_400))
}

/// Every HTTP route of the node.
pub fn router(state: Arc<AppState>) -> Router {
    let cors = cors(&state.config);
    let socket = state.socket_layer.clone();
    Router::new()
        .merge(api::routes(&state.config))
        .route("/rtc", get(rtc::connect))
        .route("/rtc/validate", get(rtc::validate))
        .route("/rtc/v1", get(rtc::v1_not_found))
        .route("/rtc/v1/validate", get(rtc::v1_not_found))
        .route("/", get(demo_index))
        .route("/sw.js", get(demo_service_worker))
        .route(
            "/twirp/livekit.RoomService/{method}",
            axum::routing::post(twirp::room_service),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/metrics", get(metrics))
        .layer(socket)
        .layer(cors)
        .with_state(state)
}

/// The bundled web demo, embedded at build time (works offline).
const DEMO_INDEX: &str = include_str!("../../web-demo/index.html");
const DEMO_SW: &str = include_str!("../../web-demo/sw.js");

async fn demo_index() -> impl IntoResponse {
    ([("content-type", "text/html; charset=utf-8")], DEMO_INDEX)
}

async fn demo_service_worker() -> impl IntoResponse {
    (
        [
            ("content-type", "text/javascript; charset=utf-8"),
            ("service-worker-allowed", "/"),
            ("cache-control", "no-cache"),
        ],
        DEMO_SW,
    )
}

async fn metrics(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
) -> impl IntoResponse {
    let snaps = state.rooms.snapshots().await;
    let participants: usize = snaps.iter().map(|s| s.participants.len()).sum();
    let tracks: usize = snaps
        .iter()
        .flat_map(|s| s.participants.iter())
        .map(|p| p.tracks.len())
        .sum();
    let body = format!(
        "# HELP nodo_rooms Open rooms.\n# TYPE nodo_rooms gauge\nnodo_rooms {}\n\
         # HELP nodo_participants Connected participants.\n# TYPE nodo_participants gauge\nnodo_participants {}\n\
         # HELP nodo_published_tracks Published tracks.\n# TYPE nodo_published_tracks gauge\nnodo_published_tracks {}\n",
        snaps.len(),
        participants,
        tracks
    );
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        body,
    )
}
