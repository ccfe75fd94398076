//! Telemetry through the real gateway, checked where an operator would look: a real OTLP
//! receiver (`tests/otlp/receiver.py`, decoding with the official `opentelemetry-proto`), the
//! gateway's own `GET /metrics`, a real Prometheus server scraping it, and the gateway's log.
//! Every number is compared with the ledger row of the same call: telemetry must tell the same
//! story as the bill.
//!
//! Tools, set up on first use: the Python venv of `tests/clients/setup.sh` (opentelemetry-proto,
//! grpcio) and the `prometheus` server (from PATH, else Debian's package unpacked under target/
//! by `tests/clients/prometheus.sh`). A test that cannot get them fails and says how to install
//! them — it never skips.

// Integration tests: shared helpers fail loudly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate_mock::{EXEC_ARGUMENTS, MockOptions, PATCH_INPUT};
use tollgate_telemetry::Signal;
use tollgate_telemetry::testing::{
    ALLOWED_LABELS, Captured, Receiver, attrs, capture_logs, has_attrs, points,
};
use tollgate_tests::clients::venv_bin;
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness, Reply, bearer, eventually, process};

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ------------------------------------------------------------------------------ calls

/// POSTs a JSON body to the gateway with a team key and extra headers.
async fn post(
    h: &Harness,
    key: &str,
    path: &str,
    body: &Value,
    extra: &[(&'static str, String)],
) -> Reply {
    let mut headers = vec![bearer(key), ("content-type", "application/json".into())];
    headers.extend(extra.iter().cloned());
    h.http
        .send(
            Method::POST,
            &format!("{}{path}", h.base()),
            &headers,
            body.to_string(),
        )
        .await
}

fn request_id(reply: &Reply) -> String {
    reply.headers["x-request-id"].to_str().unwrap().to_string()
}

fn body_text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The response id the client saw: a JSON body's `id`, or the first id in an SSE stream
/// (`response.created`'s `response.id`, a chat chunk's `id`).
fn response_id(reply: &Reply) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(&reply.body) {
        return v["id"].as_str().unwrap().to_string();
    }
    body_text(reply)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .find_map(|v| {
            v["response"]["id"]
                .as_str()
                .or(v["id"].as_str())
                .map(String::from)
        })
        .unwrap_or_else(|| panic!("no response id in {}", body_text(reply)))
}

/// A Responses call of one user message (`mock:exec` or `mock:patch` in it scripts a tool call).
fn responses(model: &str, prompt: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "stream": stream,
        "input": [{"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": prompt}]}],
    })
}

/// The follow-up Codex sends after running the tool the previous response asked for.
fn tool_output(model: &str, prompt: &str, tool: &str, call_id: &str) -> Value {
    let (call, output) = if tool == "exec_command" {
        (
            json!({"type": "function_call", "call_id": call_id, "name": tool,
                   "arguments": EXEC_ARGUMENTS}),
            json!({"type": "function_call_output", "call_id": call_id, "output": "tollgate"}),
        )
    } else {
        (
            json!({"type": "custom_tool_call", "call_id": call_id, "name": tool,
                   "input": PATCH_INPUT}),
            json!({"type": "custom_tool_call_output", "call_id": call_id, "output": "Done!"}),
        )
    };
    json!({
        "model": model,
        "stream": true,
        "input": [
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": prompt}]},
            call,
            output,
        ],
    })
}

/// An integer field of a ledger row.
fn int(row: &Value, field: &str) -> i64 {
    row[field]
        .as_i64()
        .unwrap_or_else(|| panic!("{field} in {row}"))
}

/// Tool calls of a ledger row: `{"exec_command": 1}`.
fn row_tools(row: &Value) -> BTreeMap<String, i64> {
    row["tool_calls"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_i64().unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------------ /metrics

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Prometheus text exposition format, the lines with values.
fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let (name, mut rest) = line.split_at(name_end);
            let mut labels = BTreeMap::new();
            if let Some(mut inner) = rest.strip_prefix('{') {
                // key="value" pairs; values escape \\, \" and \n.
                loop {
                    inner = inner.trim_start_matches([',', ' ']);
                    if let Some(tail) = inner.strip_prefix('}') {
                        inner = tail;
                        break;
                    }
                    let (key, after) = inner
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                    let (mut value, mut chars) = (String::new(), after.char_indices());
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, c)) => value.push(c),
                                None => panic!("bad escape in {line:?}"),
                            },
                            Some((i, '"')) => break i,
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label in {line:?}"),
                        }
                    };
                    labels.insert(key.to_string(), value);
                    inner = &after[end + 1..];
                }
                rest = inner;
            }
            let value = match rest.split_whitespace().next() {
                Some("+Inf") => f64::INFINITY,
                Some(v) => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
                None => panic!("no value in {line:?}"),
            };
            Sample {
                name: name.to_string(),
                labels,
                value,
            }
        })
        .collect()
}

