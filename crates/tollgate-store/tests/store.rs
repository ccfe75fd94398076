//! The store's behaviour, run once against SQLite and once against PostgreSQL: every suite
//! function below is instantiated for both backends by `both_backends!` at the bottom.
// Clippy's allow-*-in-tests covers `#[test]` functions only, not the suite functions they call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use sqlx::Row;
use tollgate_core::time::now_ms;
use tollgate_core::{AuthError, KeyCache, KeyHash};
use tollgate_store::testdb::TestDb;
use tollgate_store::{AdminBootstrap, Backend, KeySync, Role, Store, StoreError};

async fn migrated(db: &TestDb) -> Store {
    let store = Store::connect(&db.url).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// A raw pool on the same database, for looking at what is actually stored.
async fn raw_pool(db: &TestDb) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&db.url).await.expect("raw connect")
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

async fn migrations_run_twice_are_a_no_op(db: TestDb) {
    let store = migrated(&db).await;
    store.migrate().await.expect("second migrate");
    store.ping().await.expect("ping");
    let raw = raw_pool(&db).await;
    let rev: i64 = sqlx::query_scalar("SELECT rev FROM revision WHERE id = 1")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(rev, 0);
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&raw)
        .await
        .unwrap();
    // Every migration file applied exactly once (both backends carry the same set).
    let files = std::fs::read_dir(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../migrations/sqlite"
    ))
    .unwrap()
    .count();
    assert_eq!(applied, files as i64, "each migration once");
    assert!(store.list_teams().await.unwrap().is_empty());
}

async fn teams_are_created_listed_and_found_by_id_or_name(db: TestDb) {
    let store = migrated(&db).await;
    let platform = store.create_team("platform", Some("CC-100")).await.unwrap();
    let data = store.create_team("  data  ", None).await.unwrap();
    assert!(
        platform.id.starts_with("tm_") && platform.id.len() == 15,
        "{}",
        platform.id
    );
    assert_eq!(platform.cost_centre.as_deref(), Some("CC-100"));
    assert!(!platform.disabled);
    assert!((now_ms() - platform.created_at_ms).abs() < 60_000);
    assert_eq!(data.name, "data");
    assert_eq!(data.cost_centre, None);

    let listed = store.list_teams().await.unwrap();
    assert_eq!(
        listed,
        vec![data.clone(), platform.clone()],
        "ordered by name"
    );
    assert_eq!(
        store.team(&platform.id).await.unwrap(),
        Some(platform.clone())
    );
    assert_eq!(store.team("platform").await.unwrap(), Some(platform));
    assert_eq!(store.team("nobody").await.unwrap(), None);
    assert!(matches!(
        store.create_team(" ", None).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.create_team("tm_abc", None).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn duplicate_team_name_is_a_conflict(db: TestDb) {
    let store = migrated(&db).await;
    store.create_team("platform", None).await.unwrap();
    let err = store
        .create_team("platform", Some("other"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(msg) if msg.contains("platform")),
        "{err:?}"
    );
    assert_eq!(store.list_teams().await.unwrap().len(), 1);
}

async fn concurrent_creates_of_one_name_yield_exactly_one_team(db: TestDb) {
    let store = migrated(&db).await;
    let attempts = (0..4).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.create_team("racers", None).await })
    });
    let mut created = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    assert_eq!(created, 1);
}

