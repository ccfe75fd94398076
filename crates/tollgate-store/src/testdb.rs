//! Throwaway databases for tests (feature `test-support`): a SQLite file in a temporary directory,
//! or a fresh PostgreSQL database that is dropped again when the [`TestDb`] is.
//!
//! Tests must never pass by skipping, so an unreachable PostgreSQL is a panic that says how to
//! start it.
#![allow(clippy::panic, reason = "test support: failing loudly is the point")]

mod cluster;
pub use cluster::Cluster;

use rand::Rng;
use sqlx::AnyConnection;
use sqlx::{Connection, Executor};

use crate::store::redact;

/// Where `TestDb::postgres` creates its databases unless `TOLLGATE_TEST_POSTGRES_URL` says otherwise.
pub const DEFAULT_POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists for as long as this value does. Pass `url` to `Store::connect`.
#[derive(Debug)]
pub struct TestDb {
    pub url: String,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Holding the directory keeps the file (and its WAL siblings) until drop.
    Sqlite(#[allow(dead_code, reason = "held for its Drop")] tempfile::TempDir),
    Postgres {
        admin_url: String,
        database: String,
    },
}

impl TestDb {
    /// A new SQLite file, `sqlite://<tempdir>/tollgate.db?mode=rwc`.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap_or_else(|e| {
            panic!("cannot create a temporary directory for a test database: {e}")
        });
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("tollgate.db").display()
        );
        TestDb {
            url,
            kind: Kind::Sqlite(dir),
        }
    }

    /// A new, empty database `tollgate_test_<random>` on the server named by
    /// `TOLLGATE_TEST_POSTGRES_URL` (default [`DEFAULT_POSTGRES_ADMIN_URL`]), whose user must be
    /// allowed to create databases. Panics if the server cannot be reached.
    pub async fn postgres() -> TestDb {
        sqlx::any::install_default_drivers();
        let admin_url = std::env::var("TOLLGATE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_POSTGRES_ADMIN_URL.to_owned());
        let database = format!("tollgate_test_{}", random_suffix());
        let mut admin = AnyConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL tests need a server at {} (set TOLLGATE_TEST_POSTGRES_URL to use \
                 another) but connecting failed: {e}\nStart the local one with \
                 `pg_ctlcluster --skip-systemctl-redirect 15 main start`.",
                    redact(&admin_url)
                )
            });
        // The name is `tollgate_test_` plus lowercase alphanumerics: nothing to quote or escape.
        let create = format!("CREATE DATABASE {database}");
        admin
            .execute(sqlx::AssertSqlSafe(create))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {database}: {e}"));
        let _ = admin.close().await;
        TestDb {
            url: with_database(&admin_url, &database),
            kind: Kind::Postgres {
                admin_url,
                database,
            },
        }
    }
}

impl Drop for TestDb {
    /// Drops a Postgres test database, best effort. `Drop` cannot await and usually runs inside a
    /// test's runtime (where blocking on it would deadlock), so the drop runs on a short-lived
    /// thread with its own runtime, joined so the database is gone when this returns. `WITH
    /// (FORCE)` (PostgreSQL 13+) ends connections the test's pool still holds.
    fn drop(&mut self) {
        let Kind::Postgres {
            admin_url,
            database,
        } = &self.kind
        else {
            return;
        };
        let (admin_url, database) = (admin_url.clone(), database.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = AnyConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                let drop = format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)");
                admin
                    .execute(sqlx::AssertSqlSafe(drop))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("warning: could not drop test database: {e}");
        }
    }
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..16)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// `url` with its database path replaced by `database`, keeping any query string.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_swapped_in_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(with_database("postgres://u@h", "t1"), "postgres://u@h/t1");
        assert_eq!(
            with_database("postgresql://u@h/db?sslmode=disable", "t1"),
            "postgresql://u@h/t1?sslmode=disable"
        );
    }
}
