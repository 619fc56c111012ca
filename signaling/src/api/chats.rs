//! Chats over REST: list, groups and members, history with cursors,
//! messages with attachments, search.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::AuthUser;
use crate::chat::{read_chat, resolve_chat};
use crate::error::Error;
use crate::store::{Attachment, NewMessage};
use crate::AppState;

pub async fn list(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
) -> Result<Json<Value>, Error> {
    let chats = state.chat.store.chats_of(&me.id).await?;
    Ok(Json(json!({"chats": chats})))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateChat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    participants: Vec<String>,
}

async fn check_users_exist(state: &AppState, ids: &[String]) -> Result<(), Error> {
    for id in ids {
        if state.chat.store.user(id).await?.is_none() {
            return Err(Error::NotFound(format!("no user {id}")));
        }
    }
    Ok(())
}

/// Makes members' sockets follow a chat's room.
async fn join_room(state: &AppState, chat_id: &str, members: &[String]) {
    let _ = state
        .io
        .to(members.to_vec())
        .join(format!("chat:{chat_id}"))
        .await;
}

/// `POST /api/chats {type: "group", name, participants}` (or `type: "direct"` with one participant).
pub async fn create(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Json(c): Json<CreateChat>,
) -> Result<(StatusCode, Json<Value>), Error> {
    if c.participants.len() > 1000 {
        return Err(Error::BadRequest("at most 1000 participants".into()));
    }
    check_users_exist(&state, &c.participants).await?;
    let id = match c.kind.as_str() {
        "group" => {
            let name = c.name.trim();
            if name.is_empty() || name.len() > 100 {
                return Err(Error::BadRequest(
                    "a group needs a name of 1 to 100 characters".into(),
                ));
            }
            state
                .chat
                .store
                .create_group(&me.id, name, &c.participants)
                .await?
        }
        "direct" => {
            let [other] = c.participants.as_slice() else {
                return Err(Error::BadRequest(
                    "a direct chat has exactly one other participant".into(),
                ));
            };
            resolve_chat(&state.chat, &me.id, None, Some(other))
                .await?
                .0
        }
        _ => {
            return Err(Error::BadRequest(
                "type must be \"group\" or \"direct\"".into(),
            ))
        }
    };
    let members = state.chat.store.members(&id).await?;
    join_room(&state, &id, &members).await;
    let summary = state
        .chat
        .store
        .chats_of(&me.id)
        .await?
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| Error::Internal("chat vanished".into()))?;
    let payload = json!({"chat": summary});
    state
        .chat
        .to_members(&state.io, &id, "chatCreated", &payload)
        .await?;
    Ok((StatusCode::CREATED, Json(payload)))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
    before: Option<String>,
    after: Option<String>,
}

/// A history cursor from the query string (`before`/`after`): absent, or a number.
pub(super) fn cursor(v: &Option<String>) -> Result<Option<i64>, Error> {
    match v.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| Error::BadRequest("invalid cursor".into())),
    }
}

/// `GET /api/chats/:chatId/messages?limit&before&after` -> `{messages (newest first), nextCursor}`.
pub async fn history(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, Error> {
    state.chat.store.require_member(&chat_id, &me.id).await?;
    let page = state
        .chat
        .store
        .history(
            &chat_id,
            q.limit.unwrap_or(50),
            cursor(&q.before)?,
            cursor(&q.after)?,
        )
        .await?;
    Ok(Json(crate::error::to_json(&page)?))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PostMessage {
    id: Option<String>,
    #[serde(default)]
    content: String,
    reply_to: Option<String>,
}

/// Content types recognised from the file's first bytes; the client's claim is not trusted.
fn sniff(bytes: &[u8]) -> &'static str {
    const SIGS: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"OggS", "audio/ogg"),
        (b"ID3", "audio/mpeg"),
        (b"\x1a\x45\xdf\xa3", "video/webm"),
    ];
    for (sig, ct) in SIGS {
        if bytes.starts_with(sig) {
            return ct;
        }
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return "image/webp";
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        return "video/mp4";
    }
    if std::str::from_utf8(bytes).is_ok() {
        return "text/plain";
    }
    "application/octet-stream"
}

