//! The app side's one error enum, classified once ([`Error::kind`]) and mapped
//! here to each surface: HTTP JSON `{error, message}` for the REST API, an
//! ack `{ok: false, error, code}` for Socket.IO events, and the reason of a
//! refused socket connection. An internal error is logged once with an id and
//! reaches the client as "internal error" with that id, never with SQL, path
//! or library text.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

pub use nodo_signaling::error::Kind;

/// Something a request names that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Missing {
    /// A user, by id.
    User(String),
    /// A chat.
    Chat,
    /// A member of a chat (to remove).
    Member,
    /// A message.
    Message,
    /// An attachment's record.
    Attachment,
    /// An attachment's file on disk.
    AttachmentFile,
    /// A call.
    Call,
    /// A ringing call from the given caller to the caller of the request.
    RingingCall,
    /// A meeting.
    Meeting,
    /// A push subscription of the caller.
    Subscription,
    /// A profile picture.
    Avatar,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::User(id) => write!(f, "no user {id}"),
            Missing::Chat => f.write_str("no such chat"),
            Missing::Member => f.write_str("not a member"),
            Missing::Message => f.write_str("no such message"),
            Missing::Attachment => f.write_str("no such attachment"),
            Missing::AttachmentFile => f.write_str("attachment file is missing"),
            Missing::Call => f.write_str("no such call"),
            Missing::RingingCall => f.write_str("no ringing call from that caller"),
            Missing::Meeting => f.write_str("no such room"),
            Missing::Subscription => f.write_str("no such subscription"),
            Missing::Avatar => f.write_str("no such picture"),
        }
    }
}

/// Everything the app side can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request carries no usable session; the text says what is missing.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// A refusal or failure of the LiveKit side (token checks, room limits).
    #[error(transparent)]
    LiveKit(#[from] nodo_signaling::Error),
    /// Wrong username or password (one answer for both, so names cannot be probed).
    #[error("wrong username or password")]
    BadCredentials,
    /// Nobody in the caller's position may do this; the text says why.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Malformed or out-of-range input; the text names the field.
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    /// A JSON body the route cannot take: not JSON (400), not declared as
    /// JSON (415), or not the expected shape (422).
    #[error("{}", .0.body_text())]
    Body(#[from] axum::extract::rejection::JsonRejection),
    /// The call a token is asked for is no longer ringing or connected.
    #[error("the call is {}", .0.as_str())]
    CallOver(crate::calls::machine::Status),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(Missing),
    /// The username is taken.
    #[error("username is already taken")]
    UsernameTaken,
    /// An app-minted identity collides with an existing username.
    #[error("identity collides with an existing username")]
    IdentityTaken,
    /// Another sender already used this message id.
    #[error("message id already used")]
    MessageIdTaken,
    /// The current state does not allow this (a call that already ended, a deleted message).
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    /// Larger than allowed; the text says what and the limit.
    #[error("{0}")]
    TooLarge(Cow<'static, str>),
    /// The user acts faster than the configured rate; says when to retry.
    #[error("{0}")]
    RateLimited(crate::limits::Refusal),
    /// The node is shutting down (its message writer or services are gone).
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The disk is full: the write is refused and nothing already stored is
    /// harmed; writes work again once space is freed.
    #[error("the server's storage is full: nothing was stored, try again later")]
    StorageFull,
    /// The database (PostgreSQL) could not be reached: nothing was written.
    #[error("the database is unreachable: nothing was changed, try again later")]
    DatabaseUnreachable(Arc<sqlx::Error>),
    /// A database operation failed (shared: one failed commit fails a whole batch).
    #[error("database: {0}")]
    Database(Arc<sqlx::Error>),
    /// The schema migrations failed.
    #[error("migrations: {0}")]
    Migrations(#[from] sqlx::migrate::MigrateError),
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What the node was doing.
        context: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Serializing a value for a client failed.
    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
    /// Generating or loading the VAPID key failed.
    #[error("VAPID key: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    /// The configured or stored VAPID key is not a P-256 private key.
    #[error("VAPID key: {0}")]
    Vapid(#[source] web_push::WebPushError),
    /// Hashing a password failed.
    #[error("password hashing: {0}")]
    PasswordHash(argon2::password_hash::Error),
    /// A blocking task panicked or was cancelled.
    #[error("background task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A row written a moment ago is not there.
    #[error("{0} vanished after it was written")]
    Vanished(&'static str),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::from_shared(&Arc::new(e))
    }
}

/// SQLite's primary result code of a database error (`SQLITE_FULL` is 13).
pub(crate) fn sqlite_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(d) if d.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() => {
            d.code()?.parse::<i32>().ok().map(|c| c & 0xff)
        }
        _ => None,
    }
}

/// PostgreSQL's SQLSTATE of a database error (`23505` a unique violation).
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(d) => d
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .map(|p| p.code().to_string()),
        _ => None,
    }
}

