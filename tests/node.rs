//! A whole node in-process: the wiring of `node::Node` and the one HTTP
//! router, driven with requests (no sockets; media on a recording fake).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use nodo::node::Node;
use nodo::Config;
use nodo_sfu::net::testing::RecordingTransport;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn node() -> (axum::Router, Node, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        dev: true,
        ..Config::default()
    };
    config.keys.insert("devkey".into(), "secret".into());
    config.data.dir = dir.path().display().to_string();
    let transport = RecordingTransport::new("10.0.0.1:7882".parse().expect("addr"));
    let node = Node::build(config, transport, None, Default::default())
        .await
        .expect("build");
    (nodo::http::router(&node), node, dir)
}

async fn send(
    app: &axum::Router,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "node.test:7880");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req
            .header("content-type", "application/json")
            .body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes))),
    )
}

#[tokio::test]
async fn accounts_meetings_and_livekit_share_one_node() {
    let (app, node, _dir) = node().await;
    let (status, reg) = send(
        &app,
        "POST",
        "/api/auth/register",
        None,
        Some(json!({"username": "ana", "password": "long enough"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{reg}");
    let token = reg["token"].as_str().expect("session token").to_string();
    let (status, me) = send(&app, "GET", "/api/users/me", Some(&token), None).await;
    assert_eq!(
        (status, me["user"]["id"].as_str()),
        (StatusCode::OK, Some("ana"))
    );

    // A meeting's join hands out a room token the LiveKit side accepts.
    let (status, meeting) = send(
        &app,
        "POST",
        "/rooms",
        Some(&token),
        Some(json!({"name": "weekly"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{meeting}");
    let id = meeting["id"].as_str().expect("id");
    let (status, join) = send(
        &app,
        "POST",
        &format!("/rooms/{id}/join"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{join}");
    assert_eq!(join["url"], "ws://node.test:7880");
    let room_token = join["token"].as_str().expect("room token");
    let (status, body) = send(
        &app,
        "GET",
        &format!("/rtc/validate?access_token={room_token}"),
        None,
        None,
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!("success")));
    // The session token has no room grant: the LiveKit side refuses it.
    let (status, _) = send(
        &app,
        "GET",
        &format!("/rtc/validate?access_token={token}"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The meeting's moderator starts its room; the server API sees it.
    let (status, _) = send(
        &app,
        "POST",
        &format!("/api/rooms/{id}/start"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let room = meeting["roomName"].as_str().expect("room name");
    assert!(node
        .livekit
        .rooms
        .exists(&nodo_signaling::ids::RoomName::new(room)));
    let (status, st) = send(
        &app,
        "GET",
        &format!("/api/rooms/{id}/status"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, st["isActive"].as_bool()),
        (StatusCode::OK, Some(true))
    );
}

#[tokio::test]
async fn bad_input_gets_json_errors_from_every_app_route() {
    let (app, _node, _dir) = node().await;
    let (status, e) = send(&app, "GET", "/api/users/me", None, None).await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthorized"))
    );
    let (status, e) = send(&app, "GET", "/api/users/me", Some("not.a.jwt"), None).await;
    assert_eq!(
        (status, e["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("malformed token"))
    );
    // A body the route cannot take keeps axum's status (422 wrong shape, 400
    // not JSON, 415 not declared JSON) but answers as JSON with a reason.
    let (status, e) = send(
        &app,
        "POST",
        "/api/auth/register",
        None,
        Some(json!({"username": 7})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e["error"], "unprocessable");
    assert!(
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("username")),
        "{e}"
    );
    let raw = |body: &'static str, ct: Option<&'static str>| {
        let mut req = Request::post("/api/auth/login");
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        app.clone()
            .oneshot(req.body(Body::from(body)).expect("request"))
    };
    let resp = raw("{not json", Some("application/json"))
        .await
        .expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let e: Value = serde_json::from_slice(&bytes).expect("a JSON error");
    assert_eq!(e["error"], "bad_request");
    let resp = raw("{}", None).await.expect("response");
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, e) = send(
        &app,
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"username": "x", "password": "nope nope"})),
    )
    .await;
    assert_eq!(
        (status, e["message"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("wrong username or password"))
    );
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let (app, _node, _dir) = node().await;
    let (status, _) = send(&app, "GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&app, "GET", "/metrics", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str().is_some_and(|b| b.contains("nodo_rooms 0")),
        "{body}"
    );
}
