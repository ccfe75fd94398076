//! One proxied request: its span (timed from the request's arrival, continuing the client's
//! W3C trace) and, when the ledger event is settled, every metric it moves, the span's
//! attributes and the `tollgate.cost` log record — all from the one [`LedgerEvent`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use tollgate_core::LedgerEvent;

use crate::Telemetry;
use crate::instruments::Instruments;
use crate::names::{attr, event, label};

/// How a request ended, the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response was delivered whole (whatever its status).
    Complete,
    /// The upstream's stream broke or stalled mid-way.
    UpstreamBroke,
    /// The client went away before the end.
    ClientGone,
    /// tollgate refused it before anything was sent upstream.
    Rejected,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Complete => "complete",
            Outcome::UpstreamBroke => "upstream_broke",
            Outcome::ClientGone => "client_gone",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Upstream failures that leave no upstream status behind (tollgate answers 502/504 itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
}

/// The telemetry state of one in-flight request. Cheap when export is off (no span).
///
/// The SDK span is created when first needed — when the request is sent upstream ([`inject`])
/// or settled ([`Telemetry::finish`]) — with the arrival time as its start. A request that
/// fails before either (no valid key, unreadable body) exports nothing: no span without a team,
/// and no unauthenticated traffic crowding cost spans out of the bounded export queue.
///
/// [`inject`]: RequestSpan::inject
#[derive(Debug, Default)]
pub struct RequestSpan {
    begun: Option<Begun>,
    span: Option<Span>,
    response_id: Option<String>,
    upstream_error: Option<UpstreamErrorKind>,
}

/// What the span will be started from.
#[derive(Debug)]
struct Begun {
    tracer: SdkTracer,
    parent: Context,
    started: SystemTime,
}

impl Begun {
    fn start(&self) -> Span {
        // Named again in `finish`, once the model is known ("{operation} {model}").
        self.tracer
            .span_builder("tollgate.request")
            .with_kind(SpanKind::Client)
            .with_start_time(self.started)
            .start_with_context(&self.tracer, &self.parent)
    }
}

impl RequestSpan {
    /// Writes `traceparent`/`tracestate` naming this span, for the upstream request. Without
    /// export there is no span and the headers are left as they are.
    pub fn inject(&mut self, headers: &mut http::HeaderMap) {
        let Some(begun) = &self.begun else {
            return;
        };
        let span = self.span.get_or_insert_with(|| begun.start());
        let cx = Context::new().with_remote_span_context(span.span_context().clone());
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }

    /// The upstream's response id (`resp_…`, `chatcmpl-…`): `gen_ai.response.id`.
    pub fn set_response_id(&mut self, id: &str) {
        if self.begun.is_some() {
            self.response_id = Some(id.to_string());
        }
    }

    /// The upstream could not be reached or did not answer in time; counted under this kind
    /// instead of the 502/504 status tollgate then returns.
    pub fn set_upstream_error(&mut self, kind: UpstreamErrorKind) {
        self.upstream_error = Some(kind);
    }

    /// The W3C trace id (32 hex digits) of this request's span, for log correlation; `None`
    /// until the span exists (see [`RequestSpan`]).
    pub fn trace_id(&self) -> Option<String> {
        self.span
            .as_ref()
            .map(|s| s.span_context().trace_id().to_string())
    }
}

