//! Accounts: register, login, the user directory and profiles.

use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AuthUser;
use crate::auth::claims_for;
use crate::error::Error;
use crate::store::User;
use crate::AppState;

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

fn valid_username(u: &str) -> Result<(), Error> {
    let ok = (3..=32).contains(&u.len())
        && u.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(
            "username must be 3-32 characters of letters, digits, '_', '.', '-', starting with a letter or digit".into(),
        ))
    }
}

/// A session token: a LiveKit-format token with the identity and no room grant.
fn session_token(state: &AppState, user: &User) -> Result<String, Error> {
    let key = state
        .keys
        .first_key()
        .ok_or_else(|| Error::Internal("no API key configured".into()))?;
    let ttl = Duration::from_secs(state.config.chat.session_ttl_hours * 3600);
    let mut claims = claims_for(key, &user.id, ttl, None);
    claims.name = user.name.clone();
    state.keys.sign(key, &claims)
}

async fn hash_password(password: String) -> Result<String, Error> {
    tokio::task::spawn_blocking(move || {
        let bytes: [u8; 16] = rand::random();
        let salt =
            SaltString::encode_b64(&bytes).map_err(|e| Error::Internal(format!("salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::Internal(format!("hashing: {e}")))
    })
    .await
    .map_err(|e| Error::Internal(e.to_string()))?
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// Tells every connected socket about a new user (`user.registered`).
pub async fn announce_user(state: &AppState, user: &User) {
    state
        .webhooks
        .app_event("user_registered", json!({"user": user}));
    let _ = state
        .io
        .emit("user.registered", &json!({"data": user}))
        .await;
}

async fn do_register(state: &AppState, r: Register) -> Result<(User, String), Error> {
    let username = r
        .username
        .or(r.chat_path)
        .ok_or_else(|| Error::BadRequest("username is required".into()))?;
    valid_username(&username)?;
    let password = r
        .password
        .ok_or_else(|| Error::BadRequest("password is required".into()))?;
    if password.len() < 8 || password.len() > 256 {
        return Err(Error::BadRequest(
            "password must be 8 to 256 characters".into(),
        ));
    }
    if r.name.len() > 100 {
        return Err(Error::BadRequest(
            "name is longer than 100 characters".into(),
        ));
    }
    let name = if r.name.trim().is_empty() {
        username.clone()
    } else {
        r.name.trim().to_string()
    };
    let hash = hash_password(password).await?;
    let user = state
        .chat
        .store
        .create_user(&username, &username, &name, Some(&hash))
        .await?;
    let token = session_token(state, &user)?;
    announce_user(state, &user).await;
    Ok((user, token))
}

/// `POST /api/auth/register {username, name, password}` -> 201 `{user, token}`.
pub async fn register(
    State(state): State<Arc<AppState>>,
    Json(r): Json<Register>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let (user, token) = do_register(&state, r).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"user": user, "token": token})),
    ))
}

/// `POST /users`: the seed path. With a password it registers; with a valid
/// bearer token (an app backend that manages logins) it creates or updates
/// that identity's profile.
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    auth: Option<AuthUser>,
    Json(r): Json<Register>,
) -> Result<(StatusCode, Json<Value>), Error> {
    if let Some(AuthUser(user)) = auth {
        let name = (!r.name.trim().is_empty()).then(|| r.name.trim().to_string());
        let user = state
            .chat
            .store
            .update_profile(&user.id, name.as_deref(), None)
            .await?;
        return Ok((StatusCode::OK, Json(json!({"user": user}))));
    }
    let (user, token) = do_register(&state, r).await?;
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
    State(state): State<Arc<AppState>>,
    Json(l): Json<Login>,
) -> Result<Json<Value>, Error> {
    let bad = || Error::Unauthorized("wrong username or password".into());
    let user = state
        .chat
        .store
        .user_by_username(&l.username)
        .await?
        .ok_or_else(bad)?;
    let hash = user.password_hash.clone().ok_or_else(bad)?;
    if !verify_password(l.password, hash).await {
        return Err(bad());
    }
    let token = session_token(&state, &user)?;
    Ok(Json(json!({"user": user, "token": token})))
}

/// `GET /api/users`: the directory with online flags.
pub async fn list(State(state): State<Arc<AppState>>, _me: AuthUser) -> Result<Json<Value>, Error> {
    let users: Vec<Value> = state
        .chat
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| {
            let online = state.chat.is_online(&u.id);
            json!({"id": u.id, "username": u.username, "name": u.name, "avatar": u.avatar, "chatPath": u.id, "online": online})
        })
        .collect();
    Ok(Json(json!({"users": users})))
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
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Json(p): Json<Profile>,
) -> Result<Json<Value>, Error> {
    if p.name
        .as_ref()
        .is_some_and(|n| n.trim().is_empty() || n.len() > 100)
    {
        return Err(Error::BadRequest("name must be 1 to 100 characters".into()));
    }
    if p.avatar.as_ref().is_some_and(|a| a.len() > 2048) {
        return Err(Error::BadRequest(
            "avatar URL is longer than 2048 characters".into(),
        ));
    }
    let user = state
        .chat
        .store
        .update_profile(
            &me.id,
            p.name.as_deref().map(str::trim),
            p.avatar.as_deref(),
        )
        .await?;
    Ok(Json(json!({"user": user})))
}
