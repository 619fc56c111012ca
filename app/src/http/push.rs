//! Web Push subscriptions over REST.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AuthUser, Body};
use crate::error::{Error, Missing};
use crate::push::Subscription;
use crate::App;

/// `GET /api/push/vapid-public-key`: the key to pass as `applicationServerKey`.
pub async fn public_key(State(app): State<Arc<App>>) -> Json<Value> {
    Json(json!({"publicKey": app.push.public_key()}))
}

/// Largest subscribe body read: a real `PushSubscription` is a few hundred bytes.
const MAX_BODY: usize = 8 * 1024;

/// `POST /api/push/subscribe`: a browser `PushSubscription` JSON.
pub async fn subscribe(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Value>), Error> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        Error::too_large(format!("a push subscription is at most {MAX_BODY} bytes"))
    })?;
    // Anything that is not a subscription is a 400, as before.
    let s: Subscription = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("not a PushSubscription: {e}")))?;
    app.push.subscribe(&me.id, &s).await?;
    Ok((StatusCode::CREATED, Json(json!({"ok": true}))))
}

#[derive(Deserialize)]
pub struct Unsubscribe {
    endpoint: String,
}

/// `DELETE /api/push/subscribe {endpoint}`.
pub async fn unsubscribe(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Body(u): Body<Unsubscribe>,
) -> Result<Json<Value>, Error> {
    if !app.push.unsubscribe(&me.id, &u.endpoint).await? {
        return Err(Error::NotFound(Missing::Subscription));
    }
    Ok(Json(json!({"ok": true})))
}

/// `GET /api/push/subscriptions`: how many subscriptions the caller has.
pub async fn count(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
) -> Result<Json<Value>, Error> {
    Ok(Json(json!({"count": app.push.count(&me.id).await?})))
}
