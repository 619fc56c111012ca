//! The LiveKit side's one error enum, and its mapping to each surface:
//! plain-text HTTP for `/rtc` (as LiveKit answers it; the JS client shows the
//! body as the reason) and Twirp `{code, msg}` for the server API. Each
//! variant is classified once, in [`Error::kind`].

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::ids::RoomName;

/// Why an access token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts with a JSON payload.
    #[error("malformed token")]
    Malformed,
    /// The payload names no issuer (API key).
    #[error("token has no issuer (API key)")]
    NoIssuer,
    /// The issuer is not one of the node's API keys.
    #[error("invalid API key")]
    UnknownKey,
    /// `exp` is past (beyond the leeway).
    #[error("token is expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// The HS256 signature does not match the key's secret.
    #[error("invalid token signature")]
    BadSignature,
    /// Signed with another algorithm than HS256.
    #[error("token must be signed with HS256")]
    WrongAlgorithm,
    /// A claim the node requires is absent.
    #[error("token has no {0} claim")]
    MissingClaim(String),
    /// Any other JWT validation failure.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The class of an error: what the client did wrong, or that the node did.
/// Every surface maps a kind to its own status or code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials that do not allow this.
    Forbidden,
    /// The request is malformed or out of range.
    BadRequest,
    /// The body is not in a media type the route takes (415).
    UnsupportedMediaType,
    /// The body is well-formed but not the shape the route takes (422).
    Unprocessable,
    /// What the request names does not exist.
    NotFound,
    /// The request conflicts with the current state.
    Conflict,
    /// A body or field is larger than allowed.
    TooLarge,
    /// Too many requests; try later.
    RateLimited,
    /// The node cannot serve this now (limits, shutdown); try again.
    Unavailable,
    /// A bug or an environment failure on the node: logged, never detailed to the client.
    Internal,
}

impl Kind {
    /// The HTTP status of this class.
    pub fn status(self) -> StatusCode {
        match self {
            Kind::Unauthorized => StatusCode::UNAUTHORIZED,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Kind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Short machine-readable code for JSON bodies and acks.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Unauthorized => "unauthorized",
            Kind::Forbidden => "forbidden",
            Kind::BadRequest => "bad_request",
            Kind::UnsupportedMediaType => "unsupported_media_type",
            Kind::Unprocessable => "unprocessable",
            Kind::NotFound => "not_found",
            Kind::Conflict => "conflict",
            Kind::TooLarge => "too_large",
            Kind::RateLimited => "rate_limited",
            Kind::Unavailable => "unavailable",
            Kind::Internal => "internal",
        }
    }
}

