//! `[intake]`: the OTLP intake at `/otlp/v1/{traces,metrics,logs}`, where Codex (or any
//! OpenTelemetry exporter) sends its own telemetry with a team key, to be stamped with the team
//! and forwarded to the collector tollgate exports its own telemetry to.

use serde::Deserialize;

use super::{ConfigProblem, problem};

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Serve `/otlp/v1/*` on the main listener (`TOLLGATE_INTAKE_ENABLED`). Off: those paths
    /// answer 404.
    pub enabled: bool,
    /// Largest export accepted, in bytes, both as sent and after gzip decompression (413 past
    /// it). OpenTelemetry SDKs batch 512 spans or log records per export by default.
    pub max_body_bytes: u64,
    /// Exports waiting to be forwarded. When the collector is slow and this is full, further
    /// exports are answered 200 and dropped (counted in `tollgate.intake.dropped`).
    pub queue: usize,
    /// Exports accepted per key per minute (429 with `Retry-After` past it). Codex sends one
    /// export per signal every few seconds; this stops a runaway client, not normal use.
    pub exports_per_minute: u32,
    /// Forwards sent to the collector at once.
    pub concurrency: usize,
    /// Collector base URL the intake forwards to over OTLP/HTTP with protobuf bodies
    /// (`/v1/traces`, `/v1/metrics`, `/v1/logs` appended). Unset: `[telemetry] endpoint` when
    /// tollgate's own export is on and uses `http/protobuf`. Set it when tollgate exports over
    /// gRPC (the collector's HTTP port cannot be derived from its gRPC one). Headers and the CA
    /// bundle are `[telemetry]`'s either way.
    pub forward_endpoint: Option<String>,
    /// Environment values `apply_env` could not use, reported by `validate` (not a setting).
    #[serde(skip)]
    pub env_problems: Vec<ConfigProblem>,
}

impl Default for IntakeConfig {
    fn default() -> IntakeConfig {
        IntakeConfig {
            enabled: true,
            max_body_bytes: 4 * 1024 * 1024,
            queue: 1024,
            exports_per_minute: 600,
            concurrency: 4,
            forward_endpoint: None,
            env_problems: Vec::new(),
        }
    }
}

impl IntakeConfig {
    /// Applies `TOLLGATE_INTAKE_ENABLED`, `TOLLGATE_INTAKE_FORWARD_ENDPOINT` and
    /// `TOLLGATE_INTAKE_EXPORTS_PER_MINUTE`.
    pub fn apply_env(&mut self, env: &impl Fn(&str) -> Option<String>) {
        if let Some(v) = env("TOLLGATE_INTAKE_EXPORTS_PER_MINUTE").filter(|v| !v.trim().is_empty())
        {
            match v.trim().parse() {
                Ok(n) => self.exports_per_minute = n,
                Err(_) => self.env_problems.push(problem(
                    "TOLLGATE_INTAKE_EXPORTS_PER_MINUTE",
                    format!("'{v}' is not a whole number"),
                )),
            }
        }
        if let Some(endpoint) =
            env("TOLLGATE_INTAKE_FORWARD_ENDPOINT").filter(|v| !v.trim().is_empty())
        {
            self.forward_endpoint = Some(endpoint.trim().to_string());
        }
        let Some(v) = env("TOLLGATE_INTAKE_ENABLED").filter(|v| !v.trim().is_empty()) else {
            return;
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => self.enabled = true,
            "0" | "false" | "no" | "off" => self.enabled = false,
            _ => self.env_problems.push(problem(
                "TOLLGATE_INTAKE_ENABLED",
                format!("'{v}' is not true/false"),
            )),
        }
    }

    /// Every problem with this section, each named `intake.<field>`.
    pub(super) fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = self.env_problems.clone();
        for (field, value) in [
            ("intake.max_body_bytes", self.max_body_bytes),
            ("intake.queue", self.queue as u64),
            (
                "intake.exports_per_minute",
                u64::from(self.exports_per_minute),
            ),
            ("intake.concurrency", self.concurrency as u64),
        ] {
            if value == 0 {
                problems.push(problem(field, "must be greater than 0"));
            }
        }
        if self.concurrency > 64 {
            problems.push(problem("intake.concurrency", "must be at most 64"));
        }
        if let Some(endpoint) = &self.forward_endpoint {
            match endpoint.split_once("://") {
                Some(("http" | "https", rest))
                    if !rest.is_empty()
                        && !rest.starts_with('/')
                        && !endpoint.contains(['?', '#', ' ']) => {}
                _ => problems.push(problem(
                    "intake.forward_endpoint",
                    format!("'{endpoint}' is not an http:// or https:// URL without query"),
                )),
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert!(IntakeConfig::default().validate().is_empty());
        let bad = IntakeConfig {
            queue: 0,
            exports_per_minute: 0,
            forward_endpoint: Some("collector:4318".into()),
            ..IntakeConfig::default()
        };
        let fields: Vec<String> = bad.validate().into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "intake.queue",
                "intake.exports_per_minute",
                "intake.forward_endpoint"
            ]
        );
        let mut off = IntakeConfig::default();
        off.apply_env(&|k: &str| (k == "TOLLGATE_INTAKE_ENABLED").then(|| "false".to_string()));
        assert!(!off.enabled);
        off.apply_env(&|k: &str| (k == "TOLLGATE_INTAKE_ENABLED").then(|| "maybe".to_string()));
        assert_eq!(off.validate().len(), 1);
        let mut forward = IntakeConfig::default();
        forward.apply_env(&|k: &str| {
            (k == "TOLLGATE_INTAKE_FORWARD_ENDPOINT").then(|| " http://otel-collector:4318 ".into())
        });
        assert_eq!(
            forward.forward_endpoint.as_deref(),
            Some("http://otel-collector:4318")
        );
        assert!(forward.validate().is_empty());
        let mut rate = IntakeConfig::default();
        rate.apply_env(&|k: &str| {
            (k == "TOLLGATE_INTAKE_EXPORTS_PER_MINUTE").then(|| "60000".into())
        });
        assert_eq!(rate.exports_per_minute, 60_000);
        rate.apply_env(&|k: &str| {
            (k == "TOLLGATE_INTAKE_EXPORTS_PER_MINUTE").then(|| "lots".into())
        });
        assert_eq!(rate.validate().len(), 1);
    }
}
