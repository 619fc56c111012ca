//! Attachments: files stored beside the database, typed by their first bytes.

use super::Chat;
use crate::error::Error;
use crate::store::Attachment;

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
        tokio::fs::create_dir_all(&self.attachments_dir)
            .await
            .map_err(|source| Error::Io {
                context: "creating the attachments dir",
                source,
            })?;
        tokio::fs::write(self.attachments_dir.join(&id), &upload.data)
            .await
            .map_err(|source| Error::Io {
                context: "storing an attachment",
                source,
            })?;
        let ct = sniff(&upload.data);
        self.store
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
            .await?;
        let kind = if ct.starts_with("image/") {
            "image"
        } else {
            "file"
        };
        Ok((id, kind))
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