/// `GET /metrics` on the gateway, as a scraper with an admin token sees it.
async fn scrape(h: &Harness) -> Vec<Sample> {
    let reply = h
        .http
        .send(Method::GET, &format!("{}/metrics", h.base()), &admin(), "")
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let content_type = reply.headers["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    parse_prometheus(&body_text(&reply))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_a_token_on_the_main_listener_and_none_on_the_admin_listener() {
    const METRICS_TOKEN: &str = "prometheus-scrape-secret";
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.secrets.metrics_token = Some(METRICS_TOKEN.into());
    })
    .await;
    let key = h.team_key("platform").await;
    let reply = post(
        &h,
        &key,
        "/v1/responses",
        &responses("gpt-5-mini", "hi", false),
        &[],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let url = format!("{}/metrics", h.base());
    let get = |headers: Vec<(&'static str, String)>| {
        let url = url.clone();
        let http = &h.http;
        async move { http.send(Method::GET, &url, &headers, "").await }
    };
    // Without a token, or with the wrong one, anyone reachable saw every team's spend: now 401.
    for (headers, why) in [
        (vec![], "No token was provided"),
        (vec![bearer("not-the-token")], "The token is not valid"),
        (vec![bearer(&key)], "The token is not valid"),
        (
            vec![("authorization", METRICS_TOKEN.into())],
            "The Authorization header has no Bearer scheme",
        ),
    ] {
        let reply = get(headers.clone()).await;
        reply.assert_error(401, "invalid_metrics_token");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.starts_with(why)
                && message.contains("TOLLGATE_METRICS_TOKEN")
                && message.contains("TOLLGATE_ADMIN_LISTEN"),
            "{headers:?}: {message}"
        );
        assert!(!body_text(&reply).contains("platform"), "{headers:?}");
    }
    // A team admin sees one team; these metrics show all of them.
    let team_admin = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/admin-tokens", h.base()),
            &admin(),
            json!({"name": "ta", "role": "team_admin", "team": "platform"}),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    get(vec![bearer(&team_admin)])
        .await
        .assert_error(401, "invalid_metrics_token");
    // The metrics token, an admin and a finance token may scrape.
    let finance = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/admin-tokens", h.base()),
            &admin(),
            json!({"name": "books", "role": "finance"}),
        )
        .await
        .json()["secret"]
        .as_str()
        .unwrap()
        .to_string();
    for token in [METRICS_TOKEN, ADMIN_TOKEN, finance.as_str()] {
        let reply = get(vec![bearer(token)]).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(
            body_text(&reply).contains("team=\"platform\""),
            "{}",
            body_text(&reply)
        );
    }

    // With an admin listener, the metrics are open there (a private port) and still need a
    // token on the main one.
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.admin_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let admin_addr = h.gateway.admin_addr.unwrap();
    let open = h
        .http
        .send(
            Method::GET,
            &format!("http://{admin_addr}/metrics"),
            &[],
            "",
        )
        .await;
    assert_eq!(open.status, StatusCode::OK, "{open:?}");
    assert!(
        body_text(&open).contains("tollgate_"),
        "{}",
        body_text(&open)
    );
    h.http
        .send(Method::GET, &format!("{}/metrics", h.base()), &[], "")
        .await
        .assert_error(401, "invalid_metrics_token");
}

/// The sum of every series of `name` whose labels include all of `want`.
fn total(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

// --------------------------------------------------------------------- OTLP receiver

/// The sum of a counter's points whose attributes include all of `want`.
fn otlp_total(metrics: &BTreeMap<String, Value>, name: &str, want: &[(&str, &str)]) -> i64 {
    let metric = metrics
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name} exported; got {:?}", metrics.keys()));
    points(metric)
        .iter()
        .filter(|p| has_attrs(p, want))
        .map(|p| p["asInt"].as_str().unwrap().parse::<i64>().unwrap())
        .sum()
}

// --------------------------------------------------------------- 1. OTLP end to end

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const CLIENT_TRACE_2: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN_2: &str = "b7ad6b7169203331";

/// One scripted call.
struct Step {
    what: &'static str,
    team: &'static str,
    path: &'static str,
    body: Value,
    session: Option<&'static str>,
    user: Option<&'static str>,
    /// The client's own trace: (trace id, parent span id).
    trace: Option<(&'static str, &'static str)>,
}

fn script() -> Vec<Step> {
    let step = |what, team, path, body| Step {
        what,
        team,
        path,
        body,
        session: None,
        user: None,
        trace: None,
    };
    vec![
        Step {
            session: Some("sess-alpha"),
            user: Some("alice"),
            trace: Some((CLIENT_TRACE, CLIENT_SPAN)),
            ..step(
                "responses, JSON, client trace",
                "platform",
                "/v1/responses",
                responses("gpt-5-mini", "hi", false),
            )
        },
        Step {
            session: Some("sess-alpha"),
            ..step(
                "responses, streamed",
                "platform",
                "/v1/responses",
                responses("gpt-5-mini", "tell me more", true),
            )
        },
        Step {
            user: Some("bob"),
            trace: Some((CLIENT_TRACE_2, CLIENT_SPAN_2)),
            ..step(
                "chat, streamed, include_usage injected",
                "research",
                "/v1/chat/completions",
                json!({"model": "gpt-4.1-mini", "stream": true,
                       "messages": [{"role": "user", "content": "hi"}]}),
            )
        },
        Step {
            session: Some("sess-beta"),
            ..step(
                "responses, mock:exec tool call",
                "research",
                "/v1/responses",
                responses("gpt-5.5", "list the files mock:exec", true),
            )
        },
        Step {
            session: Some("sess-beta"),
            ..step(
                "responses, tool output follow-up",
                "research",
                "/v1/responses",
                tool_output(
                    "gpt-5.5",
                    "list the files mock:exec",
                    "exec_command",
                    "call_1",
                ),
            )
        },
        step(
            "chat, JSON",
            "platform",
            "/v1/chat/completions",
            json!({"model": "gpt-5-mini", "messages": [{"role": "user", "content": "hello"}]}),
        ),
    ]
}

