//! `tollgate hook`: a Codex command hook (`[[hooks.Stop]]`, `[[hooks.PostToolUse]]`, … in
//! Codex's config.toml) that reports the event to the gateway (`POST /tollgate/v1/hooks`, with
//! the team key) and, with `--gate '<command>'`, first runs a quality gate in the session's
//! working directory and reports whether it passed and how long it took.
//!
//! Codex acts on what a hook answers: on exit 0 it parses stdout as JSON that can stop the
//! session or block it with a prompt (`{"continue":false}`, `{"decision":"block",…}`), and on exit
//! 2 a Stop hook's stderr becomes the model's next prompt (codex-rs/hooks/src/events/stop.rs).
//! This hook measures and must never steer, so it always exits 0 with nothing on stdout — the
//! answer Codex reads as "carry on unchanged" — whatever fails: no gateway, a refused key, a slow
//! network (`--timeout-ms`), a failing or hanging gate (its outcome is reported, not returned).
//! Problems are one line on stderr, which Codex ignores on exit 0.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{Method, Request};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::cli::HookArgs;
use tollgate_proxy::body::read_limited;

/// Codex's hook input is a few KiB; a PostToolUse carries the tool's output, which can be more.
/// Only the identifying fields are sent on, so a longer input is cut and still read.
const MAX_INPUT: u64 = 1024 * 1024;
/// Codex writes the input and closes stdin at once; a terminal would wait forever.
const STDIN_DEADLINE: Duration = Duration::from_secs(10);
/// The gateway's answer is a small JSON object or an error.
const MAX_ANSWER: u64 = 64 * 1024;

/// Runs the hook; always [`ExitCode::SUCCESS`].
pub async fn run(args: HookArgs) -> ExitCode {
    if let Err(problem) = report(&args).await {
        eprintln!("tollgate hook: {problem}; Codex continues unchanged");
    }
    ExitCode::SUCCESS
}

/// Reads the event, runs the gate, reports both: the first problem, if any.
async fn report(args: &HookArgs) -> Result<(), String> {
    let gateway = args
        .gateway
        .as_deref()
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .ok_or("no gateway: set TOLLGATE_URL or --gateway (https://tollgate.example.com)")?;
    let url = hooks_url(gateway)?;
    let key = std::env::var(&args.key_env)
        .ok()
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| format!("no team key in ${} (--key-env)", args.key_env))?;
    let input = read_input().await?;
    let mut body = event_body(&input)?;
    if let Some(task_type) = &args.task_type {
        body["task_type"] = task_type.as_str().into();
    }
    if let Some(gate) = &args.gate {
        let cwd = input["cwd"].as_str().map(PathBuf::from);
        let ran = run_gate(
            gate,
            cwd,
            Duration::from_secs(args.gate_timeout_secs.max(1)),
        )
        .await;
        body["gate"] = json!({
            "passed": ran.exit_code == Some(0),
            "duration_ms": u64::try_from(ran.elapsed.as_millis()).unwrap_or(u64::MAX),
            "exit_code": ran.exit_code,
        });
        if let Some(problem) = ran.problem {
            eprintln!("tollgate hook: the gate {problem}");
        }
    }
    let timeout = Duration::from_millis(args.timeout_ms.max(1));
    tokio::time::timeout(timeout, post(&url, &key, body))
        .await
        .map_err(|_| format!("{url} did not answer within {} ms", args.timeout_ms))?
}

/// `{gateway}/tollgate/v1/hooks`; the gateway may be given as Codex's `base_url` (`…/v1`).
fn hooks_url(gateway: &str) -> Result<String, String> {
    let trimmed = gateway.trim_end_matches('/');
    let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    let usable = base.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.authority().is_some()
            && uri.query().is_none()
    });
    if !usable {
        return Err(format!(
            "'{gateway}' is not a gateway URL like https://tollgate.example.com"
        ));
    }
    Ok(format!("{base}{}", crate::hooks_http::PATH))
}

async fn read_input() -> Result<Value, String> {
    let mut input = Vec::new();
    let mut stdin = tokio::io::stdin().take(MAX_INPUT);
    let read = stdin.read_to_end(&mut input);
    match tokio::time::timeout(STDIN_DEADLINE, read).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("cannot read the hook's input: {e}")),
        Err(_) => return Err("no hook input on stdin (Codex sends the event as JSON)".into()),
    }
    serde_json::from_slice(&input).map_err(|e| {
        format!(
            "the hook's input is not JSON ({e}){}",
            if input.len() as u64 >= MAX_INPUT {
                ", and longer than 1 MiB"
            } else {
                ""
            }
        )
    })
}

