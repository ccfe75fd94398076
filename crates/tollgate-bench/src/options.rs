//! Command-line options, the `--quick` preset, and the exact command line quoted in the report.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::scenario::{Scenario, TargetKind};

/// tollgate's end-to-end benchmark: the same load, direct to the mock upstream, through nginx
/// and through tollgate, each a separate process. Prints a Markdown report on stdout.
#[derive(Debug, Clone, Parser)]
#[command(name = "tollgate-bench")]
pub struct Options {
    /// Repetitions; every cell of the report is the median over runs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Open-loop rates to measure, in requests per second.
    #[arg(long, value_delimiter = ',', default_value = "200,2000")]
    pub rates: Vec<u32>,
    /// Measured seconds per open-loop window.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Unmeasured warm-up seconds before each window (same load).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Concurrent closed-loop workers for the saturation measurement.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Measured seconds of the saturation window.
    #[arg(long, default_value_t = 3.0)]
    pub saturation_secs: f64,
    /// Scenarios to run (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub scenarios: Vec<Scenario>,
    /// Targets to run (default: all; `direct` is always run as the baseline).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub targets: Vec<TargetKind>,
    /// Concurrency mode: streams held open through tollgate at once (0 skips it).
    #[arg(long, default_value_t = 1000)]
    pub streams: usize,
    /// Concurrency mode: how long each of those streams lasts, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub hold: f64,
    /// Only the concurrency mode, not the latency/throughput tables.
    #[arg(long)]
    pub streams_only: bool,
    /// Smoke run: short windows, one run, 200 streams for 3 s.
    #[arg(long)]
    pub quick: bool,
    /// Also write the report to this file (e.g. BENCHMARKS.md).
    #[arg(long)]
    pub write: Option<PathBuf>,
    /// The nginx binary (default: `nginx` on PATH, then /usr/sbin/nginx).
    #[arg(long)]
    pub nginx: Option<PathBuf>,
    /// The tollgate binary (default: next to this executable).
    #[arg(long)]
    pub tollgate: Option<PathBuf>,
    /// What the tollgate binary was built from, for the report (default: this checkout's
    /// `git rev-parse HEAD`, marked when the tree has uncommitted changes).
    #[arg(long)]
    pub tollgate_commit: Option<String>,
    /// Per-request timeout, in seconds; a request that takes longer counts as an error.
    #[arg(long, default_value_t = 30.0)]
    pub timeout: f64,
    /// Run tollgate without the bench team's budget and rate limit (to measure what budget and
    /// rate-limit admission add; by default both apply, set high enough never to bind).
    #[arg(long)]
    pub no_limits: bool,
    /// Run tollgate without OTLP export (by default each gateway exports traces, metrics and
    /// logs to its own `tests/otlp/receiver.py --discard`).
    #[arg(long)]
    pub no_otlp: bool,
    /// The PostgreSQL server for the `tollgate-pg` target, as an admin connection: a fresh
    /// database is created there for the run and dropped at its end.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub postgres_url: String,
}

impl Options {
    /// Applies `--quick` (it overrides durations, runs and the stream count).
    pub fn resolved(mut self) -> Options {
        if self.quick {
            self.runs = 1;
            self.duration = 1.0;
            self.warmup = 0.3;
            self.saturation_secs = 1.0;
            self.streams = self.streams.min(200);
            self.hold = 3.0;
        }
        self.runs = self.runs.max(1);
        if self.scenarios.is_empty() {
            self.scenarios = Scenario::ALL.to_vec();
        }
        if self.targets.is_empty() {
            self.targets = TargetKind::ALL.to_vec();
        }
        if !self.targets.contains(&TargetKind::Direct) {
            self.targets.insert(0, TargetKind::Direct);
        }
        self
    }

    pub fn duration(&self) -> Duration {
        secs(self.duration)
    }

    pub fn warmup(&self) -> Duration {
        secs(self.warmup)
    }

    pub fn saturation(&self) -> Duration {
        secs(self.saturation_secs)
    }

    pub fn hold(&self) -> Duration {
        secs(self.hold)
    }

    pub fn timeout(&self) -> Duration {
        secs(self.timeout)
    }
}

fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO)
}

/// The command that reproduces this run, as a reader would paste it from the repository root.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).map(|a| shell_quote(&a)).collect();
    let mut line = String::from(
        "cargo build --release -p tollgate -p tollgate-bench && target/release/tollgate-bench",
    );
    for arg in args {
        line.push(' ');
        line.push_str(&arg);
    }
    line
}

fn shell_quote(arg: &str) -> String {
    let plain = arg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./=,:".contains(&b));
    if plain && !arg.is_empty() {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}