/// A call as made: its step, reply and ledger row.
struct Made {
    step: Step,
    id: String,
    reply: Reply,
    row: Value,
}

async fn run_script(h: &Harness) -> Vec<Made> {
    let mut keys = BTreeMap::new();
    for team in ["platform", "research"] {
        keys.insert(team, h.team_key(team).await);
    }
    let mut made = Vec::new();
    for step in script() {
        let mut extra = Vec::new();
        if let Some(s) = step.session {
            extra.push(("session-id", s.to_string()));
        }
        if let Some(u) = step.user {
            extra.push(("x-tollgate-user", u.to_string()));
        }
        if let Some((trace, span)) = step.trace {
            extra.push(("traceparent", format!("00-{trace}-{span}-01")));
        }
        let reply = post(h, &keys[step.team], step.path, &step.body, &extra).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{}: {}",
            step.what,
            body_text(&reply)
        );
        let id = request_id(&reply);
        let row = h.ledger_row(&id).await;
        made.push(Made {
            step,
            id,
            reply,
            row,
        });
    }
    made
}

/// What the span and the cost event of a call must say, from its ledger row.
fn expected_attributes(m: &Made) -> BTreeMap<&'static str, String> {
    let row = &m.row;
    let s = |field: &str| row[field].as_str().unwrap_or_default().to_string();
    let mut want = BTreeMap::from([
        ("gen_ai.operation.name", "chat".to_string()),
        ("gen_ai.provider.name", "openai".to_string()),
        ("gen_ai.request.model", s("model_requested")),
        ("gen_ai.response.model", s("model_served")),
        ("gen_ai.response.id", response_id(&m.reply)),
        (
            "gen_ai.usage.input_tokens",
            int(row, "input_tokens").to_string(),
        ),
        (
            "gen_ai.usage.output_tokens",
            int(row, "output_tokens").to_string(),
        ),
        (
            "gen_ai.usage.cache_read.input_tokens",
            int(row, "cached_input_tokens").to_string(),
        ),
        (
            "gen_ai.usage.reasoning.output_tokens",
            int(row, "reasoning_tokens").to_string(),
        ),
        ("http.response.status_code", "200".to_string()),
        ("tollgate.team", m.step.team.to_string()),
        ("tollgate.team_id", s("team_id")),
        ("tollgate.cost_centre", s("cost_centre")),
        ("tollgate.key_id", s("key_id")),
        ("tollgate.cost_nano_usd", int(row, "cost_nanos").to_string()),
        ("tollgate.cost_usd", s("cost_usd")),
        ("tollgate.request_id", m.id.clone()),
        ("tollgate.estimated", row["estimated"].to_string()),
        ("tollgate.endpoint", s("endpoint")),
        ("tollgate.outcome", "complete".to_string()),
    ]);
    if let Some(session) = m.step.session {
        assert_eq!(row["session_id"], session, "{}", m.step.what);
        want.insert("tollgate.session_id", session.to_string());
    }
    want
}

