//! `[telemetry]`: OTLP export, the Prometheus endpoint, prompt logging and the session
//! trajectory detector. The standard `OTEL_*` environment variables are honoured so tollgate
//! drops into an existing OpenTelemetry deployment without a config file change.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConfigProblem, problem};
use crate::money::Money;

/// OTLP over HTTP with protobuf bodies (collector port 4318).
pub const PROTOCOL_HTTP_PROTOBUF: &str = "http/protobuf";
/// OTLP over gRPC (collector port 4317).
pub const PROTOCOL_GRPC: &str = "grpc";

/// Telemetry settings. Everything is off by default except the Prometheus endpoint and the
/// session detector, which cost nothing outside the process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Export traces, metrics and logs over OTLP (`TOLLGATE_TELEMETRY_ENABLED`). Unset: on
    /// when an endpoint is set (here or `OTEL_EXPORTER_OTLP_ENDPOINT`), as with any
    /// OpenTelemetry SDK; off otherwise. `OTEL_SDK_DISABLED=true` turns it off whatever else
    /// says. Off: no exporter runs and no span is created. See [`TelemetryConfig::exports`].
    pub enabled: Option<bool>,
    /// Collector base URL; `/v1/traces`, `/v1/metrics` and `/v1/logs` are appended for
    /// http/protobuf (`OTEL_EXPORTER_OTLP_ENDPOINT`). Unset: `http://localhost:4318`, or
    /// `http://localhost:4317` for grpc.
    pub endpoint: Option<String>,
    /// `http/protobuf` or `grpc` (`OTEL_EXPORTER_OTLP_PROTOCOL`).
    pub protocol: String,
    /// Headers sent with every export, e.g. a collector's API key (`OTEL_EXPORTER_OTLP_HEADERS`,
    /// `k=v,k2=v2`, merged over the file's). Prefer the environment for secrets.
    pub headers: OtlpHeaders,
    /// Extra PEM CA bundle trusted for an `https://` collector, beside the system and webpki
    /// roots (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub ca_file: Option<String>,
    /// The `service.name` resource attribute (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, `k=v,k2=v2`, merged over these),
    /// e.g. `deployment.environment.name`.
    pub resource_attributes: BTreeMap<String, String>,
    /// How often metrics are pushed over OTLP (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds).
    pub export_interval_ms: u64,
    /// Longest one export may take, retries included; a slow collector never slows requests,
    /// it only loses data past this bound (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds).
    pub export_timeout_ms: u64,
    /// Where Prometheus text is served on the gateway's listener; `""` disables it. Works
    /// whether or not OTLP export is enabled.
    pub metrics_path: String,
    /// Attach the request body (redacted, truncated) to the cost event. Off by default: prompts
    /// are customer data. The counterpart of Codex's `log_user_prompt`.
    pub log_prompts: bool,
    /// Regular expressions whose matches are replaced by `[REDACTED]` in logged prompts.
    /// Default: OpenAI keys, tollgate keys and admin tokens, e-mail addresses.
    pub redact: Vec<String>,
    /// A session is flagged as looping after this many loop-tool calls ...
    pub loop_exec_calls: u32,
    /// ... within this many seconds, with no breaker-tool call in that window.
    pub loop_window_secs: u64,
    /// Tools whose repetition signals a loop (shell commands).
    pub loop_tools: Vec<String>,
    /// Tools that show progress (a patch applied) and reset the loop window.
    pub loop_breaker_tools: Vec<String>,
    /// Refuse further requests in a flagged session instead of only reporting it.
    pub loop_refuse: bool,
    /// Emit one `tollgate.session.cost` event when a session's cost crosses this many USD
    /// (decimal string, e.g. `"15"`). Unset: no alert.
    pub session_cost_alert_usd: Option<String>,
    /// Environment values `apply_env` could not use, reported by `validate` (not a setting).
    #[serde(skip)]
    pub env_problems: Vec<ConfigProblem>,
}

/// Export headers. `Debug` shows the names only: values are usually credentials.
#[derive(Clone, Default, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct OtlpHeaders(pub BTreeMap<String, String>);

impl std::fmt::Debug for OtlpHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

pub const DEFAULT_REDACT: [&str; 3] = [
    r"sk-[A-Za-z0-9_-]{16,}",
    r"tga?-[A-Za-z0-9_-]{16,}",
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
];

