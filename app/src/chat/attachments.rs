//! Attachments: files stored beside the database, typed by their first bytes.
//! A file lives as long as the message that carries it: it is served only
//! while that message exists and is not deleted, removed when the message is
//! deleted, and an upload whose message is not stored leaves no file.

use serde_json::Value;

use super::{Chat, Outgoing};
use crate::error::{Error, Missing};
use crate::store::{Attachment, Message, SendOutcome};

/// A file a user uploads with a message.
pub struct Upload {
    /// The client's file name, cleaned of paths and control characters.
    pub file_name: String,
    pub data: Vec<u8>,
}

impl Upload {
    /// An upload with the client's file name made safe to store and show.
    pub fn new(file_name: &str, data: Vec<u8>) -> Upload {
        Upload {
            file_name: file_name
                .chars()
                .filter(|c| !c.is_control() && *c != '/' && *c != '\\')
                .take(200)
                .collect(),
            data,
        }
    }
}

/// Content types recognised from the file's first bytes; the client's claim is not trusted.
pub(crate) fn sniff(bytes: &[u8]) -> &'static str {
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

impl Chat {
    /// Stores an upload's file and record for `chat_id`; returns its id and
    /// the message content type (`image` or `file`).
    pub async fn store_upload(
        &self,
        chat_id: &str,
        uploader: &str,
        upload: Upload,
    ) -> Result<(String, &'static str), Error> {
        let id = nodo_signaling::ids::new_sid("AT_");
        self.attachments.put(&id, &upload.data).await?;
        let ct = sniff(&upload.data);
        let stored = self
            .store
            .add_attachment(
                &Attachment {
                    id: id.clone(),
                    chat_id: chat_id.to_string(),
                    file_name: upload.file_name,
                    content_type: ct.to_string(),
                    size: upload.data.len() as i64,
                },
                uploader,
            )
            .await;
        if let Err(e) = stored {
            self.attachments.remove(&id).await;
            return Err(e);
        }
        let kind = if ct.starts_with("image/") {
            "image"
        } else {
            "file"
        };
        Ok((id, kind))
    }

    /// Stores `upload` and sends the message `m` that carries it (its
    /// attachment and content type are the upload's). When the message is
    /// not stored (refused, failed, or a resend of one already stored), the
    /// upload is removed again.
    pub async fn send_upload(
        &self,
        sender: &str,
        mut m: Outgoing,
        upload: Upload,
        extra: Option<&Value>,
    ) -> Result<SendOutcome, Error> {
        let (id, kind) = self.store_upload(&m.chat_id, sender, upload).await?;
        m.attachment_id = Some(id.clone());
        m.content_type = kind.to_string();
        let out = self.send(sender, m, extra, None).await;
        if !matches!(&out, Ok(o) if o.inserted) {
            self.discard_upload(&id).await;
        }
        out
    }

    /// Removes an upload no message refers to: its record, then its file.
    async fn discard_upload(&self, id: &str) {
        match self.store.forget_upload(id).await {
            Ok(true) => self.attachments.remove(id).await,
            // A message refers to it after all: it stays.
            Ok(false) => {}
            // The record stays; the hourly sweep removes both later.
            Err(e) => e.log_if_internal(),
        }
    }

    /// After `m` was deleted: its attachment is marked removed and its file
    /// deleted. Failures are logged; the file is no longer served either way.
    pub(super) async fn drop_attachment(&self, m: &Message) {
        match self.store.remove_attachment_of(m.seq).await {
            Ok(Some(id)) => self.attachments.remove(&id).await,
            Ok(None) => {}
            Err(e) => e.log_if_internal(),
        }
    }

    /// An attachment's record and file, for a member of its chat, while the
    /// message that carries it exists and is not deleted (`NotFound` after).
    pub async fn attachment(&self, me: &str, id: &str) -> Result<(Attachment, Vec<u8>), Error> {
        let a = self
            .store
            .live_attachment(id)
            .await?
            .ok_or(Error::NotFound(Missing::Attachment))?;
        self.store.require_member(&a.chat_id, me).await?;
        let data = self
            .attachments
            .get(&a.id)
            .await?
            .ok_or(Error::NotFound(Missing::AttachmentFile))?;
        Ok((a, data))
    }
}

#[cfg(test)]
mod tests {
    use super::{sniff, Upload};

    #[test]
    fn types_come_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7"), "application/pdf");
        assert_eq!(sniff(b"plain words"), "text/plain");
        assert_eq!(sniff(&[0xff, 0x00, 0xfe]), "application/octet-stream");
    }

    #[test]
    fn file_names_lose_paths() {
        assert_eq!(
            Upload::new("../../etc/pa\nss", vec![]).file_name,
            "....etcpass"
        );
    }
}