/// `gen_ai.operation.name` for an endpoint label.
fn operation(endpoint: &str) -> &str {
    match endpoint {
        "chat.completions" | "responses" => "chat",
        "completions" => "text_completion",
        other => other,
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// The `kind` label of `tollgate_upstream_errors_total`, if this request was one.
fn upstream_error(
    marked: Option<UpstreamErrorKind>,
    outcome: Outcome,
    status: u16,
) -> Option<&'static str> {
    match (marked, outcome) {
        (Some(UpstreamErrorKind::Connect), _) => Some("connect"),
        (Some(UpstreamErrorKind::Timeout), _) => Some("timeout"),
        (None, Outcome::Rejected) => None,
        (None, Outcome::UpstreamBroke) => Some("broken"),
        (None, _) => match status {
            400..=499 => Some("status_4xx"),
            500..=599 => Some("status_5xx"),
            _ => None,
        },
    }
}

/// Span attribute values as log attribute values (the two APIs use different types).
pub(crate) fn any_value(value: opentelemetry::Value) -> AnyValue {
    match value {
        opentelemetry::Value::Bool(b) => AnyValue::from(b),
        opentelemetry::Value::I64(i) => AnyValue::from(i),
        opentelemetry::Value::F64(f) => AnyValue::from(f),
        opentelemetry::Value::String(s) => AnyValue::from(s),
        other => AnyValue::from(other.as_str().into_owned()),
    }
}

pub(crate) fn at_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Telemetry {
    /// Begins the request's span, a child of the client's `traceparent` if it sent one, timed
    /// from now (created on first use: see [`RequestSpan`]).
    pub fn begin(&self, headers: &http::HeaderMap) -> RequestSpan {
        let Some(tracer) = &self.inner.tracer else {
            return RequestSpan::default();
        };
        RequestSpan {
            begun: Some(Begun {
                tracer: tracer.clone(),
                parent: self.inner.propagator.extract(&HeaderExtractor(headers)),
                started: SystemTime::now(),
            }),
            ..RequestSpan::default()
        }
    }

    /// Records a settled request: metrics, span attributes and end, the cost event, and the
    /// session trajectory. `team` is the team's name; `prompt` the request body, logged only
    /// with `log_prompts` on, after redaction.
    pub fn finish(
        &self,
        span: RequestSpan,
        event: &LedgerEvent,
        team: &str,
        outcome: Outcome,
        prompt: Option<&[u8]>,
    ) {
        for signal in self.inner.trajectories.observe(event) {
            self.session_signal(&signal, event, team);
        }
        let error = upstream_error(span.upstream_error, outcome, event.status);
        if let Some(instruments) = &self.inner.instruments {
            record_metrics(instruments, event, team, outcome, error);
        }
        let Some(begun) = &span.begun else {
            return;
        };
        let started = begun.started;
        let mut otel_span = span.span.unwrap_or_else(|| begun.start());
        let attributes = attributes(event, team, outcome, span.response_id.as_deref(), error);
        if let Some(logger) = &self.inner.logger {
            let mut record = logger.create_log_record();
            record.set_event_name(event::COST);
            record.set_severity_number(Severity::Info);
            record.set_severity_text("INFO");
            record.set_timestamp(at_ms(event.finished_at_ms));
            record.set_observed_timestamp(SystemTime::now());
            let sc = otel_span.span_context();
            record.set_trace_context(sc.trace_id(), sc.span_id(), Some(sc.trace_flags()));
            record.set_body(AnyValue::from(format!(
                "{team} spent ${} on {} {}",
                event.cost.to_usd_string(),
                event.endpoint,
                event.model_served.as_deref().unwrap_or("")
            )));
            record.add_attributes(
                attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), any_value(kv.value.clone()))),
            );
            if let (Some(redactor), Some(prompt)) = (&self.inner.redactor, prompt) {
                record.add_attribute(attr::PROMPT, redactor.redact(prompt));
            }
            logger.emit(record);
        }
        let op = operation(&event.endpoint);
        let name = match event
            .model_requested
            .as_deref()
            .or(event.model_served.as_deref())
        {
            Some(model) => format!("{op} {model}"),
            None => op.to_string(),
        };
        otel_span.update_name(name);
        otel_span.set_attributes(attributes);
        if let Some(kind) = error {
            otel_span.set_status(Status::error(kind));
        }
        // The ledger's end time, never before the span's own start (ms truncation).
        otel_span.end_with_timestamp(at_ms(event.finished_at_ms).max(started));
    }
}

