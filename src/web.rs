//! The bundled web demo, embedded at build time (works offline).

use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

const DEMO_INDEX: &str = include_str!("../web-demo/index.html");
const DEMO_SW: &str = include_str!("../web-demo/sw.js");

/// `/` and `/sw.js`.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/sw.js", get(service_worker))
}

async fn index() -> impl IntoResponse {
    ([("content-type", "text/html; charset=utf-8")], DEMO_INDEX)
}

async fn service_worker() -> impl IntoResponse {
    (
        [
            ("content-type", "text/javascript; charset=utf-8"),
            ("service-worker-allowed", "/"),
            ("cache-control", "no-cache"),
        ],
        DEMO_SW,
    )
}
