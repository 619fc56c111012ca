//! Accounts over REST: register, login, the directory and profiles.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AuthUser, Body};
use crate::accounts::Registration;
use crate::error::Error;
use crate::store::User;
use crate::App;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Register {
    username: Option<String>,
    /// Seed frontends' word for the identity.
    chat_path: Option<String>,
    #[serde(default)]
    name: String,
    password: Option<String>,
}

async fn do_register(app: &App, r: Register) -> Result<(User, String), Error> {
    let username = r
        .username
        .or(r.chat_path)
        .ok_or_else(|| Error::invalid("username is required"))?;
    crate::accounts::valid_username(&username)?;
    let password = r
        .password
        .ok_or_else(|| Error::invalid("password is required"))?;
    app.accounts
        .register(Registration {
            username,
            name: r.name,
            password,
        })
        .await
}

/// `POST /api/auth/register {username, name, password}` -> 201 `{user, token}`.
pub async fn register(
    State(app): State<Arc<App>>,
    Body(r): Body<Register>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let (user, token) = do_register(&app, r).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user, "token": token})),
    ))
}

/// `POST /users`: the seed path. With a password it registers; with a valid
/// bearer token (an app backend that manages logins) it creates or updates
/// that identity's profile.
pub async fn create_user(
    State(app): State<Arc<App>>,
    auth: Option<AuthUser>,
    Body(r): Body<Register>,
) -> Result<(StatusCode, Json<Value>), Error> {
    if let Some(AuthUser(user)) = auth {
        let name = (!r.name.trim().is_empty()).then(|| r.name.trim().to_string());
        let user = app
            .accounts
            .update_profile(&user.id, name.as_deref(), None)
            .await?;
        return Ok((StatusCode::OK, Json(json!({"user": user}))));
    }
    let (user, token) = do_register(&app, r).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user, "token": token})),
    ))
}

#[derive(Deserialize)]
pub struct Login {
    username: String,
    password: String,
}

/// `POST /api/auth/login {username, password}` -> `{user, token}`.
pub async fn login(
    State(app): State<Arc<App>>,
    Body(l): Body<Login>,
) -> Result<Json<Value>, Error> {
    let (user, token) = app.accounts.login(&l.username, l.password).await?;
    Ok(Json(json!({"user": user, "token": token})))
}

/// `GET /api/users`: the directory with online flags.
pub async fn list(State(app): State<Arc<App>>, _me: AuthUser) -> Result<Json<Value>, Error> {
    Ok(Json(json!({"users": app.accounts.directory().await?})))
}

pub async fn me(AuthUser(user): AuthUser) -> Json<Value> {
    Json(json!({"user": user}))
}

#[derive(Deserialize)]
pub struct Profile {
    name: Option<String>,
    avatar: Option<String>,
}

/// `PATCH /api/users/me {name?, avatar?}`.
pub async fn update_me(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Body(p): Body<Profile>,
) -> Result<Json<Value>, Error> {
    let user = app
        .accounts
        .update_profile(&me.id, p.name.as_deref(), p.avatar.as_deref())
        .await?;
    Ok(Json(json!({"user": user})))
}
