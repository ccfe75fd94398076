//! The lab: the mock upstream, nginx and tollgate (on SQLite and on PostgreSQL, each exporting
//! OTLP to its own receiver) running as separate processes, each target with its address, the
//! credential the client sends it, and the process to measure.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderValue;
use tempfile::TempDir;
use tokio::process::Command;

use crate::error::BenchError;
use crate::nginx;
use crate::options::Options;
use crate::otlp::{self, Receiver};
use crate::pgdb::Database;
use crate::procs::{self, Ready, Service};
use crate::scenario::TargetKind;

/// The upstream key tollgate is configured with (the mock accepts anything).
const UPSTREAM_KEY: &str = "sk-bench-upstream";
const ADMIN_TOKEN: &str = "tga-bench-admin-token";
/// What the bench sends to read a gateway's `/metrics` on its main listener.
pub const METRICS_TOKEN: &str = "bench-metrics-token";
/// How long a gateway may take to drain and flush (ledger, telemetry) when asked to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Where a target can be reached and what to measure there.
pub struct Target {
    pub kind: TargetKind,
    /// `http://host:port`
    pub origin: String,
    pub authorization: HeaderValue,
    /// The proxy process (none for direct: there is no hop).
    pub process: Option<Service>,
    /// The gateway's OTLP receiver, when export is on.
    receiver: Option<Receiver>,
}

impl Target {
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(|p| p.pid)
    }
}

/// A target that could not be started, and why (shown in the report instead of numbers).
pub struct Unavailable {
    pub kind: TargetKind,
    pub reason: String,
}

/// What one gateway's receiver got by the time the gateway had stopped, or why it is unknown.
pub type OtlpCounts = BTreeMap<TargetKind, Result<otlp::Counts, String>>;

pub struct Lab {
    pub mock: Service,
    pub targets: Vec<Target>,
    pub unavailable: Vec<Unavailable>,
    /// Why the gateways run without OTLP export, when they do.
    pub otlp_off: Option<String>,
    /// Declared after `targets`: dropped (with its database) once the gateways are gone.
    postgres: Option<Database>,
    dir: TempDir,
}

