//! Accounts in the store on a real SQLite file: one key per username
//! whatever its case or Unicode form, app identities kept apart from local
//! accounts, sessions that end, and the migration's handling of accounts
//! that already differ only in case.

mod common;

use nodo_app::error::Error;
use nodo_app::store::{AppUser, Store};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Executor, SqliteConnection};

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = common::open(dir.path()).await;
    (store, dir)
}

#[tokio::test]
async fn usernames_are_unique_whatever_their_case_or_form() {
    let (s, _dir) = store().await;
    s.create_user("Ana", "Ana", "Ana", Some("hash"))
        .await
        .expect("create");
    for taken in ["ana", "ANA", "ａｎａ", "aNa"] {
        assert!(
            matches!(
                s.create_user(taken, taken, "x", Some("hash")).await,
                Err(Error::UsernameTaken)
            ),
            "{taken} was registered beside Ana"
        );
    }
    // Login finds the account by any spelling of its key.
    let u = s.local_user("ANA", "ana").await.expect("query");
    assert_eq!(u.map(|u| u.id), Some("Ana".to_string()));
    // An app identity's spelling can't be registered either.
    assert!(matches!(
        s.ensure_app_user("Zoe", "Zoe", true).await,
        Ok(AppUser::Ready(_, true))
    ));
    assert!(s.name_taken("zoe", "zoe").await.expect("query"));
    assert!(matches!(
        s.create_user("zoe", "zoe", "z", Some("hash")).await,
        Err(Error::UsernameTaken)
    ));
}

#[tokio::test]
async fn app_identities_cannot_take_a_local_name_when_guarded() {
    let (s, _dir) = store().await;
    s.create_user("ana", "ana", "Ana", Some("hash"))
        .await
        .expect("create");
    // Guarded (mode both): the exact name and any spelling of it are refused.
    for id in ["ana", "Ana", "ＡＮＡ"] {
        assert_eq!(
            s.ensure_app_user(id, "Mallory", true).await.expect("query"),
            AppUser::HeldLocally,
            "{id}"
        );
    }
    assert!(s.user("Ana").await.expect("query").is_none());
    // Unguarded (mode app: the app owns every identity) it is the same user.
    match s.ensure_app_user("ana", "x", false).await.expect("query") {
        AppUser::Ready(u, created) => assert_eq!((u.id.as_str(), created), ("ana", false)),
        other => panic!("{other:?}"),
    }
    // App identities that differ only in case stay apart (the app's ids are exact).
    assert!(matches!(
        s.ensure_app_user("UserX", "x", true).await,
        Ok(AppUser::Ready(_, true))
    ));
    assert!(matches!(
        s.ensure_app_user("userx", "x", true).await,
        Ok(AppUser::Ready(_, true))
    ));
}

#[tokio::test]
async fn sessions_end_one_by_one_or_all_at_once_and_are_capped() {
    let (s, _dir) = store().await;
    s.create_user("ana", "ana", "Ana", Some("hash"))
        .await
        .expect("create");
    let later = nodo_app::store::now_ms() + 3_600_000;
    for i in 0..5 {
        let dropped = s
            .create_session(&format!("s{i}"), "ana", later, 3)
            .await
            .expect("session");
        // Beyond three, the oldest goes.
        let expected: Vec<String> = if i >= 3 {
            vec![format!("s{}", i - 3)]
        } else {
            vec![]
        };
        assert_eq!(dropped, expected);
    }
    assert!(s.session("s0").await.expect("query").is_none());
    assert_eq!(
        s.session("s4").await.expect("query"),
        Some(("ana".to_string(), later))
    );
    assert!(s.delete_session("s4").await.expect("delete"));
    assert!(!s.delete_session("s4").await.expect("delete again"));
    let mut ended = s.delete_sessions("ana", Some("s3")).await.expect("all");
    ended.sort();
    assert_eq!(ended, vec!["s2".to_string()]);
    assert!(s.session("s3").await.expect("query").is_some());
    // Expired sessions are dropped at the user's next login.
    s.create_session("old", "ana", 1, 10).await.expect("old");
    s.create_session("new", "ana", later, 10)
        .await
        .expect("new");
    assert!(s.session("old").await.expect("query").is_none());
    assert!(s.session("new").await.expect("query").is_some());
}

#[tokio::test]
async fn the_migration_keys_existing_accounts_deterministically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SqliteConnectOptions::new()
        .filename(dir.path().join("old.db"))
        .create_if_missing(true);
    let mut db = SqliteConnection::connect_with(&opts).await.expect("db");
    for sql in [
        include_str!("../migrations/0001_chat.sql"),
        include_str!("../migrations/0002_calls.sql"),
        include_str!("../migrations/0003_meetings.sql"),
        include_str!("../migrations/0004_push.sql"),
        include_str!("../migrations/0005_webhooks.sql"),
    ] {
        db.execute(sql).await.expect("old schema");
    }
    // Two local accounts that differ only in case (the older one wins), and
    // an app identity spelled like a third.
    db.execute(
        "INSERT INTO users (id, username, name, avatar, password_hash, created_at) VALUES \
         ('Ana', 'Ana', 'A', '', 'h', 2), ('ana', 'ana', 'a', '', 'h', 1), \
         ('bob', 'bob', 'b', '', 'h', 1), ('BOB', 'BOB', 'B', '', NULL, 1)",
    )
    .await
    .expect("users");
    db.execute(include_str!("../migrations/0006_accounts.sql"))
        .await
        .expect("migration");
    let keys: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, name_key FROM users ORDER BY id")
            .fetch_all(&mut db)
            .await
            .expect("keys");
    assert_eq!(
        keys,
        vec![
            ("Ana".to_string(), None),
            ("BOB".to_string(), None),
            ("ana".to_string(), Some("ana".to_string())),
            ("bob".to_string(), Some("bob".to_string())),
        ]
    );
}

#[test]
fn accounts_config_mistakes_are_named() {
    use nodo_app::config::{AccountsConfig, AccountsMode};
    let ok = AccountsConfig::default();
    assert_eq!(ok.mode, AccountsMode::Both);
    assert!(ok.problems().is_empty(), "{:?}", ok.problems());
    let bad = AccountsConfig {
        trusted_proxies: vec!["10.0.0.0/8".into(), "::1".into(), "proxy.local".into()],
        login_free_failures: 10,
        login_lockout_failures: 10,
        max_sessions_per_user: 0,
        ..AccountsConfig::default()
    };
    let problems = bad.problems().join("\n");
    assert!(
        problems.contains("\"proxy.local\" is not an IP address"),
        "{problems}"
    );
    assert!(!problems.contains("10.0.0.0/8"), "{problems}");
    assert!(
        problems.contains("free_failures must be below"),
        "{problems}"
    );
    assert!(problems.contains("max_sessions_per_user"), "{problems}");
    let mode: AccountsConfig = serde_json::from_str(r#"{"mode": "app"}"#).expect("json");
    assert_eq!(mode.mode, AccountsMode::App);
}
