//! Test support (feature `test-support`) for this crate's tests and bench and for tollgate's
//! integration tests: a real OTLP receiver (`tests/otlp/receiver.py`, which decodes every export
//! with the official `opentelemetry-proto` package) and readers for what it received, a sample
//! ledger event, and a capture of the process's `tracing` log.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: failing loudly is the point"
)]

pub mod tools;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tollgate_core::{LedgerEvent, Money, ToolCount, Usage};
use tools::repo_root;

/// Every label a metric may carry (docs/metrics.md): never a session, key, user or request.
/// Written out here, not taken from the code, so tests check the code against the catalogue.
pub const ALLOWED_LABELS: [&str; 13] = [
    "team",
    "cost_centre",
    "model",
    "endpoint",
    "status_class",
    "outcome",
    "kind",
    "tool",
    "reason",
    "budget",
    "scope",
    "period",
    "signal",
];

/// The Python of the venv `tests/clients/setup.sh` installs (`$TOLLGATE_CLIENTS_DIR`, else
/// `target/clients`), installing it on first use.
pub fn venv_python() -> PathBuf {
    tools::venv_bin("opentelemetry-proto and grpcio for the OTLP receiver").join("python")
}

/// `tests/otlp/receiver.py` over HTTP and gRPC; killed on drop.
pub struct Receiver {
    child: Child,
    out: PathBuf,
    pub http_port: u16,
    pub grpc_port: u16,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// Starts the receiver with `python` (a venv with opentelemetry-proto and grpcio).
    pub fn start(python: &Path) -> Receiver {
        Receiver::start_with(python, &[])
    }

    /// Starts it with `extra` arguments (`--tls-cert`, `--tls-key`).
    pub fn start_with(python: &Path, extra: &[&OsStr]) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("otlp.jsonl");
        let mut child = Command::new(python)
            .arg(repo_root().join("tests/otlp/receiver.py"))
            .arg("--out")
            .arg(&out)
            .arg("--grpc")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the OTLP receiver starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ports: Vec<u16> = line
            .split_whitespace()
            .filter_map(|w| w.split_once('=').and_then(|(_, p)| p.parse().ok()))
            .collect();
        assert!(
            line.starts_with("READY") && ports.len() == 2 && ports[1] != 0,
            "the OTLP receiver did not start (got {line:?}): run tests/clients/setup.sh"
        );
        Receiver {
            child,
            out,
            http_port: ports[0],
            grpc_port: ports[1],
            _dir: dir,
        }
    }

    /// Every export received so far, of one signal.
    pub fn exports(&self, signal: &str) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["signal"] == signal)
            .collect()
    }

    /// The items of every export of `signal`: resource → scope → item lists, flattened.
    fn items(&self, signal: &str, path: [&str; 3]) -> Vec<Value> {
        let list = |v: &Value, k: &str| v[k].as_array().cloned().unwrap_or_default();
        self.exports(signal)
            .iter()
            .flat_map(|e| list(&e["body"], path[0]))
            .flat_map(|r| list(&r, path[1]))
            .flat_map(|s| list(&s, path[2]))
            .collect()
    }

    pub fn spans(&self) -> Vec<Value> {
        self.items("traces", ["resourceSpans", "scopeSpans", "spans"])
    }

    pub fn logs(&self) -> Vec<Value> {
        self.items("logs", ["resourceLogs", "scopeLogs", "logRecords"])
    }

    /// The resource attributes of every export of `signal` from `service` (its `service.name`).
    pub fn resources(&self, signal: &str, service: &str) -> Vec<BTreeMap<String, String>> {
        let list = match signal {
            "traces" => "resourceSpans",
            "metrics" => "resourceMetrics",
            _ => "resourceLogs",
        };
        self.exports(signal)
            .iter()
            .flat_map(|e| e["body"][list].as_array().cloned().unwrap_or_default())
            .map(|r| attrs(&r["resource"]["attributes"]))
            .filter(|a| a.get("service.name").map(String::as_str) == Some(service))
            .collect()
    }

    /// The last export of each metric, by name (cumulative: the last one holds the totals).
    pub fn metrics(&self) -> BTreeMap<String, Value> {
        self.items("metrics", ["resourceMetrics", "scopeMetrics", "metrics"])
            .into_iter()
            .map(|m| (m["name"].as_str().unwrap().to_string(), m))
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OTLP key/value list → key → scalar as text (ints arrive as strings in proto3 JSON).
pub fn attrs(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|kv| {
            let v = &kv["value"];
            let text = ["stringValue", "intValue", "boolValue", "doubleValue"]
                .iter()
                .find_map(|k| v.get(*k))
                .map(|x| match x {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            (kv["key"].as_str().unwrap().to_string(), text)
        })
        .collect()
}

/// A metric's data points, whatever its kind.
pub fn points(metric: &Value) -> Vec<Value> {
    ["sum", "gauge", "histogram"]
        .iter()
        .find_map(|k| metric.get(*k))
        .and_then(|d| d["dataPoints"].as_array().cloned())
        .unwrap_or_default()
}

/// Whether a data point's attributes include all of `want`.
pub fn has_attrs(point: &Value, want: &[(&str, &str)]) -> bool {
    let a = attrs(&point["attributes"]);
    want.iter()
        .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
}

/// A port nothing listens on (bound, read, and let go again).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A settled `responses` call of team_1 to gpt-5: tests change the fields they look at.
pub fn event() -> LedgerEvent {
    LedgerEvent {
        request_id: "req_x".into(),
        started_at_ms: 1_800_000_000_000,
        finished_at_ms: 1_800_000_001_234,
        team_id: "team_1".into(),
        key_id: "key_abc123def456".into(),
        cost_centre: Some("cc-42".into()),
        user: None,
        session_id: Some("sess-x".into()),
        turn_id: None,
        endpoint: "responses".into(),
        model_requested: Some("gpt-5".into()),
        model_served: Some("gpt-5-2025-08-07".into()),
        status: 200,
        usage: Usage {
            input: 1200,
            cached_input: 1024,
            output: 300,
            reasoning: 128,
        },
        cost: Money(12_345_678),
        price_id: None,
        estimated: false,
        unpriced: false,
        service_tier: None,
        ttfb_ms: Some(420),
        latency_ms: 1234,
        tool_calls: vec![ToolCount {
            name: "apply_patch".into(),
            count: 1,
        }],
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        response_id: None,
    }
}

/// Everything the process logs through `tracing`, from [`capture_logs`] on.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Installs the process's global `tracing` subscriber (level `info`, as `tollgate serve` logs),
/// writing into the returned capture. Once per process: a second call panics.
pub fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    captured
}
