//! Chats over REST: list, groups and members, history with cursors,
//! messages with attachments, search.

use std::sync::Arc;

use axum::body::Body as HttpBody;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{cursor, AuthUser, Body};
use crate::chat::{Outgoing, Upload};
use crate::error::{to_json, Error};
use crate::App;

pub async fn list(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
) -> Result<Json<Value>, Error> {
    let chats = app.store.chats_of(&me.id).await?;
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

/// `POST /api/chats {type: "group", name, participants}` (or `type: "direct"` with one participant).
pub async fn create(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Body(c): Body<CreateChat>,
) -> Result<(StatusCode, Json<Value>), Error> {
    let summary = app
        .chat
        .create(&me.id, &c.kind, &c.name, &c.participants)
        .await?;
    Ok((StatusCode::CREATED, Json(json!({"chat": summary}))))
}

#[derive(Deserialize)]
pub struct HistoryQuery {
    limit: Option<i64>,
    before: Option<String>,
    after: Option<String>,
}

/// `GET /api/chats/:chatId/messages?limit&before&after` -> `{messages (newest first), nextCursor}`.
pub async fn history(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Value>, Error> {
    app.store.require_member(&chat_id, &me.id).await?;
    let page = app
        .store
        .history(
            &chat_id,
            q.limit.unwrap_or(50),
            cursor(&q.before)?,
            cursor(&q.after)?,
        )
        .await?;
    Ok(Json(to_json(&page)?))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct PostMessage {
    id: Option<String>,
    #[serde(default)]
    content: String,
    reply_to: Option<String>,
}

/// A multipart text field.
async fn text(field: axum::extract::multipart::Field<'_>) -> Result<String, Error> {
    field
        .text()
        .await
        .map_err(|e| Error::invalid(e.body_text()))
}

/// Reads a multipart message: a `file` part (at most `limit` bytes) and
/// optional `content`, `id` and `replyTo` parts.
async fn read_multipart(
    mut mp: Multipart,
    limit: usize,
) -> Result<(PostMessage, Option<Upload>), Error> {
    let mut msg = PostMessage::default();
    let mut upload = None;
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| Error::invalid(format!("multipart: {}", e.body_text())))?
    {
        match field.name().unwrap_or_default() {
            "file" => {
                let file_name = field.file_name().unwrap_or("file").to_string();
                let mut data = Vec::new();
                let mut too_large = false;
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| Error::invalid(format!("upload: {}", e.body_text())))?
                {
                    // Past the limit, keep reading (and dropping) so the
                    // client finishes sending and reads the 413.
                    too_large |= data.len() + chunk.len() > limit;
                    if !too_large {
                        data.extend_from_slice(&chunk);
                    }
                }
                if too_large {
                    return Err(Error::too_large(format!(
                        "attachment exceeds {limit} bytes"
                    )));
                }
                upload = Some(Upload::new(&file_name, data));
            }
            "content" => msg.content = text(field).await?,
            "id" => msg.id = Some(text(field).await?),
            "replyTo" => msg.reply_to = Some(text(field).await?),
            _ => {}
        }
    }
    Ok((msg, upload))
}

/// `POST /api/chats/:chatId/messages`: JSON `{content}` or multipart with a
/// `file` part (and optional `content`, `id`, `replyTo` parts).
pub async fn post_message(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
    req: Request,
) -> Result<(StatusCode, Json<Value>), Error> {
    app.store.require_member(&chat_id, &me.id).await?;
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let config = app.chat.config();
    let (msg, upload) = if is_multipart {
        let mp = Multipart::from_request(req, &app)
            .await
            .map_err(|e| Error::invalid(format!("multipart: {}", e.body_text())))?;
        read_multipart(mp, config.max_attachment_bytes).await?
    } else {
        let Body(m) = Body::<PostMessage>::from_request(req, &app).await?;
        (m, None)
    };
    if msg.content.len() > config.max_message_bytes {
        return Err(Error::too_large("message too large"));
    }
    if msg.content.trim().is_empty() && upload.is_none() {
        return Err(Error::invalid("content or file is required"));
    }
    app.chat.take_token(&me.id)?;
    crate::chat::check_id("id", msg.id.as_deref())?;
    crate::chat::check_id("replyTo", msg.reply_to.as_deref())?;
    let extra = app.chat.sender_profile(&me.id).await?;
    let m = Outgoing {
        id: msg.id,
        chat_id,
        content: msg.content,
        content_type: "text".to_string(),
        reply_to: msg.reply_to,
        attachment_id: None,
    };
    let out = match upload {
        // The upload is removed again when its message is not stored.
        Some(u) => {
            app.chat.check_upload_quota(&me.id, u.data.len()).await?;
            app.chat.send_upload(&me.id, m, u, Some(&extra)).await?
        }
        None => app.chat.send(&me.id, m, Some(&extra), None).await?,
    };
    let status = if out.inserted {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(json!({"message": out.message}))))
}

/// `GET /api/attachments/:id`: the file, to members of its chat only.
pub async fn attachment(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let (a, data) = app.chat.attachment(&me.id, &id).await?;
    let disposition = format!("attachment; filename=\"{}\"", a.file_name.replace('"', ""));
    Ok((
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CONTENT_DISPOSITION, disposition),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        HttpBody::from(data),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Members {
    #[serde(default)]
    user_ids: Vec<String>,
}

/// `POST /api/chats/:chatId/members {userIds}`: any member may add people.
pub async fn add_members(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
    Body(m): Body<Members>,
) -> Result<Json<Value>, Error> {
    Ok(Json(
        app.chat.add_members(&me.id, &chat_id, &m.user_ids).await?,
    ))
}

/// `DELETE /api/chats/:chatId/members/:userId`: the owner removes anyone; anyone removes themselves.
pub async fn remove_member(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path((chat_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, Error> {
    Ok(Json(
        app.chat.remove_member(&me.id, &chat_id, &user_id).await?,
    ))
}

/// `POST /api/chats/:chatId/leave`.
pub async fn leave(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
) -> Result<Json<Value>, Error> {
    Ok(Json(
        app.chat.remove_member(&me.id, &chat_id, &me.id).await?,
    ))
}

/// `POST /api/chats/:chatId/read`: marks the chat read, like `markAsRead`.
pub async fn read(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Path(chat_id): Path<String>,
) -> Result<Json<Value>, Error> {
    app.store.require_member(&chat_id, &me.id).await?;
    app.chat.read(&chat_id, &me.id).await?;
    Ok(Json(json!({"ok": true})))
}

#[derive(Deserialize)]
pub struct SearchQuery {
    q: String,
    limit: Option<i64>,
}

/// `GET /api/messages/search?q=`: full-text search in the caller's chats.
pub async fn search(
    State(app): State<Arc<App>>,
    AuthUser(me): AuthUser,
    Query(q): Query<SearchQuery>,
) -> Result<Json<Value>, Error> {
    if q.q.len() > 256 {
        return Err(Error::invalid("query is longer than 256 characters"));
    }
    let messages = app
        .store
        .search(&me.id, &q.q, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(json!({"messages": messages})))
}
