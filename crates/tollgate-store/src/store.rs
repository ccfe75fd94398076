//! The connection pool: picking the backend from the URL, SQLite's file settings, migrations, and
//! the revision bump every team or key change starts with.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, AnyPool, Connection, Executor};

use tollgate_core::budget::Calendar;

use crate::error::{Result, StoreError};
use crate::ledger::LedgerCache;

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a SQLite connection waits for another writer (the CLI and a running gateway share the
/// file) before giving up with "database is locked".
const SQLITE_BUSY_TIMEOUT_MS: u32 = 10_000;
/// SQLite has one writer at a time; a few connections are enough for concurrent readers.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// How long to wait for a pooled connection, including retrying an unreachable server at connect
/// time: long enough to ride out a database restart, short enough for the CLI to fail promptly.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which database a [`Store`] talks to, decided by the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `sqlite:` / `sqlite://` and `postgres://` / `postgresql://`; anything else is refused.
    pub fn from_url(url: &str) -> Result<Backend> {
        let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "" => Err(StoreError::Connect(format!(
                "database URL {:?} has no scheme; use sqlite://<file> or postgres://…",
                redact(url)
            ))),
            other => Err(StoreError::Connect(format!(
                "unsupported database URL scheme {other:?}; use sqlite://<file> or postgres://…"
            ))),
        }
    }
}

/// A database's schema against this build's migrations ([`Store::schema_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    /// No tollgate migration has been applied (a new, empty database).
    Empty { latest: i64 },
    /// Migrated by an older release: `applied` is the newest migration run, `latest` this
    /// build's newest.
    Behind { applied: i64, latest: i64 },
    /// Every migration this build knows is applied (or newer ones, from a newer release).
    Current,
}

/// The control-plane database. Cheap to clone: clones share one pool.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// Ledger partitions and interned names known to exist, shared by clones.
    pub(crate) ledger_cache: Arc<LedgerCache>,
    /// The time zone budget windows start in (`[budgets] timezone`).
    pub(crate) budget_calendar: Calendar,
}

impl Store {
    /// Opens a pool. SQLite files are created if missing (unless the URL sets `mode=`), switched to
    /// WAL so readers never block the writer, and wait up to 10 s for a busy writer.
    pub async fn connect(url: &str) -> Result<Store> {
        let backend = Backend::from_url(url)?;
        sqlx::any::install_default_drivers();
        let (url, options) = match backend {
            Backend::Postgres => (
                url.to_owned(),
                AnyPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT),
            ),
            Backend::Sqlite => (
                sqlite_url(url),
                AnyPoolOptions::new()
                    .max_connections(SQLITE_MAX_CONNECTIONS)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            let pragma = format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}");
                            conn.execute(sqlx::AssertSqlSafe(pragma)).await?;
                            Ok(())
                        })
                    }),
            ),
        };
        let pool = options
            .connect(&url)
            .await
            .map_err(|e| StoreError::Connect(format!("{}: {e}", redact(&url))))?;
        if backend == Backend::Sqlite {
            // WAL is a property of the file, so setting it once per open is enough; on a file
            // already in WAL mode this is a no-op that takes no lock.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|e| StoreError::Connect(format!("{}: enabling WAL: {e}", redact(&url))))?;
        }
        Ok(Store {
            pool,
            backend,
            ledger_cache: Arc::default(),
            budget_calendar: Calendar::default(),
        })
    }

    /// This store with budget windows in `calendar`'s time zone.
    pub fn with_budget_calendar(mut self, calendar: Calendar) -> Store {
        self.budget_calendar = calendar;
        self
    }

    pub fn budget_calendar(&self) -> Calendar {
        self.budget_calendar
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the embedded migrations for this backend; already-applied ones are skipped.
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Migrate(e.to_string()))
    }

    /// Where this database's schema stands against this build's migrations, without changing
    /// anything: so a gateway that does not migrate on start can say what to run instead of
    /// failing on the first missing table.
    pub async fn schema_state(&self) -> Result<SchemaState> {
        let (migrator, exists) = match self.backend {
            Backend::Postgres => (
                &POSTGRES_MIGRATIONS,
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = '_sqlx_migrations'",
            ),
            Backend::Sqlite => (
                &SQLITE_MIGRATIONS,
                "SELECT COUNT(*) FROM sqlite_master \
                 WHERE type = 'table' AND name = '_sqlx_migrations'",
            ),
        };
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let tables: i64 = sqlx::query_scalar(exists).fetch_one(&self.pool).await?;
        if tables == 0 {
            return Ok(SchemaState::Empty { latest });
        }
        let applied: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations WHERE success",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(if applied == 0 {
            SchemaState::Empty { latest }
        } else if applied < latest {
            SchemaState::Behind { applied, latest }
        } else {
            SchemaState::Current
        })
    }

    /// One round trip on a pooled connection, for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        conn.ping().await?;
        Ok(())
    }

    /// Closes every pooled connection; later calls on this store (or its clones) fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Takes the next revision. Called first in every transaction that changes a team or key: the
/// row lock it takes is held until commit, so revisions become visible in order. On SQLite, writing
/// first also makes the transaction take the write lock up front (waiting out `busy_timeout`)
/// instead of failing when it upgrades from a read.
pub(crate) async fn bump_revision(conn: &mut AnyConnection) -> Result<i64> {
    let rev = sqlx::query_scalar("UPDATE revision SET rev = rev + 1 WHERE id = 1 RETURNING rev")
        .fetch_one(conn)
        .await?;
    Ok(rev)
}

/// Adds `mode=rwc` to a SQLite URL that sets no mode, so a fresh install creates its file.
fn sqlite_url(url: &str) -> String {
    let (_, query) = url.split_once('?').unwrap_or((url, ""));
    if query.split('&').any(|pair| pair.starts_with("mode=")) {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The URL with any password replaced by `***`, for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(
            Backend::from_url("sqlite://a.db").ok(),
            Some(Backend::Sqlite)
        );
        assert_eq!(Backend::from_url("sqlite:a.db").ok(), Some(Backend::Sqlite));
        assert_eq!(
            Backend::from_url("postgres://h/db").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("postgresql://h/db").ok(),
            Some(Backend::Postgres)
        );
        let err = Backend::from_url("mysql://root:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"mysql\""), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }

    #[test]
    fn sqlite_urls_create_the_file_unless_a_mode_is_given() {
        assert_eq!(sqlite_url("sqlite://t.db"), "sqlite://t.db?mode=rwc");
        assert_eq!(
            sqlite_url("sqlite:t.db?cache=shared"),
            "sqlite:t.db?cache=shared&mode=rwc"
        );
        assert_eq!(sqlite_url("sqlite://t.db?mode=ro"), "sqlite://t.db?mode=ro");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://t.db"), "sqlite://t.db");
    }

    #[tokio::test]
    async fn sqlite_connections_use_wal_and_wait_for_busy_writers() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let busy_ms: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(busy_ms >= 5_000, "busy_timeout {busy_ms} ms");

        // Why flags are 0/1 integers: Any decodes `bool` only from a native boolean, and SQLite
        // has none, so reading a flag column as `bool` fails there.
        store.create_team("t", None).await.unwrap();
        let as_bool = sqlx::query_scalar::<_, bool>("SELECT disabled FROM teams")
            .fetch_one(&store.pool)
            .await;
        assert!(as_bool.is_err(), "{as_bool:?}");
    }
}
