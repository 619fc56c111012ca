//! Where uploaded bytes live: files in a directory of the data dir (a node on
//! its own SQLite), or rows of the database several nodes share
//! (PostgreSQL), so that every node serves what any node received.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::store::{now_ms, Backend, Store};

/// One kind of upload's bytes.
pub enum Files {
    /// `<dir>/<id>`.
    Dir(PathBuf),
    /// The `files` table, rows of `kind`.
    Shared { store: Store, kind: &'static str },
}

impl Files {
    /// Files of `kind` in `dir`, or in the database when it is shared.
    pub fn new(dir: PathBuf, store: &Store, kind: &'static str) -> Files {
        match store.backend() {
            Backend::Sqlite => Files::Dir(dir),
            Backend::Postgres => Files::Shared {
                store: store.clone(),
                kind,
            },
        }
    }

    /// Keeps `data` as file `id` (node-made ids only); nothing of a failed
    /// write is kept.
    pub async fn put(&self, id: &str, data: &[u8]) -> Result<(), Error> {
        match self {
            Files::Dir(dir) => {
                let path = path_of(dir, id).ok_or(Error::invalid("not a file id"))?;
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|source| Error::Io {
                        context: "creating an uploads dir",
                        source,
                    })?;
                if let Err(source) = tokio::fs::write(&path, data).await {
                    // A partly written file (a full disk) is not kept either.
                    let _ = tokio::fs::remove_file(&path).await;
                    return Err(Error::Io {
                        context: "storing an upload",
                        source,
                    });
                }
                Ok(())
            }
            Files::Shared { store, kind } => store.put_file(kind, id, data).await,
        }
    }

    /// The bytes of file `id`; `None` when there is no such file.
    pub async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Files::Dir(dir) => {
                let Some(path) = path_of(dir, id) else {
                    return Ok(None);
                };
                match tokio::fs::read(&path).await {
                    Ok(data) => Ok(Some(data)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(source) => Err(Error::Io {
                        context: "reading an upload",
                        source,
                    }),
                }
            }
            Files::Shared { store, kind } => store.file(kind, id).await,
        }
    }

    /// Removes file `id`; one already gone is fine, a failure is logged.
    pub async fn remove(&self, id: &str) {
        match self {
            Files::Dir(dir) => {
                let Some(path) = path_of(dir, id) else { return };
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => tracing::debug!(file = %id, "upload removed"),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(file = %id, "removing an upload: {e}"),
                }
            }
            Files::Shared { store, kind } => {
                if let Err(e) = store.delete_file(kind, id).await {
                    e.log_if_internal();
                }
            }
        }
    }

    /// The ids of files older than `age`.
    pub async fn older_than(&self, age: Duration) -> Vec<String> {
        match self {
            Files::Dir(dir) => {
                let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
                    return Vec::new();
                };
                let mut old = Vec::new();
                while let Ok(Some(entry)) = entries.next_entry().await {
                    let fresh = entry
                        .metadata()
                        .await
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_none_or(|elapsed| elapsed < age);
                    if let (false, Some(name)) = (fresh, entry.file_name().to_str()) {
                        old.push(name.to_string());
                    }
                }
                old
            }
            Files::Shared { store, kind } => {
                let before = now_ms() - age.as_millis() as i64;
                match store.files_before(kind, before).await {
                    Ok(ids) => ids,
                    Err(e) => {
                        e.log_if_internal();
                        Vec::new()
                    }
                }
            }
        }
    }
}

/// The path of a node-made id (`AT_…`, `AV_…`); `None` for anything that
/// could name another file.
fn path_of(dir: &Path, id: &str) -> Option<PathBuf> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| dir.join(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_keeps_node_made_ids_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::Dir(dir.path().join("up"));
        files.put("AT_1", b"bytes").await.expect("put");
        assert_eq!(
            files.get("AT_1").await.expect("get"),
            Some(b"bytes".to_vec())
        );
        for bad in ["../x", "AT_1/..", "", ".hidden"] {
            assert!(files.put(bad, b"x").await.is_err(), "{bad}");
            assert_eq!(files.get(bad).await.expect("get"), None, "{bad}");
        }
        assert!(files.older_than(Duration::from_secs(3600)).await.is_empty());
        assert_eq!(
            files.older_than(Duration::ZERO).await,
            vec!["AT_1".to_string()]
        );
        files.remove("AT_1").await;
        files.remove("AT_1").await;
        assert_eq!(files.get("AT_1").await.expect("get"), None);
    }
}
