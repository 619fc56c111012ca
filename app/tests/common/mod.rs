//! Opening the store under test: SQLite in the given directory, or, when
//! `NODO_TEST_PG` names a PostgreSQL server (`postgres://user@host:port`, as
//! `scripts/pg-scratch start` prints), a database of its own on that server
//! for each directory, so reopening a directory reopens its database.

// Each test crate uses part of this module.
#![allow(dead_code)]

use std::hash::{Hash, Hasher};
use std::path::Path;

use nodo_app::store::{Store, StoreOptions};
use sqlx::{Connection, PgConnection};

/// The PostgreSQL server the tests run on, if any.
pub fn postgres() -> Option<String> {
    std::env::var("NODO_TEST_PG")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_string())
}

/// Opens the store for `dir` on the backend under test.
pub async fn open(dir: &Path) -> Store {
    open_with(dir, StoreOptions::default()).await
}

/// [`open`] with explicit options.
pub async fn open_with(dir: &Path, options: StoreOptions) -> Store {
    let Some(server) = postgres() else {
        return Store::open_with(dir, options).await.expect("open SQLite");
    };
    let name = pg_name(dir);
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("reach the test PostgreSQL server");
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_optional(&mut admin)
        .await
        .expect("list databases");
    if exists.is_none() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the test database");
    }
    let _ = admin.close().await;
    Store::open_postgres(&format!("{server}/{name}"), options)
        .await
        .expect("open PostgreSQL")
}

/// The name of `dir`'s database on the PostgreSQL server.
fn pg_name(dir: &Path) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    format!("nodo_test_{:016x}", h.finish())
}

/// Runs `sqlite` or `postgres` (whichever matches the backend under test) on
/// `dir`'s database over a connection of its own, as another program would.
pub async fn execute_beside(dir: &Path, sqlite: &'static str, postgres: &'static str) {
    match self::postgres() {
        Some(server) => {
            let mut c = PgConnection::connect(&format!("{server}/{}", pg_name(dir)))
                .await
                .expect("second connection");
            sqlx::raw_sql(postgres)
                .execute(&mut c)
                .await
                .expect(postgres);
            let _ = c.close().await;
        }
        None => {
            let mut c = sqlx::SqliteConnection::connect(&format!(
                "sqlite://{}",
                dir.join("nodo.db").display()
            ))
            .await
            .expect("second connection");
            sqlx::raw_sql(sqlite).execute(&mut c).await.expect(sqlite);
            let _ = c.close().await;
        }
    }
}

/// Runs one statement (no parameters) straight on `dir`'s database on the
/// backend under test, behind the store's back: for tests that set up
/// what the store's API cannot (old timestamps, say).
pub async fn exec(dir: &Path, sql: &str) {
    match postgres() {
        Some(server) => {
            let mut db = PgConnection::connect(&format!("{server}/{}", pg_name(dir)))
                .await
                .expect("reach the test database");
            run(&mut db, sql).await;
        }
        None => {
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.join("nodo.db"));
            let mut db = sqlx::SqliteConnection::connect_with(&opts)
                .await
                .expect("open the test database");
            run(&mut db, sql).await;
        }
    }
}

async fn run<'c, E: sqlx::Executor<'c>>(db: E, sql: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(db)
        .await
        .expect("statement");
}
