//! `/metrics` text: accepted by Prometheus's own `promtool check metrics`, and the series carry
//! exactly the values of the ledger events fed in.

// Integration tests: helpers fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::process::{Command, Stdio};

use tollgate_core::config::TelemetryConfig;
use tollgate_core::{LedgerEvent, Money, ToolCount, Usage};
use tollgate_telemetry::{Outcome, Telemetry, UpstreamErrorKind, testing};

fn event(request_id: &str, team_id: &str, cost_centre: Option<&str>) -> LedgerEvent {
    LedgerEvent {
        request_id: request_id.into(),
        finished_at_ms: 1_800_000_000_700,
        team_id: team_id.into(),
        cost_centre: cost_centre.map(String::from),
        session_id: Some(format!("sess-{request_id}")),
        usage: Usage {
            input: 1000,
            cached_input: 600,
            output: 200,
            reasoning: 50,
        },
        ttfb_ms: Some(30),
        latency_ms: 700,
        tool_calls: vec![
            ToolCount {
                name: "exec_command".into(),
                count: 3,
            },
            ToolCount {
                name: "apply_patch".into(),
                count: 1,
            },
        ],
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        ..testing::event()
    }
}

/// Runs `promtool check metrics` on the text (promtool is fetched on first use).
fn promtool_check(text: &str) {
    let promtool = testing::tools::prometheus_tool("promtool");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics rejected the exposition:\n{}{}\n--- text ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn line<'a>(text: &'a str, series: &str) -> &'a str {
    text.lines()
        .find(|l| l.rsplit_once(' ').is_some_and(|(s, _)| s == series))
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

fn value(text: &str, series: &str) -> String {
    line(text, series).rsplit_once(' ').unwrap().1.to_string()
}

