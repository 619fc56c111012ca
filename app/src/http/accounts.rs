//! Accounts over REST: register, login, sessions (log out, log out
//! everywhere, change password), the directory and profiles.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AuthUser, Body};
use crate::accounts::{Authenticated, Registration};
use crate::error::Error;
use crate::store::User;
use crate::App;

/// The client address rate limits count a request under (the TCP peer, or
/// what a trusted proxy says; see `[accounts] trusted_proxies`).
pub struct Client(pub IpAddr);

impl FromRequestParts<Arc<App>> for Client {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Error> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|h| h.to_str().ok());
        Ok(Client(app.accounts.client(peer, forwarded)))
    }
}

/// The caller with their session (see [`Authenticated`]).
pub struct AuthSession(pub Authenticated);

impl FromRequestParts<Arc<App>> for AuthSession {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Error> {
        let token = super::bearer_token(parts)?;
        Ok(AuthSession(app.accounts.authenticate(&token).await?))
    }
}

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

async fn do_register(app: &App, r: Register, client: IpAddr) -> Result<(User, String), Error> {
    let username = r
        .username
        .or(r.chat_path)
        .ok_or_else(|| Error::invalid("username is required"))?;
    crate::accounts::valid_username(&username)?;
    let password = r
        .password
        .ok_or_else(|| Error::invalid("password is required"))?;
    app.accounts
        .register(
            Registration {
                username,
                name: r.name,
                password,
            },
            client,
        )
        .await
}

/// `POST /api/auth/register {username, name, password}` -> 201 `{user, token}`.
pub async fn register(
    State(app): State<Arc<App>>,
    Client(client): Client,
    Body(r): Body<Register>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let (user, token) = do_register(&app, r, client).await?;
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
    Client(client): Client,
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
    let (user, token) = do_register(&app, r, client).await?;
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
    Client(client): Client,
    Body(l): Body<Login>,
) -> Result<Json<Value>, Error> {
    // No account has a longer name (32 characters); such guesses are not
    // worth a hash or a throttle entry.
    if l.username.len() > 128 || l.password.len() > 1024 {
        return Err(Error::BadCredentials);
    }
    let (user, token) = app.accounts.login(&l.username, l.password, client).await?;
    Ok(Json(json!({"user": user, "token": token})))
}

/// `POST /api/auth/logout`: ends this session; its sockets are disconnected.
pub async fn logout(
    State(app): State<Arc<App>>,
    AuthSession(me): AuthSession,
) -> Result<Json<Value>, Error> {
    app.accounts.logout(&me).await?;
    Ok(Json(json!({"ok": true})))
}

/// `POST /api/auth/logout-all`: ends every session of the caller (this one
/// too); their sockets are disconnected. -> `{ok, ended}`.
pub async fn logout_all(
    State(app): State<Arc<App>>,
    AuthSession(me): AuthSession,
) -> Result<Json<Value>, Error> {
    let ended = app.accounts.logout_all(&me).await?;
    Ok(Json(json!({"ok": true, "ended": ended})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /api/auth/password {currentPassword, newPassword}`: every other
/// session ends (sockets disconnected); this one stays. -> `{ok, ended}`.
pub async fn change_password(
    State(app): State<Arc<App>>,
    Client(client): Client,
    AuthSession(me): AuthSession,
    Body(p): Body<PasswordChange>,
) -> Result<Json<Value>, Error> {
    if p.current_password.len() > 1024 {
        return Err(Error::BadCredentials);
    }
    let ended = app
        .accounts
        .change_password(&me, p.current_password, p.new_password, client)
        .await?;
    Ok(Json(json!({"ok": true, "ended": ended})))
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

/// `POST /api/users/me/avatar`: the picture itself as the body (PNG, JPEG,
/// GIF or WebP, at most `[accounts] max_avatar_bytes`) -> `{user}` with
/// `avatar` set to its URL. The previous uploaded picture is removed.
pub async fn upload_avatar(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    body: axum::body::Body,
) -> Result<Json<Value>, Error> {
    let max = app.avatars.max_bytes();
    let body = axum::body::to_bytes(body, max)
        .await
        .map_err(|_| Error::too_large(format!("a profile picture is at most {max} bytes")))?;
    let url = app.avatars.store(&body).await?;
    match app.accounts.update_profile(&me.id, None, Some(&url)).await {
        Ok(user) => {
            if me.avatar != url {
                app.avatars.forget(&me.avatar).await;
            }
            Ok(Json(json!({"user": user})))
        }
        Err(e) => {
            app.avatars.forget(&url).await;
            Err(e)
        }
    }
}

/// `GET /api/avatars/:id`: a profile picture, to anyone with its link.
pub async fn avatar(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let (content_type, data) = app.avatars.read(&id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox",
            ),
        ],
        data,
    )
        .into_response())
}
