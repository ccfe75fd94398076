//! Where the CLI's commands are carried out, behind one trait: [`Local`] runs them on the
//! database named by `DATABASE_URL` as the local operator; [`AdminClient`] sends them to a
//! gateway's admin API (`--server`) as the admin token's holder. Both reach the same
//! operations in [`crate::control`], so a command behaves the same either way, and its output
//! is printed from the same JSON.

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::Value;

use tollgate_core::ApiError;
use tollgate_core::config::Config;
use tollgate_store::Store;

use crate::admin_client::{AdminClient, ClientError, encode};
use crate::control::reply::ReportBody;
use crate::control::{Actor, Control, Reply, operator};

/// The body of a control plane's answer, or why there is none.
pub type Sent = Result<Bytes, ClientError>;

/// A control plane the CLI can send an operation to. The CLI awaits these on its one task, so
/// the futures need no `Send` bound.
#[allow(async_fn_in_trait)]
pub trait ControlPlane {
    /// `method path` (the admin API's path, with its query) with an optional JSON body: the
    /// body of the answer, or the API's error.
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Sent;

    /// Like [`ControlPlane::send`], for operations that answer JSON.
    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|_| ClientError::NotJson {
            url: path.to_string(),
            status: StatusCode::OK,
        })
    }

    async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.json(Method::GET, path, None).await
    }

    /// A text answer (a CSV report).
    async fn text(&self, path: &str) -> Result<String, ClientError> {
        let bytes = self.send(Method::GET, path, None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Every item of a list, following `next_after` until `has_more` is false.
    async fn list_all(&self, path: &str) -> Result<Vec<Value>, ClientError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        let join = if path.contains('?') { '&' } else { '?' };
        loop {
            let page_path = match &after {
                Some(a) => format!("{path}{join}limit=1000&after={}", encode(a)),
                None => format!("{path}{join}limit=1000"),
            };
            let page = self.get(&page_path).await?;
            if let Some(data) = page["data"].as_array() {
                items.extend(data.iter().cloned());
            }
            match (page["has_more"].as_bool(), page["next_after"].as_str()) {
                (Some(true), Some(next)) => after = Some(next.to_string()),
                _ => return Ok(items),
            }
        }
    }
}

/// The database in `DATABASE_URL`, as the local operator. An embedded SQLite file is migrated
/// on first use; a Postgres database without the schema gets the command that makes it.
pub struct Local {
    control: Control,
    store: Store,
    actor: Actor,
}

impl Local {
    /// `token_given`: an admin token was set (`--token`, `TOLLGATE_ADMIN_TOKEN`) although the
    /// command runs locally. If the embedded database does not exist either, the user almost
    /// certainly meant a gateway's `--server`: say so instead of creating an empty database.
    pub async fn open(config: &Config, token_given: bool) -> anyhow::Result<Local> {
        if token_given && let Some(path) = missing_sqlite_file(&config.store.database_url) {
            anyhow::bail!(
                "there is no database at {path}, and an admin token is set without --server. \
                 To manage a running gateway, set --server URL (or TOLLGATE_SERVER); to start \
                 a new local database here, unset TOLLGATE_ADMIN_TOKEN."
            );
        }
        let store = crate::app::open_store(config)
            .await?
            .with_budget_calendar(config.budgets.calendar());
        Ok(Local {
            control: Control::new(store.clone(), None),
            store,
            actor: operator(),
        })
    }

    pub async fn close(self) {
        self.store.close().await;
    }
}

impl ControlPlane for Local {
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Sent {
        let (path, query) = match path.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path, None),
        };
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let reply = match Control::route(&method, path) {
            Ok(routed) => self.control.run(&self.actor, routed, query, &body).await,
            Err(error) => Err(error),
        };
        match reply.map_err(refused)? {
            Reply::Json(_, value) => Ok(Bytes::from(value.to_string())),
            Reply::Report { body, .. } => Ok(match body {
                ReportBody::Json(value) => Bytes::from(value.to_string()),
                ReportBody::Csv { text, .. } => Bytes::from(text),
            }),
            Reply::Document(text) => Ok(Bytes::from_static(text.as_bytes())),
        }
    }
}

/// The file of a SQLite URL (`sqlite://tollgate.db?mode=rwc`, `sqlite:x.db`) when it does not
/// exist yet; `None` for other databases, in-memory ones and files that exist.
fn missing_sqlite_file(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    let in_memory = path.is_empty() || path.contains(":memory:");
    (!in_memory && !std::path::Path::new(path).exists()).then(|| path.to_string())
}

/// A gateway's admin API (`--server`).
impl ControlPlane for AdminClient {
    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Sent {
        self.request(method, path, body).await
    }
}

fn refused(error: ApiError) -> ClientError {
    ClientError::Api {
        status: StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        code: error.code.to_string(),
        message: error.message,
    }
}