async fn issued_key_authenticates_after_sync_and_only_its_hash_is_stored(db: TestDb) {
    let store = migrated(&db).await;
    let team = store.create_team("platform", Some("CC-1")).await.unwrap();
    let issued = store.create_key(&team.id, "ci", None).await.unwrap();
    assert!(issued.secret.starts_with(&format!("tg-{}-", issued.key.id)));
    assert_eq!(issued.key.team_id, team.id);
    assert_eq!(issued.key.team_name, "platform");
    assert_eq!(issued.key.revoked_at_ms, None);

    let cache = Arc::new(KeyCache::new());
    let mut sync = KeySync::new(store.clone(), Arc::clone(&cache));
    assert_eq!(sync.sync_once().await.unwrap(), 1);
    let record = cache
        .authenticate(Some(&bearer(&issued.secret)), now_ms())
        .unwrap();
    assert_eq!(record.id, issued.key.id);
    assert_eq!(record.name, "ci");
    assert_eq!(record.team.name, "platform");
    assert_eq!(record.team.cost_centre.as_deref(), Some("CC-1"));
    assert!(!record.team.disabled);

    let raw = raw_pool(&db).await;
    let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
        .bind(&issued.key.id)
        .fetch_one(&raw)
        .await
        .unwrap();
    let mut stored = Vec::new();
    for i in 0..row.len() {
        if let Ok(text) = row.try_get::<Option<String>, _>(i) {
            stored.push(text.unwrap_or_default());
        } else {
            stored.push(
                row.try_get::<Option<i64>, _>(i)
                    .unwrap()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    let secret_part = issued.secret.rsplit('-').next().unwrap();
    for value in &stored {
        assert!(
            !value.contains(&issued.secret) && !value.contains(secret_part),
            "secret at rest: {stored:?}"
        );
    }
    let hash: String = row.try_get("key_hash").unwrap();
    assert_eq!(hash, KeyHash::of(&issued.secret).to_hex());
}

async fn keys_are_listed_fetched_and_tied_to_an_existing_team(db: TestDb) {
    let store = migrated(&db).await;
    let a = store.create_team("a", None).await.unwrap();
    let b = store.create_team("b", None).await.unwrap();
    let expires = now_ms() + 86_400_000;
    let ka = store
        .create_key(&a.id, "laptop", Some(expires))
        .await
        .unwrap()
        .key;
    let kb = store.create_key(&b.id, "ci", None).await.unwrap().key;
    assert_eq!(ka.expires_at_ms, Some(expires));

    // Oldest first; keys made within one millisecond fall back to id order.
    let mut both = vec![ka.clone(), kb.clone()];
    both.sort_by(|x, y| (x.created_at_ms, &x.id).cmp(&(y.created_at_ms, &y.id)));
    assert_eq!(store.list_keys(None).await.unwrap(), both);
    assert_eq!(
        store.list_keys(Some(&b.id)).await.unwrap(),
        vec![kb.clone()]
    );
    assert_eq!(store.list_keys(Some("tm_nothere")).await.unwrap(), vec![]);
    assert_eq!(store.key(&ka.id).await.unwrap(), Some(ka));
    assert_eq!(store.key("nope").await.unwrap(), None);
    let err = store.create_key("tm_nothere", "x", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert!(matches!(
        store.create_key(&a.id, "", None).await,
        Err(StoreError::Invalid(_))
    ));
}

async fn revoked_key_is_refused_by_another_replica_after_its_next_sync(db: TestDb) {
    let admin_side = migrated(&db).await;
    let team = admin_side.create_team("platform", None).await.unwrap();
    let keep = admin_side.create_key(&team.id, "keep", None).await.unwrap();
    let issued = admin_side
        .create_key(&team.id, "doomed", None)
        .await
        .unwrap();

    let replica = Store::connect(&db.url).await.unwrap();
    let cache = Arc::new(KeyCache::new());
    let mut sync = KeySync::new(replica, Arc::clone(&cache));
    assert_eq!(sync.sync_once().await.unwrap(), 2);
    assert!(
        cache
            .authenticate(Some(&bearer(&issued.secret)), now_ms())
            .is_ok()
    );

    let revoked = admin_side
        .revoke_key(&issued.key.id)
        .await
        .unwrap()
        .unwrap();
    let first_revocation = revoked.revoked_at_ms.expect("revocation time");
    assert_eq!(
        sync.sync_once().await.unwrap(),
        1,
        "only the revoked key changed"
    );
    assert_eq!(
        cache
            .authenticate(Some(&bearer(&issued.secret)), now_ms())
            .err(),
        Some(AuthError::Revoked)
    );
    assert!(
        cache
            .authenticate(Some(&bearer(&keep.secret)), now_ms())
            .is_ok()
    );

    // Revoking again keeps the first time; unknown keys are None.
    let again = admin_side
        .revoke_key(&issued.key.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.revoked_at_ms, Some(first_revocation));
    assert_eq!(admin_side.revoke_key("nope").await.unwrap(), None);
}

async fn key_records_since_returns_nothing_when_nothing_changed(db: TestDb) {
    let store = migrated(&db).await;
    let empty = store.key_records_since(0).await.unwrap();
    assert!(empty.records.is_empty());
    assert_eq!(empty.rev, 0);

    let team = store.create_team("platform", None).await.unwrap();
    store.create_key(&team.id, "a", None).await.unwrap();
    store.create_key(&team.id, "b", None).await.unwrap();
    let all = store.key_records_since(0).await.unwrap();
    assert_eq!(all.records.len(), 2);
    assert_eq!(all.rev, 3, "team, then two keys");

    let none = store.key_records_since(all.rev).await.unwrap();
    assert!(none.records.is_empty());
    assert_eq!(none.rev, all.rev);
    // A failed change (unknown team) rolls its revision back too.
    assert!(store.create_key("tm_nothere", "x", None).await.is_err());
    let still_none = store.key_records_since(all.rev).await.unwrap();
    assert!(still_none.records.is_empty());

    let cache = Arc::new(KeyCache::new());
    let mut sync = KeySync::new(store.clone(), cache);
    assert_eq!(sync.sync_once().await.unwrap(), 2);
    assert_eq!(sync.sync_once().await.unwrap(), 0);
    assert_eq!(sync.rev(), Some(all.rev));
}

async fn bootstrap_admin_token_is_generated_once_and_resolves(db: TestDb) {
    let store = migrated(&db).await;
    let token = generated(&store).await;
    assert!(token.starts_with("tga-"), "{token}");
    assert_eq!(
        store.ensure_admin_token(None).await.unwrap(),
        AdminBootstrap::Existing
    );

    let principal = store
        .admin_for_token(&token)
        .await
        .unwrap()
        .expect("resolves");
    assert_eq!(principal.name, "bootstrap");
    assert_eq!(principal.role, Role::Admin);
    assert_eq!(principal.team_id, None);
    assert_eq!(store.admin_for_token("tga-wrong").await.unwrap(), None);

    let raw = raw_pool(&db).await;
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM admin_tokens")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(stored, KeyHash::of(&token).to_hex());

    // Once the only admin token is revoked, the next start mints a new one.
    sqlx::query("UPDATE admin_tokens SET revoked_at_ms = $1")
        .bind(now_ms())
        .execute(&raw)
        .await
        .unwrap();
    assert_eq!(store.admin_for_token(&token).await.unwrap(), None);
    let fresh = generated(&store).await;
    assert_ne!(fresh, token);
    assert!(store.admin_for_token(&fresh).await.unwrap().is_some());
}

async fn env_admin_token_replaces_the_bootstrap_token(db: TestDb) {
    let store = migrated(&db).await;
    let first = generated(&store).await;
    assert_eq!(
        store
            .ensure_admin_token(Some("my own admin secret"))
            .await
            .unwrap(),
        AdminBootstrap::EnvToken
    );
    assert_eq!(store.admin_for_token(&first).await.unwrap(), None);
    let principal = store
        .admin_for_token("my own admin secret")
        .await
        .unwrap()
        .expect("resolves");
    assert_eq!(
        (principal.name.as_str(), principal.role),
        ("bootstrap", Role::Admin)
    );

    // A later env token replaces the earlier one, and an env token means nothing is generated.
    assert_eq!(
        store.ensure_admin_token(Some("rotated")).await.unwrap(),
        AdminBootstrap::EnvToken
    );
    assert_eq!(
        store.admin_for_token("my own admin secret").await.unwrap(),
        None
    );
    assert!(store.admin_for_token("rotated").await.unwrap().is_some());
    assert_eq!(
        store.ensure_admin_token(None).await.unwrap(),
        AdminBootstrap::Existing
    );
    assert!(matches!(
        store.ensure_admin_token(Some("  ")).await,
        Err(StoreError::Invalid(_))
    ));
}

/// A freshly generated bootstrap token; panics if none was generated.
async fn generated(store: &Store) -> String {
    match store.ensure_admin_token(None).await.unwrap() {
        AdminBootstrap::Generated(token) => token,
        other => panic!("expected a generated token, got {other:?}"),
    }
}

async fn revoked_env_admin_token_stays_revoked_when_started_again_with_it(db: TestDb) {
    let store = migrated(&db).await;
    assert_eq!(
        store.ensure_admin_token(Some("env secret")).await.unwrap(),
        AdminBootstrap::EnvToken
    );
    let revoked = store
        .revoke_admin_token("bootstrap")
        .await
        .unwrap()
        .unwrap()
        .revoked_at_ms
        .expect("revoked");

    // The next start, with the same TOLLGATE_ADMIN_TOKEN: still revoked, said so, not audited.
    for _ in 0..2 {
        assert_eq!(
            store.ensure_admin_token(Some("env secret")).await.unwrap(),
            AdminBootstrap::EnvTokenRevoked {
                revoked_at_ms: revoked
            }
        );
        assert_eq!(store.admin_for_token("env secret").await.unwrap(), None);
    }
    assert!(store.list_audit(None, 10).await.unwrap().is_empty());

    // A new token in the environment replaces the revoked one, and the audit log says so.
    assert_eq!(
        store.ensure_admin_token(Some("new secret")).await.unwrap(),
        AdminBootstrap::EnvToken
    );
    assert!(store.admin_for_token("new secret").await.unwrap().is_some());
    assert_eq!(store.admin_for_token("env secret").await.unwrap(), None);
    let audit = store.list_audit(None, 10).await.unwrap();
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].target, "bootstrap");
    assert_eq!(audit[0].actor_id, "environment");
    assert_eq!(audit[0].before.as_ref().unwrap()["revoked_at_ms"], revoked);
    assert!(audit[0].after.as_ref().unwrap()["revoked_at_ms"].is_null());
}

async fn key_sync_run_polls_until_shutdown(db: TestDb) {
    let store = migrated(&db).await;
    let team = store.create_team("platform", None).await.unwrap();
    let cache = Arc::new(KeyCache::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sync = KeySync::new(store.clone(), Arc::clone(&cache));
    // Spawning checks the loop is `Send + 'static`, as the gateway needs.
    let task = tokio::spawn(sync.run(std::time::Duration::from_millis(20), async {
        let _ = stopped.await;
    }));
    let issued = store.create_key(&team.id, "late", None).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while cache
        .authenticate(Some(&bearer(&issued.secret)), now_ms())
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "key never reached the cache"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task)
        .await
        .expect("run stops on shutdown")
        .unwrap();
}

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(TestDb::sqlite()).await } )*
        }
        mod postgres {
            use super::*;
            $( #[tokio::test] async fn $name() { super::$name(TestDb::postgres().await).await } )*
        }
    };
}

