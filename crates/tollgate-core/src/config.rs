//! Configuration: typed, defaulted, validated all at once.
//!
//! Precedence is defaults → TOML file → environment. Secrets (the upstream key, the admin token)
//! come only from the environment so they never sit in a file that gets committed. `validate`
//! reports every problem, each named by its field, so an operator fixes a config in one pass.

use std::net::SocketAddr;

use serde::Deserialize;

mod batches;
mod budgets;
mod console;
mod intake;
mod proxy;
mod telemetry;
pub use batches::BatchesConfig;
pub use budgets::BudgetsConfig;
pub use console::{ConsoleConfig, OidcConfig, OidcRole};
pub use intake::IntakeConfig;
pub use proxy::ProxyConfig;
pub use telemetry::{OtlpHeaders, TelemetryConfig};

/// The whole configuration of a gateway process.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the gateway listens on (`TOLLGATE_LISTEN`).
    pub listen: String,
    /// A separate listener for `/admin/v1` (`TOLLGATE_ADMIN_LISTEN`). Unset: served on `listen`.
    pub admin_listen: Option<String>,
    pub upstream: UpstreamConfig,
    pub proxy: ProxyConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub store: StoreConfig,
    pub pricing: PricingConfig,
    pub ledger: LedgerConfig,
    pub budgets: BudgetsConfig,
    pub batches: BatchesConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// The OTLP intake for clients' own telemetry (`/otlp/v1/*`).
    pub intake: IntakeConfig,
    /// The web console at `/console`.
    pub console: ConsoleConfig,
    /// Secrets, filled from the environment only (never read from the file).
    #[serde(skip)]
    pub secrets: Secrets,
}

/// Where calls are forwarded to.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL including the API version path (`TOLLGATE_UPSTREAM_URL`).
    pub url: String,
    /// TCP + TLS connect timeout.
    pub connect_timeout_ms: u64,
    /// Longest wait for the upstream's response headers. Reasoning models can think for
    /// minutes before the first byte of a non-streamed answer, hence the generous default.
    pub response_timeout_ms: u64,
    /// Longest silence tolerated inside a response body (between SSE events). Past it tollgate
    /// closes the stream; Codex's own idle timeout is 300 s.
    pub stream_idle_timeout_ms: u64,
    /// How long an idle pooled upstream connection is kept.
    pub pool_idle_timeout_ms: u64,
    /// Idle connections kept per upstream host.
    pub pool_max_idle_per_host: usize,
    /// Extra PEM CA bundle trusted for the upstream, beside the system and webpki roots.
    pub ca_file: Option<String>,
    /// Sent upstream as `OpenAI-Organization` on every call (`TOLLGATE_UPSTREAM_ORGANIZATION`).
    /// A client's own `OpenAI-Organization` header is always dropped: it would decide who
    /// OpenAI bills.
    pub organization: Option<String>,
    /// Sent upstream as `OpenAI-Project` on every call (`TOLLGATE_UPSTREAM_PROJECT`); a client's
    /// own `OpenAI-Project` header is always dropped.
    pub project: Option<String>,
}

/// TLS for the gateway's own listener. Both paths or neither.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// Request limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest request body accepted, after decompression. Codex resends the whole history
    /// every turn, so this must be generous.
    pub max_body_bytes: u64,
    /// Largest total size of request headers (HTTP/1.1 read buffer).
    pub max_header_bytes: usize,
    /// A client must send its request headers within this time (slowloris guard).
    pub header_read_timeout_ms: u64,
    /// On shutdown, how long in-flight requests and streams may run before connections close.
    pub drain_timeout_ms: u64,
    /// A request body must arrive whole within this time of the request's headers (408 after).
    pub body_read_timeout_ms: u64,
    /// Longest silence tolerated between two pieces of a request body (408 after): a client
    /// that trickles or stalls cannot hold a connection and a task.
    pub body_idle_timeout_ms: u64,
}

/// The control-plane database.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://…` (embedded default) or `postgres://…` (`DATABASE_URL`).
    pub database_url: String,
    /// Run migrations on start. Unset: yes for SQLite, no for Postgres (run `tollgate migrate`).
    pub migrate_on_start: Option<bool>,
    /// How often the key cache polls for changes made by other processes. A revoked key stops
    /// working within this interval (plus one query) on every replica.
    pub key_refresh_ms: u64,
}

