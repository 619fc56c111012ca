//! The Twirp RoomService handlers in-process: `router(state)` driven with
//! requests (no sockets), rooms on a recording fake of the network.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use livekit_protocol as proto;
use nodo_sfu::net::testing::RecordingTransport;
use nodo_signaling::auth::{claims_for, sign_with, KeyStore, VideoGrant};
use nodo_signaling::config::{LimitConfig, RoomDefaults};
use nodo_signaling::{router, LiveKit, RoomManager};
use prost::Message;
use serde_json::{json, Value};
use tower::ServiceExt;

fn node(limits: LimitConfig) -> axum::Router {
    let transport = RecordingTransport::new("10.0.0.1:7882".parse().expect("addr"));
    let keys = KeyStore::new(BTreeMap::from([("devkey".into(), "secret".into())]));
    let rooms = RoomManager::new(transport, RoomDefaults::default(), limits);
    router(Arc::new(LiveKit::start(keys, rooms)))
}

fn token(grant: VideoGrant) -> String {
    let claims = claims_for("devkey", "server", Duration::from_secs(600), Some(grant));
    sign_with("secret", &claims).expect("sign")
}

fn admin(room: &str) -> String {
    token(VideoGrant {
        room_create: true,
        room_list: true,
        room_admin: true,
        room: room.into(),
        ..VideoGrant::default()
    })
}

/// POSTs a JSON body to a method; returns the status and the JSON answer.
async fn call(
    app: &axum::Router,
    method: &str,
    auth: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = Request::post(format!("/twirp/livekit.RoomService/{method}"))
        .header("content-type", "application/json");
    if let Some(t) = auth {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).expect("request"))
        .await
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn create_list_and_delete_rooms_in_json() {
    let app = node(LimitConfig::default());
    let t = admin("standup");
    let (status, room) = call(
        &app,
        "CreateRoom",
        Some(&t),
        json!({"name": "standup", "maxParticipants": 5, "metadata": "m"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{room}");
    assert_eq!(room["name"], "standup");
    assert_eq!(room["maxParticipants"], 5);
    assert_eq!(room["metadata"], "m");
    assert!(room["sid"].as_str().is_some_and(|s| s.starts_with("RM_")));
    let (_, list) = call(&app, "ListRooms", Some(&t), json!({})).await;
    assert_eq!(list["rooms"].as_array().map(Vec::len), Some(1));
    let (status, _) = call(&app, "DeleteRoom", Some(&t), json!({"room": "standup"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = call(&app, "DeleteRoom", Some(&t), json!({"room": "standup"})).await;
    assert_eq!(
        (status, err["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
}

#[tokio::test]
async fn protobuf_requests_get_protobuf_answers() {
    let app = node(LimitConfig::default());
    let body = proto::CreateRoomRequest {
        name: "pb".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let req = Request::post("/twirp/livekit.RoomService/CreateRoom")
        .header("content-type", "application/protobuf")
        .header("authorization", format!("Bearer {}", admin("pb")))
        .body(Body::from(body))
        .expect("request");
    let resp = app.oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/protobuf")
    );
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let room = proto::Room::decode(bytes.as_ref()).expect("a Room");
    assert_eq!(room.name, "pb");
}

#[tokio::test]
async fn refusals_are_twirp_errors() {
    let app = node(LimitConfig::default());
    let (status, e) = call(&app, "ListRooms", None, json!({})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    let bad = sign_with(
        "wrong",
        &claims_for("devkey", "x", Duration::from_secs(60), None),
    )
    .expect("sign");
    let (status, e) = call(&app, "ListRooms", Some(&bad), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        e["msg"].as_str().is_some_and(|m| m.contains("signature")),
        "{e}"
    );
    // A grant for another room, or without roomAdmin, does not administer this one.
    let other = admin("other");
    let (status, e) = call(
        &app,
        "ListParticipants",
        Some(&other),
        json!({"room": "mine"}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    assert!(
        e["msg"].as_str().is_some_and(|m| m.contains("roomAdmin")),
        "{e}"
    );
    let no_create = token(VideoGrant::default());
    let (_, e) = call(&app, "CreateRoom", Some(&no_create), json!({"name": "x"})).await;
    assert!(
        e["msg"].as_str().is_some_and(|m| m.contains("roomCreate")),
        "{e}"
    );
    let t = admin("mine");
    let (status, e) = call(&app, "ListParticipants", Some(&t), json!({"room": "mine"})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, e) = call(&app, "CreateRoom", Some(&t), json!({"name": ""})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_argument"))
    );
    let (status, e) = call(&app, "NoSuchMethod", Some(&t), json!({})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("bad_route"))
    );
    let (status, e) = call(
        &app,
        "SendData",
        Some(&t),
        json!({"room": "mine", "data": "AAAA"}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    // Not JSON at all.
    let req = Request::post("/twirp/livekit.RoomService/ListRooms")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {t}"))
        .body(Body::from("{not json"))
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Neither JSON nor protobuf.
    let req = Request::post("/twirp/livekit.RoomService/ListRooms")
        .header("content-type", "text/plain")
        .header("authorization", format!("Bearer {t}"))
        .body(Body::from("hi"))
        .expect("request");
    let resp = app.oneshot(req).await.expect("response");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_room_limit_is_resource_exhausted() {
    let app = node(LimitConfig {
        max_rooms: 1,
        max_tracks: 0,
    });
    let t = token(VideoGrant {
        room_create: true,
        ..VideoGrant::default()
    });
    let (status, _) = call(&app, "CreateRoom", Some(&t), json!({"name": "a"})).await;
    assert_eq!(status, StatusCode::OK);
    // Creating an open room again is not a new room.
    let (status, _) = call(&app, "CreateRoom", Some(&t), json!({"name": "a"})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, e) = call(&app, "CreateRoom", Some(&t), json!({"name": "b"})).await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("resource_exhausted"))
    );
    assert!(
        e["msg"].as_str().is_some_and(|m| m.contains("1 rooms")),
        "{e}"
    );
}

#[tokio::test]
async fn metadata_updates_need_the_room_open() {
    let app = node(LimitConfig::default());
    let t = admin("meta");
    let (status, _) = call(
        &app,
        "UpdateRoomMetadata",
        Some(&t),
        json!({"room": "meta", "metadata": "x"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    call(&app, "CreateRoom", Some(&t), json!({"name": "meta"})).await;
    let (status, room) = call(
        &app,
        "UpdateRoomMetadata",
        Some(&t),
        json!({"room": "meta", "metadata": "new"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(room["metadata"], "new");
    let (status, e) = call(
        &app,
        "SendData",
        Some(&t),
        json!({"room": "meta", "data": "A".repeat(90_000)}),
    )
    .await;
    assert_eq!(
        (status, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_argument"))
    );
}