both_backends!(
    migrations_run_twice_are_a_no_op,
    teams_are_created_listed_and_found_by_id_or_name,
    duplicate_team_name_is_a_conflict,
    concurrent_creates_of_one_name_yield_exactly_one_team,
    issued_key_authenticates_after_sync_and_only_its_hash_is_stored,
    keys_are_listed_fetched_and_tied_to_an_existing_team,
    revoked_key_is_refused_by_another_replica_after_its_next_sync,
    key_records_since_returns_nothing_when_nothing_changed,
    bootstrap_admin_token_is_generated_once_and_resolves,
    env_admin_token_replaces_the_bootstrap_token,
    revoked_env_admin_token_stays_revoked_when_started_again_with_it,
    key_sync_run_polls_until_shutdown,
);

#[tokio::test]
async fn sqlite_files_are_created_in_wal_mode_with_a_busy_timeout() {
    let db = TestDb::sqlite();
    let store = migrated(&db).await;
    assert_eq!(store.backend(), Backend::Sqlite);
    // A second Store on the same file sees WAL (a property of the file) and its own busy timeout.
    let other = Store::connect(&db.url).await.unwrap();
    other.ping().await.unwrap();
    let raw = raw_pool(&db).await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&raw)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    store.close().await;
    other.close().await;
}

#[tokio::test]
async fn sqlite_url_without_mode_creates_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert!(path.exists());
    let store = Store::connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap();
    assert!(store.list_teams().await.unwrap().is_empty());
}

#[tokio::test]
async fn postgres_backend_is_reported() {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    store.close().await;
    assert!(store.ping().await.is_err(), "closed pool refuses work");
}

#[tokio::test]
async fn unknown_schemes_and_unreachable_servers_are_connect_errors() {
    let err = Store::connect("mysql://root@localhost/db")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Connect(msg) if msg.contains("mysql")),
        "{err:?}"
    );
    let err = Store::connect("postgres://u:hunter2@127.0.0.1:1/db")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Connect(msg) if !msg.contains("hunter2")),
        "{err:?}"
    );
}