/// Where prices come from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PricingConfig {
    /// A price table file (format: `config/prices.toml`). Unset: the table shipped with this
    /// tollgate release. Validated at start; any problem stops the gateway.
    pub file: Option<String>,
}

/// The spend ledger writer.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    /// Append-only file where settled calls wait while the database is unreachable; replayed
    /// (idempotently) when it is back and on the next start.
    pub spool_path: String,
    /// Settled calls queued in memory for the writer before they go to the spool instead.
    pub queue_capacity: usize,
    /// Rows per database transaction.
    pub batch_rows: usize,
    /// Longest a settled call waits in memory before its batch is written.
    pub flush_ms: u64,
    /// Keep ledger rows this many days (on Postgres whole months go once all their days have
    /// expired). Daily and session rollups are kept. Unset: keep every row.
    pub retention_days: Option<u32>,
}

impl Default for LedgerConfig {
    fn default() -> LedgerConfig {
        LedgerConfig {
            spool_path: "tollgate-ledger.spool".into(),
            queue_capacity: 65_536,
            batch_rows: 500,
            flush_ms: 50,
            retention_days: None,
        }
    }
}

/// Credentials from the environment.
#[derive(Clone, Default, PartialEq)]
pub struct Secrets {
    /// Sent upstream as `Authorization: Bearer …` (`TOLLGATE_UPSTREAM_KEY`, else `OPENAI_API_KEY`).
    pub upstream_key: Option<String>,
    /// Bootstrap admin token (`TOLLGATE_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// The token Prometheus presents for `GET /metrics` on the main listener
    /// (`TOLLGATE_METRICS_TOKEN`); admin and finance admin tokens work there too, and the admin
    /// listener serves the metrics without one.
    pub metrics_token: Option<String>,
    /// The console's OpenID Connect client secret (`TOLLGATE_OIDC_CLIENT_SECRET`), for
    /// providers that issue one (PKCE works without).
    pub oidc_client_secret: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("upstream_key", &self.upstream_key.as_ref().map(|_| "<set>"))
            .field("admin_token", &self.admin_token.as_ref().map(|_| "<set>"))
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<set>"),
            )
            .field(
                "oidc_client_secret",
                &self.oidc_client_secret.as_ref().map(|_| "<set>"),
            )
            .finish()
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_UPSTREAM_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://tollgate.db?mode=rwc";

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN.into(),
            admin_listen: None,
            upstream: UpstreamConfig::default(),
            proxy: ProxyConfig::default(),
            tls: TlsConfig::default(),
            limits: LimitsConfig::default(),
            store: StoreConfig::default(),
            pricing: PricingConfig::default(),
            ledger: LedgerConfig::default(),
            budgets: BudgetsConfig::default(),
            batches: BatchesConfig::default(),
            telemetry: TelemetryConfig::default(),
            intake: IntakeConfig::default(),
            console: ConsoleConfig::default(),
            secrets: Secrets::default(),
        }
    }
}

impl Default for UpstreamConfig {
    fn default() -> UpstreamConfig {
        UpstreamConfig {
            url: DEFAULT_UPSTREAM_URL.into(),
            connect_timeout_ms: 10_000,
            response_timeout_ms: 600_000,
            stream_idle_timeout_ms: 300_000,
            pool_idle_timeout_ms: 90_000,
            pool_max_idle_per_host: 256,
            ca_file: None,
            organization: None,
            project: None,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_body_bytes: 32 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout_ms: 30_000,
            drain_timeout_ms: 30_000,
            body_read_timeout_ms: 120_000,
            body_idle_timeout_ms: 20_000,
        }
    }
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            database_url: DEFAULT_DATABASE_URL.into(),
            migrate_on_start: None,
            key_refresh_ms: 250,
        }
    }
}

/// One thing wrong with a configuration, named by its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn problem(field: &str, message: impl Into<String>) -> ConfigProblem {
    ConfigProblem {
        field: field.into(),
        message: message.into(),
    }
}

impl Config {
    /// Parses a TOML document; unknown fields and wrong types are reported with their path.
    pub fn from_toml(text: &str) -> Result<Config, ConfigProblem> {
        toml::from_str(text).map_err(|e| {
            let field = e
                .span()
                .map(|s| format!("config file (bytes {}..{})", s.start, s.end))
                .unwrap_or_else(|| "config file".into());
            problem(&field, e.message().to_string())
        })
    }

