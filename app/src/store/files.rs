//! Uploaded bytes kept in the database (see `crate::files`).

use super::{now_ms, Store};
use crate::error::Error;

impl Store {
    /// Stores the bytes of file `id` of `kind`.
    pub async fn put_file(&self, kind: &str, id: &str, data: &[u8]) -> Result<(), Error> {
        sqlx::query("INSERT INTO files (kind, id, data, created_at) VALUES ($1, $2, $3, $4)")
            .bind(kind)
            .bind(id)
            .bind(data.to_vec())
            .bind(now_ms())
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The bytes of file `id` of `kind`, if stored.
    pub async fn file(&self, kind: &str, id: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(
            sqlx::query_scalar::<_, Vec<u8>>("SELECT data FROM files WHERE kind = $1 AND id = $2")
                .bind(kind)
                .bind(id)
                .fetch_optional(self.pool())
                .await?,
        )
    }

    /// Deletes file `id` of `kind` (nothing when it is not there).
    pub async fn delete_file(&self, kind: &str, id: &str) -> Result<(), Error> {
        sqlx::query("DELETE FROM files WHERE kind = $1 AND id = $2")
            .bind(kind)
            .bind(id)
            .execute(self.writer())
            .await?;
        Ok(())
    }

    /// The ids of the files of `kind` stored before `before_ms`.
    pub async fn files_before(&self, kind: &str, before_ms: i64) -> Result<Vec<String>, Error> {
        Ok(sqlx::query_scalar::<_, String>(
            "SELECT id FROM files WHERE kind = $1 AND created_at < $2",
        )
        .bind(kind)
        .bind(before_ms)
        .fetch_all(self.pool())
        .await?)
    }
}
