//! OTLP export on, to a real receiver: `tests/otlp/receiver.py --discard` (every export decoded
//! with the official protobuf classes, then only counted), one per gateway so each gateway's
//! counts are its own, run with the Python venv that `tests/clients/setup.sh` installs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::error::BenchError;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The counts are a few numbers of JSON.
const COUNTS_LIMIT: usize = 64 * 1024;
const INSTALL_HINT: &str = "install it with `bash tests/clients/setup.sh` (needs python3-venv), \
                            or pass --no-otlp";

/// What one receiver decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub spans: u64,
    pub log_records: u64,
    pub metric_points: u64,
    /// Export requests per signal: traces, logs, metrics.
    pub exports: [u64; 3],
}

/// The venv's Python: `$TOLLGATE_CLIENTS_DIR/venv`, else this checkout's `target/clients/venv`
/// (where setup.sh puts it). The reason, with the command that installs it, when it is missing.
pub fn python() -> Result<PathBuf, String> {
    let clients = std::env::var_os("TOLLGATE_CLIENTS_DIR")
        .map_or_else(|| repo_root().join("target/clients"), PathBuf::from);
    let python = clients.join("venv/bin/python");
    if python.is_file() {
        Ok(python)
    } else {
        Err(format!(
            "no Python venv with the OTLP protobufs at {}: {INSTALL_HINT}",
            python.display()
        ))
    }
}

/// The checkout this bench was built from (its scripts and its `target/clients`).
fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// A running receiver; killed when dropped.
pub struct Receiver {
    child: Child,
    /// Kept open: the receiver's stdout must not become a broken pipe.
    _stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Receiver {
    /// Starts one and waits for its `READY http=<port>` line.
    pub async fn start(python: &Path) -> Result<Receiver, BenchError> {
        let script = repo_root().join("tests/otlp/receiver.py");
        let mut child = Command::new(python)
            .arg(&script)
            .arg("--discard")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its tracebacks, if any, belong with the bench's progress output.
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| BenchError::Spawn {
                name: "OTLP receiver".into(),
                program: python.to_path_buf(),
                source,
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Vanished("OTLP receiver".into()))?;
        let mut stdout = BufReader::new(stdout);
        let mut line = String::new();
        let read = tokio::time::timeout(READY_TIMEOUT, stdout.read_line(&mut line)).await;
        let port = line
            .strip_prefix("READY http=")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok());
        match (read, port) {
            (Ok(Ok(_)), Some(port)) => Ok(Receiver {
                child,
                _stdout: stdout,
                port,
            }),
            _ => Err(BenchError::Unavailable(format!(
                "{} did not start (see its output above; {INSTALL_HINT})",
                script.display()
            ))),
        }
    }

    /// The gateway's environment for exporting here: OTLP/HTTP, every signal, and otherwise
    /// the gateway's own defaults (batching, intervals, timeouts).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("TOLLGATE_TELEMETRY_ENABLED", "true".into()),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ]
    }

    /// What it has decoded so far (`GET /counts`).
    pub async fn counts(&self) -> Result<Counts, BenchError> {
        let fail = |what: String| BenchError::Internal(format!("OTLP receiver counts: {what}"));
        let request = http::Request::get(format!("http://127.0.0.1:{}/counts", self.port))
            .body(Full::new(Bytes::new()))
            .map_err(|e| fail(e.to_string()))?;
        let read = async {
            let response = crate::client::new_client()
                .request(request)
                .await
                .map_err(|e| fail(e.to_string()))?;
            #[allow(clippy::disallowed_methods)] // bounded by Limited
            let body = Limited::new(response.into_body(), COUNTS_LIMIT)
                .collect()
                .await
                .map_err(|e| fail(e.to_string()))?;
            parse_counts(&body.to_bytes()).ok_or_else(|| fail("not the expected JSON".into()))
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .unwrap_or_else(|_| Err(fail("no answer in 10 s".into())))
    }

    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

fn parse_counts(body: &[u8]) -> Option<Counts> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let exports = &v["exports"];
    Some(Counts {
        spans: v["spans"].as_u64()?,
        log_records: v["log_records"].as_u64()?,
        metric_points: v["metric_points"].as_u64()?,
        exports: [
            exports["traces"].as_u64()?,
            exports["logs"].as_u64()?,
            exports["metrics"].as_u64()?,
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_read_from_the_receivers_json() {
        let body = br#"{"exports": {"traces": 2, "metrics": 1, "logs": 3}, "spans": 900, "log_records": 901, "metric_points": 40}"#;
        assert_eq!(
            parse_counts(body),
            Some(Counts {
                spans: 900,
                log_records: 901,
                metric_points: 40,
                exports: [2, 3, 1],
            })
        );
        assert_eq!(parse_counts(b"{}"), None);
    }
}