    /// Applies environment overrides. `env` is a lookup so tests need not touch the process env.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        if let Some(v) = set("TOLLGATE_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = set("TOLLGATE_ADMIN_LISTEN") {
            self.admin_listen = Some(v);
        }
        if let Some(v) = set("TOLLGATE_UPSTREAM_URL") {
            self.upstream.url = v;
        }
        if let Some(v) = set("DATABASE_URL") {
            self.store.database_url = v;
        }
        if let Some(v) = set("TOLLGATE_UPSTREAM_ORGANIZATION") {
            self.upstream.organization = Some(v);
        }
        if let Some(v) = set("TOLLGATE_UPSTREAM_PROJECT") {
            self.upstream.project = Some(v);
        }
        self.secrets.upstream_key = set("TOLLGATE_UPSTREAM_KEY").or_else(|| set("OPENAI_API_KEY"));
        self.secrets.admin_token = set("TOLLGATE_ADMIN_TOKEN");
        self.secrets.metrics_token = set("TOLLGATE_METRICS_TOKEN");
        self.secrets.oidc_client_secret = set("TOLLGATE_OIDC_CLIENT_SECRET");
        self.telemetry.apply_env(&env);
        self.intake.apply_env(&env);
        self.console.apply_env(&env);
    }

    /// Every problem with this configuration (empty when it is usable). Pure: file existence
    /// is checked by the binary, which adds its findings to the same list.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.listen.parse::<SocketAddr>().is_err() {
            problems.push(problem(
                "listen",
                format!("'{}' is not an address like 127.0.0.1:8080", self.listen),
            ));
        }
        if let Some(admin) = &self.admin_listen {
            if admin.parse::<SocketAddr>().is_err() {
                problems.push(problem(
                    "admin_listen",
                    format!("'{admin}' is not an address like 127.0.0.1:8081"),
                ));
            } else if *admin == self.listen {
                problems.push(problem(
                    "admin_listen",
                    "must differ from listen (leave it unset to serve /admin/v1 on listen)",
                ));
            }
        }
        match self.upstream.url.split_once("://") {
            Some(("http" | "https", rest)) if !rest.is_empty() && !rest.starts_with('/') => {
                if self.upstream.url.contains('?') || self.upstream.url.contains('#') {
                    problems.push(problem(
                        "upstream.url",
                        "must not carry a query or fragment",
                    ));
                }
            }
            _ => problems.push(problem(
                "upstream.url",
                format!("'{}' is not an http:// or https:// URL", self.upstream.url),
            )),
        }
        for (field, value) in [
            (
                "upstream.connect_timeout_ms",
                self.upstream.connect_timeout_ms,
            ),
            (
                "upstream.response_timeout_ms",
                self.upstream.response_timeout_ms,
            ),
            (
                "upstream.pool_idle_timeout_ms",
                self.upstream.pool_idle_timeout_ms,
            ),
            ("limits.max_body_bytes", self.limits.max_body_bytes),
            (
                "limits.header_read_timeout_ms",
                self.limits.header_read_timeout_ms,
            ),
            (
                "limits.body_read_timeout_ms",
                self.limits.body_read_timeout_ms,
            ),
            (
                "limits.body_idle_timeout_ms",
                self.limits.body_idle_timeout_ms,
            ),
            ("store.key_refresh_ms", self.store.key_refresh_ms),
            ("ledger.flush_ms", self.ledger.flush_ms),
            ("ledger.queue_capacity", self.ledger.queue_capacity as u64),
            ("ledger.batch_rows", self.ledger.batch_rows as u64),
        ] {
            if value == 0 {
                problems.push(problem(field, "must be greater than 0"));
            }
        }
        if self.ledger.batch_rows > 5_000 {
            problems.push(problem(
                "ledger.batch_rows",
                "must be at most 5000 (database parameter limits)",
            ));
        }
        if self.ledger.retention_days == Some(0) {
            problems.push(problem(
                "ledger.retention_days",
                "must be at least 1 (leave it unset to keep every row)",
            ));
        }
        if self.ledger.spool_path.trim().is_empty() {
            problems.push(problem("ledger.spool_path", "must be a file path"));
        }
        if self.limits.max_header_bytes < 8192 {
            problems.push(problem("limits.max_header_bytes", "must be at least 8192"));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            problems.push(problem(
                "tls",
                "set both cert_file and key_file, or neither",
            ));
        }
        let db = &self.store.database_url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            problems.push(problem(
                "store.database_url",
                format!(
                    "'{}' must start with sqlite:, postgres:// or postgresql://",
                    redact_url(db)
                ),
            ));
        }
        if self.secrets.upstream_key.is_none() {
            problems.push(problem(
                "upstream key",
                "not set: export TOLLGATE_UPSTREAM_KEY (or OPENAI_API_KEY) with the key tollgate sends upstream",
            ));
        }
        problems.extend(self.proxy.validate());
        problems.extend(self.budgets.validate());
        problems.extend(self.batches.validate());
        problems.extend(self.telemetry.validate());
        problems.extend(self.intake.validate());
        problems.extend(self.console.validate());
        problems
    }

    /// Whether migrations run when `serve` starts.
    pub fn migrate_on_start(&self) -> bool {
        self.store
            .migrate_on_start
            .unwrap_or_else(|| self.store.database_url.starts_with("sqlite:"))
    }
}

