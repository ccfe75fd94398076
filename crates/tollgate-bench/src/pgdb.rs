//! The `tollgate-pg` target's database: a fresh, uniquely named PostgreSQL database created for
//! the run over an admin connection, and dropped again when the value is (on error too).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, Executor, PgConnection};

use tollgate_store::testdb::with_database;

use crate::error::BenchError;

/// How long to wait for the server before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A database that exists for as long as this value does.
#[derive(Debug)]
pub struct Database {
    /// What tollgate connects to.
    pub url: String,
    admin_url: String,
    name: String,
    server_version: String,
}

impl Database {
    /// Creates `tollgate_bench_<pid>_<ms>` on the server of `admin_url`. An unreachable server
    /// is [`BenchError::Unavailable`], so the target is listed as not run rather than fatal.
    pub async fn create(admin_url: &str) -> Result<Database, BenchError> {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // Lowercase letters, digits and underscores: nothing to quote.
        let name = format!(
            "tollgate_bench_{}_{}",
            std::process::id(),
            since_epoch.as_millis()
        );
        let mut admin = connect(admin_url).await?;
        let server_version: Result<(String,), _> = sqlx::query_as("SHOW server_version")
            .fetch_one(&mut admin)
            .await;
        let created = admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await;
        let _ = admin.close().await;
        created
            .map_err(|e| BenchError::Unavailable(format!("cannot create database {name}: {e}")))?;
        Ok(Database {
            url: with_database(admin_url, &name),
            admin_url: admin_url.to_owned(),
            name,
            server_version: server_version.map_or_else(|_| "?".into(), |(v,)| v),
        })
    }

    /// For the report: the server, where it is, and that the database is the run's own.
    pub fn describe(&self) -> String {
        format!(
            "PostgreSQL {} at {} over TCP, a fresh database for this run (migrated by \
             `tollgate migrate`, dropped at the end)",
            self.server_version,
            host(&self.admin_url)
        )
    }
}

async fn connect(admin_url: &str) -> Result<PgConnection, BenchError> {
    let unreachable = |why: String| {
        BenchError::Unavailable(format!(
            "PostgreSQL at {} is unreachable ({why}); start it or pass --postgres-url",
            redact(admin_url)
        ))
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(admin_url)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer in {} s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

impl Drop for Database {
    /// `Drop` cannot await and runs inside the bench's runtime, so the drop runs on a
    /// short-lived thread with its own runtime, joined so the database is gone when this
    /// returns. `WITH (FORCE)` ends connections a gateway that was killed left behind.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = connect(&admin_url).await.map_err(|e| e.to_string())?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                let outcome = admin.execute(sqlx::AssertSqlSafe(sql)).await;
                let _ = admin.close().await;
                outcome.map(|_| ()).map_err(|e| e.to_string())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping database {} panicked", self.name),
        }
    }
}

/// `host:port` of a connection URL.
fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    match (rest.find('@'), rest.find(':')) {
        (Some(at), Some(colon)) if colon < at => {
            format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &rest[..colon],
                &rest[at..]
            )
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_named_without_user_or_database() {
        assert_eq!(host("postgres://u:p@127.0.0.1:5432/db"), "127.0.0.1:5432");
        assert_eq!(host("postgres://127.0.0.1:5432/db?x=1"), "127.0.0.1:5432");
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h:5432/db"), "postgres://u@h:5432/db");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_unavailable_not_an_error() {
        let closed = crate::procs::free_addr().unwrap();
        let outcome = Database::create(&format!("postgres://postgres@{closed}/postgres")).await;
        assert!(
            matches!(outcome, Err(BenchError::Unavailable(_))),
            "{outcome:?}"
        );
    }
}
