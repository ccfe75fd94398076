//! Every name tollgate exports, in one place: instruments (the contract in `docs/metrics.md`),
//! span and log attribute keys, event names. Changing one here changes it everywhere.

/// One instrument. The OTLP name is dotted; the Prometheus name is derived from name, unit and
/// kind by the same rules the OpenTelemetry Collector's Prometheus exporter applies, so a
/// scrape of `/metrics` and a Collector fed over OTLP show identical series names.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
}

const fn def(name: &'static str, unit: &'static str, description: &'static str) -> MetricDef {
    MetricDef {
        name,
        unit,
        description,
    }
}

pub const REQUESTS: MetricDef = def(
    "tollgate.requests",
    "{request}",
    "Proxied requests by status class and outcome.",
);
pub const TOKENS: MetricDef = def(
    "tollgate.tokens",
    "{token}",
    "Tokens by kind; cached_input is part of input and reasoning part of output.",
);
pub const SPEND: MetricDef = def(
    "tollgate.spend",
    "nano_usd",
    "Cost charged in nano-USD (divide by 1e9 for USD): the ledger's cost summed.",
);
pub const REQUEST_DURATION: MetricDef = def(
    "tollgate.request.duration",
    "s",
    "Request start to last byte.",
);
pub const TIME_TO_FIRST_BYTE: MetricDef = def(
    "tollgate.time_to_first_byte",
    "s",
    "Request start to the upstream's first body byte.",
);
pub const TOOL_CALLS: MetricDef = def(
    "tollgate.tool_calls",
    "{call}",
    "Tool calls the model made, by tool name.",
);
pub const REJECTIONS: MetricDef = def(
    "tollgate.rejections",
    "{request}",
    "Requests refused by tollgate, by reason.",
);
pub const UPSTREAM_ERRORS: MetricDef = def(
    "tollgate.upstream.errors",
    "{error}",
    "Upstream failures: status_4xx, status_5xx, connect, timeout, broken.",
);
pub const BUDGET_USED: MetricDef = def(
    "tollgate.budget.used",
    "1",
    "Committed spend / hard limit of each budget's current window.",
);
pub const BUDGET_EVENTS: MetricDef = def(
    "tollgate.budget.events",
    "{event}",
    "Budget events: soft threshold crossed, hard limit reached.",
);
pub const SESSION_LOOP_EVENTS: MetricDef = def(
    "tollgate.session.loop_events",
    "{session}",
    "Sessions flagged by the tool-loop detector.",
);
pub const SESSION_COST_EVENTS: MetricDef = def(
    "tollgate.session.cost_events",
    "{session}",
    "Sessions whose cost crossed the configured threshold.",
);
pub const LEDGER_QUEUE_DEPTH: MetricDef = def(
    "tollgate.ledger.queue_depth",
    "{event}",
    "Ledger events waiting to be written.",
);
pub const LEDGER_SPOOL: MetricDef = def(
    "tollgate.ledger.spool",
    "By",
    "Bytes in the ledger's disk spool (non-zero while the database is unreachable).",
);
pub const EXPORT_ERRORS: MetricDef = def(
    "tollgate.telemetry.export_errors",
    "{error}",
    "Failed OTLP exports by signal, counted rather than logged per request.",
);
pub const INTAKE_EXPORTS: MetricDef = def(
    "tollgate.intake.exports",
    "{export}",
    "OTLP exports clients sent to /otlp/v1/* and tollgate accepted, by team and signal.",
);
pub const INTAKE_DROPPED: MetricDef = def(
    "tollgate.intake.dropped",
    "{export}",
    "Accepted OTLP exports not delivered to the collector, by signal and reason.",
);

pub const WEBSOCKET_CONNECTIONS: MetricDef = def(
    "tollgate.websocket.connections",
    "{connection}",
    "Responses WebSocket connections opened.",
);
pub const WEBSOCKET_OPEN: MetricDef = def(
    "tollgate.websocket.open",
    "{connection}",
    "Responses WebSocket connections open now.",
);
pub const WEBSOCKET_DURATION: MetricDef = def(
    "tollgate.websocket.duration",
    "s",
    "How long Responses WebSocket connections stayed open.",
);

pub const CODEX_TASKS: MetricDef = def(
    "tollgate.codex.tasks",
    "{task}",
    "Codex turns that stopped, by outcome and task type (from `tollgate hook` on Stop).",
);
pub const CODEX_GATE_RUNS: MetricDef = def(
    "tollgate.codex.gate_runs",
    "{run}",
    "Quality gates `tollgate hook --gate` ran, by result.",
);
pub const CODEX_TOOL_EVENTS: MetricDef = def(
    "tollgate.codex.tool_events",
    "{event}",
    "Codex tool-use hook events, by tool name.",
);

