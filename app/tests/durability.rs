//! Durability of the SQLite store on a real database file: commits are
//! fsynced, the write-ahead log stays under its bound whatever the load, a
//! clean close leaves no log behind, and a full disk refuses writes without
//! harming what is stored.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nodo_app::error::Error;
use nodo_app::store::{NewMessage, Online, Store, StoreOptions};
use sqlx::Connection;

fn nobody_online() -> Online {
    Arc::new(|_: &str| false)
}

fn message(id: &str, chat: &str, sender: &str, content: String) -> NewMessage {
    NewMessage {
        id: id.into(),
        chat_id: chat.into(),
        sender: sender.into(),
        content,
        content_type: "text".into(),
        reply_to: None,
        attachment_id: None,
    }
}

/// Two users and their direct chat.
async fn chat(s: &Store) -> String {
    s.create_user("ana", "ana", "Ana", None).await.expect("ana");
    s.create_user("bob", "bob", "Bob", None).await.expect("bob");
    s.direct_chat("ana", "bob").await.expect("chat").0
}

fn size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().map(|m| m.len())
}

/// Opens the database file apart from the store.
async fn raw(dir: &Path) -> sqlx::SqliteConnection {
    sqlx::SqliteConnection::connect(&format!("sqlite://{}", dir.join("nodo.db").display()))
        .await
        .expect("raw connection")
}

async fn count_messages(dir: &Path) -> i64 {
    let mut c = raw(dir).await;
    sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut c)
        .await
        .expect("count")
}

async fn integrity(dir: &Path) -> String {
    let mut c = raw(dir).await;
    sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .expect("integrity_check")
}

#[tokio::test]
async fn every_commit_is_fsynced_in_wal_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open(dir.path()).await.expect("open");
    let d = s
        .durability()
        .await
        .expect("durability")
        .expect("SQLite reports its settings");
    assert_eq!(d.journal_mode, "wal");
    assert_eq!(d.synchronous, 2, "PRAGMA synchronous is FULL (2)");
    assert_eq!(d.wal_limit, 64 << 20);
    assert_eq!(d.journal_size_limit, 32 << 20);
    s.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_under_its_bound_through_a_burst_many_times_its_size() {
    const LIMIT: u64 = 2 << 20;
    const SENDERS: usize = 32;
    const EACH: usize = 150;
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Store::open_with(dir.path(), StoreOptions { wal_limit: LIMIT })
        .await
        .expect("open");
    let chat = chat(&s).await;
    let max_wal = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut senders = Vec::new();
    for k in 0..SENDERS {
        let (s, chat, max_wal) = (s.clone(), chat.clone(), max_wal.clone());
        senders.push(tokio::spawn(async move {
            for i in 0..EACH {
                let sender = if k % 2 == 0 { "ana" } else { "bob" };
                let m = message(&format!("m{k}-{i}"), &chat, sender, "x".repeat(1500));
                s.send(m, nobody_online()).await.expect("send");
                max_wal.fetch_max(s.wal_size(), Ordering::Relaxed);
            }
        }));
    }
    for t in senders {
        t.await.expect("sender");
    }
    let elapsed = t0.elapsed();
    let total = (SENDERS * EACH) as i64;
    s.close().await;
    let db = size(&dir.path().join("nodo.db")).expect("db file");
    let max_wal = max_wal.load(Ordering::Relaxed);
    eprintln!(
        "{total} messages in {elapsed:?}: largest WAL {max_wal} bytes, database {db} bytes, bound {LIMIT}"
    );
    // The burst wrote several times the bound: the database alone holds more.
    assert!(
        db > 2 * LIMIT,
        "the burst is larger than the bound ({db} bytes)"
    );
    assert!(max_wal > 0, "the WAL was sampled while in use");
    assert!(
        max_wal <= LIMIT,
        "largest WAL {max_wal} bytes, bound {LIMIT}"
    );
    assert_eq!(count_messages(dir.path()).await, total);
    assert_eq!(integrity(dir.path()).await, "ok");
}

#[tokio::test]
async fn a_clean_close_leaves_no_wal_and_a_reopen_sees_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = dir.path().join("nodo.db-wal");
    let s = Store::open(dir.path()).await.expect("open");
    let chat = chat(&s).await;
    let sends = (0..200).map(|i| {
        s.send(
            message(&format!("c{i}"), &chat, "ana", format!("hello {i}")),
            nobody_online(),
        )
    });
    for r in futures_util::future::join_all(sends).await {
        r.expect("send");
    }
    assert!(size(&wal).is_some_and(|n| n > 0), "the log is in use");
    s.close().await;
    assert!(
        size(&wal).is_none_or(|n| n == 0),
        "after close the log is gone or empty: {:?}",
        size(&wal)
    );
    // The closed store refuses instead of hanging.
    let late = s
        .send(
            message("late", &chat, "ana", "late".into()),
            nobody_online(),
        )
        .await;
    assert!(matches!(late, Err(Error::ShuttingDown)), "{:?}", late.err());

    let s = Store::open(dir.path()).await.expect("reopen");
    let page = s.history(&chat, 200, None, None).await.expect("history");
    let mut contents: Vec<String> = page.messages.into_iter().map(|m| m.content).collect();
    contents.sort();
    let mut expected: Vec<String> = (0..200).map(|i| format!("hello {i}")).collect();
    expected.sort();
    assert_eq!(contents, expected);
    s.close().await;
    assert_eq!(integrity(dir.path()).await, "ok");
}

