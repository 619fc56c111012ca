//! Agent workers on other nodes of a cluster. A dispatch whose agent no
//! worker here serves goes to a node whose workers do: this node asks it over
//! HTTP (`POST /nodo/agents/dispatch`, signed with the node's API key, room
//! admin of that room), and that node's dispatcher offers the job to its
//! workers as if the room were its own. The worker joins through any node;
//! the room's node serves it. When the room closes here, the nodes that got
//! its dispatches hear it (`POST /nodo/agents/closed`) and end their jobs.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use livekit_protocol as proto;
use serde::{Deserialize, Serialize};

use crate::auth::{bearer, claims_for, KeyStore, VideoGrant};
use crate::error::{Error, TwirpError};
use crate::ids::RoomName;
use crate::placement::FORWARDED;
use crate::LiveKit;

/// Where the cluster's other agent workers are.
pub trait AgentPeers: Send + Sync {
    /// The URL of another live node whose workers serve `agent_name`.
    fn node_serving(&self, agent_name: &str) -> Option<String>;
}

/// The identity of node-to-node tokens.
const NODE_IDENTITY: &str = "nodo-node";
/// What node-to-node tokens are signed for: with secrets derived from the
/// API secrets, so that no client's token (not even a room admin's, which
/// could otherwise name the identity an agent joins under) passes for a node.
const NODE_PURPOSE: &str = "nodo node-to-node agent dispatch";
/// Longest identity a forwarded dispatch may name.
const MAX_IDENTITY: usize = 256;
/// Largest agent name, and metadata plus attributes, a forwarded dispatch
/// may carry (as `CreateDispatch`).
const MAX_AGENT_NAME: usize = 256;
const MAX_METADATA: usize = 64 * 1024;

/// Longest a node takes to answer a forwarded dispatch.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Lifetime of the token a forwarded call carries.
const TOKEN_TTL: Duration = Duration::from_secs(60);

/// A dispatch handed to another node.
#[derive(Serialize, Deserialize)]
pub(crate) struct Forwarded {
    pub room: proto::Room,
    pub req: proto::CreateAgentDispatchRequest,
    #[serde(default)]
    pub identity: Option<String>,
}

/// A room that closed on its node.
#[derive(Serialize, Deserialize)]
pub(crate) struct Closed {
    pub room: String,
    pub sid: String,
}

/// A token for a call about `room` to another node.
fn token(keys: &KeyStore, room: &str) -> Result<String, Error> {
    let keys = keys.derived(NODE_PURPOSE);
    let key = keys
        .first_key()
        .ok_or_else(|| Error::UnknownSigningKey(String::new()))?;
    let grant = VideoGrant {
        room_admin: true,
        room: room.to_string(),
        ..VideoGrant::default()
    };
    keys.sign(key, &claims_for(key, NODE_IDENTITY, TOKEN_TTL, Some(grant)))
}

/// POSTs `body` as JSON to `path` on the node at `url`, with a node token
/// for `room`.
async fn post(
    http: &reqwest::Client,
    keys: &KeyStore,
    url: &str,
    path: &str,
    room: &str,
    body: &impl Serialize,
) -> Result<reqwest::Response, Error> {
    let token = token(keys, room)?;
    let body = serde_json::to_vec(body)
        .map_err(|e| Error::NodeUnreachable(format!("encoding a node-to-node call: {e}")))?;
    http.post(format!("{url}{path}"))
        .bearer_auth(token)
        .header(FORWARDED, "1")
        .header(header::CONTENT_TYPE, "application/json")
        .timeout(FORWARD_TIMEOUT)
        .body(body)
        .send()
        .await
        .map_err(|e| {
            tracing::warn!(%url, %path, "a node-to-node call: {e}");
            Error::NodeUnreachable("the node of the agent's workers did not answer".into())
        })
}

