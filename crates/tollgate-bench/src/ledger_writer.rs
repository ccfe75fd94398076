//! `tollgate-bench ledger-writer`: how many ledger rows a second the writer takes. For each store
//! it migrates a fresh database (a uniquely named PostgreSQL database, dropped at the end, or a
//! SQLite file in a temporary directory), opens the real [`Ledger`] with the gateway's default
//! options, and records Codex-shaped events into its sink, either as fast as the queue takes them
//! (never letting it overflow, so the rate is the writer's) or at `--rate` events a second (as a
//! gateway would, spooling what the queue cannot hold). Then it waits for the flush and checks
//! that the ledger, `ledger_daily`, the sessions and the budget windows hold exactly what was
//! sent, to the nano-dollar.
//!
//! A benchmark, not a timed test: it prints numbers for a person to compare.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sqlx::Row;

use tollgate_core::budget::{Calendar, ClaimRequest, Period};
use tollgate_core::time::now_ms;
use tollgate_core::{CallOutcome, LedgerEvent, LedgerSink, Money, ToolCount, Usage};
use tollgate_store::ledger::utc_day;
use tollgate_store::testdb::TestDb;
use tollgate_store::{BudgetSpec, Ledger, LedgerOptions, LedgerStats, Store, Totals};

#[derive(Debug, Parser)]
#[command(name = "tollgate-bench ledger-writer")]
struct Args {
    /// Stores to measure, in order (`postgres`, `sqlite`).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,sqlite"
    )]
    store: Vec<StoreKind>,
    /// Events to record.
    #[arg(long, default_value_t = 500_000)]
    rows: usize,
    /// Record this many events a second, whether or not the queue has room (what a gateway
    /// does: a full queue spools). Without it, events are recorded as fast as the queue takes
    /// them.
    #[arg(long)]
    rate: Option<u64>,
    /// Codex sessions running at once: event `i` belongs to session lane `i % sessions`, and a
    /// session makes 50 calls. Each distinct session in a batch is a `sessions` upsert.
    #[arg(long, default_value_t = 64)]
    sessions: u64,
    /// Events per batch (default: the gateway's, `[ledger] batch_rows`).
    #[arg(long)]
    batch_rows: Option<usize>,
    /// Also put the section into this file (e.g. BENCHMARKS.md), replacing its previous version.
    #[arg(long)]
    write: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    fn label(self) -> &'static str {
        match self {
            StoreKind::Postgres => "PostgreSQL (TCP)",
            StoreKind::Sqlite => "SQLite file",
        }
    }
}

/// The heading of the section this prints.
const HEADING: &str = "## Ledger writer throughput";
const TEAMS: u64 = 20;
const KEYS_PER_TEAM: u64 = 5;
const USERS_PER_TEAM: u64 = 25;
const MODELS: [&str; 6] = [
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-5-codex",
    "gpt-4.1",
    "o4-mini",
];
const CALLS_PER_SESSION: u64 = 50;
/// The events' start times are spread over this long before the run.
const SPREAD_MS: i64 = 10 * 60 * 1_000;
const REPLICA: &str = "bench-ledger-writer";