/// Whether the database could not be reached: the connection failed or was
/// lost, no connection came free in time, or the server is shutting down or
/// out of connections (SQLSTATE classes 08, 53300, 57P).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(_) => {
            sqlstate(e).is_some_and(|s| s.starts_with("08") || s.starts_with("57P") || s == "53300")
        }
        _ => false,
    }
}

/// Whether a failed write means the disk is full: `SQLITE_FULL`, or SQLite
/// failing to grow its shared-memory file (`SQLITE_IOERR_SHMSIZE`).
fn disk_full(e: &sqlx::Error) -> bool {
    const SQLITE_FULL: i32 = 13;
    const SQLITE_IOERR_SHMSIZE: &str = "4874";
    match e {
        sqlx::Error::Database(d) => {
            sqlite_code(e) == Some(SQLITE_FULL)
                || (sqlite_code(e).is_some() && d.code().as_deref() == Some(SQLITE_IOERR_SHMSIZE))
                // PostgreSQL: disk_full.
                || sqlstate(e).as_deref() == Some("53100")
        }
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::StorageFull,
        _ => false,
    }
}

impl From<nodo_signaling::error::TokenError> for Error {
    fn from(e: nodo_signaling::error::TokenError) -> Self {
        Error::LiveKit(e.into())
    }
}

impl Error {
    /// A database error shared by several requests (one failed commit fails
    /// a batch): a full disk is [`Error::StorageFull`], a closed store
    /// [`Error::ShuttingDown`].
    pub fn from_shared(e: &Arc<sqlx::Error>) -> Error {
        if disk_full(e) {
            Error::StorageFull
        } else if matches!(**e, sqlx::Error::PoolClosed) {
            Error::ShuttingDown
        } else if unreachable(e) {
            Error::DatabaseUnreachable(e.clone())
        } else if sqlstate(e).is_some_and(|s| s.starts_with("22")) {
            // PostgreSQL refuses some values SQLite keeps (a NUL character
            // in text): the client's input, not the server, is at fault.
            Error::invalid(
                "the request holds a value the database refuses, such as a NUL character",
            )
        } else {
            Error::Database(e.clone())
        }
    }

    /// The machine-readable code clients get (`error` over REST, `code` in
    /// acks): the class's code, or `storage_full` for a full disk.
    pub fn code(&self) -> &'static str {
        if self.is_storage_full() {
            "storage_full"
        } else {
            self.kind().code()
        }
    }

    /// A full disk refused the write (the database's or an attachment's).
    pub fn is_storage_full(&self) -> bool {
        match self {
            Error::StorageFull => true,
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<Cow<'static, str>>) -> Error {
        Error::Invalid(msg.into())
    }

    /// Shorthand for [`Error::Conflict`].
    pub fn conflict(msg: impl Into<Cow<'static, str>>) -> Error {
        Error::Conflict(msg.into())
    }

    /// Shorthand for [`Error::TooLarge`].
    pub fn too_large(msg: impl Into<Cow<'static, str>>) -> Error {
        Error::TooLarge(msg.into())
    }

    /// The class of this error.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Unauthenticated(_) | Error::BadCredentials => Kind::Unauthorized,
            Error::LiveKit(e) => e.kind(),
            Error::Forbidden(_) | Error::CallOver(_) => Kind::Forbidden,
            Error::Body(e) => match e.status().as_u16() {
                413 => Kind::TooLarge,
                415 => Kind::UnsupportedMediaType,
                422 => Kind::Unprocessable,
                _ => Kind::BadRequest,
            },
            Error::Invalid(_) => Kind::BadRequest,
            Error::NotFound(_) => Kind::NotFound,
            Error::UsernameTaken
            | Error::IdentityTaken
            | Error::MessageIdTaken
            | Error::Conflict(_) => Kind::Conflict,
            Error::TooLarge(_) => Kind::TooLarge,
            Error::RateLimited(_) => Kind::RateLimited,
            Error::ShuttingDown | Error::StorageFull | Error::DatabaseUnreachable(_) => {
                Kind::Unavailable
            }
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                Kind::Unavailable
            }
            Error::Database(_)
            | Error::Migrations(_)
            | Error::Io { .. }
            | Error::Serialize(_)
            | Error::Crypto(_)
            | Error::Vapid(_)
            | Error::PasswordHash(_)
            | Error::Task(_)
            | Error::Vanished(_) => Kind::Internal,
        }
    }

    /// What a client may see of this error. An internal error is logged here,
    /// once, under the id the client is given.
    pub fn public(&self) -> Public {
        let kind = self.kind();
        match nodo_signaling::error::log_internal(kind, self) {
            Some(id) => Public {
                kind,
                message: "internal error".into(),
                id: Some(id),
            },
            None => Public {
                kind,
                message: self.to_string(),
                id: None,
            },
        }
    }

    /// Logs the error if it is internal; client errors are not logged.
    pub fn log_if_internal(&self) {
        self.public();
    }

    /// The Socket.IO ack of a failed event: `{ok: false, error, code}` (plus `id`).
    pub fn ack(&self) -> Value {
        let p = self.public();
        let mut v = json!({"ok": false, "error": p.message, "code": self.code()});
        if let Some(id) = p.id {
            v["id"] = json!(id);
        }
        if let Error::RateLimited(r) = self {
            v["retryAfter"] = json!(r.retry_after_secs());
            v["retryAfterMs"] = json!(r.retry_after.as_millis().max(1) as u64);
        }
        v
    }
}