/// Asks the node at `url` to dispatch `req` into `room`; its answer.
pub(crate) async fn forward(
    http: &reqwest::Client,
    keys: &KeyStore,
    url: &str,
    body: Forwarded,
) -> Result<proto::AgentDispatch, Error> {
    let resp = post(
        http,
        keys,
        url,
        "/nodo/agents/dispatch",
        &body.room.name,
        &body,
    )
    .await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        tracing::warn!(%url, %status, "a forwarded agent dispatch was refused: {text}");
        return Err(Error::NodeUnreachable(
            "the node of the agent's workers refused the dispatch".into(),
        ));
    }
    let bytes = resp.bytes().await.map_err(|e| {
        tracing::warn!(%url, "a forwarded agent dispatch's answer: {e}");
        Error::NodeUnreachable("the node of the agent's workers did not answer".into())
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        tracing::warn!(%url, "a forwarded agent dispatch's answer: {e}");
        Error::NodeUnreachable("the node of the agent's workers answered garbage".into())
    })
}

/// Tells the node at `url` that `room` closed.
pub(crate) async fn tell_closed(http: &reqwest::Client, keys: &KeyStore, url: &str, body: Closed) {
    // A failure is logged by `post`; the other node's jobs end with their workers.
    let _ = post(http, keys, url, "/nodo/agents/closed", &body.room, &body).await;
}

/// A JSON body, or the project's `InvalidArgument` answer.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|_| Error::InvalidArgument("malformed JSON body"))
}

/// The room a node-to-node call may act on: its token is signed with one of
/// this node's keys and names the room with `roomAdmin`.
fn admin_of(state: &LiveKit, headers: &HeaderMap, room: &str) -> Result<RoomName, Error> {
    if headers.get(FORWARDED).is_none() {
        return Err(Error::MissingGrant("a node-to-node call"));
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(bearer)
        .ok_or(Error::MissingAuthorization)?;
    let claims = state.keys.derived(NODE_PURPOSE).verify(token)?;
    if claims.sub != NODE_IDENTITY {
        return Err(Error::MissingGrant("a node-to-node call"));
    }
    let g = claims.video();
    if !(g.room_admin && g.room == room && !room.is_empty()) {
        return Err(Error::MissingGrant("roomAdmin for this room"));
    }
    Ok(RoomName::new(room))
}

/// A refusal as the Twirp API answers one: JSON `{code, msg}`.
fn refuse(e: Error) -> Response {
    TwirpError::from(e).into_response()
}

/// `POST /nodo/agents/dispatch`: another node's dispatch for a worker here.
pub(crate) async fn dispatch_here(
    State(state): State<Arc<LiveKit>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Forwarded = match parse(&body) {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    if let Err(e) = admin_of(&state, &headers, &body.room.name) {
        return refuse(e);
    }
    let attributes: usize = body
        .req
        .attributes
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if body.req.agent_name.len() > MAX_AGENT_NAME
        || body.req.metadata.len() + attributes > MAX_METADATA
        || body
            .identity
            .as_ref()
            .is_some_and(|i| i.len() > MAX_IDENTITY)
    {
        return refuse(Error::InvalidArgument(
            "agent_name, identity or metadata too large",
        ));
    }
    if proto::JobRestartPolicy::try_from(body.req.restart_policy).is_err() {
        return refuse(Error::InvalidArgument("unknown restart_policy"));
    }
    match state
        .agents
        .create_dispatch_here(body.room, body.req, body.identity)
        .await
    {
        Ok(d) => Json(d).into_response(),
        Err(e) => refuse(e),
    }
}

/// `POST /nodo/agents/closed`: a room whose dispatches came here closed.
pub(crate) async fn closed_here(
    State(state): State<Arc<LiveKit>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body: Closed = match parse(&body) {
        Ok(b) => b,
        Err(e) => return refuse(e),
    };
    let name = match admin_of(&state, &headers, &body.room) {
        Ok(n) => n,
        Err(e) => return refuse(e),
    };
    state.agents.room_closed_elsewhere(name, body.sid).await;
    StatusCode::NO_CONTENT.into_response()
}
