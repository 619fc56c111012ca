//! The node's one HTTP surface: the LiveKit routes, the app routes, the chat
//! socket, the web demo, health and metrics, under one CORS policy.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri};
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
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(Metrics {
            exporter: Arc::new(Exporter::new(
                &node.metrics,
                node.livekit.rooms.clone(),
                node.app.clone(),
                node.cluster.clone(),
            )),
            token: Arc::from(node.config.server.metrics_token.as_str()),
            cluster: node.cluster.clone(),
            store: node.app.store.clone(),
        });
    let idle = crate::conn::HttpLimits::from_config(&node.config.server).idle;
    Router::new()
        .merge(nodo_app::router(node.app.clone()))
        .merge(nodo_signaling::router(node.livekit.clone()))
        .merge(crate::web::router(&node.config.server.web_dir))
        .merge(health)
        .layer(node.socket_layer.clone())
        .layer(tower::util::MapRequestLayer::new(detach_socket_request))
        .layer(cors(&node.config))
        // A body that stalls longer than the idle timeout ends its request.
        .layer(RequestBodyTimeoutLayer::new(idle))
}

/// Copies a chat socket request's URI and headers out of the connection's
/// read buffer.
///
/// hyper parses both as slices of that buffer (8 KiB) instead of copying
/// them, and engineioxide keeps each socket's handshake request parts for
/// the socket's life (`req_parts()`): every connected socket kept its
/// connection's whole read buffer alive. axum's `OriginalUri`, taken before
/// route layers run, is one more slice of it and is replaced too. Measured
/// with 1,000 idle sockets: 38.4 -> 34.2 KiB of RSS per socket with
/// app-minted tokens, 53.3 -> 48.8 with sessions (`bench/chat-vs.mjs`).
fn detach_socket_request<B>(req: Request<B>) -> Request<B> {
    if !req.uri().path().starts_with("/socket.io") {
        return req;
    }
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        // axum's copy of the URI, taken before route layers run, shares
        // the buffer too.
        if parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .is_some()
        {
            parts
                .extensions
                .insert(axum::extract::OriginalUri(uri.clone()));
        }
        parts.uri = uri;
    }
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        // `from_bytes` copies (a clone would share the buffer again).
        let (Ok(name), Ok(mut copy)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) else {
            continue;
        };
        copy.set_sensitive(value.is_sensitive());
        headers.append(name, copy);
    }
    parts.headers = headers;
    Request::from_parts(parts, body)
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
    /// Readiness also needs the cluster's Redis, when there is one.
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// And the database, when it is PostgreSQL (a server that can be lost).
    store: nodo_app::store::Store,
}

/// `GET /readyz`: 200 `ready`, or 503 while this cluster node has lost Redis
/// (its open calls go on; new rooms cannot be placed).
async fn readyz(State(m): State<Metrics>) -> Response {
    let unready = |message: &str| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": "unavailable", "message": message })),
        )
            .into_response()
    };
    if m.cluster.as_ref().is_some_and(|c| !c.healthy()) {
        return unready("this node cannot reach the cluster's Redis");
    }
    if m.store.backend() == nodo_app::store::Backend::Postgres {
        let ping = tokio::time::timeout(std::time::Duration::from_secs(3), m.store.ping()).await;
        if !matches!(ping, Ok(Ok(()))) {
            return unready("this node cannot reach its PostgreSQL database");
        }
    }
    "ready".into_response()
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::OriginalUri;

    #[test]
    fn a_socket_request_keeps_its_uri_and_headers_in_copies() {
        let mut req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket&token=a%20b")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("x-custom", "one")
            .header("x-custom", "two")
            .header(header::AUTHORIZATION, "Bearer t")
            .body(())
            .expect("request");
        let original = OriginalUri(req.uri().clone());
        req.extensions_mut().insert(original);
        req.headers_mut()
            .get_mut(header::AUTHORIZATION)
            .expect("authorization")
            .set_sensitive(true);
        let before = req.headers().clone();
        let uri = req.uri().clone();

        let out = detach_socket_request(req);
        assert_eq!(out.uri(), &uri);
        assert_eq!(out.headers(), &before);
        let values: Vec<_> = out.headers().get_all("x-custom").iter().collect();
        assert_eq!(values, ["one", "two"]);
        assert!(out.headers()[header::AUTHORIZATION].is_sensitive());
        assert_eq!(
            out.extensions().get::<OriginalUri>().map(|o| &o.0),
            Some(&uri)
        );
    }

    #[test]
    fn other_requests_pass_untouched() {
        let req = Request::builder()
            .uri("/rtc?access_token=x")
            .header("x-custom", "one")
            .body(())
            .expect("request");
        let out = detach_socket_request(req);
        assert_eq!(out.uri(), "/rtc?access_token=x");
        assert_eq!(out.headers()["x-custom"], "one");
    }
}