#[tokio::test]
async fn metrics_text_passes_promtool_with_exact_values() {
    let telemetry = Telemetry::start(&TelemetryConfig::default()).unwrap();
    let none = http::HeaderMap::new();
    for id in ["r1", "r2"] {
        let e = event(id, "team_1", Some("cc-42"));
        telemetry.finish(
            telemetry.begin(&none),
            &e,
            "platform",
            Outcome::Complete,
            None,
        );
    }
    // A team whose name needs escaping, no cost centre; a stream the upstream cut.
    let mut broken = event("r3", "team_2", None);
    broken.latency_ms = 45_000;
    telemetry.finish(
        telemetry.begin(&none),
        &broken,
        "a \"quoted\"\\team",
        Outcome::UpstreamBroke,
        None,
    );
    let mut timeout = event("r4", "team_1", Some("cc-42"));
    timeout.status = 504;
    timeout.cost = Money::ZERO;
    timeout.usage = Usage::default();
    timeout.ttfb_ms = None;
    timeout.tool_calls.clear();
    let mut span = telemetry.begin(&none);
    span.set_upstream_error(UpstreamErrorKind::Timeout);
    telemetry.finish(span, &timeout, "platform", Outcome::Complete, None);
    telemetry.rejection("platform", "cc-42", "rate_limit");
    telemetry.budget_used("bud_1", "platform", "cc-42", "team", "month", 0.75);
    telemetry.budget_event("platform", "cc-42", "soft");
    telemetry.ledger_gauges(|| (7, 4096));

    let text = telemetry.prometheus_text();
    promtool_check(&text);

    let p = r#"cost_centre="cc-42",endpoint="responses",model="gpt-5-2025-08-07""#;
    assert_eq!(
        value(
            &text,
            &format!(
                r#"tollgate_requests_total{{{p},outcome="complete",status_class="2xx",team="platform"}}"#
            )
        ),
        "2"
    );
    assert_eq!(
        value(
            &text,
            &format!(
                r#"tollgate_requests_total{{{p},outcome="complete",status_class="5xx",team="platform"}}"#
            )
        ),
        "1"
    );
    assert_eq!(
        value(
            &text,
            r#"tollgate_spend_nano_usd_total{cost_centre="cc-42",model="gpt-5-2025-08-07",team="platform"}"#
        ),
        "24691356"
    );
    for (kind, n) in [
        ("input", "2000"),
        ("cached_input", "1200"),
        ("output", "400"),
        ("reasoning", "100"),
    ] {
        let series = format!(
            r#"tollgate_tokens_total{{cost_centre="cc-42",kind="{kind}",model="gpt-5-2025-08-07",team="platform"}}"#
        );
        assert_eq!(value(&text, &series), n, "{kind}");
    }
    assert_eq!(
        value(
            &text,
            r#"tollgate_tool_calls_total{cost_centre="cc-42",team="platform",tool="exec_command"}"#
        ),
        "6"
    );
    assert_eq!(
        value(
            &text,
            r#"tollgate_tool_calls_total{cost_centre="cc-42",team="platform",tool="apply_patch"}"#
        ),
        "2"
    );
    // Escaped label value, empty cost centre.
    let q = r#"cost_centre="",endpoint="responses",model="gpt-5-2025-08-07",outcome="upstream_broke",status_class="2xx",team="a \"quoted\"\\team""#;
    assert_eq!(
        value(&text, &format!("tollgate_requests_total{{{q}}}")),
        "1"
    );
    assert_eq!(
        value(
            &text,
            r#"tollgate_upstream_errors_total{cost_centre="",kind="broken",model="gpt-5-2025-08-07",team="a \"quoted\"\\team"}"#
        ),
        "1"
    );
    assert_eq!(
        value(
            &text,
            r#"tollgate_upstream_errors_total{cost_centre="cc-42",kind="timeout",model="gpt-5-2025-08-07",team="platform"}"#
        ),
        "1"
    );
    // Histograms: cumulative buckets in seconds.
    let h = format!(r#"{p},team="platform""#);
    assert_eq!(
        value(
            &text,
            &format!(r#"tollgate_request_duration_seconds_bucket{{{h},le="0.5"}}"#)
        ),
        "0"
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"tollgate_request_duration_seconds_bucket{{{h},le="1"}}"#)
        ),
        "3"
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"tollgate_request_duration_seconds_bucket{{{h},le="+Inf"}}"#)
        ),
        "3"
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"tollgate_request_duration_seconds_count{{{h}}}"#)
        ),
        "3"
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"tollgate_request_duration_seconds_sum{{{h}}}"#)
        ),
        "2.0999999999999996"
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"tollgate_time_to_first_byte_seconds_bucket{{{h},le="0.05"}}"#)
        ),
        "2"
    );
    assert_eq!(
        value(
            &text,
            &format!(r#"tollgate_time_to_first_byte_seconds_count{{{h}}}"#)
        ),
        "2"
    );
    assert!(text.contains("# TYPE tollgate_request_duration_seconds histogram"));
    assert!(text.contains("# TYPE tollgate_requests_total counter"));
    assert_eq!(
        value(
            &text,
            r#"tollgate_rejections_total{cost_centre="cc-42",reason="rate_limit",team="platform"}"#
        ),
        "1"
    );
    assert_eq!(
        value(
            &text,
            r#"tollgate_budget_used_ratio{budget="bud_1",cost_centre="cc-42",period="month",scope="team",team="platform"}"#
        ),
        "0.75"
    );
    assert!(text.contains("# TYPE tollgate_budget_used_ratio gauge"));
    assert_eq!(
        value(
            &text,
            r#"tollgate_budget_events_total{cost_centre="cc-42",kind="soft",team="platform"}"#
        ),
        "1"
    );
    assert_eq!(value(&text, "tollgate_ledger_queue_depth"), "7");
    assert_eq!(value(&text, "tollgate_ledger_spool_bytes"), "4096");
    assert_eq!(
        value(
            &text,
            r#"tollgate_telemetry_export_errors_total{signal="traces"}"#
        ),
        "0"
    );
    assert!(!text.contains("sess-"), "no session id in any label");
    assert!(!text.contains("key_abc"), "no key id in any label");

    // A budget's labels change: the old series goes, the new one stays.
    telemetry.budget_used("bud_1", "platform", "cc-42", "team", "week", 0.5);
    let text = telemetry.prometheus_text();
    assert!(!text.contains(r#"period="month""#));
    telemetry.budget_forget("bud_1");
    assert!(
        !telemetry
            .prometheus_text()
            .contains("tollgate_budget_used_ratio")
    );
    telemetry.shutdown().await;
}

#[tokio::test]
async fn session_loop_and_cost_events_are_counted_and_refusal_is_reported() {
    let cfg = TelemetryConfig {
        loop_refuse: true,
        session_cost_alert_usd: Some("0.02".into()),
        ..TelemetryConfig::default()
    };
    let telemetry = Telemetry::start(&cfg).unwrap();
    let mut e = event("loop", "team_1", Some("cc-42"));
    e.tool_calls = vec![ToolCount {
        name: "exec_command".into(),
        count: 25,
    }];
    for i in 0..2 {
        e.finished_at_ms += i * 1000;
        telemetry.finish(
            telemetry.begin(&http::HeaderMap::new()),
            &e,
            "platform",
            Outcome::Complete,
            None,
        );
    }
    let text = telemetry.prometheus_text();
    promtool_check(&text);
    assert_eq!(
        value(
            &text,
            r#"tollgate_session_loop_events_total{cost_centre="cc-42",team="platform"}"#
        ),
        "1"
    );
    assert_eq!(
        value(
            &text,
            r#"tollgate_session_cost_events_total{cost_centre="cc-42",team="platform"}"#
        ),
        "1"
    );
    let message = telemetry.session_refused("team_1", "sess-loop").unwrap();
    assert!(message.contains("sess-loop"), "{message}");
    assert_eq!(telemetry.session_refused("team_1", "sess-other"), None);
    telemetry.shutdown().await;
}

#[tokio::test]
async fn disabled_telemetry_is_inert() {
    let cfg = TelemetryConfig {
        metrics_path: String::new(),
        ..TelemetryConfig::default()
    };
    let telemetry = Telemetry::start(&cfg).unwrap();
    assert!(!telemetry.exporting());
    let mut incoming = http::HeaderMap::new();
    incoming.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    let mut span = telemetry.begin(&incoming);
    let mut upstream = http::HeaderMap::new();
    span.inject(&mut upstream);
    assert!(upstream.is_empty(), "no span, nothing injected");
    assert_eq!(span.trace_id(), None);
    telemetry.finish(
        span,
        &event("r", "t", None),
        "team",
        Outcome::Complete,
        None,
    );
    assert_eq!(telemetry.prometheus_text(), "");
    telemetry.shutdown().await;
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    assert!(Telemetry::start(&TelemetryConfig::default()).is_err());
}
