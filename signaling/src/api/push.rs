//! Web Push subscriptions over REST.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AuthUser;
use crate::error::Error;
use crate::push::Subscription;
use crate::AppState;

/// `GET /api/push/vapid-public-key`: the key to pass as `applicationServerKey`.
pub async fn public_key(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"publicKey": state.push.public_key()}))
}

/// `POST /api/push/subscribe`: a browser `PushSubscription` JSON.
pub async fn subscribe(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    body: Result<Json<Subscription>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let Json(s) =
        body.map_err(|e| Error::BadRequest(format!("not a PushSubscription: {}", e.body_text())))?;
    state.push.subscribe(&me.id, &s).await?;
    Ok((StatusCode::CREATED, Json(json!({"ok": true}))))
}

#[derive(Deserialize)]
pub struct Unsubscribe {
    endpoint: String,
}

/// `DELETE /api/push/subscribe {endpoint}`.
pub async fn unsubscribe(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Json(u): Json<Unsubscribe>,
) -> Result<Json<Value>, Error> {
    if !state.push.unsubscribe(&me.id, &u.endpoint).await? {
        return Err(Error::NotFound("no such subscription".into()));
    }
    Ok(Json(json!({"ok": true})))
}

/// `GET /api/push/subscriptions`: how many subscriptions the caller has.
pub async fn count(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
) -> Result<Json<Value>, Error> {
    Ok(Json(json!({"count": state.push.count(&me.id).await?})))
}
