//! Profile pictures: uploaded as the body of `POST /api/users/me/avatar`,
//! kept beside the database under a random name, and served to anyone who
//! has the link at `GET /api/avatars/:id` (a directory shows them to every
//! user, so they carry no access check; the random name keeps them from
//! being listed). Only images are kept, typed by their first bytes.

use std::path::PathBuf;

use crate::chat::attachments::sniff;
use crate::error::{Error, Missing};

/// The URL prefix of a stored picture, as saved in `users.avatar`.
pub const URL_PREFIX: &str = "/api/avatars/";

/// The store of profile pictures.
pub struct Avatars {
    dir: PathBuf,
    max_bytes: usize,
}

impl Avatars {
    pub fn new(dir: PathBuf, max_bytes: usize) -> Avatars {
        Avatars { dir, max_bytes }
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Keeps `data` if it is a PNG, JPEG, GIF or WebP image; returns its URL.
    pub async fn store(&self, data: &[u8]) -> Result<String, Error> {
        if data.is_empty() {
            return Err(Error::invalid("the picture is empty"));
        }
        if data.len() > self.max_bytes {
            return Err(Error::too_large(format!(
                "a profile picture is at most {} bytes",
                self.max_bytes
            )));
        }
        if !matches!(
            sniff(data),
            "image/png" | "image/jpeg" | "image/gif" | "image/webp"
        ) {
            return Err(Error::invalid(
                "a profile picture must be a PNG, JPEG, GIF or WebP image",
            ));
        }
        let id = nodo_signaling::ids::new_sid("AV_");
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|source| Error::Io {
                context: "creating the avatars dir",
                source,
            })?;
        let path = self.dir.join(&id);
        if let Err(source) = tokio::fs::write(&path, data).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(Error::Io {
                context: "storing a profile picture",
                source,
            });
        }
        Ok(format!("{URL_PREFIX}{id}"))
    }

    /// The picture `id` (the last part of its URL) and its content type.
    pub async fn read(&self, id: &str) -> Result<(&'static str, Vec<u8>), Error> {
        let path = self.path(id).ok_or(Error::NotFound(Missing::Avatar))?;
        match tokio::fs::read(&path).await {
            Ok(data) => Ok((sniff(&data), data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(Missing::Avatar))
            }
            Err(source) => Err(Error::Io {
                context: "reading a profile picture",
                source,
            }),
        }
    }

    /// Removes the picture behind `url` when it is one of ours (a replaced
    /// picture); other URLs (an app's own) are left alone.
    pub async fn forget(&self, url: &str) {
        if let Some(path) = url.strip_prefix(URL_PREFIX).and_then(|id| self.path(id)) {
            let _ = tokio::fs::remove_file(path).await;
        }
    }

    /// The file of a well-formed id; `None` for anything else (no paths).
    fn path(&self, id: &str) -> Option<PathBuf> {
        let ok = id.len() <= 64
            && id.starts_with("AV_")
            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ok.then(|| self.dir.join(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[tokio::test]
    async fn keeps_images_only_and_serves_them_back_by_their_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let avatars = Avatars::new(dir.path().join("avatars"), 64);
        let url = avatars.store(PNG).await.expect("stored");
        let id = url.strip_prefix(URL_PREFIX).expect("our prefix");
        assert_eq!(
            avatars.read(id).await.expect("read"),
            ("image/png", PNG.to_vec())
        );

        assert!(matches!(
            avatars.store(b"<svg onload=alert(1)>").await,
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            avatars.store(&[0x89; 65]).await,
            Err(Error::TooLarge(_))
        ));
        for bad in ["../nodo.db", "AV_../../x", "AV_a/b", ""] {
            assert!(
                matches!(avatars.read(bad).await, Err(Error::NotFound(_))),
                "{bad}"
            );
        }

        avatars.forget(&url).await;
        assert!(matches!(avatars.read(id).await, Err(Error::NotFound(_))));
        avatars.forget("https://example.com/me.png").await;
    }
}