#[tokio::test]
async fn an_idle_store_truncates_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal = dir.path().join("nodo.db-wal");
    let s = Store::open(dir.path()).await.expect("open");
    let chat = chat(&s).await;
    for i in 0..20 {
        s.send(
            message(&format!("i{i}"), &chat, "bob", "idle soon".into()),
            nobody_online(),
        )
        .await
        .expect("send");
    }
    assert!(size(&wal).is_some_and(|n| n > 0));
    let deadline = Instant::now() + Duration::from_secs(10);
    while size(&wal).is_some_and(|n| n > 0) {
        assert!(Instant::now() < deadline, "the idle log was not truncated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And it keeps working.
    s.send(message("after", &chat, "bob", "x".into()), nobody_online())
        .await
        .expect("send after truncation");
    s.close().await;
    assert_eq!(count_messages(dir.path()).await, 21);
}

#[tokio::test]
async fn a_full_disk_answers_507_storage_full() {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    let ack = Error::StorageFull.ack();
    assert_eq!(
        (ack["ok"].clone(), ack["code"].clone()),
        (false.into(), "storage_full".into())
    );
    let r = Error::StorageFull.into_response();
    assert_eq!(r.status(), axum::http::StatusCode::INSUFFICIENT_STORAGE);
    let body = r.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["error"], "storage_full");
    assert!(v["message"]
        .as_str()
        .is_some_and(|m| m.contains("storage is full")));
    // An attachment that finds the disk full says the same.
    let io = Error::Io {
        context: "writing the attachment",
        source: std::io::Error::from(std::io::ErrorKind::StorageFull),
    };
    assert_eq!(io.ack()["code"], "storage_full");
    assert_eq!(
        io.into_response().status(),
        axum::http::StatusCode::INSUFFICIENT_STORAGE
    );
}

/// A tmpfs of its own, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB, or says why it cannot.
    fn mount(mib: u32) -> Result<(Tmpfs, tempfile::TempDir), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok((Tmpfs(dir.path().to_path_buf()), dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test]
async fn a_full_disk_refuses_writes_harms_nothing_and_recovers() {
    let (fs, _dir) = match Tmpfs::mount(16) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_refuses_writes_harms_nothing_and_recovers: {why}");
            return;
        }
    };
    let data = fs.0.join("data");
    let s = Store::open_with(&data, StoreOptions { wal_limit: 1 << 20 })
        .await
        .expect("open");
    let chat = chat(&s).await;
    for i in 0..50 {
        s.send(
            message(&format!("before{i}"), &chat, "ana", format!("before {i}")),
            nobody_online(),
        )
        .await
        .expect("send before the disk fills");
    }
    let filler = fs.0.join("filler");
    fill(&filler);

    // Sends are refused once SQLite needs space it cannot get (the log may
    // still have room for a few). Every send is acknowledged and stored, or
    // refused as storage_full and not stored; nothing wedges.
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for i in 0..2000 {
        let id = format!("full{i}");
        let m = message(&id, &chat, "bob", "y".repeat(2000));
        match s.send(m, nobody_online()).await {
            Ok(_) => acked.push(id),
            Err(e) => {
                assert!(matches!(e, Error::StorageFull), "{e:?}");
                assert_eq!(e.code(), "storage_full");
                refused.push(id);
                if refused.len() == 5 {
                    break;
                }
            }
        }
    }
    eprintln!(
        "full disk: {} sends acknowledged after filling it, {} refused",
        acked.len(),
        refused.len()
    );
    assert_eq!(refused.len(), 5, "sends are refused on the full disk");
    let r = s.create_user("cyd", "cyd", "Cyd", None).await;
    if let Err(e) = &r {
        assert!(e.is_storage_full(), "{e:?}");
    }
    // Reads still work; what was acknowledged is there, what was refused is not.
    for id in &acked {
        assert!(s.message_by_id(id).await.expect("read").is_some(), "{id}");
    }
    for id in &refused {
        assert!(s.message_by_id(id).await.expect("read").is_none(), "{id}");
    }

    std::fs::remove_file(&filler).expect("free the space");
    s.send(
        message("after", &chat, "ana", "space again".into()),
        nobody_online(),
    )
    .await
    .expect("a send works once space returns");
    s.close().await;
    assert_eq!(count_messages(&data).await, 50 + acked.len() as i64 + 1);
    assert_eq!(integrity(&data).await, "ok");
}
