//! The node's one HTTP surface: the LiveKit routes, the app routes, the chat
//! socket, the web demo, health and metrics, under one CORS policy.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::metrics::Exporter;
use crate::node::Node;
use crate::Config;

/// Every route of the node.
pub fn router(node: &Node) -> Router {
    let health = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ready" }))
        .route("/metrics", get(metrics))
        .with_state(Metrics {
            exporter: Arc::new(Exporter::new(
                &node.metrics,
                node.livekit.rooms.clone(),
                node.app.clone(),
            )),
            token: Arc::from(node.config.server.metrics_token.as_str()),
        });
    let idle = crate::conn::HttpLimits::from_config(&node.config.server).idle;
    Router::new()
        .merge(nodo_app::router(node.app.clone()))
        .merge(nodo_signaling::router(node.livekit.clone()))
        .merge(crate::web::router(&node.config.server.web_dir))
        .merge(health)
        .layer(node.socket_layer.clone())
        .layer(cors(&node.config))
        // A body that stalls longer than the idle timeout ends its request.
        .layer(RequestBodyTimeoutLayer::new(idle))
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

/// What `/metrics` reads, and the bearer token it may require.
#[derive(Clone)]
struct Metrics {
    exporter: Arc<Exporter>,
    token: Arc<str>,
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn metrics(State(m): State<Metrics>, headers: HeaderMap) -> Response {
    if !m.token.is_empty() {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(given.as_bytes(), m.token.as_bytes()) {
            let body = serde_json::json!({
                "error": "unauthorized",
                "message": "/metrics needs `Authorization: Bearer <server.metrics_token>`",
            });
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                axum::Json(body),
            )
                .into_response();
        }
    }
    let body = m.exporter.render().await;
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