pub const CODEX_SESSION_DURATION: MetricDef = def(
    "tollgate.codex.session.duration",
    "s",
    "Codex sessions' time to resolution (their `session_loop` span, from the OTLP intake), by task type.",
);
pub const CODEX_TURN_DURATION: MetricDef = def(
    "tollgate.codex.turn.duration",
    "s",
    "Codex turns' durations (their `session_task.turn` spans, from the OTLP intake).",
);
pub const CODEX_TOKENS: MetricDef = def(
    "tollgate.codex.tokens",
    "{token}",
    "Tokens Codex counted itself (`codex.turn.token_usage`, from the OTLP intake), by type.",
);
pub const CODEX_TOOL_DECISIONS: MetricDef = def(
    "tollgate.codex.tool_decisions",
    "{decision}",
    "Codex's tool-call approval decisions (`codex.tool_decision` events, from the OTLP intake).",
);
pub const CODEX_API_ERRORS: MetricDef = def(
    "tollgate.codex.api_errors",
    "{error}",
    "Model API requests Codex reported failing (from the OTLP intake), by transport and status.",
);

/// Buckets for Codex sessions: seconds to two hours.
pub const BUCKETS_SESSION_SECONDS: [f64; 12] = [
    10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 7200.0,
];

/// Buckets for Codex turns: a second to twenty minutes.
pub const BUCKETS_TURN_SECONDS: [f64; 10] =
    [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0];

/// Buckets for WebSocket lifetimes: seconds to the upstream's one-hour limit.
pub const BUCKETS_CONNECTION_SECONDS: [f64; 10] = [
    1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

/// Histogram buckets in seconds (`docs/metrics.md`): the SDK's defaults suit milliseconds.
pub const BUCKETS_SECONDS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Metric label keys (bounded: never a session, key or user).
pub mod label {
    pub const TEAM: &str = "team";
    pub const COST_CENTRE: &str = "cost_centre";
    pub const MODEL: &str = "model";
    pub const ENDPOINT: &str = "endpoint";
    pub const STATUS_CLASS: &str = "status_class";
    pub const OUTCOME: &str = "outcome";
    pub const KIND: &str = "kind";
    pub const TOOL: &str = "tool";
    pub const REASON: &str = "reason";
    pub const BUDGET: &str = "budget";
    pub const SCOPE: &str = "scope";
    pub const PERIOD: &str = "period";
    pub const SIGNAL: &str = "signal";
    pub const TASK_TYPE: &str = "task_type";
    pub const RESULT: &str = "result";
    pub const DECISION: &str = "decision";
    pub const TRANSPORT: &str = "transport";
    pub const STATUS: &str = "status";
    pub const TYPE: &str = "type";
}

/// Span and log attribute keys: OpenTelemetry GenAI semantic conventions plus `tollgate.*`.
pub mod attr {
    pub const OPERATION: &str = "gen_ai.operation.name";
    pub const PROVIDER: &str = "gen_ai.provider.name";
    pub const REQUEST_MODEL: &str = "gen_ai.request.model";
    pub const RESPONSE_MODEL: &str = "gen_ai.response.model";
    pub const RESPONSE_ID: &str = "gen_ai.response.id";
    pub const INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
    pub const OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
    pub const CACHED_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
    pub const REASONING_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
    pub const STATUS_CODE: &str = "http.response.status_code";
    pub const ERROR_TYPE: &str = "error.type";
    pub const TEAM: &str = "tollgate.team";
    pub const TEAM_ID: &str = "tollgate.team_id";
    pub const COST_CENTRE: &str = "tollgate.cost_centre";
    pub const KEY_ID: &str = "tollgate.key_id";
    pub const COST_USD: &str = "tollgate.cost_usd";
    pub const COST_NANO_USD: &str = "tollgate.cost_nano_usd";
    pub const SESSION_ID: &str = "tollgate.session_id";
    pub const REQUEST_ID: &str = "tollgate.request_id";
    pub const ESTIMATED: &str = "tollgate.estimated";
    pub const ENDPOINT: &str = "tollgate.endpoint";
    pub const OUTCOME: &str = "tollgate.outcome";
    pub const PROMPT: &str = "tollgate.prompt";
    pub const SESSION_LOOP_CALLS: &str = "tollgate.session.loop_calls";
    pub const SESSION_WINDOW_SECS: &str = "tollgate.session.window_secs";
    pub const SESSION_REFUSED: &str = "tollgate.session.refused";
    pub const SESSION_COST_USD: &str = "tollgate.session.cost_usd";
    pub const SESSION_THRESHOLD_USD: &str = "tollgate.session.threshold_usd";
}

/// Log record event names.
pub mod event {
    pub const COST: &str = "tollgate.cost";
    pub const SESSION_LOOP: &str = "tollgate.session.loop";
    pub const SESSION_COST: &str = "tollgate.session.cost";
}

/// The instrumentation scope every signal is emitted under.
pub const SCOPE: &str = "tollgate";