impl Default for TelemetryConfig {
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            enabled: None,
            endpoint: None,
            protocol: PROTOCOL_HTTP_PROTOBUF.into(),
            headers: OtlpHeaders::default(),
            ca_file: None,
            service_name: "tollgate".into(),
            resource_attributes: BTreeMap::new(),
            export_interval_ms: 10_000,
            export_timeout_ms: 10_000,
            metrics_path: "/metrics".into(),
            log_prompts: false,
            redact: DEFAULT_REDACT.iter().map(|s| s.to_string()).collect(),
            loop_exec_calls: 50,
            loop_window_secs: 600,
            loop_tools: ["exec_command", "shell", "local_shell"]
                .map(String::from)
                .to_vec(),
            loop_breaker_tools: vec!["apply_patch".into()],
            loop_refuse: false,
            session_cost_alert_usd: None,
            env_problems: Vec::new(),
        }
    }
}

impl TelemetryConfig {
    /// Whether OTLP export runs: `enabled` when set, else whether an endpoint is.
    pub fn exports(&self) -> bool {
        self.enabled.unwrap_or(self.endpoint.is_some())
    }

    /// Whether export uses gRPC rather than HTTP/protobuf.
    pub fn is_grpc(&self) -> bool {
        self.protocol == PROTOCOL_GRPC
    }

