//! Command-line interface definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// tollgate: an OpenAI-compatible gateway that attributes every token to a team and a cost centre.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file (see config/tollgate.example.toml). Environment variables override it.
    #[arg(long, global = true, env = "TOLLGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Manage through this gateway's admin API (e.g. https://tollgate.example.com) instead of
    /// opening the database: team, key, budget, rate-limit, report and session commands then
    /// go over HTTP with --token, and the token's role decides what they may do.
    #[arg(long, global = true, env = "TOLLGATE_SERVER")]
    pub server: Option<String>,
    /// The admin token (tga-…) for --server.
    #[arg(
        long,
        global = true,
        env = "TOLLGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (default 127.0.0.1:8080, SQLite in the working directory, api.openai.com).
    Serve(ServeArgs),
    /// Run the gateway and a mock upstream in one process with a demo team and key: no OpenAI account needed.
    Demo(DemoArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Run the mock OpenAI upstream (for tests and your own CI).
    MockUpstream(MockArgs),
    /// Manage teams (in the database named by DATABASE_URL, or over --server).
    #[command(subcommand)]
    Team(TeamCommand),
    /// Manage team keys (in the database named by DATABASE_URL, or over --server).
    #[command(subcommand)]
    Key(KeyCommand),
    /// Set and show budgets (in the database named by DATABASE_URL, or over --server).
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// Set rate limits (in the database named by DATABASE_URL, or over --server).
    #[command(subcommand)]
    RateLimit(RateLimitCommand),
    /// Spend for a month by team, model, … as a table, CSV or JSON (read from the database
    /// named by DATABASE_URL, or over --server).
    Report(ReportArgs),
    /// A team's most expensive sessions, and one session's requests, tokens, cost and tool
    /// calls (from the database named by DATABASE_URL, or over --server).
    #[command(subcommand)]
    Session(SessionCommand),
    /// A Codex hook: reads the hook event Codex sends on stdin and reports it to the gateway
    /// (with --gate, after running a quality gate). Always exits 0 with nothing on stdout, so
    /// Codex carries on unchanged whatever happens; problems go to stderr.
    Hook(HookArgs),
}

#[derive(Debug, Args)]
pub struct HookArgs {
    /// The gateway's URL (https://tollgate.example.com; Codex's `…/v1` base_url works too).
    #[arg(long, env = "TOLLGATE_URL")]
    pub gateway: Option<String>,
    /// The environment variable that holds the team key.
    #[arg(long, default_value = "TOLLGATE_KEY")]
    pub key_env: String,
    /// How long reporting may take, in milliseconds (keep it well below the hook's `timeout`).
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// A quality gate to run first with `sh -c` in the session's directory (e.g. 'cargo test');
    /// its exit status (0 = passed) and duration are reported. Meant for Stop hooks.
    #[arg(long)]
    pub gate: Option<String>,
    /// How long the gate may run before it is stopped and reported as failed.
    #[arg(long, default_value_t = 600)]
    pub gate_timeout_secs: u64,
    /// What kind of task this is (e.g. bugfix): a label of [a-z0-9_-], at most 32 characters
    /// (anything else is counted as `other`).
    #[arg(long)]
    pub task_type: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The month to report, YYYY-MM (in --tz). Default: this month, unless --from/--to say.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub month: Option<String>,
    /// Start of the period: a YYYY-MM-DD date (in --tz) or an RFC 3339 time.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the period, exclusive, like --from.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this team (id or name).
    #[arg(long)]
    pub team: Option<String>,
    /// Group by any of team, cost_centre, key, model, user, session, day, month, status (user
    /// and session are read from the ledger itself, which is slower).
    #[arg(long, default_value = "team,model")]
    pub group_by: String,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// IANA time zone the period and any day/month groups are local to.
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// Add a TOTAL line to the CSV (a spreadsheet's SUM over the column would count it twice).
    #[arg(long)]
    pub total_row: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// A team's sessions active in a period, most expensive first.
    List {
        /// Team id or name.
        #[arg(long)]
        team: String,
        /// Start of the period: an RFC 3339 time or a YYYY-MM-DD date (UTC). Default: all time.
        #[arg(long)]
        from: Option<String>,
        /// End of the period (exclusive), like --from. Default: now and on.
        #[arg(long)]
        to: Option<String>,
        /// How many sessions to show.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: u16,
        #[command(flatten)]
        output: Output,
    },
    /// One team's session: requests, tokens by kind, cost and tool calls by name.
    Show {
        /// The session id (the `session-id` header the calls carried).
        id: String,
        /// Team id or name. Needed when several teams sent the same session id (each has its
        /// own session); a team_admin token always means its own team.
        #[arg(long)]
        team: Option<String>,
        #[command(flatten)]
        output: Output,
    },
}

