//! The real Codex CLI prices its turns from tollgate: `codex app-server` (driven over its
//! JSON-RPC stdio protocol: `initialize`, `thread/start`, `turn/start`) with a provider of its own
//! pointing at tollgate and an OTLP metrics exporter runs a turn over the WebSocket, asks
//! `POST /v1/analytics/codex/turn-costs` for its price, and exports `codex.turn.cost_microusd`
//! equal to the sum of the turn's ledger rows, in micro-USD rounded half up.
//!
//! Slow: Codex's turn-cost worker polls every 150 s (a constant in Codex, with no setting or
//! environment variable to shorten it), so the test keeps Codex running until its first poll,
//! 150 s after it starts; it takes about 2.5 to 3 minutes in all.

// Integration tests: shared helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use tollgate_telemetry::testing::{Receiver, attrs, venv_python};
use tollgate_tests::clients::clients_dir;
use tollgate_tests::{Backend, Harness};

const METRIC: &str = "codex.turn.cost_microusd";
/// Codex's poll interval (150 s) plus room for the export and a slow machine.
const METRIC_DEADLINE: Duration = Duration::from_secs(240);
/// Longest wait for one JSON-RPC answer or the end of the turn.
const RPC_DEADLINE: Duration = Duration::from_secs(60);

/// `codex app-server` over stdio with its own `$CODEX_HOME`; killed on drop.
struct AppServer {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines<BufReader<ChildStdout>>,
    next_id: i64,
    /// Every notification received so far, in order.
    notifications: Vec<Value>,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl AppServer {
    async fn start(config: &str, env: &[(&str, &str)]) -> AppServer {
        let codex =
            clients_dir("the openai SDK and the Codex CLI").join("npm/node_modules/.bin/codex");
        let home = tempfile::tempdir().expect("tempdir");
        let work = tempfile::tempdir().expect("tempdir");
        std::fs::write(home.path().join("config.toml"), config).expect("write config.toml");
        let stderr = std::fs::File::create(home.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(codex);
        cmd.arg("app-server")
            .current_dir(work.path())
            .env("CODEX_HOME", home.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("CODEX_API_KEY")
            .env_remove("TOLLGATE_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("codex app-server starts");
        let stdin = child.stdin.take();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        AppServer {
            child,
            stdin,
            lines,
            next_id: 1,
            notifications: Vec::new(),
            home,
            work,
        }
    }

    /// What Codex wrote to stderr, for failure messages.
    fn stderr(&self) -> String {
        std::fs::read_to_string(self.home.path().join("stderr.log")).unwrap_or_default()
    }

    async fn send(&mut self, message: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// The next message from Codex; a request from it (an approval) fails the test.
    async fn next(&mut self) -> Value {
        let line = tokio::time::timeout(RPC_DEADLINE, self.lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "Codex said nothing for {RPC_DEADLINE:?}:\n{}",
                    self.stderr()
                )
            })
            .unwrap()
            .unwrap_or_else(|| panic!("codex app-server exited:\n{}", self.stderr()));
        let message: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON-RPC ({e}): {line}"));
        assert!(
            !(message.get("method").is_some() && message.get("id").is_some()),
            "Codex asked the client something a plain turn never needs: {message}"
        );
        message
    }

    /// Sends request `method` and returns its result, keeping the notifications on the way.
    async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        loop {
            let message = self.next().await;
            if message.get("method").is_some() {
                self.notifications.push(message);
            } else if message["id"] == id {
                assert!(
                    message.get("error").is_none(),
                    "{method} failed: {message}\n{}",
                    self.stderr()
                );
                return message["result"].clone();
            }
        }
    }

    /// Waits for notification `method`, returning its params.
    async fn notification(&mut self, method: &str) -> Value {
        if let Some(n) = self.notifications.iter().find(|n| n["method"] == method) {
            return n["params"].clone();
        }
        loop {
            let message = self.next().await;
            let found = message["method"] == method;
            self.notifications.push(message.clone());
            if found {
                return message["params"].clone();
            }
        }
    }

    /// Closes stdin, which ends the app-server; kills it if it lingers.
    async fn shut_down(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await.unwrap();
        }
    }
}

/// Every `codex.turn.cost_microusd` data point exported so far for `turn`, as its attributes
/// and the turn's total: the sum of the points under delta temporality, the last under
/// cumulative.
fn exported_cost(receiver: &Receiver, turn: &str) -> Option<(u64, Value)> {
    let list = |v: &Value, k: &str| v[k].as_array().cloned().unwrap_or_default();
    let mut total: Option<u64> = None;
    let mut last = Value::Null;
    for export in receiver.exports("metrics") {
        for metric in list(&export["body"], "resourceMetrics")
            .iter()
            .flat_map(|r| list(r, "scopeMetrics"))
            .flat_map(|s| list(&s, "metrics"))
            .filter(|m| m["name"] == METRIC)
        {
            let sum = &metric["sum"];
            let delta = sum["aggregationTemporality"]
                .as_str()
                .is_some_and(|t| t.contains("DELTA"))
                || sum["aggregationTemporality"] == 1;
            for point in list(sum, "dataPoints") {
                if attrs(&point["attributes"])
                    .get("turn.id")
                    .map(String::as_str)
                    != Some(turn)
                {
                    continue;
                }
                let value = match &point["asInt"] {
                    Value::String(s) => s.parse::<u64>().unwrap(),
                    other => other.as_u64().expect("an integer counter"),
                };
                total = Some(match (delta, total) {
                    (true, Some(t)) => t + value,
                    _ => value,
                });
                last = point;
            }
        }
    }
    total.map(|t| (t, last))
}

/// (sum of cost_nanos, rows) of the ledger rows of `turn`.
async fn ledger_cost(h: &Harness, turn: &str) -> (i64, i64) {
    h.gateway.flush_ledger().await;
    let pool = sqlx::AnyPool::connect(&h.db.url).await.unwrap();
    let row: (i64, i64) = sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT), CAST(COUNT(*) AS BIGINT) \
         FROM ledger WHERE turn_id = $1",
    )
    .bind(turn)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    row
}