/// A database URL with any password replaced, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
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
    fn defaults_file_then_env() {
        let mut config = Config::from_toml(
            "listen = \"0.0.0.0:9000\"\n[upstream]\nurl = \"http://127.0.0.1:1/v1\"\n",
        )
        .unwrap();
        assert_eq!(config.listen, "0.0.0.0:9000");
        config.apply_env(env(&[
            ("TOLLGATE_LISTEN", "127.0.0.1:7000"),
            ("OPENAI_API_KEY", "sk-1"),
        ]));
        assert_eq!(config.listen, "127.0.0.1:7000");
        assert_eq!(config.upstream.url, "http://127.0.0.1:1/v1");
        assert_eq!(config.secrets.upstream_key.as_deref(), Some("sk-1"));
        config.apply_env(env(&[
            ("TOLLGATE_UPSTREAM_KEY", "sk-2"),
            ("OPENAI_API_KEY", "sk-1"),
        ]));
        assert_eq!(config.secrets.upstream_key.as_deref(), Some("sk-2"));
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert!(config.migrate_on_start());
    }

    #[test]
    fn every_problem_is_reported_by_field() {
        let mut config = Config::from_toml(
            "listen = \"nope\"\n[upstream]\nurl = \"ftp://x\"\nconnect_timeout_ms = 0\n[tls]\ncert_file = \"c.pem\"\n[store]\ndatabase_url = \"mysql://u:pw@h/db\"\n",
        )
        .unwrap();
        config.apply_env(env(&[]));
        let fields: Vec<String> = config.validate().into_iter().map(|p| p.field).collect();
        for expected in [
            "listen",
            "upstream.url",
            "upstream.connect_timeout_ms",
            "tls",
            "store.database_url",
            "upstream key",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
        assert!(
            !format!("{:?}", config.validate()).contains("pw@"),
            "password leaked"
        );
    }

    #[test]
    fn the_commented_example_config_is_valid() {
        let text = include_str!("../../../config/tollgate.example.toml");
        let mut config = Config::from_toml(text).unwrap();
        config.apply_env(env(&[("TOLLGATE_UPSTREAM_KEY", "sk-1")]));
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.budgets, BudgetsConfig::default());
    }

    #[test]
    fn budget_settings_are_validated_by_field() {
        let mut config = Config::from_toml(
            "[budgets]\ntimezone = \"Mars/Base\"\nfail_policy = \"maybe\"\nlease_ttl_ms = 10\nmax_slice_usd = \"x\"\nwebhook_url = \"ftp://h\"\n",
        )
        .unwrap();
        config.apply_env(env(&[("OPENAI_API_KEY", "sk-1")]));
        let fields: Vec<String> = config.validate().into_iter().map(|p| p.field).collect();
        for expected in [
            "budgets.timezone",
            "budgets.fail_policy",
            "budgets.lease_ttl_ms",
            "budgets.sync_ms",
            "budgets.max_slice_usd",
            "budgets.webhook_url",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
        let caps = Config::from_toml(
            "[budgets]\ndefault_max_output_tokens = 100\nmax_output_tokens = { \"gpt-5*\" = 500, \"gpt-5-mini\" = 50 }\n",
        )
        .unwrap()
        .budgets;
        assert_eq!(caps.output_cap("gpt-5-mini"), 50);
        assert_eq!(caps.output_cap("gpt-5.5"), 500);
        assert_eq!(caps.output_cap("gpt-4.1"), 100);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = Config::from_toml("[upstream]\nurll = \"x\"\n").unwrap_err();
        assert!(err.message.contains("urll"), "{err}");
    }
}