/// What a budget or rate limit applies to: a team, or one key of it.
#[derive(Debug, Args)]
pub struct Scope {
    /// Team id or name.
    #[arg(long)]
    pub team: String,
    /// One key of the team (key id) instead of the whole team.
    #[arg(long)]
    pub key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Create a budget, or change the one with the same team, key and period.
    Set {
        #[command(flatten)]
        scope: Scope,
        /// day, week, month or total (windows start in [budgets] timezone).
        #[arg(long)]
        period: String,
        /// The hard limit in USD, e.g. 25.00.
        #[arg(long)]
        limit_usd: String,
        /// Soft threshold as a share of the limit (default 0.8).
        #[arg(long)]
        soft_ratio: Option<String>,
        /// Most one Codex session of the team may cost, in USD (team budgets only).
        #[arg(long)]
        session_cap_usd: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Show a team's budgets: limit, committed, reserved, remaining, window and reset time.
    Show {
        /// Team id or name.
        #[arg(long)]
        team: String,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum RateLimitCommand {
    /// Set a team's (or one key's) requests and tokens per minute; omit both to remove.
    Set {
        #[command(flatten)]
        scope: Scope,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u32>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run database migrations before serving (default: yes on SQLite, no on Postgres).
    #[arg(long)]
    pub migrate: bool,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the demo gateway listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
}

#[derive(Debug, Args)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: String,
    /// Delay between streamed events, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub chunk_delay_ms: u64,
    /// Delay before response headers, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub first_byte_delay_ms: u64,
    /// Answer every request with this HTTP status and an OpenAI-shaped error.
    #[arg(long)]
    pub fail_status: Option<u16>,
    /// Cut every stream (abort the connection) after this many events.
    #[arg(long)]
    pub cut_after: Option<usize>,
    /// Send no usage in responses or streams.
    #[arg(long)]
    pub no_usage: bool,
    /// Text deltas per streamed answer.
    #[arg(long, default_value_t = 20)]
    pub deltas: usize,
    /// Do not record requests (for benchmarks).
    #[arg(long)]
    pub no_record: bool,
    /// Complete a batch the first time it is retrieved, so CI can poll batches to their end.
    #[arg(long)]
    pub batch_auto_complete: bool,
    /// Responses per Responses WebSocket connection; the next response.create gets
    /// `websocket_connection_limit_reached` and the socket is closed (as OpenAI does at an hour).
    #[arg(long)]
    pub ws_max_responses: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create a team.
    Create {
        /// Team name (letters, digits, '.', '_', '-').
        name: String,
        /// Cost centre the team's spend is booked to.
        #[arg(long, visible_alias = "cost-center")]
        cost_centre: Option<String>,
        /// A model the team's keys may call (repeat; a trailing '*' matches a prefix). Default: all.
        #[arg(long = "allow-model")]
        allow_models: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List teams.
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Show one team with its labels.
    Show {
        /// Team id or name.
        team: String,
        #[command(flatten)]
        output: Output,
    },
    /// Change a team's cost centre, labels or disabled flag (a disabled team's keys are
    /// refused on every gateway within a second).
    Update {
        /// Team id or name.
        team: String,
        /// Book the team's spend to this cost centre.
        #[arg(long, visible_alias = "cost-center", conflicts_with = "no_cost_centre")]
        cost_centre: Option<String>,
        /// Remove the cost centre.
        #[arg(long, visible_alias = "no-cost-center")]
        no_cost_centre: bool,
        /// A label as name=value (repeat); the labels given replace all of the team's labels.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Remove every label.
        #[arg(long, conflicts_with = "labels")]
        clear_labels: bool,
        /// Refuse the team's keys.
        #[arg(long, conflicts_with = "enable")]
        disable: bool,
        /// Accept the team's keys again.
        #[arg(long)]
        enable: bool,
        #[command(flatten)]
        output: Output,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not name=value"))
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Issue a team key. The secret is printed once; only its hash is stored.
    Create {
        /// Team id or name.
        #[arg(long)]
        team: String,
        /// A label for the key (e.g. "ci", "alice-laptop").
        #[arg(long, default_value = "default")]
        name: String,
        /// Days until the key expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// A model this key may call, within the team's (repeat; 'gpt-5*' matches a prefix). Default: all.
        #[arg(long = "allow-model")]
        allow_models: Vec<String>,
        #[command(flatten)]
        output: Output,
    },
    /// List keys (never their secrets).
    List {
        /// Only this team's keys (id or name).
        #[arg(long)]
        team: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Revoke a key; every gateway refuses it within a second.
    Revoke {
        /// Key id (the part after "tg-").
        id: String,
        #[command(flatten)]
        output: Output,
    },
    /// Issue a new key like this one (team, name, models, expiry) and let the old one work
    /// only for the grace period. The new secret is printed once.
    Rotate {
        /// Key id (the part after "tg-").
        id: String,
        /// How long the old key keeps working, in seconds (at most 30 days).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(0..=2_592_000))]
        grace_seconds: u64,
        #[command(flatten)]
        output: Output,
    },
}

#[derive(Debug, Args, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
