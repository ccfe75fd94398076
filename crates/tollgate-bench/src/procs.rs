//! The processes under test: spawned as children (so their CPU and memory are theirs alone),
//! waited on until ready, their stderr drained into a short log, killed when dropped.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;

use crate::error::BenchError;

/// Lines of a child's stderr kept to explain a failure.
const LOG_LINES: usize = 40;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How to tell that a freshly spawned service is ready.
pub enum Ready<'a> {
    /// A line on stderr containing this text (tollgate, the mock).
    LogLine(&'a str),
    /// The port accepts connections (nginx, which logs nothing on a clean start).
    Port(SocketAddr),
}

/// A running child process; killed (SIGKILL) when dropped.
pub struct Service {
    pub name: String,
    pub pid: u32,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Service {
    pub async fn spawn(
        name: &str,
        mut command: Command,
        addr: SocketAddr,
        ready: Ready<'_>,
    ) -> Result<Service, BenchError> {
        let program = PathBuf::from(command.as_std().get_program());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                name: name.to_owned(),
                program,
                source,
            })?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Vanished(name.to_owned()))?;
        let log = Arc::new(Mutex::new(VecDeque::new()));
        let (seen_tx, seen_rx) = oneshot::channel();
        let wanted = match ready {
            Ready::LogLine(text) => Some(text.to_owned()),
            Ready::Port(_) => None,
        };
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(drain(stderr, Arc::clone(&log), wanted.clone(), seen_tx));
        }
        let mut service = Service {
            name: name.to_owned(),
            pid,
            addr,
            child,
            log,
        };
        let became_ready = match ready {
            Ready::LogLine(_) => matches!(
                tokio::time::timeout(READY_TIMEOUT, seen_rx).await,
                Ok(Ok(()))
            ),
            Ready::Port(port) => wait_for_port(port, &mut service.child, READY_TIMEOUT).await,
        };
        if !became_ready {
            let why = match service.child.try_wait() {
                Ok(Some(status)) => format!("exited before it was ready ({status})"),
                _ => format!("was not ready within {} s", READY_TIMEOUT.as_secs()),
            };
            return Err(BenchError::NotReady {
                name: name.to_owned(),
                why,
                log: service.recent_log(),
            });
        }
        Ok(service)
    }

    /// The last lines the process wrote to stderr.
    pub fn recent_log(&self) -> String {
        self.log
            .lock()
            .map(|log| log.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Fails with the process's last words if it has exited.
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        if self.alive() {
            Ok(())
        } else {
            Err(BenchError::NotReady {
                name: self.name.clone(),
                why: "exited during the benchmark".into(),
                log: self.recent_log(),
            })
        }
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }

    /// Asks the process to stop (SIGTERM, through `kill`: this crate has no unsafe code) and
    /// waits up to `grace` for it to exit on its own, as tollgate does after flushing its
    /// ledger and telemetry; kills it if it does not.
    pub async fn terminate(mut self, grace: Duration) {
        let asked = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !asked
            || tokio::time::timeout(grace, self.child.wait())
                .await
                .is_err()
        {
            self.stop().await;
        }
    }
}

async fn drain(
    stderr: tokio::process::ChildStderr,
    log: Arc<Mutex<VecDeque<String>>>,
    wanted: Option<String>,
    seen: oneshot::Sender<()>,
) {
    let mut seen = Some(seen);
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(text) = &wanted
            && line.contains(text.as_str())
            && let Some(tx) = seen.take()
        {
            let _ = tx.send(());
        }
        if let Ok(mut log) = log.lock() {
            if log.len() == LOG_LINES {
                log.pop_front();
            }
            log.push_back(line);
        }
    }
}

/// Polls until `addr` accepts a connection; gives up early if the child exits.
async fn wait_for_port(addr: SocketAddr, child: &mut Child, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return true;
        }
        if !matches!(child.try_wait(), Ok(None)) {
            // Let the stderr drain catch the last words before they are reported.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A loopback address with a port nobody is listening on right now.
pub fn free_addr() -> Result<SocketAddr, BenchError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The `tollgate` binary: `--tollgate`, else next to this executable (both are built into
/// `target/release` by the documented command).
pub fn tollgate_binary(explicit: Option<&Path>) -> Result<PathBuf, BenchError> {
    let path = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("tollgate"))
            .unwrap_or_else(|| PathBuf::from("tollgate")),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(BenchError::MissingBinary {
            what: "tollgate",
            hint: format!(
                "{} does not exist; run `cargo build --release -p tollgate -p tollgate-bench` first",
                path.display()
            ),
        })
    }
}

/// Runs a short `tollgate` CLI command (team/key management) and returns its stdout.
///
/// The commands work on the local database the gateway is about to serve, so they run without
/// the admin token: with one set and no `--server`, the CLI refuses a database that does not
/// exist yet (it takes the token as a sign that a running gateway was meant).
pub async fn run_cli(
    tollgate: &Path,
    args: &[&str],
    env: &[(&str, String)],
    dir: &Path,
) -> Result<String, BenchError> {
    const ADMIN_TOKEN: &str = "TOLLGATE_ADMIN_TOKEN";
    let mut command = Command::new(tollgate);
    command
        .args(args)
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove(ADMIN_TOKEN);
    for (name, value) in env.iter().filter(|(name, _)| *name != ADMIN_TOKEN) {
        command.env(name, value);
    }
    let output = command.output().await?;
    if !output.status.success() {
        return Err(BenchError::Cli {
            command: args.join(" "),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