    /// The collector base URL, defaulted by protocol.
    pub fn endpoint(&self) -> String {
        match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_string(),
            None if self.is_grpc() => "http://localhost:4317".into(),
            None => "http://localhost:4318".into(),
        }
    }

    /// The session cost alert threshold, if set and valid.
    pub fn session_cost_alert(&self) -> Option<Money> {
        self.session_cost_alert_usd
            .as_deref()
            .and_then(Money::parse_usd)
    }

    /// Applies `TOLLGATE_TELEMETRY_ENABLED` and the standard `OTEL_*` variables. As in the
    /// OpenTelemetry SDKs, `OTEL_EXPORTER_OTLP_ENDPOINT` alone switches export on (unless
    /// `enabled` says otherwise) and `OTEL_SDK_DISABLED=true` switches it off.
    pub fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = set("TOLLGATE_TELEMETRY_ENABLED") {
            match parse_bool(&v) {
                Some(b) => self.enabled = Some(b),
                None => self.env_problems.push(problem(
                    "TOLLGATE_TELEMETRY_ENABLED",
                    format!("'{v}' is not true/false"),
                )),
            }
        }
        if let Some(v) = set("OTEL_EXPORTER_OTLP_ENDPOINT") {
            self.endpoint = Some(v);
        }
        if let Some(v) = set("OTEL_EXPORTER_OTLP_PROTOCOL") {
            self.protocol = v;
        }
        if let Some(v) = set("OTEL_EXPORTER_OTLP_HEADERS") {
            self.headers.0.extend(parse_pairs(&v));
        }
        if let Some(v) = set("OTEL_EXPORTER_OTLP_CERTIFICATE") {
            self.ca_file = Some(v);
        }
        if let Some(v) = set("OTEL_RESOURCE_ATTRIBUTES") {
            let mut attributes: BTreeMap<String, String> = parse_pairs(&v).collect();
            // service.name inside OTEL_RESOURCE_ATTRIBUTES names the service too, but
            // OTEL_SERVICE_NAME wins (the OpenTelemetry specification's order).
            if let Some(name) = attributes.remove("service.name") {
                self.service_name = name;
            }
            self.resource_attributes.extend(attributes);
        }
        if let Some(v) = set("OTEL_SERVICE_NAME") {
            self.service_name = v;
        }
        // The specification: only a case-insensitive "true" disables; any other value is
        // false. It wins over everything, so one variable silences every SDK in a pod.
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            self.enabled = Some(false);
        }
        for (var, field) in [
            ("OTEL_METRIC_EXPORT_INTERVAL", &mut self.export_interval_ms),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", &mut self.export_timeout_ms),
        ] {
            if let Some(v) = set(var) {
                match v.trim().parse() {
                    Ok(ms) => *field = ms,
                    Err(_) => self.env_problems.push(problem(
                        var,
                        format!("'{v}' is not a number of milliseconds"),
                    )),
                }
            }
        }
    }

    /// Every problem with this section, each named `telemetry.<field>` (or by the env var).
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = self.env_problems.clone();
        let mut bad = |field: &str, message: String| {
            problems.push(problem(&format!("telemetry.{field}"), message));
        };
        match self.protocol.as_str() {
            PROTOCOL_HTTP_PROTOBUF | PROTOCOL_GRPC => {}
            "http/json" => bad(
                "protocol",
                "'http/json' is not supported: use 'http/protobuf' or 'grpc'".into(),
            ),
            other => bad(
                "protocol",
                format!("'{other}' is not 'http/protobuf' or 'grpc'"),
            ),
        }
        if let Some(endpoint) = &self.endpoint {
            match endpoint.split_once("://") {
                Some(("http" | "https", rest))
                    if !rest.is_empty()
                        && !rest.starts_with('/')
                        && !endpoint.contains(['?', '#', ' ']) => {}
                _ => bad(
                    "endpoint",
                    format!("'{endpoint}' is not an http:// or https:// URL without query"),
                ),
            }
        }
        for (name, value) in &self.headers.0 {
            let name_ok = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !name_ok {
                bad("headers", format!("'{name}' is not a valid header name"));
            } else if !value
                .bytes()
                .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
            {
                bad(
                    "headers",
                    format!("the value of '{name}' has control or non-ASCII characters"),
                );
            }
        }
        if self.ca_file.as_deref().is_some_and(|f| f.trim().is_empty()) {
            bad("ca_file", "must be a file path".into());
        }
        if self.service_name.trim().is_empty() {
            bad("service_name", "must not be empty".into());
        }
        if self.export_interval_ms < 100 {
            bad("export_interval_ms", "must be at least 100".into());
        }
        if self.export_timeout_ms == 0 {
            bad("export_timeout_ms", "must be greater than 0".into());
        }
        let path = &self.metrics_path;
        if !path.is_empty() {
            if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
                bad(
                    "metrics_path",
                    format!("'{path}' must be a path like /metrics (or \"\" to disable)"),
                );
            } else if path == "/" || path.starts_with("/v1/") || path.starts_with("/admin") {
                bad(
                    "metrics_path",
                    format!("'{path}' collides with the proxied API or /admin"),
                );
            }
        }
        for (i, pattern) in self.redact.iter().enumerate() {
            if let Err(e) = regex::Regex::new(pattern) {
                bad(&format!("redact[{i}]"), format!("'{pattern}': {e}"));
            }
        }
        if self.loop_exec_calls == 0 {
            bad("loop_exec_calls", "must be greater than 0".into());
        }
        if self.loop_window_secs == 0 {
            bad("loop_window_secs", "must be greater than 0".into());
        }
        if let Some(tool) = self
            .loop_tools
            .iter()
            .find(|t| self.loop_breaker_tools.contains(t))
        {
            bad(
                "loop_breaker_tools",
                format!("'{tool}' is also in loop_tools"),
            );
        }
        if let Some(text) = &self.session_cost_alert_usd {
            match Money::parse_usd(text) {
                Some(m) if m > Money::ZERO => {}
                _ => bad(
                    "session_cost_alert_usd",
                    format!("'{text}' is not a positive USD amount like \"15\" or \"2.50\""),
                ),
            }
        }
        problems
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// `k=v,k2=v2` as the OpenTelemetry environment variables write it (values percent-encoded).
fn parse_pairs(text: &str) -> impl Iterator<Item = (String, String)> + '_ {
    text.split(',').filter_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        let k = k.trim();
        (!k.is_empty()).then(|| (percent_decode(k), percent_decode(v.trim())))
    })
}