/// Everything the LiveKit side can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request carries no access token.
    #[error("no access token")]
    MissingToken,
    /// A server API request carries no `Authorization` header.
    #[error("authorization header missing")]
    MissingAuthorization,
    /// A join token without the roomJoin grant.
    #[error("token has no roomJoin grant")]
    NoJoinGrant,
    /// The access token is not valid.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The token is valid but lacks a grant the operation needs.
    #[error("permissions denied: requires {0}")]
    MissingGrant(&'static str),
    /// A request field is missing or out of range; the text names it.
    #[error("{0}")]
    InvalidArgument(&'static str),
    /// A v1 `join_request` that does not decode; the text says where.
    #[error("malformed join_request: {0}")]
    BadJoinRequest(String),
    /// `/rtc` was requested without a WebSocket upgrade.
    #[error("expected a WebSocket upgrade")]
    NotWebSocket,
    /// The room is not open on this node.
    #[error("requested room does not exist")]
    RoomNotFound(RoomName),
    /// Nobody with that identity is in the room.
    #[error("participant {0} is not in the room")]
    ParticipantNotFound(String),
    /// The participant publishes no such track.
    #[error("track {track} is not published by {identity}")]
    TrackNotFound {
        /// The track sid asked for.
        track: String,
        /// The participant asked about.
        identity: String,
    },
    /// The room has `max_participants` visible participants already.
    #[error("room is full (max participants reached)")]
    RoomFull,
    /// The node has `limit.max_rooms` rooms open.
    #[error("this node is at its limit of {0} rooms")]
    RoomLimit(u32),
    /// The room's actor is closing; a join retried now opens a fresh room.
    #[error("room is closing, try again")]
    RoomClosing,
    /// Several nodes share the rooms and the shared registry (Redis) cannot
    /// say, or could not be told, which node serves this room.
    #[error("cluster unavailable: {0}")]
    ClusterUnavailable(String),
    /// The node serving the room could not be reached for this request.
    #[error("the node serving this room is unreachable: {0}")]
    NodeUnreachable(String),
    /// The media plane refused a subscription change (unknown track, own track).
    #[error("{0}")]
    Subscription(nodo_sfu::SfuError),
    /// The media plane refused to add a participant (a bug: sids are unique).
    #[error("media room: {0}")]
    Media(nodo_sfu::SfuError),
    /// The node was asked to sign with an API key it does not have.
    #[error("no secret for API key {0}")]
    UnknownSigningKey(String),
    /// No API key is configured, so the node cannot sign tokens.
    #[error("no API key is configured")]
    NoApiKey,
    /// Encoding a JWT failed.
    #[error("signing a token: {0}")]
    Signing(#[source] jsonwebtoken::errors::Error),
    /// A room actor answered an operation with another operation's reply.
    #[error("room actor answered with {0}")]
    UnexpectedReply(&'static str),
    /// Serializing a value for a client or a webhook failed.
    #[error("serializing: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The durable webhook queue failed (its store is the app's).
    #[error("webhook queue: {0}")]
    WebhookQueue(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An agent worker's token lacks the `agent` grant.
    #[error("token has no agent grant")]
    NoAgentGrant,
    /// A dispatch names an agent no registered worker serves.
    #[error("no agent worker is registered for agent_name {0:?}")]
    NoAgentWorker(String),
    /// No dispatch with that id in the room.
    #[error("dispatch {0} not found in this room")]
    DispatchNotFound(String),
    /// The agent dispatcher's task is gone (a bug).
    #[error("the agent dispatcher is not running")]
    AgentsDown,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> Kind {
        match self {
            Error::MissingToken
            | Error::MissingAuthorization
            | Error::NoJoinGrant
            | Error::Token(_)
            | Error::MissingGrant(_)
            | Error::NoAgentGrant => Kind::Unauthorized,
            Error::InvalidArgument(_) | Error::BadJoinRequest(_) | Error::Subscription(_) => {
                Kind::BadRequest
            }
            Error::NotWebSocket
            | Error::RoomNotFound(_)
            | Error::ParticipantNotFound(_)
            | Error::DispatchNotFound(_)
            | Error::TrackNotFound { .. } => Kind::NotFound,
            Error::RoomFull => Kind::Forbidden,
            Error::NoAgentWorker(_) => Kind::Conflict,
            Error::RoomLimit(_)
            | Error::RoomClosing
            | Error::ClusterUnavailable(_)
            | Error::NodeUnreachable(_) => Kind::Unavailable,
            Error::Media(_)
            | Error::UnexpectedReply(_)
            | Error::UnknownSigningKey(_)
            | Error::NoApiKey
            | Error::Signing(_)
            | Error::Serialize(_)
            | Error::AgentsDown
            | Error::WebhookQueue(_) => Kind::Internal,
        }
    }

    /// Logs an internal error once, under a fresh id the client is given.
    /// Returns `None` for client errors, which are not logged.
    pub fn log_internal(&self) -> Option<String> {
        log_internal(self.kind(), self)
    }

    /// The Twirp code LiveKit's server answers with for this error.
    fn twirp_code(&self) -> &'static str {
        match self {
            // LiveKit answers a missing grant with `unauthenticated` too.
            Error::MissingToken
            | Error::MissingAuthorization
            | Error::NoJoinGrant
            | Error::Token(_)
            | Error::MissingGrant(_)
            | Error::NoAgentGrant => "unauthenticated",
            Error::InvalidArgument(_) | Error::BadJoinRequest(_) | Error::Subscription(_) => {
                "invalid_argument"
            }
            Error::NotWebSocket
            | Error::RoomNotFound(_)
            | Error::ParticipantNotFound(_)
            | Error::DispatchNotFound(_)
            | Error::TrackNotFound { .. } => "not_found",
            // Nothing serves the agent now: the caller may retry once a
            // worker registers.
            Error::NoAgentWorker(_) => "failed_precondition",
            Error::RoomFull => "permission_denied",
            // A node at its room limit: LiveKit's resource_exhausted.
            Error::RoomLimit(_) => "resource_exhausted",
            Error::RoomClosing | Error::ClusterUnavailable(_) | Error::NodeUnreachable(_) => {
                "unavailable"
            }
            _ => "internal",
        }
    }
}

/// Logs an internal error with a fresh id; `None` (and no log) for client errors.
pub fn log_internal(kind: Kind, error: &dyn std::fmt::Display) -> Option<String> {
    if kind != Kind::Internal {
        return None;
    }
    let id = crate::ids::new_sid("ER_");
    tracing::error!(%id, "internal error: {error}");
    Some(id)
}

/// `/rtc` and `/rtc/validate` answers: a plain-text reason with the status.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let kind = self.kind();
        let body = match self.log_internal() {
            Some(id) => format!("internal error ({id})"),
            None => self.to_string(),
        };
        (
            kind.status(),
            [(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")],
            body,
        )
            .into_response()
    }
}

/// A Twirp error: `{code, msg}` (and `meta.id` for internal errors).
#[derive(Debug)]
pub struct TwirpError {
    code: &'static str,
    msg: String,
    id: Option<String>,
}

impl TwirpError {
    /// An error of the Twirp transport itself (`malformed`, `bad_route`).
    pub fn new(code: &'static str, msg: impl Into<String>) -> Self {
        TwirpError {
            code,
            msg: msg.into(),
            id: None,
        }
    }

    fn status(&self) -> StatusCode {
        match self.code {
            "unauthenticated" => StatusCode::UNAUTHORIZED,
            "permission_denied" => StatusCode::FORBIDDEN,
            "not_found" | "bad_route" => StatusCode::NOT_FOUND,
            "invalid_argument" | "malformed" => StatusCode::BAD_REQUEST,
            "already_exists" => StatusCode::CONFLICT,
            "failed_precondition" => StatusCode::PRECONDITION_FAILED,
            "resource_exhausted" => StatusCode::TOO_MANY_REQUESTS,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<Error> for TwirpError {
    fn from(e: Error) -> Self {
        match e.log_internal() {
            Some(id) => TwirpError {
                code: "internal",
                msg: "internal error".into(),
                id: Some(id),
            },
            None => TwirpError::new(e.twirp_code(), e.to_string()),
        }
    }
}

impl IntoResponse for TwirpError {
    fn into_response(self) -> Response {
        let body = match &self.id {
            Some(id) => serde_json::json!({"code": self.code, "msg": self.msg, "meta": {"id": id}}),
            None => serde_json::json!({"code": self.code, "msg": self.msg}),
        };
        (
            self.status(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(r: Response) -> (StatusCode, String) {
        let status = r.status();
        let bytes = r.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn internal_errors_reach_clients_as_an_id_only() {
        let e = Error::UnknownSigningKey("secret-key-name".into());
        let (status, text) = body(TwirpError::from(e).into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["code"], "internal");
        assert_eq!(v["msg"], "internal error");
        assert!(v["meta"]["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("ER_")));
        assert!(!text.contains("secret-key-name"), "{text}");

        let e = Error::UnknownSigningKey("secret-key-name".into());
        let (status, text) = body(e.into_response()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(text.starts_with("internal error (ER_"), "{text}");
    }

    #[tokio::test]
    async fn client_errors_keep_their_reason() {
        let (status, text) = body(Error::Token(TokenError::Expired).into_response()).await;
        assert_eq!(
            (status, text.as_str()),
            (StatusCode::UNAUTHORIZED, "token is expired")
        );
        let t = TwirpError::from(Error::RoomLimit(3));
        let (status, text) = body(t.into_response()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            text.contains("resource_exhausted") && text.contains("3 rooms"),
            "{text}"
        );
    }
}