async fn otlp_export_matches_the_ledger(protocol: &str) {
    let r = Receiver::start(
        &venv_bin("the OTLP receiver's opentelemetry-proto and grpcio").join("python"),
    );
    let port = if protocol == "grpc" {
        r.grpc_port
    } else {
        r.http_port
    };
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.telemetry.enabled = Some(true);
        c.telemetry.protocol = protocol.into();
        c.telemetry.endpoint = Some(format!("http://127.0.0.1:{port}"));
        // Metrics leave on flush only: one export holds the totals.
        c.telemetry.export_interval_ms = 600_000;
        c.telemetry.export_timeout_ms = 5_000;
    })
    .await;
    assert!(h.gateway.telemetry.exporting());
    let made = run_script(&h).await;
    // Calls that never get past the door (no valid key, unreadable body) leave no span: a span
    // without a team would be noise, and such traffic must not crowd cost spans out.
    let body = responses("gpt-5-mini", "hi", false);
    post(&h, "tg-not-a-key", "/v1/responses", &body, &[])
        .await
        .assert_error(401, "invalid_api_key");
    let key = h.team_key("platform").await;
    let unreadable = h
        .http
        .send(
            Method::POST,
            &format!("{}/v1/responses", h.base()),
            &[bearer(&key), ("content-type", "application/json".into())],
            "{not json",
        )
        .await;
    assert_eq!(unreadable.status, StatusCode::BAD_REQUEST, "{unreadable:?}");
    // A call tollgate refuses has its span, marked rejected.
    let narrow = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/teams/platform/keys", h.base()),
            &admin(),
            json!({"name": "narrow", "allowed_models": ["gpt-5-mini"]}),
        )
        .await;
    assert_eq!(narrow.status, StatusCode::CREATED, "{narrow:?}");
    let narrow = narrow.json()["secret"].as_str().unwrap().to_string();
    let refused = post(
        &h,
        &narrow,
        "/v1/responses",
        &responses("gpt-4.1-mini", "hi", false),
        &[],
    )
    .await;
    refused.assert_error(400, "model_not_allowed");
    h.gateway.flush_ledger().await;
    h.gateway.telemetry.flush().await;
    for signal in Signal::ALL {
        assert_eq!(
            h.gateway.telemetry.export_errors(signal),
            0,
            "{protocol}: {signal:?} exports failed"
        );
    }
    for signal in ["traces", "logs", "metrics"] {
        let exports = r.exports(signal);
        assert!(!exports.is_empty(), "{protocol}: no {signal} export");
        let transport = if protocol == "grpc" { "grpc" } else { "http" };
        assert!(
            exports.iter().all(|e| e["transport"] == transport),
            "{protocol}: {signal} not all over {transport}"
        );
    }

    // The chat stream's usage was asked for by tollgate, not the client.
    let upstream = h.mock.requests();
    assert_eq!(upstream.len(), made.len(), "one upstream request per call");
    let chat_stream = upstream
        .iter()
        .find(|u| u.path.ends_with("/chat/completions") && u.json().unwrap()["stream"] == true)
        .unwrap();
    assert_eq!(
        chat_stream.json().unwrap()["stream_options"]["include_usage"],
        true
    );

    let spans = r.spans();
    let logs = r.logs();
    assert_eq!(
        spans.len(),
        made.len() + 1,
        "{protocol}: one span per call and one for the refusal: {spans:#?}"
    );
    let rejected: Vec<BTreeMap<String, String>> = spans
        .iter()
        .map(|s| attrs(&s["attributes"]))
        .filter(|a| a.get("tollgate.outcome").map(String::as_str) == Some("rejected"))
        .collect();
    assert_eq!(rejected.len(), 1, "{protocol}: {rejected:#?}");
    for (k, v) in [
        ("tollgate.request_id", request_id(&refused)),
        ("tollgate.team", "platform".into()),
        ("gen_ai.request.model", "gpt-4.1-mini".into()),
        ("http.response.status_code", "400".into()),
        ("tollgate.cost_nano_usd", "0".into()),
    ] {
        assert_eq!(rejected[0].get(k), Some(&v), "{protocol}: refused span {k}");
    }
    let mut parents_seen = BTreeSet::new();
    for m in &made {
        let what = m.step.what;
        let row = &m.row;
        assert!(
            int(row, "input_tokens") > 0
                && int(row, "cached_input_tokens") > 0
                && int(row, "output_tokens") > 0
                && int(row, "reasoning_tokens") > 0
                && int(row, "cost_nanos") > 0,
            "{what}: the mock reports every kind of token: {row}"
        );
        assert_eq!(row["estimated"], false, "{what}");
        let want = expected_attributes(m);

        let mine: Vec<&Value> = spans
            .iter()
            .filter(|s| attrs(&s["attributes"]).get("tollgate.request_id") == Some(&m.id))
            .collect();
        assert_eq!(mine.len(), 1, "{protocol} {what}: spans {mine:#?}");
        let span = mine[0];
        let got = attrs(&span["attributes"]);
        for (k, v) in &want {
            assert_eq!(
                got.get(*k),
                Some(v),
                "{protocol} {what}: span attribute {k}"
            );
        }
        if m.step.session.is_none() {
            assert!(!got.contains_key("tollgate.session_id"), "{what}");
        }
        assert_eq!(
            span["name"],
            format!("chat {}", row["model_requested"].as_str().unwrap()),
            "{what}"
        );
        assert_eq!(span["kind"], "SPAN_KIND_CLIENT", "{what}");
        let trace_id = span["traceId"].as_str().unwrap();
        let span_id = span["spanId"].as_str().unwrap();
        match m.step.trace {
            Some((trace, parent)) => {
                assert_eq!(trace_id, trace, "{what}: the client's trace is continued");
                assert_eq!(span["parentSpanId"], parent, "{what}");
            }
            None => assert!(
                span["parentSpanId"].as_str().unwrap_or("").is_empty(),
                "{what}: a root span"
            ),
        }
        // The upstream sees our span as the parent, in the same trace.
        let traceparent = format!("00-{trace_id}-{span_id}-01");
        let sent: Vec<_> = upstream
            .iter()
            .filter(|u| u.header("traceparent") == Some(traceparent.as_str()))
            .collect();
        assert_eq!(
            sent.len(),
            1,
            "{protocol} {what}: upstream requests with traceparent {traceparent}: {:?}",
            upstream
                .iter()
                .map(|u| u.header("traceparent"))
                .collect::<Vec<_>>()
        );
        parents_seen.insert(traceparent);

        // The cost event: the same values, linked to the span.
        let costs: Vec<&Value> = logs
            .iter()
            .filter(|l| {
                l["eventName"] == "tollgate.cost"
                    && attrs(&l["attributes"]).get("tollgate.request_id") == Some(&m.id)
            })
            .collect();
        assert_eq!(costs.len(), 1, "{protocol} {what}: cost events {costs:#?}");
        let got = attrs(&costs[0]["attributes"]);
        for (k, v) in &want {
            assert_eq!(got.get(*k), Some(v), "{protocol} {what}: cost event {k}");
        }
        assert_eq!(costs[0]["traceId"], trace_id, "{what}");
        assert_eq!(costs[0]["spanId"], span_id, "{what}");
        assert!(
            !got.contains_key("tollgate.prompt"),
            "log_prompts is off: {got:?}"
        );
    }
    assert_eq!(parents_seen.len(), made.len());
    let ids: BTreeSet<&String> = made.iter().map(|m| &m.id).collect();
    assert_eq!(
        logs.iter()
            .filter(|l| l["eventName"] == "tollgate.cost"
                && attrs(&l["attributes"])
                    .get("tollgate.request_id")
                    .is_some_and(|id| ids.contains(id)))
            .count(),
        made.len(),
        "one cost event per call"
    );

    // Metrics: per team, the ledger's sums.
    let metrics = r.metrics();
    for team in ["platform", "research"] {
        let rows: Vec<&Value> = made
            .iter()
            .filter(|m| m.step.team == team)
            .map(|m| &m.row)
            .collect();
        let sum = |field: &str| rows.iter().map(|r| int(r, field)).sum::<i64>();
        let t = [("team", team)];
        let refusals = i64::from(team == "platform");
        assert_eq!(
            otlp_total(&metrics, "tollgate.requests", &t),
            rows.len() as i64 + refusals,
            "{protocol} {team}: requests, the refused one included"
        );
        assert_eq!(
            otlp_total(
                &metrics,
                "tollgate.requests",
                &[("team", team), ("outcome", "rejected")]
            ),
            refusals,
            "{protocol} {team}: refused requests"
        );
        assert_eq!(
            otlp_total(
                &metrics,
                "tollgate.requests",
                &[
                    ("team", team),
                    ("outcome", "complete"),
                    ("status_class", "2xx")
                ]
            ),
            rows.len() as i64,
            "{protocol} {team}: complete 2xx requests"
        );
        assert_eq!(
            otlp_total(&metrics, "tollgate.spend", &t),
            sum("cost_nanos"),
            "{protocol} {team}: spend"
        );
        for (kind, field) in [
            ("input", "input_tokens"),
            ("cached_input", "cached_input_tokens"),
            ("output", "output_tokens"),
            ("reasoning", "reasoning_tokens"),
        ] {
            assert_eq!(
                otlp_total(
                    &metrics,
                    "tollgate.tokens",
                    &[("team", team), ("kind", kind)]
                ),
                sum(field),
                "{protocol} {team}: {kind} tokens"
            );
        }
    }
    let mut tools: BTreeMap<String, i64> = BTreeMap::new();
    for m in &made {
        for (tool, n) in row_tools(&m.row) {
            *tools.entry(tool).or_default() += n;
        }
    }
    assert_eq!(tools, BTreeMap::from([("exec_command".to_string(), 1)]));
    for (tool, n) in &tools {
        assert_eq!(
            otlp_total(
                &metrics,
                "tollgate.tool_calls",
                &[("team", "research"), ("tool", tool)]
            ),
            *n,
            "{protocol}: tool calls of {tool}"
        );
    }

    // No data point of any metric names a session, key, user or request.
    let mut private: BTreeSet<String> = ["sess-alpha", "sess-beta", "alice", "bob"]
        .map(String::from)
        .into();
    for m in &made {
        private.insert(m.id.clone());
        private.insert(m.row["key_id"].as_str().unwrap().to_string());
    }
    assert!(metrics.len() >= 6, "{:?}", metrics.keys());
    for (name, metric) in &metrics {
        for p in points(metric) {
            for (key, value) in attrs(&p["attributes"]) {
                assert!(
                    ALLOWED_LABELS.contains(&key.as_str()),
                    "{protocol}: {name} carries attribute {key}={value}"
                );
                assert!(
                    !private.contains(&value),
                    "{protocol}: {name} carries {key}={value}"
                );
            }
        }
    }

    let Harness { gateway, .. } = h;
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_export_matches_the_ledger_call_by_call() {
    otlp_export_matches_the_ledger("http/protobuf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_export_matches_the_ledger_call_by_call() {
    otlp_export_matches_the_ledger("grpc").await;
}

// ---------------------------------------------------------------------- 2. rejections

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_are_counted_by_reason_and_never_billed() {
    let h = Harness::start(Backend::Sqlite).await;
    let teams = format!("{}/admin/v1/teams", h.base());
    let created = h
        .http
        .json(
            Method::POST,
            &teams,
            &admin(),
            json!({"name": "platform", "cost_centre": "CC-7"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let narrow = h
        .http
        .json(
            Method::POST,
            &format!("{teams}/platform/keys"),
            &admin(),
            json!({"name": "ci", "allowed_models": ["gpt-5-mini"]}),
        )
        .await;
    assert_eq!(narrow.status, StatusCode::CREATED, "{narrow:?}");
    let narrow = narrow.json()["secret"].as_str().unwrap().to_string();
    let call = |model: &str| responses(model, "hi", false);

    let allowed = post(&h, &narrow, "/v1/responses", &call("gpt-5-mini"), &[]).await;
    assert_eq!(allowed.status, StatusCode::OK, "{allowed:?}");
    let not_allowed = post(&h, &narrow, "/v1/responses", &call("gpt-4.1-mini"), &[]).await;
    not_allowed.assert_error(400, "model_not_allowed");

    // A budget the next call cannot fit in.
    let thrifty = h.team_key("thrifty").await;
    let budget = h
        .http
        .json(
            Method::POST,
            &format!("{}/admin/v1/budgets", h.base()),
            &admin(),
            json!({"team": "thrifty", "period": "month", "limit_usd": "0.000000001"}),
        )
        .await;
    assert_eq!(budget.status, StatusCode::CREATED, "{budget:?}");
    let mut over_budget = None;
    let mut admitted = Vec::new();
    for _ in 0..50 {
        let reply = post(&h, &thrifty, "/v1/responses", &call("gpt-5-mini"), &[]).await;
        if reply.status == StatusCode::OK {
            admitted.push(request_id(&reply));
            continue;
        }
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{reply:?}");
        assert_eq!(reply.json()["error"]["code"], "usage_limit_reached");
        over_budget = Some(reply);
        break;
    }
    let over_budget = over_budget.expect("the 1-nano-USD budget refuses a call");

    h.gateway.flush_ledger().await;
    for refused in [&not_allowed, &over_budget] {
        let url = format!("{}/admin/v1/requests/{}", h.base(), request_id(refused));
        let row = h.http.send(Method::GET, &url, &admin(), "").await;
        assert_eq!(
            row.status,
            StatusCode::NOT_FOUND,
            "a refused call has no ledger row: {}",
            body_text(&row)
        );
    }
    assert_eq!(
        h.mock.requests().len(),
        1 + admitted.len(),
        "refused calls never reach the upstream"
    );

    let m = scrape(&h).await;
    let rejections = "tollgate_rejections_total";
    assert_eq!(
        total(
            &m,
            rejections,
            &[
                ("team", "platform"),
                ("cost_centre", "CC-7"),
                ("reason", "model_not_allowed")
            ]
        ),
        1.0
    );
    assert_eq!(
        total(&m, rejections, &[("team", "thrifty"), ("reason", "budget")]),
        1.0
    );
    assert_eq!(total(&m, rejections, &[]), 2.0, "nothing else was refused");
    let requests = "tollgate_requests_total";
    for (team, ok) in [("platform", 1), ("thrifty", admitted.len())] {
        assert_eq!(
            total(
                &m,
                requests,
                &[
                    ("team", team),
                    ("outcome", "rejected"),
                    ("status_class", "4xx")
                ]
            ),
            1.0,
            "{team}"
        );
        assert_eq!(
            total(&m, requests, &[("team", team), ("outcome", "complete")]),
            ok as f64,
            "{team}"
        );
    }
    assert_eq!(
        total(&m, "tollgate_spend_nano_usd_total", &[("team", "thrifty")]),
        admitted_cost(&h, &admitted).await as f64,
        "a refusal costs nothing"
    );
}

/// What the ledger charged for these calls, in nano-USD.
async fn admitted_cost(h: &Harness, ids: &[String]) -> i64 {
    let mut sum = 0;
    for id in ids {
        sum += int(&h.ledger_row(id).await, "cost_nanos");
    }
    sum
}

// ------------------------------------------------------------------ 3. real Prometheus

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_spend_per_team_equal_to_the_ledger() {
    let prometheus_bin = tollgate_tests::clients::prometheus_tool("prometheus");
    // Scraped on the main listener with the metrics token, as a Prometheus outside the
    // gateway's private network would (the deploy kit scrapes the admin listener instead).
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.secrets.metrics_token = Some("prometheus-scrape-secret".into());
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: tollgate\n    metrics_path: /metrics\n    \
             authorization:\n      credentials: prometheus-scrape-secret\n    \
             static_configs:\n      - targets: ['{}']\n",
            h.gateway.addr
        ),
    )
    .unwrap();
    let web = format!("127.0.0.1:{}", free_port());
    let mut prometheus = process::Child::spawn(
        prometheus_bin.to_str().unwrap(),
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            &format!("--web.listen-address={web}"),
        ],
        &[],
        dir.path(),
    );
    prometheus
        .read_until(|l| l.contains("Server is ready to receive web requests"))
        .await;

    let keys = [
        ("platform", h.team_key("platform").await),
        ("research", h.team_key("research").await),
    ];
    let mut ids: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, body) in [
        responses("gpt-5-mini", "hi", false),
        responses("gpt-5.5", "hello there", true),
        json!({"model": "gpt-4.1-mini", "stream": true,
               "messages": [{"role": "user", "content": "hi"}]}),
        responses("gpt-5.5", "mock:exec", true),
        json!({"model": "gpt-5-mini", "messages": [{"role": "user", "content": "a longer one"}]}),
    ]
    .iter()
    .enumerate()
    {
        let (team, key) = &keys[i % 2];
        let path = if body.get("messages").is_some() {
            "/v1/chat/completions"
        } else {
            "/v1/responses"
        };
        let reply = post(&h, key, path, body, &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        ids.entry(team).or_default().push(request_id(&reply));
    }
    let mut want = BTreeMap::new();
    for (team, ids) in &ids {
        want.insert(team.to_string(), admitted_cost(&h, ids).await);
    }
    assert!(want.values().all(|v| *v > 0), "{want:?}");

    let url = format!(
        "http://{web}/api/v1/query?query={}",
        encode("sum by (team) (tollgate_spend_nano_usd_total)")
    );
    let last = RefCell::new(Value::Null);
    let seen = eventually(Duration::from_secs(20), || async {
        let reply = h.http.send(Method::GET, &url, &[], "").await;
        if reply.status != StatusCode::OK {
            return false;
        }
        let answer = reply.json();
        let got: BTreeMap<String, i64> = answer["data"]["result"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                assert_eq!(value.fract(), 0.0, "nano-USD are integers: {r}");
                (
                    r["metric"]["team"].as_str().unwrap().to_string(),
                    value as i64,
                )
            })
            .collect();
        *last.borrow_mut() = answer;
        got == want
    })
    .await;
    if !seen {
        // Why: a scrape error (unparsable exposition, wrong content type) shows on the target.
        let targets = h
            .http
            .send(
                Method::GET,
                &format!("http://{web}/api/v1/targets"),
                &[],
                "",
            )
            .await;
        panic!(
            "Prometheus never showed the ledger's spend per team {want:?}; last answer: {}; \
             targets: {}",
            last.borrow(),
            body_text(&targets)
        );
    }
    drop(prometheus);
}