/// The fields the gateway keeps; the prompt, the assistant's message and the tool's input and
/// output stay on this machine.
fn event_body(input: &Value) -> Result<Value, String> {
    let field = |name: &str| input.get(name).filter(|v| v.is_string()).cloned();
    let session_id = field("session_id").ok_or("the hook's input has no session_id")?;
    let event = field("hook_event_name").ok_or("the hook's input has no hook_event_name")?;
    let mut body = json!({"session_id": session_id, "hook_event_name": event});
    for name in ["turn_id", "tool_name"] {
        if let Some(value) = field(name) {
            body[name] = value;
        }
    }
    Ok(body)
}

struct GateRun {
    /// `None` when it timed out or could not start.
    exit_code: Option<i32>,
    elapsed: Duration,
    problem: Option<String>,
}

/// `sh -c <command>` in `cwd`, output discarded (Codex would read the hook's stdout as its
/// answer), stopped with its process group after `limit`.
async fn run_gate(command: &str, cwd: Option<PathBuf>, limit: Duration) -> GateRun {
    let started = Instant::now();
    let mut gate = tokio::process::Command::new("sh");
    gate.arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(cwd) = cwd.filter(|c| c.is_dir()) {
        gate.current_dir(cwd);
    }
    #[cfg(unix)]
    gate.process_group(0);
    let failed = |problem: String| GateRun {
        exit_code: None,
        elapsed: started.elapsed(),
        problem: Some(problem),
    };
    let mut child = match gate.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("could not start: {e}")),
    };
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => GateRun {
            exit_code: status.code(),
            elapsed: started.elapsed(),
            problem: status
                .code()
                .is_none()
                .then(|| format!("was ended by a signal ({status})")),
        },
        Ok(Err(e)) => failed(format!("could not be waited for: {e}")),
        Err(_) => {
            stop_group(&mut child).await;
            failed(format!(
                "did not finish within {} s (--gate-timeout-secs) and was stopped",
                limit.as_secs()
            ))
        }
    }
}

/// Kills the gate and whatever it started (`cargo test` runs its test binaries as children).
async fn stop_group(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.kill().await;
}

async fn post(url: &str, key: &str, body: Value) -> Result<(), String> {
    let tls = tollgate_proxy::upstream::tls_client_config(None).map_err(|e| e.to_string())?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let request = Request::builder()
        .method(Method::POST)
        .uri(url)
        .header(AUTHORIZATION, format!("Bearer {key}"))
        .header(CONTENT_TYPE, "application/json")
        .header(
            USER_AGENT,
            concat!("tollgate-hook/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| format!("cannot build the request to {url}: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("cannot reach {url}: {}", causes(&e)))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let answer = read_limited(response.into_body(), MAX_ANSWER)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&answer)
        .ok()
        .and_then(|e| e["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_default();
    Err(format!("{url} refused the event: {status} {message}"))
}

/// hyper's own message ("client error (Connect)") with its causes ("Connection refused").
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_may_be_given_with_or_without_v1() {
        let url = |g: &str| hooks_url(g).unwrap();
        assert_eq!(
            url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080/tollgate/v1/hooks"
        );
        assert_eq!(
            url("https://t.example.com/v1/"),
            "https://t.example.com/tollgate/v1/hooks"
        );
        assert!(hooks_url("t.example.com").is_err());
        assert!(hooks_url("ftp://t.example.com").is_err());
    }

    #[test]
    fn only_identifying_fields_are_sent_on() {
        let input = json!({"session_id": "s", "hook_event_name": "PostToolUse", "turn_id": "t",
                           "tool_name": "Bash", "tool_input": {"command": "cat secrets"},
                           "tool_response": "…", "cwd": "/w", "last_assistant_message": "x"});
        assert_eq!(
            event_body(&input).unwrap(),
            json!({"session_id": "s", "hook_event_name": "PostToolUse", "turn_id": "t",
                   "tool_name": "Bash"})
        );
        assert!(event_body(&json!({"hook_event_name": "Stop"})).is_err());
    }

    #[tokio::test]
    async fn gates_report_exit_codes_and_time_out() {
        let pass = run_gate("true", None, Duration::from_secs(5)).await;
        assert_eq!(pass.exit_code, Some(0));
        let fail = run_gate("exit 3", None, Duration::from_secs(5)).await;
        assert_eq!(fail.exit_code, Some(3));
        let slow = run_gate("sleep 30", None, Duration::from_millis(200)).await;
        assert_eq!(slow.exit_code, None);
        assert!(slow.elapsed < Duration::from_secs(5));
        assert!(slow.problem.unwrap().contains("did not finish"));
    }
}