/// Span and cost-event attributes.
fn attributes(
    e: &LedgerEvent,
    team: &str,
    outcome: Outcome,
    response_id: Option<&str>,
    error: Option<&'static str>,
) -> Vec<KeyValue> {
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let mut a = Vec::with_capacity(24);
    a.push(KeyValue::new(
        attr::OPERATION,
        operation(&e.endpoint).to_string(),
    ));
    a.push(KeyValue::new(attr::PROVIDER, "openai"));
    if let Some(m) = &e.model_requested {
        a.push(KeyValue::new(attr::REQUEST_MODEL, m.clone()));
    }
    if let Some(m) = &e.model_served {
        a.push(KeyValue::new(attr::RESPONSE_MODEL, m.clone()));
    }
    if let Some(id) = response_id {
        a.push(KeyValue::new(attr::RESPONSE_ID, id.to_string()));
    }
    a.push(KeyValue::new(attr::INPUT_TOKENS, int(e.usage.input)));
    a.push(KeyValue::new(attr::OUTPUT_TOKENS, int(e.usage.output)));
    a.push(KeyValue::new(
        attr::CACHED_INPUT_TOKENS,
        int(e.usage.cached_input),
    ));
    a.push(KeyValue::new(
        attr::REASONING_TOKENS,
        int(e.usage.reasoning),
    ));
    a.push(KeyValue::new(attr::STATUS_CODE, i64::from(e.status)));
    if let Some(kind) = error {
        a.push(KeyValue::new(attr::ERROR_TYPE, kind));
    }
    a.push(KeyValue::new(attr::TEAM, team.to_string()));
    a.push(KeyValue::new(attr::TEAM_ID, e.team_id.clone()));
    a.push(KeyValue::new(
        attr::COST_CENTRE,
        e.cost_centre.clone().unwrap_or_default(),
    ));
    a.push(KeyValue::new(attr::KEY_ID, e.key_id.clone()));
    a.push(KeyValue::new(attr::COST_USD, e.cost.to_usd_string()));
    a.push(KeyValue::new(attr::COST_NANO_USD, e.cost.nanos()));
    if let Some(s) = &e.session_id {
        a.push(KeyValue::new(attr::SESSION_ID, s.clone()));
    }
    a.push(KeyValue::new(attr::REQUEST_ID, e.request_id.clone()));
    a.push(KeyValue::new(attr::ESTIMATED, e.estimated));
    a.push(KeyValue::new(attr::ENDPOINT, e.endpoint.clone()));
    a.push(KeyValue::new(attr::OUTCOME, outcome.label()));
    a
}

/// Every request metric, from one label array reused slot by slot (no per-metric clones).
fn record_metrics(
    m: &Instruments,
    e: &LedgerEvent,
    team: &str,
    outcome: Outcome,
    error: Option<&'static str>,
) {
    let model = e
        .model_served
        .as_deref()
        .or(e.model_requested.as_deref())
        .unwrap_or("");
    let mut a = [
        KeyValue::new(label::TEAM, team.to_string()),
        KeyValue::new(
            label::COST_CENTRE,
            e.cost_centre.clone().unwrap_or_default(),
        ),
        KeyValue::new(label::MODEL, model.to_string()),
        KeyValue::new(label::ENDPOINT, e.endpoint.clone()),
        KeyValue::new(label::STATUS_CLASS, status_class(e.status)),
        KeyValue::new(label::OUTCOME, outcome.label()),
    ];
    m.requests.add(1, &a);
    // team, cost_centre, model, endpoint
    m.duration
        .record(e.latency_ms.max(0) as f64 / 1000.0, &a[..4]);
    if let Some(ttfb) = e.ttfb_ms {
        m.ttfb.record(ttfb.max(0) as f64 / 1000.0, &a[..4]);
    }
    // team, cost_centre, model
    m.spend
        .add(u64::try_from(e.cost.nanos()).unwrap_or(0), &a[..3]);
    // team, cost_centre, model, kind
    for (kind, n) in [
        ("input", e.usage.input),
        ("cached_input", e.usage.cached_input),
        ("output", e.usage.output),
        ("reasoning", e.usage.reasoning),
    ] {
        a[3] = KeyValue::new(label::KIND, kind);
        m.tokens.add(n, &a[..4]);
    }
    if let Some(kind) = error {
        a[3] = KeyValue::new(label::KIND, kind);
        m.upstream_errors.add(1, &a[..4]);
    }
    // team, cost_centre, tool
    for tool in &e.tool_calls {
        a[2] = KeyValue::new(label::TOOL, tool.name.clone());
        m.tool_calls.add(u64::from(tool.count), &a[..3]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_error_kinds() {
        assert_eq!(upstream_error(None, Outcome::Complete, 200), None);
        assert_eq!(
            upstream_error(None, Outcome::Complete, 429),
            Some("status_4xx")
        );
        assert_eq!(
            upstream_error(None, Outcome::ClientGone, 503),
            Some("status_5xx")
        );
        assert_eq!(upstream_error(None, Outcome::Rejected, 429), None);
        assert_eq!(
            upstream_error(None, Outcome::UpstreamBroke, 200),
            Some("broken")
        );
        assert_eq!(
            upstream_error(Some(UpstreamErrorKind::Timeout), Outcome::Complete, 504),
            Some("timeout")
        );
    }

    #[test]
    fn operations_follow_genai_names() {
        assert_eq!(operation("responses"), "chat");
        assert_eq!(operation("chat.completions"), "chat");
        assert_eq!(operation("embeddings"), "embeddings");
        assert_eq!(operation("completions"), "text_completion");
    }
}
