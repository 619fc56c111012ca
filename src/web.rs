//! The bundled web app: built from `web-demo/` by `build.rs` (esbuild) and
//! embedded in the binary, so the page works with no internet and nothing
//! installed beside the node. `[server] web_dir` serves a directory instead.
//!
//! `index.html` and `sw.js` are never cached (they name the current bundle);
//! `/assets/*` carry a content hash in their names and are cached for a year.
//! A client that accepts gzip gets the copy compressed at build time.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// Where the page's files come from.
#[derive(Clone)]
enum Source {
    Embedded,
    Dir(Arc<PathBuf>),
}

/// `/`, `/sw.js`, `/favicon.svg` and `/assets/*`; from `web_dir` when it is set.
pub fn router(web_dir: &str) -> Router {
    let source = if web_dir.is_empty() {
        Source::Embedded
    } else {
        Source::Dir(Arc::new(PathBuf::from(web_dir)))
    };
    Router::new()
        .route("/", get(file))
        .route("/index.html", get(file))
        .route("/sw.js", get(file))
        .route("/favicon.svg", get(file))
        .route("/assets/{*path}", get(file))
        .with_state(source)
}

async fn file(State(source): State<Source>, uri: Uri, headers: HeaderMap) -> Response {
    let path = match uri.path() {
        "/" => "/index.html",
        p => p,
    };
    let gzip = accepts_gzip(&headers);
    let found = match &source {
        Source::Embedded => embedded(path, gzip),
        Source::Dir(dir) => from_dir(dir, path, gzip).await,
    };
    let Some((body, gzipped)) = found else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"error": "not_found", "message": "no such file"})),
        )
            .into_response();
    };
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzipped {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    let cache = if path.starts_with("/assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if path == "/sw.js" {
        h.insert("service-worker-allowed", HeaderValue::from_static("/"));
    }
    if path == "/index.html" {
        // The page loads only its own scripts and styles; media, sockets and
        // the API are on this origin (blob: for previews and avatars).
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; \
                 connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; \
                 script-src 'self'; worker-src 'self' blob:; object-src 'none'; \
                 base-uri 'none'; frame-ancestors 'none'",
            ),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    res
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|q| matches!(q.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

fn embedded(path: &str, gzip: bool) -> Option<(Body, bool)> {
    let find = |p: &str| {
        assets::ASSETS
            .binary_search_by(|(url, _)| (*url).cmp(p))
            .ok()
            .map(|i| assets::ASSETS[i].1)
    };
    if gzip {
        if let Some(bytes) = find(&format!("{path}.gz")) {
            return Some((Body::from(bytes), true));
        }
    }
    find(path).map(|bytes| (Body::from(bytes), false))
}

async fn from_dir(dir: &Path, path: &str, gzip: bool) -> Option<(Body, bool)> {
    let rel = Path::new(path.trim_start_matches('/'));
    // Only plain names below the directory: no `..`, no absolute paths.
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let full = dir.join(rel);
    if gzip {
        let mut gz = full.clone().into_os_string();
        gz.push(".gz");
        if let Ok(bytes) = tokio::fs::read(&gz).await {
            return Some((Body::from(bytes), true));
        }
    }
    tokio::fs::read(&full)
        .await
        .ok()
        .map(|b| (Body::from(b), false))
}

fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit('.').next().unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "png" => "image/png",
        "wav" => "audio/wav",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_page_names_its_bundle_and_every_named_file_is_there() {
        let (_, html) = assets::ASSETS
            .iter()
            .find(|(u, _)| *u == "/index.html")
            .expect("index.html is embedded");
        let html = std::str::from_utf8(html).expect("utf-8");
        let named: Vec<&str> = html
            .split('"')
            .filter(|s| s.starts_with("/assets/"))
            .collect();
        assert!(named.iter().any(|s| s.ends_with(".js")), "{html}");
        for n in named {
            assert!(embedded(n, false).is_some(), "{n} is not embedded");
            assert!(
                embedded(n, true).is_some_and(|(_, gz)| gz),
                "{n} has no gzip copy"
            );
        }
        assert!(embedded("/sw.js", false).is_some());
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("br, gzip;q=0"),
        );
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("deflate, GZIP"),
        );
        assert!(accepts_gzip(&h));
    }
}