pub(crate) fn attachments_dir(state: &AppState) -> PathBuf {
    PathBuf::from(&state.config.data.dir).join("attachments")
}

/// `POST /api/chats/:chatId/messages`: JSON `{content}` or multipart with a
/// `file` part (and optional `content`, `id`, `replyTo` parts).
pub async fn post_message(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
    req: Request,
) -> Result<(StatusCode, Json<Value>), Error> {
    state.chat.store.require_member(&chat_id, &me.id).await?;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut msg = PostMessage::default();
    let mut attachment = None;
    if is_multipart {
        let mut mp = Multipart::from_request(req, &state)
            .await
            .map_err(|e| Error::BadRequest(format!("multipart: {e}")))?;
        let limit = state.config.chat.max_attachment_bytes;
        while let Some(mut field) = mp
            .next_field()
            .await
            .map_err(|e| Error::BadRequest(format!("multipart: {e}")))?
        {
            match field.name().unwrap_or_default() {
                "file" => {
                    let file_name = field
                        .file_name()
                        .unwrap_or("file")
                        .chars()
                        .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
                        .take(200)
                        .collect::<String>();
                    let mut data = Vec::new();
                    let mut too_large = false;
                    while let Some(chunk) = field
                        .chunk()
                        .await
                        .map_err(|e| Error::BadRequest(format!("upload: {e}")))?
                    {
                        // Past the limit, keep reading (and dropping) so the
                        // client finishes sending and reads the 413.
                        too_large |= data.len() + chunk.len() > limit;
                        if !too_large {
                            data.extend_from_slice(&chunk);
                        }
                    }
                    if too_large {
                        return Err(Error::TooLarge(format!("attachment exceeds {limit} bytes")));
                    }
                    attachment = Some((file_name, data));
                }
                "content" => {
                    msg.content = field
                        .text()
                        .await
                        .map_err(|e| Error::BadRequest(e.to_string()))?
                }
                "id" => {
                    msg.id = Some(
                        field
                            .text()
                            .await
                            .map_err(|e| Error::BadRequest(e.to_string()))?,
                    )
                }
                "replyTo" => {
                    msg.reply_to = Some(
                        field
                            .text()
                            .await
                            .map_err(|e| Error::BadRequest(e.to_string()))?,
                    )
                }
                _ => {}
            }
        }
    } else {
        let Json(m) = Json::<PostMessage>::from_request(req, &state)
            .await
            .map_err(|e| Error::BadRequest(e.body_text()))?;
        msg = m;
    }
    if msg.content.len() > state.config.chat.max_message_bytes {
        return Err(Error::TooLarge("message too large".into()));
    }
    if msg.content.trim().is_empty() && attachment.is_none() {
        return Err(Error::BadRequest("content or file is required".into()));
    }
    state.chat.take_token(&me.id)?;
    let mut attachment_id = None;
    let mut content_type = "text".to_string();
    if let Some((file_name, data)) = attachment {
        let id = crate::ids::new_sid("AT_");
        let dir = attachments_dir(&state);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Error::Internal(format!("attachments dir: {e}")))?;
        tokio::fs::write(dir.join(&id), &data)
            .await
            .map_err(|e| Error::Internal(format!("storing attachment: {e}")))?;
        let ct = sniff(&data);
        state
            .chat
            .store
            .add_attachment(
                &Attachment {
                    id: id.clone(),
                    chat_id: chat_id.clone(),
                    file_name,
                    content_type: ct.to_string(),
                    size: data.len() as i64,
                },
                &me.id,
            )
            .await?;
        content_type = if ct.starts_with("image/") {
            "image".into()
        } else {
            "file".into()
        };
        attachment_id = Some(id);
    }
    let out = state
        .chat
        .store
        .send(
            NewMessage {
                id: msg.id.unwrap_or_else(|| crate::ids::new_sid("MS_")),
                chat_id,
                sender: me.id.clone(),
                content: msg.content,
                content_type,
                reply_to: msg.reply_to,
                attachment_id,
            },
            state.chat.online_fn(),
        )
        .await?;
    if out.inserted {
        state
            .chat
            .deliver(&state.io, &out.message, &out.members, None, None)
            .await?;
    }
    let status = if out.inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"message": out.message}))))
}

