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

/// `POST /api/push/subscribe`: a browser `PushSubscription` JSON.
pub async fn subscribe(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: Result<Body<Subscription>, Error>,
) -> Result<(StatusCode, Json<Value>), Error> {
    // Anything that is not a subscription is a 400, as before.
    let Body(s) = body.map_err(|e| match e {
        Error::Body(why) => Error::invalid(format!("not a PushSubscription: {}", why.body_text())),
        e => e,
    })?;
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
