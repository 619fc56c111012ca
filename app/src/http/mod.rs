//! The app REST API (JSON, camelCase): accounts, users, chats, history,
//! attachments, search, calls, meetings, push and room tokens. Handlers parse
//! the request, call a service and shape the answer; errors are
//! `{error, message}` with an HTTP status (mapped in `error.rs`).

mod accounts;
mod calls;
mod chats;
mod meetings;
mod push;

use std::sync::Arc;

use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, OptionalFromRequestParts, Query, Request,
};
use axum::http::header;
use axum::http::request::Parts;
use axum::routing::{delete, get, post};
use axum::Router;
use nodo_signaling::auth::bearer;

use crate::error::Error;
use crate::store::User;
use crate::App;

/// Every app route, at the `/api/...` paths and at the paths the seed
/// frontends already call (`/users`, `/calls`, `/rooms`, `/livekit/token`).
pub fn router(app: Arc<App>) -> Router {
    // Uploads may be as large as an attachment; the multipart framing needs some room too.
    let upload_limit =
        DefaultBodyLimit::max(app.chat.config().max_attachment_bytes.saturating_mul(2) + 64 * 1024);
    Router::new()
        .route("/api/auth/register", post(accounts::register))
        .route("/api/auth/login", post(accounts::login))
        .route("/api/auth/logout", post(accounts::logout))
        .route("/api/auth/logout-all", post(accounts::logout_all))
        .route("/api/auth/password", post(accounts::change_password))
        .route("/users", post(accounts::create_user))
        .route("/api/users", get(accounts::list))
        .route(
            "/api/users/me",
            get(accounts::me).patch(accounts::update_me),
        )
        .route("/api/users/me/avatar", post(accounts::upload_avatar))
        .route("/api/avatars/{id}", get(accounts::avatar))
        .route("/api/chats", get(chats::list).post(chats::create))
        .route(
            "/api/chats/{chat_id}/messages",
            get(chats::history)
                .post(chats::post_message)
                .layer(upload_limit),
        )
        .route("/api/chats/{chat_id}/members", post(chats::add_members))
        .route(
            "/api/chats/{chat_id}/members/{user_id}",
            delete(chats::remove_member),
        )
        .route("/api/chats/{chat_id}/leave", post(chats::leave))
        .route("/api/chats/{chat_id}/read", post(chats::read))
        .route("/api/attachments/{id}", get(chats::attachment))
        .route("/api/messages/search", get(chats::search))
        .route("/api/calls", get(calls::history))
        .route("/api/calls/initiate", post(calls::initiate))
        .route("/api/calls/{id}", get(calls::one))
        .route("/calls", post(calls::initiate))
        .route("/api/calls/{id}/accept", post(calls::accept))
        .route("/api/calls/{id}/reject", post(calls::reject))
        .route("/api/calls/{id}/cancel", post(calls::cancel))
        .route("/api/calls/{id}/end", post(calls::end))
        .route("/calls/{id}/end", post(calls::end))
        .route("/rooms", post(meetings::create))
        .route("/api/rooms", get(meetings::list).post(meetings::create))
        .route("/api/rooms/{id}", get(meetings::get))
        .route("/rooms/{id}/join", post(meetings::join))
        .route("/api/rooms/{id}/join", post(meetings::join))
        .route("/api/rooms/{id}/moderators", post(meetings::add_moderator))
        .route("/api/rooms/{id}/start", post(meetings::start))
        .route("/api/rooms/{id}/end", post(meetings::end))
        .route("/api/rooms/{id}/status", get(meetings::status))
        .route("/api/push/vapid-public-key", get(push::public_key))
        .route(
            "/api/push/subscribe",
            post(push::subscribe).delete(push::unsubscribe),
        )
        .route("/api/push/subscriptions", get(push::count))
        .route("/livekit/token", post(calls::token))
        .route("/api/livekit/get-token", post(calls::token))
        .with_state(app)
}

/// A history cursor from the query string (`before`/`after`): absent, or a number.
fn cursor(v: &Option<String>) -> Result<Option<i64>, Error> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::invalid("invalid cursor")),
    }
}

/// A JSON body whose rejections (not JSON, wrong shape, too large) keep
/// axum's status but answer in the API's own `{error, message}` form.
pub struct Body<T>(pub T);

impl<T, S> FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Error> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Body(v))
    }
}

/// The bearer token of a request: `Authorization: Bearer <token>`, else `?token=`.
fn bearer_token(parts: &Parts) -> Result<String, Error> {
    let header_token = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer)
        .map(str::to_string);
    match header_token {
        Some(t) => Ok(t),
        None => {
            #[derive(serde::Deserialize)]
            struct Q {
                token: Option<String>,
            }
            Query::<Q>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|q| q.0.token)
                .ok_or(Error::Unauthenticated("missing bearer token"))
        }
    }
}

/// The caller, from `Authorization: Bearer <token>` (or `?token=`): a live
/// session token, or an app-minted token without grants (whose unknown
/// identity is created), as `[accounts] mode` allows. Room tokens are refused.
pub struct AuthUser(pub User);

impl FromRequestParts<Arc<App>> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Error> {
        let token = bearer_token(parts)?;
        Ok(AuthUser(app.accounts.authenticate(&token).await?.user))
    }
}

/// `Option<AuthUser>`: `None` when the request carries no token at all; a
/// token that is present must be valid.
impl OptionalFromRequestParts<Arc<App>> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Option<Self>, Error> {
        let has_header = parts.headers.contains_key(header::AUTHORIZATION);
        let has_query = parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")));
        if !has_header && !has_query {
            return Ok(None);
        }
        <AuthUser as FromRequestParts<Arc<App>>>::from_request_parts(parts, app)
            .await
            .map(Some)
    }
}