// ------------------------------------------------------------------- 4. loop detector

/// A Codex-like agent of one team: each turn asks the model, gets a tool call, runs it and
/// sends the output back, in one session.
struct Agent<'a> {
    h: &'a Harness,
    key: String,
}

const AGENT_MODEL: &str = "gpt-5.5";

impl Agent<'_> {
    async fn send(&self, session: &str, body: &Value) -> Reply {
        let reply = post(
            self.h,
            &self.key,
            "/v1/responses",
            body,
            &[("session-id", session.to_string())],
        )
        .await;
        if reply.status == StatusCode::OK {
            // Settled (and seen by the detector) once its row is in the ledger.
            self.h.ledger_row(&request_id(&reply)).await;
        }
        reply
    }

    /// The first half of turn `n`: the model answers with a call of `tool`. Returns the
    /// follow-up carrying the tool's output.
    async fn ask(&self, session: &str, n: usize, tool: &str) -> Value {
        let marker = if tool == "exec_command" {
            "mock:exec"
        } else {
            "mock:patch"
        };
        let prompt = format!("step {n}: {marker}");
        let ask = self
            .send(session, &responses(AGENT_MODEL, &prompt, true))
            .await;
        assert_eq!(ask.status, StatusCode::OK, "{session} turn {n}: {ask:?}");
        assert!(
            body_text(&ask).contains(&format!("\"name\":\"{tool}\"")),
            "{session} turn {n}: no {tool} call in {}",
            body_text(&ask)
        );
        tool_output(AGENT_MODEL, &prompt, tool, &format!("call_{n}"))
    }

    /// A whole turn that must go through.
    async fn turn(&self, session: &str, n: usize, tool: &str) {
        let follow = self.ask(session, n, tool).await;
        let reply = self.send(session, &follow).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{session} turn {n}: {reply:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_codex_session_is_flagged_and_stopped_while_a_working_one_goes_on() {
    let h = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.telemetry.loop_exec_calls = 5;
        c.telemetry.loop_window_secs = 600;
        c.telemetry.loop_refuse = true;
    })
    .await;
    let agent = Agent {
        h: &h,
        key: h.team_key("agents").await,
    };
    let loop_events = || async {
        total(
            &scrape(&h).await,
            "tollgate_session_loop_events_total",
            &[("team", "agents")],
        )
    };
    // The working session applies a patch every third turn.
    let working_tool = |n: usize| {
        if n.is_multiple_of(3) {
            "apply_patch"
        } else {
            "exec_command"
        }
    };

    for n in 1..=4 {
        agent.turn("loop-1", n, "exec_command").await;
        assert_eq!(loop_events().await, 0.0, "after exec call {n}");
        agent.turn("work-1", n, working_tool(n)).await;
    }
    // The 5th shell call without a patch: flagged once, and the session is stopped.
    let follow = agent.ask("loop-1", 5, "exec_command").await;
    assert_eq!(loop_events().await, 1.0, "after the 5th exec call");
    let stopped = agent.send("loop-1", &follow).await;
    assert_eq!(stopped.status, StatusCode::TOO_MANY_REQUESTS, "{stopped:?}");
    let error = &stopped.json()["error"];
    assert_eq!(error["code"], "usage_limit_reached", "{error}");
    assert_eq!(error["type"], "usage_limit_reached", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("loop-1") && message.contains("loop") && message.contains("5 shell"),
        "the message explains the loop: {message}"
    );
    assert_eq!(
        stopped.headers["x-codex-promo-message"].to_str().unwrap(),
        message,
        "Codex shows the promo message"
    );
    // It stays stopped: a fresh turn is refused too, and nothing of either is billed.
    let again = agent
        .send(
            "loop-1",
            &responses(AGENT_MODEL, "try again mock:exec", true),
        )
        .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS, "{again:?}");
    h.gateway.flush_ledger().await;
    for refused in [&stopped, &again] {
        let url = format!("{}/admin/v1/requests/{}", h.base(), request_id(refused));
        let row = h.http.send(Method::GET, &url, &admin(), "").await;
        assert_eq!(row.status, StatusCode::NOT_FOUND, "{}", body_text(&row));
    }

    // The working session goes on, past the threshold in shell calls overall.
    for n in 5..=9 {
        agent.turn("work-1", n, working_tool(n)).await;
    }
    let m = scrape(&h).await;
    let agents = |extra: (&'static str, &'static str)| [("team", "agents"), extra];
    assert_eq!(
        total(
            &m,
            "tollgate_session_loop_events_total",
            &[("team", "agents")]
        ),
        1.0,
        "only the looping session was flagged"
    );
    assert_eq!(
        total(
            &m,
            "tollgate_rejections_total",
            &agents(("reason", "session_loop"))
        ),
        2.0
    );
    assert_eq!(
        total(
            &m,
            "tollgate_tool_calls_total",
            &agents(("tool", "exec_command"))
        ),
        5.0 + 6.0,
        "5 in the looping session, 6 in the working one"
    );
    assert_eq!(
        total(
            &m,
            "tollgate_tool_calls_total",
            &agents(("tool", "apply_patch"))
        ),
        3.0
    );
}