/// `GET /api/attachments/:id`: the file, to members of its chat only.
pub async fn attachment(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let a = state
        .chat
        .store
        .attachment(&id)
        .await?
        .ok_or_else(|| Error::NotFound("no such attachment".into()))?;
    state.chat.store.require_member(&a.chat_id, &me.id).await?;
    let data = tokio::fs::read(attachments_dir(&state).join(&a.id))
        .await
        .map_err(|_| Error::NotFound("attachment file is missing".into()))?;
    let disposition = format!("attachment; filename=\"{}\"", a.file_name.replace('"', ""));
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        Body::from(data),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Members {
    #[serde(default)]
    user_ids: Vec<String>,
}

async fn require_group(state: &AppState, chat_id: &str, me: &str) -> Result<String, Error> {
    state.chat.store.require_member(chat_id, me).await?;
    if state.chat.store.chat_kind(chat_id).await?.as_deref() != Some("group") {
        return Err(Error::BadRequest(
            "members can only change in a group".into(),
        ));
    }
    Ok(state
        .chat
        .store
        .member_role(chat_id, me)
        .await?
        .unwrap_or_default())
}

/// `POST /api/chats/:chatId/members {userIds}`: any member may add people.
pub async fn add_members(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
    Json(m): Json<Members>,
) -> Result<Json<Value>, Error> {
    require_group(&state, &chat_id, &me.id).await?;
    if m.user_ids.is_empty() {
        return Err(Error::BadRequest("userIds is empty".into()));
    }
    check_users_exist(&state, &m.user_ids).await?;
    for u in &m.user_ids {
        state.chat.store.add_member(&chat_id, u).await?;
    }
    join_room(&state, &chat_id, &m.user_ids).await;
    let members = state.chat.store.members(&chat_id).await?;
    let payload = json!({"chatId": chat_id, "members": members, "added": m.user_ids, "by": me.id});
    state
        .chat
        .to_members(&state.io, &chat_id, "chatMembersChanged", &payload)
        .await?;
    Ok(Json(payload))
}

async fn drop_member(
    state: &AppState,
    chat_id: &str,
    user: &str,
    by: &str,
) -> Result<Json<Value>, Error> {
    let before = state.chat.store.members(chat_id).await?;
    if !state.chat.store.remove_member(chat_id, user).await? {
        return Err(Error::NotFound("not a member".into()));
    }
    let _ = state
        .io
        .to(user.to_string())
        .leave(format!("chat:{chat_id}"))
        .await;
    let members = state.chat.store.members(chat_id).await?;
    let payload = json!({"chatId": chat_id, "members": members, "removed": [user], "by": by});
    let _ = state
        .io
        .to(before)
        .emit("chatMembersChanged", &payload)
        .await;
    Ok(Json(payload))
}

/// `DELETE /api/chats/:chatId/members/:userId`: the owner removes anyone; anyone removes themselves.
pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path((chat_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, Error> {
    let role = require_group(&state, &chat_id, &me.id).await?;
    if user_id != me.id && role != "owner" {
        return Err(Error::Forbidden(
            "only the group owner removes other members".into(),
        ));
    }
    drop_member(&state, &chat_id, &user_id, &me.id).await
}

/// `POST /api/chats/:chatId/leave`.
pub async fn leave(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
) -> Result<Json<Value>, Error> {
    require_group(&state, &chat_id, &me.id).await?;
    drop_member(&state, &chat_id, &me.id, &me.id).await
}

/// `POST /api/chats/:chatId/read`: marks the chat read, like `markAsRead`.
pub async fn read(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
) -> Result<Json<Value>, Error> {
    state.chat.store.require_member(&chat_id, &me.id).await?;
    read_chat(&state.chat, &state.io, &chat_id, &me.id).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
    limit: Option<i64>,
}

/// `GET /api/messages/search?q=`: full-text search in the caller's chats.
pub async fn search(
    State(state): State<Arc<AppState>>,
    AuthUser(me): AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Value>, Error> {
    if q.q.len() > 256 {
        return Err(Error::BadRequest(
            "query is longer than 256 characters".into(),
        ));
    }
    let messages = state
        .chat
        .store
        .search(&me.id, &q.q, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({"messages": messages})))
}