/// Invalid escapes pass through as written and invalid UTF-8 becomes U+FFFD, so a header value
/// is never dropped for its spelling.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_are_valid_and_off() {
        let config = TelemetryConfig::default();
        assert!(!config.exports());
        assert_eq!(config.endpoint(), "http://localhost:4318");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
    }

    #[test]
    fn otel_environment_is_honoured() {
        let mut config = TelemetryConfig::default();
        config.apply_env(&env(&[
            ("TOLLGATE_TELEMETRY_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%3Db,x-team = ops"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=from-attrs,deployment.environment.name=prod",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
        ]));
        assert!(config.exports() && config.is_grpc());
        assert_eq!(config.endpoint(), "http://localhost:4317");
        assert_eq!(config.headers.0["api-key"], "a=b");
        assert_eq!(config.headers.0["x-team"], "ops");
        assert_eq!(config.service_name, "from-attrs");
        assert_eq!(
            config.resource_attributes["deployment.environment.name"],
            "prod"
        );
        assert_eq!(config.export_interval_ms, 5000);
        assert!(
            !format!("{config:?}").contains("a=b"),
            "header value leaked"
        );
        config.apply_env(&env(&[("OTEL_SERVICE_NAME", "gw")]));
        assert_eq!(config.service_name, "gw");
        assert!(config.validate().is_empty(), "{:?}", config.validate());
    }

    #[test]
    fn an_otlp_endpoint_switches_export_on_and_otel_sdk_disabled_off() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        let exports = |file: TelemetryConfig, vars: &[(&str, &str)]| {
            let mut config = file;
            config.apply_env(&env(vars));
            assert!(config.validate().is_empty(), "{:?}", config.validate());
            config.exports()
        };
        let default = TelemetryConfig::default;
        assert!(!exports(default(), &[]));
        assert!(exports(default(), &[endpoint]), "the endpoint alone");
        assert!(exports(
            TelemetryConfig {
                endpoint: Some("http://collector:4318".into()),
                ..default()
            },
            &[]
        ));
        assert!(exports(
            default(),
            &[("TOLLGATE_TELEMETRY_ENABLED", "true")]
        ));
        // An explicit `enabled`, in the file or the environment, is kept.
        assert!(!exports(
            default(),
            &[endpoint, ("TOLLGATE_TELEMETRY_ENABLED", "false")]
        ));
        let off = TelemetryConfig {
            enabled: Some(false),
            ..default()
        };
        assert!(!exports(off, &[endpoint]));
        // OTEL_SDK_DISABLED=true beats everything; other values are not "true".
        for disabled in ["true", "TRUE", " True "] {
            assert!(!exports(
                default(),
                &[
                    endpoint,
                    ("TOLLGATE_TELEMETRY_ENABLED", "true"),
                    ("OTEL_SDK_DISABLED", disabled)
                ]
            ));
        }
        for not_disabled in ["false", "1", "yes", ""] {
            assert!(exports(
                default(),
                &[endpoint, ("OTEL_SDK_DISABLED", not_disabled)]
            ));
        }
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut config = TelemetryConfig {
            endpoint: Some("localhost:4318".into()),
            protocol: "http/json".into(),
            headers: OtlpHeaders([("bad name".to_string(), "v".to_string())].into()),
            service_name: " ".into(),
            export_interval_ms: 0,
            metrics_path: "/v1/metrics".into(),
            redact: vec!["(".into()],
            loop_exec_calls: 0,
            loop_window_secs: 0,
            loop_breaker_tools: vec!["shell".into()],
            session_cost_alert_usd: Some("-1".into()),
            ..TelemetryConfig::default()
        };
        config.apply_env(&env(&[("TOLLGATE_TELEMETRY_ENABLED", "perhaps")]));
        let fields: Vec<String> = config.validate().into_iter().map(|p| p.field).collect();
        for expected in [
            "TOLLGATE_TELEMETRY_ENABLED",
            "telemetry.protocol",
            "telemetry.endpoint",
            "telemetry.headers",
            "telemetry.service_name",
            "telemetry.export_interval_ms",
            "telemetry.metrics_path",
            "telemetry.redact[0]",
            "telemetry.loop_exec_calls",
            "telemetry.loop_window_secs",
            "telemetry.loop_breaker_tools",
            "telemetry.session_cost_alert_usd",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn the_example_config_section_spells_out_the_defaults() {
        let text = include_str!("../../../../config/tollgate.example.toml");
        let config = super::super::Config::from_toml(text).unwrap();
        assert_eq!(config.telemetry, TelemetryConfig::default());
    }

    #[test]
    fn session_cost_alert_parses_exactly() {
        let config = TelemetryConfig {
            session_cost_alert_usd: Some("2.50".into()),
            ..TelemetryConfig::default()
        };
        assert_eq!(config.session_cost_alert(), Some(Money(2_500_000_000)));
    }

    #[test]
    fn otlp_header_values_decode_utf8_and_keep_broken_escapes() {
        let mut config = TelemetryConfig::default();
        config.apply_env(&env(&[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "x-team=caf%C3%A9,x-raw=50%25%zz%4",
        )]));
        assert_eq!(config.headers.0["x-team"], "café");
        assert_eq!(config.headers.0["x-raw"], "50%%zz%4");
    }
}
