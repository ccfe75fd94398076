//! The lab: the mock upstream, nginx and tollgate running as separate processes, each target
//! with its address, the credential the client sends it, and the process to measure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http::HeaderValue;
use tempfile::TempDir;
use tokio::process::Command;

use crate::error::BenchError;
use crate::nginx;
use crate::procs::{self, Ready, Service};
use crate::scenario::TargetKind;

/// The upstream key tollgate is configured with (the mock accepts anything).
const UPSTREAM_KEY: &str = "sk-bench-upstream";
const ADMIN_TOKEN: &str = "tga-bench-admin-token";
/// What the bench sends to read a gateway's `/metrics` on its main listener.
pub const METRICS_TOKEN: &str = "bench-metrics-token";

/// Where a target can be reached and what to measure there.
pub struct Target {
    pub kind: TargetKind,
    /// `http://host:port`
    pub origin: String,
    pub authorization: HeaderValue,
    /// The proxy process (none for direct: there is no hop).
    pub process: Option<Service>,
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

pub struct Lab {
    pub mock: Service,
    pub targets: Vec<Target>,
    pub unavailable: Vec<Unavailable>,
    _dir: TempDir,
}

impl Lab {
    /// Starts the mock and each requested target. nginx missing is recorded, not fatal.
    pub async fn start(
        tollgate: &Path,
        nginx_bin: Result<&Path, &String>,
        kinds: &[TargetKind],
        limits: bool,
    ) -> Result<Lab, BenchError> {
        let dir = tempfile::Builder::new()
            .prefix("tollgate-bench-")
            .tempdir()?;
        let mock = start_mock(tollgate).await?;
        let mut targets = Vec::new();
        let mut unavailable = Vec::new();
        for &kind in kinds {
            match kind {
                TargetKind::Direct => targets.push(Target {
                    kind,
                    origin: origin(mock.addr),
                    authorization: HeaderValue::from_static("Bearer sk-anything"),
                    process: None,
                }),
                TargetKind::Nginx => match start_nginx(nginx_bin, dir.path(), mock.addr).await {
                    Ok(service) => targets.push(Target {
                        kind,
                        origin: origin(service.addr),
                        authorization: HeaderValue::from_static("Bearer sk-anything"),
                        process: Some(service),
                    }),
                    Err(e) => unavailable.push(Unavailable {
                        kind,
                        reason: e.to_string(),
                    }),
                },
                TargetKind::Tollgate => {
                    let (service, key) =
                        start_tollgate(tollgate, dir.path(), mock.addr, limits).await?;
                    let authorization =
                        HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                            BenchError::Cli {
                                command: "key create".into(),
                                detail: format!("printed an unusable key {key:?}"),
                            }
                        })?;
                    targets.push(Target {
                        kind,
                        origin: origin(service.addr),
                        authorization,
                        process: Some(service),
                    });
                }
            }
        }
        Ok(Lab {
            mock,
            targets,
            unavailable,
            _dir: dir,
        })
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

    pub async fn stop(self) {
        for target in self.targets {
            if let Some(process) = target.process {
                process.stop().await;
            }
        }
        self.mock.stop().await;
    }
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