/// Takes ~3 minutes: Codex polls for turn costs every 150 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_exports_the_ledgers_cost_of_each_turn_as_an_otlp_metric() {
    let h = Harness::start(Backend::Sqlite).await;
    let key = h.team_key("platform").await;
    let receiver = Receiver::start(&venv_python());
    let config = format!(
        "model = \"gpt-5.5\"\nmodel_provider = \"tollgate\"\n\n\
         [model_providers.tollgate]\nname = \"tollgate\"\nbase_url = \"{}/v1\"\n\
         env_key = \"TOLLGATE_KEY\"\nwire_api = \"responses\"\nsupports_websockets = true\n\n\
         [otel]\nenvironment = \"test\"\n\
         metrics_exporter = {{ otlp-http = {{ endpoint = \"http://127.0.0.1:{}/v1/metrics\", \
         protocol = \"binary\" }} }}\n",
        h.base(),
        receiver.http_port
    );
    // Codex sets no export interval of its own, so the SDK's variable applies (default 60 s).
    let mut codex = AppServer::start(
        &config,
        &[
            ("TOLLGATE_KEY", &key),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    )
    .await;

    codex
        .request(
            "initialize",
            json!({"clientInfo": {"name": "tollgate_tests", "version": "0.1.0"}}),
        )
        .await;
    codex
        .send(json!({"jsonrpc": "2.0", "method": "initialized"}))
        .await;
    let cwd = codex.work.path().to_str().unwrap().to_string();
    let thread = codex
        .request(
            "thread/start",
            json!({"cwd": cwd, "approvalPolicy": "never", "sandbox": "read-only", "ephemeral": true}),
        )
        .await;
    let thread_id = thread["thread"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("thread/start answered no thread id: {thread}"))
        .to_string();
    let started = codex
        .request(
            "turn/start",
            json!({"threadId": thread_id, "input": [{"type": "text", "text": "Say hello"}]}),
        )
        .await;
    let turn = started["turn"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("turn/start answered no turn id: {started}"))
        .to_string();
    let completed = codex.notification("turn/completed").await;
    assert_eq!(completed["turn"]["id"], turn.as_str(), "{completed}");
    assert_eq!(
        completed["turn"]["status"],
        "completed",
        "the turn failed: {completed}\n{}",
        codex.stderr()
    );

    let (nanos, rows) = ledger_cost(&h, &turn).await;
    assert!(
        rows > 0 && nanos > 0,
        "tollgate metered no cost for turn {turn}: {rows} rows, {nanos} nano-USD"
    );
    let expected = u64::try_from((nanos + 500) / 1000).unwrap();

    // Codex asks tollgate at its next poll (150 s after it started) and then exports the metric.
    let appeared = tollgate_tests::eventually(METRIC_DEADLINE, || {
        let seen = exported_cost(&receiver, &turn).is_some();
        async move { seen }
    })
    .await;
    let stderr = codex.stderr();
    codex.shut_down().await;
    assert!(
        appeared,
        "no {METRIC} for turn {turn} within {METRIC_DEADLINE:?}; metrics exported: {:?}\n{stderr}",
        receiver.metrics().keys().collect::<Vec<_>>()
    );
    let (value, point) = exported_cost(&receiver, &turn).unwrap();
    assert_eq!(
        value, expected,
        "Codex's {METRIC} must be the ledger's {nanos} nano-USD over {rows} rows in micro-USD: {point}"
    );
    let labels = attrs(&point["attributes"]);
    for (label, want) in [
        ("conversation.id", thread_id.as_str()),
        ("model", "gpt-5.5"),
        ("turn.interrupted", "false"),
    ] {
        assert_eq!(labels.get(label).map(String::as_str), Some(want), "{point}");
    }
    // The rows are still the ones Codex was priced from: nothing metered the turn twice.
    assert_eq!(ledger_cost(&h, &turn).await, (nanos, rows));
}