impl Lab {
    /// Starts the mock and each requested target. nginx or PostgreSQL missing is recorded
    /// in `unavailable`, and a missing Python venv in `otlp_off`; neither is fatal.
    pub async fn start(
        tollgate: &Path,
        nginx_bin: Result<&Path, &String>,
        opts: &Options,
    ) -> Result<Lab, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-bench-")
            .tempdir()?;
        let mut lab = Lab {
            mock: start_mock(tollgate).await?,
            targets: Vec::new(),
            unavailable: Vec::new(),
            otlp_off: None,
            postgres: None,
            dir,
        };
        let mut python = if opts.no_otlp {
            Err("off for this run (--no-otlp)".to_owned())
        } else {
            otlp::python()
        };
        for &kind in &opts.targets {
            let started = match kind {
                TargetKind::Direct => Ok(Target {
                    kind,
                    origin: origin(lab.mock.addr),
                    authorization: HeaderValue::from_static("Bearer sk-anything"),
                    process: None,
                    receiver: None,
                }),
                TargetKind::Nginx => start_nginx(nginx_bin, lab.dir.path(), lab.mock.addr)
                    .await
                    .map(|service| Target {
                        kind,
                        origin: origin(service.addr),
                        authorization: HeaderValue::from_static("Bearer sk-anything"),
                        process: Some(service),
                        receiver: None,
                    }),
                TargetKind::Tollgate => {
                    lab.start_gateway(kind, tollgate, None, &mut python, opts)
                        .await
                }
                TargetKind::TollgatePg => match Database::create(&opts.postgres_url).await {
                    Ok(db) => {
                        let url = db.url.clone();
                        lab.postgres = Some(db);
                        lab.start_gateway(kind, tollgate, Some(&url), &mut python, opts)
                            .await
                    }
                    Err(e) => Err(e),
                },
            };
            match started {
                Ok(target) => lab.targets.push(target),
                // Without nginx or PostgreSQL the rest still runs; a gateway that fails to
                // start on a database it has is a finding, not a missing tool.
                Err(e) if kind == TargetKind::Nginx || matches!(e, BenchError::Unavailable(_)) => {
                    lab.unavailable.push(Unavailable {
                        kind,
                        reason: e.to_string(),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        lab.otlp_off = python.err();
        Ok(lab)
    }

    /// A gateway on `database_url` (a fresh SQLite file when `None`), exporting to a receiver
    /// of its own while `python` is usable; a receiver that fails to start turns export off.
    async fn start_gateway(
        &self,
        kind: TargetKind,
        tollgate: &Path,
        database_url: Option<&str>,
        python: &mut Result<PathBuf, String>,
        opts: &Options,
    ) -> Result<Target, BenchError> {
        let receiver = match python.as_deref() {
            Ok(path) => match Receiver::start(path).await {
                Ok(receiver) => Some(receiver),
                Err(e) => {
                    *python = Err(e.to_string());
                    None
                }
            },
            Err(_) => None,
        };
        let env = receiver.as_ref().map(Receiver::env).unwrap_or_default();
        let (service, key) = start_tollgate_with(
            tollgate,
            self.dir.path(),
            self.mock.addr,
            !opts.no_limits,
            database_url,
            &env,
        )
        .await?;
        Ok(Target {
            kind,
            origin: origin(service.addr),
            authorization: bearer(&key)?,
            process: Some(service),
            receiver,
        })
    }

    /// What the `tollgate-pg` target runs on, when it runs.
    pub fn postgres(&self) -> Option<String> {
        self.postgres.as_ref().map(Database::describe)
    }

    /// Fails if any process under test has died (a crash must not read as a slow target).
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        self.mock.check_alive()?;
        for target in &mut self.targets {
            if let Some(process) = &mut target.process {
                process.check_alive()?;
            }
        }
        Ok(())
    }

    /// Stops everything and drops the PostgreSQL database. A gateway that exports is asked to
    /// stop (SIGTERM) so it flushes its last spans and logs first; then its receiver's counts
    /// are read.
    pub async fn stop(self) -> OtlpCounts {
        let mut counts = OtlpCounts::new();
        for target in self.targets {
            let Some(process) = target.process else {
                continue;
            };
            match target.receiver {
                Some(receiver) => {
                    process.terminate(SHUTDOWN_GRACE).await;
                    let read = receiver.counts().await.map_err(|e| e.to_string());
                    counts.insert(target.kind, read);
                    receiver.stop().await;
                }
                None => process.stop().await,
            }
        }
        self.mock.stop().await;
        drop(self.postgres);
        counts
    }
}

fn bearer(key: &str) -> Result<HeaderValue, BenchError> {
    HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| BenchError::Cli {
        command: "key create".into(),
        detail: format!("printed an unusable key {key:?}"),
    })
}

fn origin(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

pub async fn start_mock(tollgate: &Path) -> Result<Service, BenchError> {
    let addr = procs::free_addr()?;
    let mut command = Command::new(tollgate);
    command
        .args(["mock-upstream", "--no-record", "--listen"])
        .arg(addr.to_string())
        .env_remove("TOLLGATE_CONFIG");
    // The mock announces itself before binding, so wait for the port itself.
    Service::spawn("mock upstream", command, addr, Ready::Port(addr)).await
}

async fn start_nginx(
    nginx_bin: Result<&Path, &String>,
    dir: &Path,
    upstream: SocketAddr,
) -> Result<Service, BenchError> {
    let binary = nginx_bin.map_err(|reason| BenchError::Unavailable(reason.clone()))?;
    let conf_dir = dir.join("nginx");
    std::fs::create_dir_all(&conf_dir)?;
    nginx::start(binary, &conf_dir, procs::free_addr()?, upstream).await
}

/// A fresh SQLite database with one team and key (made through the CLI, as an admin would),
/// with `limits`, a team budget and rate limit that never bind (so their admission cost is
/// measured), then `tollgate serve` on it. Returns the gateway and the team key.
pub async fn start_tollgate(
    tollgate: &Path,
    dir: &Path,
    upstream: SocketAddr,
    limits: bool,
) -> Result<(Service, String), BenchError> {
    start_tollgate_on(tollgate, dir, upstream, limits, None).await
}

/// [`start_tollgate`] on the database at `database_url` (an empty one, migrated by `tollgate`
/// itself) instead of a fresh SQLite file.
pub async fn start_tollgate_on(
    tollgate: &Path,
    dir: &Path,
    upstream: SocketAddr,
    limits: bool,
    database_url: Option<&str>,
) -> Result<(Service, String), BenchError> {
    start_tollgate_with(tollgate, dir, upstream, limits, database_url, &[]).await
}

/// [`start_tollgate_on`] with `extra` environment variables for the gateway.
pub async fn start_tollgate_with(
    tollgate: &Path,
    dir: &Path,
    upstream: SocketAddr,
    limits: bool,
    database_url: Option<&str>,
    extra: &[(&'static str, String)],
) -> Result<(Service, String), BenchError> {
    let data = tempfile::Builder::new()
        .prefix("tollgate-")
        .tempdir_in(dir)?
        .keep();
    let mut env = gateway_env(&data, upstream, procs::free_addr()?, database_url);
    env.extend(extra.iter().cloned());
    if database_url.is_some() {
        // Only SQLite is migrated on first use; PostgreSQL is migrated on purpose.
        procs::run_cli(tollgate, &["migrate"], &env, &data).await?;
    }
    procs::run_cli(tollgate, &["team", "create", "bench"], &env, &data).await?;
    let out = procs::run_cli(tollgate, &["key", "create", "--team", "bench"], &env, &data).await?;
    let key = out
        .split_whitespace()
        .find(|w| w.starts_with("tg-"))
        .ok_or_else(|| BenchError::Cli {
            command: "key create --team bench".into(),
            detail: format!("no tg-… key in its output: {out:?}"),
        })?
        .to_owned();
    if limits {
        let budget = [
            "budget",
            "set",
            "--team",
            "bench",
            "--period",
            "month",
            "--limit-usd",
            "1000000",
        ];
        procs::run_cli(tollgate, &budget, &env, &data).await?;
        let rate = [
            "rate-limit",
            "set",
            "--team",
            "bench",
            "--rpm",
            "100000000",
            "--tpm",
            "4000000000",
        ];
        procs::run_cli(tollgate, &rate, &env, &data).await?;
    }
    let listen = env
        .iter()
        .find(|(name, _)| *name == "TOLLGATE_LISTEN")
        .and_then(|(_, v)| v.parse().ok())
        .ok_or_else(|| BenchError::Internal("no listen address for tollgate".into()))?;
    let mut command = Command::new(tollgate);
    command
        .arg("serve")
        .current_dir(&data)
        .env_remove("TOLLGATE_CONFIG");
    for (name, value) in &env {
        command.env(name, value);
    }
    let service = Service::spawn(
        "tollgate",
        command,
        listen,
        Ready::LogLine("tollgate is serving"),
    )
    .await?;
    Ok((service, key))
}

fn gateway_env(
    data: &Path,
    upstream: SocketAddr,
    listen: SocketAddr,
    database_url: Option<&str>,
) -> Vec<(&'static str, String)> {
    let db: PathBuf = data.join("tollgate.db");
    let database_url = database_url.map_or_else(
        || format!("sqlite://{}?mode=rwc", db.display()),
        str::to_owned,
    );
    vec![
        ("TOLLGATE_LISTEN", listen.to_string()),
        ("TOLLGATE_UPSTREAM_URL", format!("http://{upstream}/v1")),
        ("TOLLGATE_UPSTREAM_KEY", UPSTREAM_KEY.into()),
        ("DATABASE_URL", database_url),
        ("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN.into()),
        ("TOLLGATE_METRICS_TOKEN", METRICS_TOKEN.into()),
    ]
}