// ----------------------------------------------------------- 5. collector unreachable

/// The gateway's log, as `tollgate serve` writes it (level `info`): one subscriber per process,
/// installed at the first call; the other tests' gateways log into it too.
fn gateway_log() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(capture_logs)
}

fn p50(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_costs_no_call_and_no_log_storm() {
    let log = gateway_log();
    let closed = free_port();
    let on = Harness::start_custom(Backend::Sqlite, MockOptions::default(), |c| {
        c.telemetry.enabled = Some(true);
        c.telemetry.endpoint = Some(format!("http://127.0.0.1:{closed}"));
        c.telemetry.export_timeout_ms = 1_000;
        c.telemetry.export_interval_ms = 1_000;
    })
    .await;
    let off = Harness::start(Backend::Sqlite).await;
    assert!(on.gateway.telemetry.exporting() && !off.gateway.telemetry.exporting());
    let (key_on, key_off) = (
        on.team_key("platform").await,
        off.team_key("platform").await,
    );
    let body = responses("gpt-5-mini", "what does this cost?", false);
    // Warm both up (connection pools, key caches), then alternate so drift hits both alike.
    for _ in 0..10 {
        post(&on, &key_on, "/v1/responses", &body, &[]).await;
        post(&off, &key_off, "/v1/responses", &body, &[]).await;
    }
    let (mut t_on, mut t_off, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..200 {
        let started = Instant::now();
        let reply = post(&on, &key_on, "/v1/responses", &body, &[]).await;
        t_on.push(started.elapsed());
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        ids.push(request_id(&reply));
        let started = Instant::now();
        let reply = post(&off, &key_off, "/v1/responses", &body, &[]).await;
        t_off.push(started.elapsed());
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    let (p_on, p_off) = (p50(t_on), p50(t_off));
    println!(
        "p50 of 200 sequential non-streamed calls ({} build): OTLP on, collector unreachable \
         {p_on:?}; OTLP off {p_off:?}; added {:?}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        p_on.saturating_sub(p_off)
    );

    // Every call is billed exactly as without telemetry.
    let reference = one_more_row(&off, &key_off, &body).await;
    let input = (body.to_string().len() / 4) as i64;
    on.gateway.flush_ledger().await;
    for id in &ids {
        let row = on.ledger_row(id).await;
        assert_eq!(row["status"], 200, "{row}");
        assert_eq!(row["estimated"], false, "{row}");
        assert_eq!(int(&row, "input_tokens"), input, "{row}");
        for field in [
            "input_tokens",
            "cached_input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_nanos",
        ] {
            assert_eq!(row[field], reference[field], "{field}: {row}");
        }
    }

    on.gateway.telemetry.flush().await;
    let failed: Vec<(Signal, u64)> = Signal::ALL
        .iter()
        .map(|s| (*s, on.gateway.telemetry.export_errors(*s)))
        .collect();
    assert!(
        failed.iter().all(|(_, n)| *n > 0),
        "every signal's failures are counted: {failed:?}"
    );
    let m = scrape(&on).await;
    assert!(
        total(
            &m,
            "tollgate_telemetry_export_errors_total",
            &[("signal", "traces")]
        ) >= 1.0,
        "the failures show on /metrics"
    );
    assert_eq!(
        total(&m, "tollgate_requests_total", &[("outcome", "complete")]),
        210.0,
        "metrics are kept whatever the collector does"
    );

    let text = log.text();
    let export_lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            // Warnings and errors only: the capture is process-wide, and every gateway the other
            // tests start says once, at INFO, where its OTLP intake forwards to.
            let loud = l.contains(" warn ") || l.contains(" error ");
            loud && (l.contains("export") || l.contains("otlp") || l.contains("connection refused"))
        })
        .collect();
    assert_eq!(
        export_lines.len(),
        1,
        "one warning, not one per request or per batch:\n{}",
        export_lines.join("\n")
    );
    assert!(
        export_lines[0].contains("WARN") && export_lines[0].contains("at most once a minute"),
        "{}",
        export_lines[0]
    );
    for id in &ids {
        assert!(!text.contains(id.as_str()), "{id} was logged:\n{text}");
    }

    let Harness { gateway, .. } = on;
    gateway.shutdown().await;
}

/// The ledger row of one more call of `body` on `h`.
async fn one_more_row(h: &Harness, key: &str, body: &Value) -> Value {
    let reply = post(h, key, "/v1/responses", body, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    h.ledger_row(&request_id(&reply)).await
}
