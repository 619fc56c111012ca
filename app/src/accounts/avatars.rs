//! Profile pictures: uploaded as the body of `POST /api/users/me/avatar`,
//! kept under a random name (beside the database, or in it when nodes
//! share one: `crate::files`), and served to anyone who has the link at
//! `GET /api/avatars/:id` (a directory shows them to every user, so they
//! carry no access check; the random name keeps them from being listed).
//! Only images are kept, typed by their first bytes.

use crate::chat::attachments::sniff;
use crate::error::{Error, Missing};
use crate::files::Files;

/// The URL prefix of a stored picture, as saved in `users.avatar`.
pub const URL_PREFIX: &str = "/api/avatars/";

/// The store of profile pictures.
pub struct Avatars {
    files: Files,
    max_bytes: usize,
}

impl Avatars {
    pub fn new(files: Files, max_bytes: usize) -> Avatars {
        Avatars { files, max_bytes }
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
        self.files.put(&id, data).await?;
        Ok(format!("{URL_PREFIX}{id}"))
    }

    /// The picture `id` (the last part of its URL) and its content type.
    pub async fn read(&self, id: &str) -> Result<(&'static str, Vec<u8>), Error> {
        if !well_formed(id) {
            return Err(Error::NotFound(Missing::Avatar));
        }
        match self.files.get(id).await? {
            Some(data) => Ok((sniff(&data), data)),
            None => Err(Error::NotFound(Missing::Avatar)),
        }
    }

    /// Removes the picture behind `url` when it is one of ours (a replaced
    /// picture); other URLs (an app's own) are left alone.
    pub async fn forget(&self, url: &str) {
        if let Some(id) = url.strip_prefix(URL_PREFIX).filter(|id| well_formed(id)) {
            self.files.remove(id).await;
        }
    }
}

/// Whether `id` is one the node made (`AV_…`); anything else (a path) is not.
fn well_formed(id: &str) -> bool {
    id.len() <= 64
        && id.starts_with("AV_")
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[tokio::test]
    async fn keeps_images_only_and_serves_them_back_by_their_url() {
        let dir = tempfile::tempdir().expect("tempdir");
        let avatars = Avatars::new(Files::Dir(dir.path().join("avatars")), 64);
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