/// An error as a client may see it.
#[derive(Debug, Clone)]
pub struct Public {
    /// Its class.
    pub kind: Kind,
    /// The reason, or "internal error".
    pub message: String,
    /// For internal errors: the id under which it was logged.
    pub id: Option<String>,
}

/// A refused Socket.IO connection's reason (`connect_error` on the client).
impl fmt::Display for Public {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.id {
            Some(id) => write!(f, "{} ({id})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// REST answers: the status with `{error, message}` (plus `id`).
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let p = self.public();
        let mut body = json!({"error": self.code(), "message": p.message});
        if let Some(id) = p.id {
            body["id"] = json!(id);
        }
        if let Error::RateLimited(r) = &self {
            let secs = r.retry_after_secs();
            body["retryAfter"] = json!(secs);
            let header = [(axum::http::header::RETRY_AFTER, secs.to_string())];
            return (p.kind.status(), header, Json(body)).into_response();
        }
        if self.is_storage_full() {
            return (StatusCode::INSUFFICIENT_STORAGE, Json(body)).into_response();
        }
        (p.kind.status(), Json(body)).into_response()
    }
}

/// Serializes an API value.
pub fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, Error> {
    Ok(serde_json::to_value(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_database_error_is_logged_not_shown() {
        let e = Error::from(sqlx::Error::Protocol(
            "near \"SELEC\": syntax error in users".into(),
        ));
        let ack = e.ack();
        assert_eq!(ack["code"], "internal");
        assert_eq!(ack["error"], "internal error");
        assert!(ack["id"].as_str().is_some_and(|id| id.starts_with("ER_")));
        let r = e.into_response();
        assert_eq!(r.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        let v: Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(v["error"], "internal");
        assert_eq!(v["message"], "internal error");
        assert!(v["id"].is_string());
        assert!(!String::from_utf8_lossy(&bytes).contains("SELEC"));
    }

    #[test]
    fn client_errors_say_what_went_wrong() {
        let p = Error::NotFound(Missing::User("zoe".into())).public();
        assert_eq!(
            (p.kind, p.message.as_str(), p.id),
            (Kind::NotFound, "no user zoe", None)
        );
        let ack = Error::RateLimited(crate::limits::Refusal {
            what: "messages",
            retry_after: std::time::Duration::from_millis(1500),
        })
        .ack();
        assert_eq!(ack["code"], "rate_limited");
        assert_eq!(ack["ok"], false);
        assert_eq!(
            (ack["retryAfter"].clone(), ack["retryAfterMs"].clone()),
            (json!(2), json!(1500))
        );
        // Token refusals keep the LiveKit side's reason and class.
        let p = Error::from(nodo_signaling::error::TokenError::Expired).public();
        assert_eq!(
            (p.kind, p.message.as_str()),
            (Kind::Unauthorized, "token is expired")
        );
    }
}
