//! nodo-signaling: every non-media surface of Nodo. This stage has LiveKit
//! client signaling (`/rtc`), access tokens, health and metrics.

pub mod auth;
pub mod config;
pub mod error;
pub mod ids;
pub mod room;
mod rtc;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use nodo_sfu::net::Net;

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
}

impl AppState {
    pub fn new(config: Config, net: Arc<Net>) -> Arc<AppState> {
        let keys = auth::KeyStore::new(config.keys.clone());
        let rooms = RoomManager::new(net.clone(), config.room.clone());
        Arc::new(AppState {
            config,
            keys,
            rooms,
            net,
        })
    }
}

/// Every HTTP route of the node.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/rtc", get(rtc::connect))
        .route("/rtc/validate", get(rtc::validate))
        .route("/rtc/v1", get(rtc::v1_not_found))
        .route("/rtc/v1/validate", get(rtc::v1_not_found))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/metrics", get(metrics))
        .layer(tower_http::cors::CorsLayer::permissive())
        .with_state(state)
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
