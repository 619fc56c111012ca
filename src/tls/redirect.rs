//! The plain-HTTP port of a TLS node: `301` to the same path over HTTPS,
//! and the tokens of ACME HTTP-01 validations.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rustls_acme::ResolvesServerCertAcme;

#[derive(Clone)]
struct Redirect {
    /// The HTTPS port clients are sent to.
    https_port: u16,
    /// The configured domain, used when a request has no usable Host.
    domain: String,
    acme: Option<Arc<ResolvesServerCertAcme>>,
}

/// The redirect port's routes.
pub fn redirect_router(
    https_port: u16,
    domain: String,
    acme: Option<Arc<ResolvesServerCertAcme>>,
) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(redirect)
        .with_state(Redirect {
            https_port,
            domain,
            acme,
        })
}

/// `Host` without its port: `name:80` -> `name`, `[::1]:80` -> `[::1]`, `[::1]` stays.
fn host_without_port(h: &str) -> &str {
    if h.starts_with('[') {
        return h.find(']').map_or(h, |end| &h[..=end]);
    }
    h.rsplit_once(':').map_or(h, |(name, _)| name)
}

async fn challenge(State(r): State<Redirect>, Path(token): Path<String>) -> Response {
    match r.acme.as_ref().and_then(|a| a.get_http_01_key_auth(&token)) {
        Some(key_auth) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            key_auth,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such ACME challenge").into_response(),
    }
}

async fn redirect(State(r): State<Redirect>, headers: HeaderMap, uri: Uri) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_without_port)
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
        })
        .unwrap_or(&r.domain)
        .to_string();
    if host.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "this node speaks HTTPS; no host to redirect to",
        )
            .into_response();
    }
    let port = if r.https_port == 443 {
        String::new()
    } else {
        format!(":{}", r.https_port)
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{path}");
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, location)],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ports_come_off_hosts() {
        for (h, want) in [
            ("media.example.com", "media.example.com"),
            ("media.example.com:8080", "media.example.com"),
            ("[::1]", "[::1]"),
            ("[::1]:8080", "[::1]"),
            ("127.0.0.1:80", "127.0.0.1"),
        ] {
            assert_eq!(super::host_without_port(h), want);
        }
    }
}