/// Runs with the arguments after `ledger-writer`.
pub fn main(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = Args::parse_from(std::iter::once("ledger-writer".to_owned()).chain(args));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for kind in &args.store {
        eprintln!("ledger-writer: {} events into {}", args.rows, kind.label());
        let run = measure(*kind, &args).await?;
        eprintln!(
            "ledger-writer: {}: {:.0} rows/s",
            kind.label(),
            run.rows_per_sec()
        );
        runs.push(run);
    }
    let section = render(&args, &runs);
    print!("{section}");
    if let Some(path) = &args.write {
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        std::fs::write(path, crate::sections::replace(&doc, HEADING, &section))
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    anyhow::ensure!(
        runs.iter().all(|r| r.problems.is_empty()),
        "the database does not hold what was sent"
    );
    Ok(())
}

/// One store's run.
struct Run {
    kind: StoreKind,
    rows: usize,
    took: Duration,
    stats: LedgerStats,
    max_queued: u64,
    /// As fast as taken: times the recorder found the queue (nearly) full and waited for room.
    /// At a rate: 1 ms ticks that found it full.
    waits: u64,
    /// What the checks found wrong; empty when the database holds exactly what was sent.
    problems: Vec<String>,
}

impl Run {
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

async fn measure(kind: StoreKind, args: &Args) -> anyhow::Result<Run> {
    // Held until the end; dropping it drops the database (or the file).
    let db = match kind {
        StoreKind::Postgres => TestDb::postgres().await,
        StoreKind::Sqlite => TestDb::sqlite(),
    };
    let store = Store::connect(&db.url).await?;
    store.migrate().await?;
    let now = now_ms();
    let world = World::create(&store, now).await?;
    let events: Vec<LedgerEvent> = (0..args.rows as u64)
        .map(|i| world.event(i, args.rows as u64, args.sessions.max(1), now))
        .collect();
    let expected = Expected::of(&events, &world);

    let spool = tempfile::Builder::new()
        .prefix("tollgate-ledger-writer-")
        .tempdir()?;
    // What the gateway runs with ([ledger] defaults), as its replica.
    let mut options = LedgerOptions {
        replica_id: Some(REPLICA.to_owned()),
        ..LedgerOptions::new(spool.path().join(LedgerOptions::DEFAULT_SPOOL_FILE))
    };
    if let Some(rows) = args.batch_rows {
        options.batch_rows = rows;
    }
    let capacity = options.capacity as u64;
    let ledger = Ledger::spawn(store.clone(), options);
    let sink = ledger.sink();

    let started = Instant::now();
    let (max_queued, waits) = match args.rate {
        Some(rate) => record_at(&ledger, &*sink, events, rate, capacity).await,
        None => record_as_taken(&ledger, &*sink, events, capacity).await,
    };
    ledger.flush().await;
    // Spooled events come back through the replay, a chunk at a time.
    while ledger.stats().spool_bytes > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    let stats = ledger.stats();
    ledger.shutdown().await;

    let problems = expected
        .check(&store, &db.url, &world, stats.spooled > 0)
        .await?;
    for problem in &problems {
        eprintln!("ledger-writer: {}: {problem}", kind.label());
    }
    store.close().await;
    drop(db);
    Ok(Run {
        kind,
        rows: args.rows,
        took,
        stats,
        max_queued,
        waits,
        problems,
    })
}

/// Records every event as soon as the queue has room for it; returns the deepest queue seen and
/// how often it was full.
async fn record_as_taken(
    ledger: &Ledger,
    sink: &dyn LedgerSink,
    events: Vec<LedgerEvent>,
    capacity: u64,
) -> (u64, u64) {
    const STEP: u64 = 256;
    let (mut max_queued, mut waits) = (0, 0);
    for (i, event) in events.into_iter().enumerate() {
        if (i as u64).is_multiple_of(STEP) {
            let queued = ledger.stats().queued;
            max_queued = max_queued.max(queued);
            if queued + STEP >= capacity {
                waits += 1;
                while ledger.stats().queued > capacity / 2 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        sink.record(event);
    }
    (max_queued, waits)
}

/// Records `rate` events a second whatever the queue holds (a full queue spools them); returns
/// the deepest queue seen and how many of its 1 ms ticks found it full.
async fn record_at(
    ledger: &Ledger,
    sink: &dyn LedgerSink,
    events: Vec<LedgerEvent>,
    rate: u64,
    capacity: u64,
) -> (u64, u64) {
    let total = events.len();
    let mut events = events.into_iter();
    let started = Instant::now();
    let (mut sent, mut max_queued, mut full) = (0, 0, 0);
    while sent < total {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize).min(total);
        for event in events.by_ref().take(due - sent) {
            sink.record(event);
        }
        sent = due;
        let queued = ledger.stats().queued;
        max_queued = max_queued.max(queued);
        full += u64::from(queued >= capacity);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    (max_queued, full)
}

/// Teams, keys and budgets (with this replica's leases on their current windows).
struct World {
    teams: Vec<(String, Vec<String>)>,
    /// (budget id, team, key or all, period)
    budgets: Vec<(String, String, Option<String>, Period)>,
}

impl World {
    async fn create(store: &Store, now: i64) -> anyhow::Result<World> {
        let calendar = Calendar::default();
        let mut teams = Vec::new();
        let mut budgets = Vec::new();
        for k in 0..TEAMS {
            let team = store
                .create_team(&format!("team{k:02}"), Some(&format!("CC-{}", k % 8)))
                .await?;
            let mut keys = Vec::new();
            for j in 0..KEYS_PER_TEAM {
                let key = store.create_key(&team.id, &format!("key{j}"), None).await?;
                keys.push(key.key.id);
            }
            // A monthly budget on most teams and a daily one on some keys, as in production:
            // the writer adds every row to its windows.
            let mut scopes = Vec::new();
            if k < 12 {
                scopes.push((None, Period::Month));
            }
            if k < 4 {
                scopes.push((keys.first().cloned(), Period::Day));
            }
            for (key_id, period) in scopes {
                let spec = BudgetSpec {
                    team_id: team.id.clone(),
                    key_id: key_id.clone(),
                    period,
                    limit: Money(1_000_000 * 1_000_000_000),
                    soft_ppm: 800_000,
                    session_cap: None,
                };
                let budget = store.create_budget(&spec, calendar).await?;
                for at in [now - SPREAD_MS, now] {
                    store
                        .claim_lease(&ClaimRequest {
                            budget_id: budget.id.clone(),
                            window_start_ms: calendar.period_start(period, at),
                            replica_id: REPLICA.to_owned(),
                            delta: 1_000_000_000,
                            limit: spec.limit.nanos(),
                            now_ms: now,
                            ttl_ms: 3_600_000,
                        })
                        .await?;
                }
                budgets.push((budget.id, team.id.clone(), key_id, period));
            }
            teams.push((team.id, keys));
        }
        Ok(World { teams, budgets })
    }

    /// Event `i` of `n`, in session lane `i % lanes`: started within the ten minutes before
    /// `now`, in the order recorded.
    fn event(&self, i: u64, n: u64, lanes: u64, now: i64) -> LedgerEvent {
        let h = splitmix(i);
        let started = now - SPREAD_MS + (i as i64 * SPREAD_MS) / n.max(1) as i64;
        let lane = i % lanes;
        let session = (i / lanes) / CALLS_PER_SESSION * lanes + lane;
        // The lane's team and key, so a session stays with one of each.
        let team = (splitmix(lane) % TEAMS) as usize;
        let (team_id, keys) = &self.teams[team];
        let key = &keys[(splitmix(lane + 1_000_000) % KEYS_PER_TEAM) as usize];
        // A session sticks to its model, but for one call in ten to a small one (compaction).
        let model = if h.is_multiple_of(10) {
            "gpt-5-mini"
        } else {
            MODELS[(splitmix(session) % MODELS.len() as u64) as usize]
        };
        let input = 2_000 + (h >> 8) % 60_000;
        let cached = input * ((h >> 24) % 10) / 10;
        let output = 50 + (h >> 32) % 3_000;
        let reasoning = output * ((h >> 40) % 4) / 4;
        let roll = (h >> 48) % 1_000;
        let tool_calls = match (h >> 12) % 5 {
            0 | 1 => vec![],
            2 => vec![tool("exec_command", 1 + (h >> 16) as u32 % 4)],
            3 => vec![tool("exec_command", 2), tool("apply_patch", 1)],
            _ => vec![
                tool("read_file", 1 + (h >> 20) as u32 % 3),
                tool("web_search", 1),
            ],
        };
        LedgerEvent {
            // As the gateway makes them: 12 hex digits of milliseconds, 20 random.
            request_id: format!(
                "req_{:012x}{:020x}",
                started as u64 & 0xffff_ffff_ffff,
                u128::from(h) << 16
            ),
            started_at_ms: started,
            finished_at_ms: started + 800 + (h % 9_000) as i64,
            team_id: team_id.clone(),
            key_id: key.clone(),
            cost_centre: (team % 5 != 4).then(|| format!("CC-{}", team % 8)),
            user: Some(format!("user{:02}", (h >> 4) % USERS_PER_TEAM)),
            session_id: Some(format!(
                "019ab6a2-{:04x}-7000-8000-{session:012x}",
                lane % 0x1_0000
            )),
            turn_id: Some(format!(
                "019ab6a3-{:04x}-7000-8000-{:012x}",
                lane % 0x1_0000,
                i / 4
            )),
            endpoint: if roll < 900 {
                "responses"
            } else {
                "chat.completions"
            }
            .into(),
            model_requested: Some(model.into()),
            model_served: (roll % 50 != 7).then(|| format!("{model}-2025-08-07")),
            status: match roll {
                0..=14 => 429,
                15..=19 => 502,
                _ => 200,
            },
            usage: Usage {
                input,
                cached_input: cached,
                output,
                reasoning,
            },
            units: Default::default(),
            // Odd nano-dollar amounts, as real prices give.
            cost: Money(((input - cached) * 1_250 + cached * 125 + output * 10_000) as i64 + 7),
            price_id: Some(format!("{model}@2025-08-07")),
            estimated: roll % 97 == 3,
            unpriced: roll % 211 == 5,
            service_tier: Some(
                if roll.is_multiple_of(3) {
                    "priority"
                } else {
                    "default"
                }
                .into(),
            ),
            ttfb_ms: (roll % 40 != 1).then_some(200 + (h % 900) as i64),
            latency_ms: 800 + (h % 9_000) as i64,
            tool_calls,
            outcome: if roll % 101 == 9 {
                CallOutcome::UpstreamCut
            } else {
                CallOutcome::Complete
            },
            unmetered: roll % 499 == 11,
            response_id: Some(format!("resp_{h:048x}")),
        }
    }
}

fn tool(name: &str, count: u32) -> ToolCount {
    ToolCount {
        name: name.to_owned(),
        count,
    }
}

/// What the database must hold after the run, summed here from the events.
struct Expected {
    rows: i64,
    totals: Totals,
    first_ms: i64,
    last_ms: i64,
    /// (budget id, window start) → cost
    windows: BTreeMap<(String, i64), i64>,
}

impl Expected {
    fn of(events: &[LedgerEvent], world: &World) -> Expected {
        let calendar = Calendar::default();
        let mut totals = Totals::default();
        let mut windows = BTreeMap::new();
        for e in events {
            totals.requests += 1;
            totals.input_tokens += e.usage.input as i64;
            totals.cached_input_tokens += e.usage.cached_input as i64;
            totals.output_tokens += e.usage.output as i64;
            totals.reasoning_tokens += e.usage.reasoning as i64;
            totals.cost = Money(totals.cost.nanos() + e.cost.nanos());
            totals.estimated_requests += i64::from(e.estimated);
            totals.failed_requests +=
                i64::from(e.status >= 400 || e.outcome != CallOutcome::Complete);
            totals.unpriced_requests += i64::from(e.unpriced);
            totals.unmetered_requests += i64::from(e.unmetered);
            for (id, team, key, period) in &world.budgets {
                if *team == e.team_id && key.as_ref().is_none_or(|k| *k == e.key_id) {
                    let start = calendar.period_start(*period, e.started_at_ms);
                    *windows.entry((id.clone(), start)).or_default() += e.cost.nanos();
                }
            }
        }
        Expected {
            rows: events.len() as i64,
            totals,
            first_ms: events.iter().map(|e| e.started_at_ms).min().unwrap_or(0),
            last_ms: events.iter().map(|e| e.started_at_ms).max().unwrap_or(0),
            windows,
        }
    }

    /// Every way the database disagrees with the events.
    /// `spooled`: some events went through the spool, whose replay consumes no lease.
    async fn check(
        &self,
        store: &Store,
        url: &str,
        world: &World,
        spooled: bool,
    ) -> anyhow::Result<Vec<String>> {
        let mut problems = Vec::new();
        let raw = sqlx::AnyPool::connect(url).await?;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger")
            .fetch_one(&raw)
            .await?;
        if rows != self.rows {
            problems.push(format!("{rows} ledger rows, {} sent", self.rows));
        }
        let ledger = store.ledger_totals(i64::MIN, i64::MAX).await?;
        if ledger != self.totals {
            problems.push(format!("ledger sums {ledger:?}, sent {:?}", self.totals));
        }
        let (from, to) = (utc_day(self.first_ms), utc_day(self.last_ms));
        let daily = store.daily_totals(&from, &to).await?;
        if daily != self.totals {
            problems.push(format!(
                "ledger_daily sums {daily:?}, sent {:?}",
                self.totals
            ));
        }
        let reconciliation = store.reconcile(self.first_ms, self.last_ms + 1).await?;
        if !reconciliation.is_clean() {
            problems.push(format!(
                "reconcile: {} daily and {} session differences",
                reconciliation.daily_differences.len(),
                reconciliation.session_differences.len()
            ));
        }
        let mut spent = BTreeMap::new();
        for (budget, start, nanos) in store.windows_spent(i64::MIN).await? {
            if nanos != 0 {
                spent.insert((budget, start), nanos);
            }
        }
        if spent != self.windows {
            problems.push(format!("budget windows {spent:?}, sent {:?}", self.windows));
        }
        // This process settled every row, so its leases consumed what its windows spent: all of
        // it, unless some rows came back from the spool (a replay consumes no lease).
        let consumed = sqlx::query(
            "SELECT budget_id, window_start_ms, consumed_nanos FROM budget_leases WHERE replica_id = $1",
        )
        .bind(REPLICA)
        .fetch_all(&raw)
        .await?;
        for row in &consumed {
            let key: (String, i64) = (row.try_get(0)?, row.try_get(1)?);
            let nanos: i64 = row.try_get(2)?;
            let want = self.windows.get(&key).copied().unwrap_or(0);
            if nanos > want || (nanos != want && !spooled) {
                problems.push(format!("lease on {key:?} consumed {nanos}, spent {want}"));
            }
        }
        if consumed.len() < world.budgets.len() {
            problems.push(format!(
                "{} leases for {} budgets",
                consumed.len(),
                world.budgets.len()
            ));
        }
        raw.close().await;
        Ok(problems)
    }
}

fn render(args: &Args, runs: &[Run]) -> String {
    let mut out = format!("{HEADING}\n\n");
    let options = LedgerOptions::default();
    let batch_rows = args.batch_rows.unwrap_or(options.batch_rows);
    let (how, full) = match args.rate {
        Some(rate) => (
            format!("at {rate} events/s whether or not the queue had room (as the proxy does)"),
            "1 ms ticks that found the queue full",
        ),
        None => (
            "as fast as the queue took them (never overflowing it, so the rate is the \
             writer's)"
                .to_owned(),
            "times the recorder found the queue full and waited",
        ),
    };
    out.push_str(&format!(
        "{} Codex-shaped ledger events ({TEAMS} teams × {KEYS_PER_TEAM} keys; {} sessions at a \
         time, 50 calls each, one model per session but for one call in ten; tool calls on 3 in \
         5; a few failed, estimated, unpriced or unmetered; a monthly budget on 12 teams and a \
         daily one on 4 keys, with this replica's leases) recorded {how} into the real `Ledger` \
         (queue {}, batches of up to {batch_rows}, {} ms flush), on {} cores shared with the \
         database. rows/s counts from the first \
         event to the flush; \"queue full\" is {full}. Checked after: the row count, the \
         ledger's and `ledger_daily`'s sums against the events' (exact nano-USD), `reconcile`, \
         and every budget window's spend and lease.\n\n",
        args.rows,
        args.sessions,
        options.capacity,
        options.flush_interval.as_millis(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
    ));
    out.push_str(
        "| store | rows/s | seconds | batches | rows per batch | write errors | deepest queue \
         | queue full | spooled | checks |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for r in runs {
        let s = &r.stats;
        out.push_str(&format!(
            "| {} | **{:.0}** | {:.1} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
            r.kind.label(),
            r.rows_per_sec(),
            r.took.as_secs_f64(),
            s.batches,
            s.rows_written as f64 / s.batches.max(1) as f64,
            s.write_errors,
            r.max_queued,
            r.waits,
            s.spooled,
            if r.problems.is_empty() {
                "exact".to_owned()
            } else {
                format!("**{} wrong**", r.problems.len())
            },
        ));
    }
    out.push_str(&format!("\n`{}`\n", crate::options::command_line()));
    out
}

/// splitmix64: a well-spread hash of a counter, so every run records the same events.
fn splitmix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
