//! `tollgate-bench console-scale`: how long each web console page takes over a large ledger.
//! Fills a fresh database with `--rows` ledger rows over last month and this month so far,
//! through the ledger writer's own `insert_ledger_batch` (so `ledger_daily`, `sessions` and the
//! budget windows are kept as in production), beside teams, keys, budgets, admin tokens, audit
//! entries and refusals; then starts a release gateway on it, signs in to `/console` with the
//! bootstrap admin token as a browser does, and times each page, whole body read. The admin API
//! calls behind each page are timed too, to show which one a slow page waits on.
//!
//! A benchmark, not a timed test: it prints numbers for a person to compare.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use chrono::{Datelike, NaiveDate};
use clap::Parser;
use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use sqlx::Connection;

use tollgate_core::budget::{Calendar, Period};
use tollgate_core::{CallOutcome, LedgerEvent, Money, ToolCount, Usage};
use tollgate_store::testdb::TestDb;
use tollgate_store::{Actor, BudgetSpec, Role, Store};

use crate::client::{HttpClient, new_client};
use crate::{lab, procs};

#[derive(Debug, Parser)]
#[command(name = "tollgate-bench console-scale")]
struct Args {
    /// Ledger rows to insert, spread over last month and this month until now.
    #[arg(long, default_value_t = 10_000_000)]
    rows: usize,
    /// Rows per `insert_ledger_batch` call (the writer's production batch is up to 5,000).
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Timed requests per page, after the warm-ups.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    #[arg(long, default_value_t = 2)]
    warmups: usize,
    /// Stores to measure, in order (`postgres`, `sqlite`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "postgres")]
    store: Vec<StoreKind>,
    /// Concurrent ledger writers filling contiguous slices of the rows (as several gateway
    /// replicas would); 1 is one gateway's writer.
    #[arg(long, default_value_t = 1)]
    writers: usize,
    /// Share of the rows in this month (default: the same rate as last month, so by time).
    #[arg(long)]
    this_month_share: Option<f64>,
    /// Leave the filled databases behind (their URLs are printed) to EXPLAIN queries on; drop
    /// them yourself afterwards.
    #[arg(long)]
    keep: bool,
    /// The tollgate binary (default: next to this executable).
    #[arg(long)]
    tollgate: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    Postgres,
    Sqlite,
}

/// The bootstrap admin token the gateway is started with (`TOLLGATE_ADMIN_TOKEN`).
const ADMIN_TOKEN: &str = "tga-console-scale-admin";
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
/// Sessions running at once: row `i` belongs to lane `i % LANES`, so a session's calls are
/// interleaved with others' over minutes, as concurrent Codex runs are.
const LANES: u64 = 64;
const CALLS_PER_SESSION: u64 = 50;
const AUDIT_ENTRIES: usize = 300;
/// The largest page or API answer read (the biggest are tens of KB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Runs with the arguments after `console-scale`.
pub fn main(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = Args::parse_from(std::iter::once("console-scale".to_owned()).chain(args));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    // The CLI runs in the data directory, so a relative `--tollgate` must not stay relative.
    let tollgate = std::fs::canonicalize(procs::tollgate_binary(args.tollgate.as_deref())?)?;
    println!(
        "\n## Console pages over {} ledger rows\n\n`tollgate-bench console-scale {}`\n",
        args.rows,
        std::env::args().skip(2).collect::<Vec<_>>().join(" ")
    );
    for kind in &args.store {
        measure(&tollgate, *kind, &args).await?;
    }
    eprintln!(
        "console-scale: took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn measure(tollgate: &std::path::Path, kind: StoreKind, args: &Args) -> anyhow::Result<()> {
    // Held until the gateway has stopped; dropping it drops the database (or the file).
    let db = match kind {
        StoreKind::Postgres => TestDb::postgres().await,
        StoreKind::Sqlite => TestDb::sqlite(),
    };
    let store = Store::connect(&db.url).await?;
    store.migrate().await?;
    let world = World::create(&store).await?;
    let layout = Layout::now(args.rows, args.this_month_share)?;
    // SQLite takes one writer at a time: more would only wait for its lock.
    let writers = match kind {
        StoreKind::Postgres => args.writers.max(1),
        StoreKind::Sqlite => 1,
    };
    let fill = fill(&store, &world, &layout, args.batch, writers).await?;
    let t = Instant::now();
    settle(&db.url, kind).await?;
    let analyze = t.elapsed();
    let big = world.busiest(&layout);
    let team = &world.teams[big];
    let session = store
        .top_sessions(&team.id, i64::MIN, i64::MAX, None, 1)
        .await?
        .into_iter()
        .next()
        .context("the busiest team has no session")?;
    let size = database_size(&db.url, kind).await;
    store.close().await;

    let dir = tempfile::Builder::new()
        .prefix("tollgate-console-scale-")
        .tempdir()?;
    let mock = lab::start_mock(tollgate).await?;
    let extra = [("TOLLGATE_ADMIN_TOKEN", ADMIN_TOKEN.to_owned())];
    let (gateway, _key) = lab::start_tollgate_with(
        tollgate,
        dir.path(),
        mock.addr,
        false,
        Some(&db.url),
        &extra,
    )
    .await?;
    let origin = format!("http://{}", gateway.addr);
    let client = new_client();
    let cookie = sign_in(&client, &origin).await?;

    let periods = Periods::of(&layout)?;
    let label = match kind {
        StoreKind::Postgres => "PostgreSQL",
        StoreKind::Sqlite => "SQLite",
    };
    println!("### {label}\n");
    println!(
        "Filled {} rows in {:.1} s ({:.0} rows/s through insert_ledger_batch, {} per batch, {} \
         writer(s)); \
         {} took {:.1} s; database {size}. {} rows this month; the busiest team `{}` has {} rows, \
         its most expensive session {} calls.\n",
        args.rows,
        fill.as_secs_f64(),
        args.rows as f64 / fill.as_secs_f64().max(0.001),
        args.batch,
        writers,
        match kind {
            StoreKind::Postgres => "VACUUM ANALYZE",
            StoreKind::Sqlite => "ANALYZE",
        },
        analyze.as_secs_f64(),
        layout.this_month_rows(),
        team.name,
        world.rows_of(big, &layout),
        session.requests,
    );
    println!("| page | bytes | p50 | p95 | max |\n|---|---:|---:|---:|---:|");
    for (name, path) in pages(&team.id, &session.session_id, &periods) {
        let uri = format!("{origin}{path}");
        let header = (COOKIE, cookie.clone());
        // A report the API refused is still a 200 page, with the refusal in it.
        let sound =
            |body: &str| !body.contains("Not shown: ") && !body.contains("class=\"problem\"");
        let (bytes, times) = time(&client, &uri, header, (args.warmups, args.runs), sound).await?;
        println!(
            "| {name} | {bytes} | {} | {} | {} |",
            ms(pct(&times, 50)),
            ms(pct(&times, 95)),
            ms(pct(&times, 100))
        );
    }

    println!(
        "\nThe admin API calls behind them (`GET /admin/v1/…`, {} runs):\n",
        args.runs.min(5)
    );
    println!("| page | call | bytes | p50 | max |\n|---|---|---:|---:|---:|");
    // The admin API calls each page makes (console.rs carries them out in-process).
    for (page, call) in api_calls(&team.id, &session.session_id, &periods) {
        let uri = format!("{origin}/admin/v1/{call}");
        let header = (AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"));
        let (bytes, times) = time(&client, &uri, header, (1, args.runs.min(5)), |_| true).await?;
        println!(
            "| {page} | `{call}` | {bytes} | {} | {} |",
            ms(pct(&times, 50)),
            ms(pct(&times, 100))
        );
    }
    println!();
    gateway.stop().await;
    mock.stop().await;
    if args.keep {
        println!("Kept the database: {}\n", db.url);
        // Without its `Drop`, which would drop the database (or delete the file).
        std::mem::forget(db);
    }
    Ok(())
}

/// The report periods the pages are asked for, as `YYYY-MM-DD` (UTC).
struct Periods {
    last_month: String,
    this_month: String,
    next_month: String,
}

impl Periods {
    fn of(layout: &Layout) -> anyhow::Result<Periods> {
        let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let next = layout
            .this_month_start
            .checked_add_months(chrono::Months::new(1))
            .context("next month")?;
        Ok(Periods {
            last_month: day(layout.last_month_start),
            this_month: day(layout.this_month_start),
            next_month: day(next),
        })
    }
}

/// The pages timed: (label, path).
fn pages(team: &str, session: &str, p: &Periods) -> Vec<(&'static str, String)> {
    let team_path = format!("/console/teams/{team}");
    vec![
        ("overview", "/console/overview".to_owned()),
        ("teams", "/console/teams".to_owned()),
        ("team (busiest)", team_path.clone()),
        (
            "session (team's most expensive)",
            format!("{team_path}/session?id={}", encode(session)),
        ),
        (
            "reports: team,day, this month",
            format!(
                "/console/reports?from={}&to={}&group_by=team,day&tz=UTC",
                p.this_month, p.next_month
            ),
        ),
        (
            "reports: cost_centre, last month",
            format!(
                "/console/reports?from={}&to={}&group_by=cost_centre&tz=UTC",
                p.last_month, p.this_month
            ),
        ),
        ("audit", "/console/audit".to_owned()),
        ("admin-tokens", "/console/admin-tokens".to_owned()),
    ]
}

/// The admin API calls the pages make, in page order: (page, path under `/admin/v1/`).
fn api_calls(team: &str, session: &str, p: &Periods) -> Vec<(&'static str, String)> {
    let session = encode(session);
    vec![
        ("overview", "reports/spend?group_by=team,day".to_owned()),
        ("overview, teams", "teams?limit=1000".to_owned()),
        ("overview", "reports/spend?group_by=cost_centre".to_owned()),
        ("overview", "reports/spend?group_by=model".to_owned()),
        ("overview", "reports/refusals".to_owned()),
        ("overview", "budgets?limit=1000".to_owned()),
        ("teams", "reports/spend?group_by=team".to_owned()),
        ("team", format!("teams/{team}")),
        ("team", format!("budgets?team={team}&limit=1000")),
        ("team", format!("teams/{team}/keys?limit=1000")),
        ("team", format!("rate-limits?team={team}&limit=1000")),
        ("team", format!("reports/spend?group_by=key&team={team}")),
        ("team", format!("reports/spend?group_by=user&team={team}")),
        ("team", format!("reports/spend?group_by=model&team={team}")),
        ("team", format!("teams/{team}/sessions?limit=10")),
        ("session", format!("teams/{team}/sessions/{session}")),
        ("session", format!("teams/{team}/sessions/{session}/calls")),
        (
            "reports: team,day",
            format!(
                "reports/spend?from={}&to={}&group_by=team,day&tz=UTC",
                p.this_month, p.next_month
            ),
        ),
        (
            "reports: cost_centre",
            format!(
                "reports/spend?from={}&to={}&group_by=cost_centre&tz=UTC",
                p.last_month, p.this_month
            ),
        ),
        ("audit", "audit?limit=100".to_owned()),
        ("admin-tokens", "admin-tokens?limit=1000".to_owned()),
    ]
}

/// The teams, keys, budgets, admin tokens, audit entries and refusals a console shows beside
/// the ledger.
struct World {
    teams: Vec<TeamIds>,
    /// Cumulative team weights (team `k` weighs `1/(k+1)`: a few teams make most calls).
    weights: Vec<f64>,
}

struct TeamIds {
    id: String,
    name: String,
    cost_centre: String,
    keys: Vec<String>,
}

impl World {
    async fn create(store: &Store) -> anyhow::Result<World> {
        let mut teams = Vec::new();
        let calendar = Calendar::default();
        for k in 0..TEAMS {
            let name = format!("team{k:02}");
            let cost_centre = format!("CC-{}", k % 8);
            let team = store.create_team(&name, Some(&cost_centre)).await?;
            let mut keys = Vec::new();
            for j in 0..KEYS_PER_TEAM {
                keys.push(
                    store
                        .create_key(&team.id, &format!("key{j}"), None)
                        .await?
                        .key
                        .id,
                );
            }
            // Budgets before the rows, so the writer adds each row to its window as it lands.
            let budget = |key_id: Option<String>, period, usd: i64| BudgetSpec {
                team_id: team.id.clone(),
                key_id,
                period,
                limit: Money(usd * 1_000_000_000),
                soft_ppm: 800_000,
                session_cap: None,
            };
            if k < 12 {
                store
                    .create_budget(&budget(None, Period::Month, 5_000_000), calendar)
                    .await?;
            }
            if k < 4 {
                let spec = budget(keys.first().cloned(), Period::Day, 100_000);
                store.create_budget(&spec, calendar).await?;
            }
            teams.push(TeamIds {
                id: team.id,
                name,
                cost_centre,
                keys,
            });
        }
        for n in 0..10 {
            let (role, team) = match n % 3 {
                0 => (Role::Finance, None),
                1 => (Role::TeamAdmin, teams.get(n).map(|t| t.id.as_str())),
                _ => (Role::Admin, None),
            };
            store
                .create_admin_token(&format!("token{n}"), role, team)
                .await?;
        }
        let actor = Actor {
            id: "bootstrap".into(),
            name: "bootstrap".into(),
            role: "admin".into(),
        };
        for n in 0..AUDIT_ENTRIES {
            let team = &teams[n % teams.len()];
            let after = serde_json::json!({"id": team.id, "name": team.name, "note": n});
            store
                .write_audit(
                    &actor,
                    "PATCH /admin/v1/teams/{team}",
                    &team.id,
                    Some(&after),
                    Some(&after),
                )
                .await?;
        }
        let mut total = 0.0;
        let weights = (0..TEAMS)
            .map(|k| {
                total += 1.0 / (k + 1) as f64;
                total
            })
            .collect::<Vec<_>>();
        let weights = weights.iter().map(|w| w / total).collect();
        Ok(World { teams, weights })
    }

    fn team_of(&self, h: u64) -> usize {
        let u = (h >> 11) as f64 / (1u64 << 53) as f64;
        self.weights
            .iter()
            .position(|w| u < *w)
            .unwrap_or(self.weights.len() - 1)
    }

    /// Row `i` of the ledger.
    fn event(&self, layout: &Layout, i: u64) -> LedgerEvent {
        let lane = i % LANES;
        let j = i / LANES;
        let session = (j / CALLS_PER_SESSION) * LANES + lane;
        let call = j % CALLS_PER_SESSION;
        let s = mix(session);
        let team_no = self.team_of(s);
        let team = &self.teams[team_no];
        let h = mix(i ^ 0x5eed);
        // Some sessions are far costlier than others (longer prompts, bigger models).
        let scale = 1 + (s >> 24) % 16;
        let model = if h.is_multiple_of(5) {
            MODELS[(h >> 3) as usize % MODELS.len()]
        } else {
            MODELS[(s >> 32) as usize % MODELS.len()]
        };
        let input = (h >> 8) % 8_000 * scale;
        let output = (h >> 24) % 1_500;
        let (status, outcome) = match h % 400 {
            0 => (502, CallOutcome::UpstreamUnreachable),
            1 | 2 => (499, CallOutcome::ClientGone),
            3 => (500, CallOutcome::UpstreamCut),
            _ => (200, CallOutcome::Complete),
        };
        let cost = if status == 502 {
            0
        } else {
            (input * 1_250 + output * 10_000) as i64
        };
        let mut tools = Vec::new();
        if h.is_multiple_of(3) {
            tools.push(ToolCount {
                name: "exec_command".into(),
                count: 1 + (h >> 40) as u32 % 3,
            });
        }
        if h.is_multiple_of(7) {
            tools.push(ToolCount {
                name: "apply_patch".into(),
                count: 1,
            });
        }
        let started = layout.started(i);
        LedgerEvent {
            request_id: format!(
                "req_{:012x}{:020x}",
                started,
                u128::from(h) << 16 | u128::from(i as u16)
            ),
            started_at_ms: started,
            finished_at_ms: started + 3_000,
            team_id: team.id.clone(),
            key_id: team.keys[(s >> 8) as usize % team.keys.len()].clone(),
            cost_centre: Some(team.cost_centre.clone()),
            user: Some(format!("u{team_no:02}.{}", (s >> 16) % USERS_PER_TEAM)),
            session_id: Some(uuid_like(s, session)),
            turn_id: Some(format!("{}-{}", uuid_like(s ^ 1, session), call / 5)),
            endpoint: "responses".into(),
            model_requested: Some(model.into()),
            model_served: Some(format!("{model}-2026-01-01")),
            status,
            usage: Usage {
                input,
                cached_input: input / 2,
                output,
                reasoning: output / 3,
            },
            cost: Money(cost),
            price_id: Some(format!("{model}@2026-01-01")),
            estimated: h % 100 == 7,
            unpriced: false,
            service_tier: Some("default".into()),
            ttfb_ms: Some(400),
            latency_ms: 3_000,
            tool_calls: tools,
            outcome,
            unmetered: false,
            units: Default::default(),
            response_id: Some(format!("resp_{h:016x}")),
        }
    }

    /// The team with the most rows.
    fn busiest(&self, layout: &Layout) -> usize {
        (0..self.teams.len())
            .max_by_key(|k| self.rows_of(*k, layout))
            .unwrap_or(0)
    }

    /// How many rows team `k` has (counted the way `event` assigns them).
    fn rows_of(&self, k: usize, layout: &Layout) -> u64 {
        let sessions = layout.rows.div_ceil(CALLS_PER_SESSION);
        let mut rows = 0;
        for session in 0..sessions {
            if self.team_of(mix(session)) == k {
                let lane = session % LANES;
                let first_j = (session / LANES) * CALLS_PER_SESSION;
                let calls = (0..CALLS_PER_SESSION)
                    .filter(|c| (first_j + c) * LANES + lane < layout.rows)
                    .count();
                rows += calls as u64;
            }
        }
        rows
    }
}

/// When rows start: last month's evenly over last month, this month's evenly until now.
struct Layout {
    rows: u64,
    last_month_rows: u64,
    last_month_start: NaiveDate,
    this_month_start: NaiveDate,
    today: NaiveDate,
    last_from_ms: i64,
    this_from_ms: i64,
    now_ms: i64,
}

impl Layout {
    fn now(rows: usize, share: Option<f64>) -> anyhow::Result<Layout> {
        let now_ms = tollgate_core::time::now_ms();
        let today = chrono::DateTime::from_timestamp_millis(now_ms)
            .context("now")?
            .date_naive();
        let this_month_start = today.with_day(1).context("month start")?;
        let last_month_start = this_month_start
            .checked_sub_months(chrono::Months::new(1))
            .context("last month")?;
        let ms = |d: NaiveDate| {
            d.and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc().timestamp_millis())
        };
        let last_from_ms = ms(last_month_start).context("ms")?;
        let this_from_ms = ms(this_month_start).context("ms")?;
        // Up to a minute ago: every row is in the past when the gateway starts.
        let now_ms = now_ms - 60_000;
        let share =
            share.unwrap_or((now_ms - this_from_ms) as f64 / (now_ms - last_from_ms).max(1) as f64);
        let rows = rows as u64;
        Ok(Layout {
            rows,
            last_month_rows: rows - (rows as f64 * share.clamp(0.0, 1.0)) as u64,
            last_month_start,
            this_month_start,
            today,
            last_from_ms,
            this_from_ms,
            now_ms,
        })
    }

    fn this_month_rows(&self) -> u64 {
        self.rows - self.last_month_rows
    }

    fn started(&self, i: u64) -> i64 {
        let spread = |from: i64, to: i64, k: u64, n: u64| {
            from + (i128::from(to - from) * i128::from(k) / i128::from(n.max(1))) as i64
        };
        if i < self.last_month_rows {
            spread(
                self.last_from_ms,
                self.this_from_ms,
                i,
                self.last_month_rows,
            )
        } else {
            let k = i - self.last_month_rows;
            spread(self.this_from_ms, self.now_ms, k, self.this_month_rows())
        }
    }
}

async fn fill(
    store: &Store,
    world: &World,
    layout: &Layout,
    batch: usize,
    writers: usize,
) -> anyhow::Result<Duration> {
    // Each day's refusals (the gateways' own rollup: refused calls have no ledger row).
    let mut day = layout.last_month_start;
    while day <= layout.today {
        let counts: Vec<(String, String, u64)> = world
            .teams
            .iter()
            .take(6)
            .enumerate()
            .flat_map(|(k, t)| {
                [
                    (t.id.clone(), "rate_limit".to_owned(), 40 + k as u64),
                    (t.id.clone(), "budget".to_owned(), 3 * k as u64),
                ]
            })
            .collect();
        store
            .add_refusals(&day.format("%Y-%m-%d").to_string(), &counts)
            .await?;
        day = day.succ_opt().context("next day")?;
    }

    let started = Instant::now();
    let done = AtomicU64::new(0);
    let batch = batch.max(1) as u64;
    // The first batch alone: it creates the month partitions every writer needs.
    let first = layout.rows.min(batch);
    write(store, world, layout, 0..first).await?;
    done.fetch_add(first, Ordering::Relaxed);
    // The rest in `--writers` contiguous slices (days apart, so their rollup rows rarely meet),
    // written concurrently as several gateways' writers do.
    let writers = writers.max(1) as u64;
    let per = (layout.rows - first).div_ceil(writers);
    let slices = (0..writers).map(|w| {
        let from = first + w * per;
        let to = layout.rows.min(from + per);
        let done = &done;
        async move {
            let mut at = from;
            let mut last_report = Instant::now();
            while at < to {
                let end = to.min(at + batch);
                write(store, world, layout, at..end).await?;
                done.fetch_add(end - at, Ordering::Relaxed);
                at = end;
                if w == 0 && last_report.elapsed() >= Duration::from_secs(10) {
                    progress(done.load(Ordering::Relaxed), layout.rows, started);
                    last_report = Instant::now();
                }
            }
            Ok::<(), anyhow::Error>(())
        }
    });
    futures_util::future::try_join_all(slices).await?;
    progress(done.load(Ordering::Relaxed), layout.rows, started);
    Ok(started.elapsed())
}

/// Rows `range` through the ledger writer's own batch insert. Concurrent writers can deadlock
/// on a rollup row both touch (PostgreSQL then aborts one): the batch is idempotent, so retry.
async fn write(
    store: &Store,
    world: &World,
    layout: &Layout,
    range: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    let events: Vec<LedgerEvent> = range.map(|i| world.event(layout, i)).collect();
    let mut tries = 0;
    loop {
        match store.insert_ledger_batch(&events).await {
            Ok(_) => return Ok(()),
            Err(error) if tries < 3 => {
                tries += 1;
                eprintln!("console-scale: batch failed ({error}); retrying");
            }
            Err(error) => return Err(error.into()),
        }
    }
}

fn progress(done: u64, rows: u64, started: Instant) {
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "console-scale: {done} of {rows} rows in {secs:.0} s ({:.0} rows/s)",
        done as f64 / secs.max(0.001)
    );
}

/// What a production database has after a bulk write: planner statistics (and on PostgreSQL a
/// visibility map, so index-only scans stay index-only), as autovacuum leaves it.
async fn settle(url: &str, kind: StoreKind) -> anyhow::Result<()> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let sql = match kind {
        StoreKind::Postgres => "VACUUM (ANALYZE)",
        StoreKind::Sqlite => "ANALYZE",
    };
    sqlx::query(sql).execute(&mut conn).await?;
    let _ = conn.close().await;
    Ok(())
}

async fn database_size(url: &str, kind: StoreKind) -> String {
    let size = async {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        let bytes: i64 = match kind {
            StoreKind::Postgres => {
                sqlx::query_scalar("SELECT CAST(pg_database_size(current_database()) AS BIGINT)")
                    .fetch_one(&mut conn)
                    .await?
            }
            StoreKind::Sqlite => {
                sqlx::query_scalar(
                    "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                )
                .fetch_one(&mut conn)
                .await?
            }
        };
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(bytes)
    };
    match size.await {
        Ok(bytes) => format!("{:.2} GB", bytes as f64 / 1e9),
        Err(e) => format!("size unknown ({e})"),
    }
}

/// Signs in as a browser does: the form's double-submit value from the sign-in page's cookie,
/// then the admin token. Returns the `Cookie` header value of the session.
async fn sign_in(client: &HttpClient, origin: &str) -> anyhow::Result<String> {
    let page = send(
        client,
        Method::GET,
        &format!("{origin}/console/sign-in"),
        None,
        Bytes::new(),
    )
    .await?;
    let pending = cookie(&page.0, "tollgate_console_pending").context("no pending cookie")?;
    let form = format!(
        "csrf={}&token={}&next=%2Fconsole",
        encode(&pending),
        encode(ADMIN_TOKEN)
    );
    let mut request = Request::new(Full::new(Bytes::from(form)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = format!("{origin}/console/sign-in").parse()?;
    let headers = request.headers_mut();
    headers.insert(CONTENT_TYPE, "application/x-www-form-urlencoded".parse()?);
    headers.insert(
        COOKIE,
        format!("tollgate_console_pending={pending}").parse()?,
    );
    let response = client.request(request).await?;
    let status = response.status();
    let session = cookie(response.headers(), "tollgate_console");
    anyhow::ensure!(status == StatusCode::OK, "sign-in answered {status}");
    let session = session.context("sign-in set no session cookie")?;
    Ok(format!("tollgate_console={session}"))
}

/// The value of `name` among a response's `Set-Cookie` headers.
fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers.get_all(SET_COOKIE).iter().find_map(|v| {
        let text = v.to_str().ok()?;
        let (pair, _) = text.split_once(';').unwrap_or((text, ""));
        let (n, value) = pair.split_once('=')?;
        (n.trim() == name && !value.is_empty()).then(|| value.to_owned())
    })
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One request, whole body read, timed from sending to the last byte.
async fn send(
    client: &HttpClient,
    method: Method,
    uri: &str,
    header: Option<(http::HeaderName, String)>,
    body: Bytes,
) -> anyhow::Result<(http::HeaderMap, StatusCode, Bytes, Duration)> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri.parse()?;
    if let Some((name, value)) = header {
        request.headers_mut().insert(name, value.parse()?);
    }
    let t = Instant::now();
    let response = client.request(request).await?;
    let (parts, body) = response.into_parts();
    #[allow(clippy::disallowed_methods)] // bounded by Limited
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading {uri}: {e}"))?
        .to_bytes();
    Ok((parts.headers, parts.status, bytes, t.elapsed()))
}

async fn time(
    client: &HttpClient,
    uri: &str,
    header: (http::HeaderName, String),
    (warmups, runs): (usize, usize),
    sound: impl Fn(&str) -> bool,
) -> anyhow::Result<(usize, Vec<Duration>)> {
    let mut times = Vec::with_capacity(runs);
    let mut size = 0;
    for n in 0..warmups + runs.max(1) {
        let (_, status, body, took) =
            send(client, Method::GET, uri, Some(header.clone()), Bytes::new()).await?;
        let text = String::from_utf8_lossy(&body);
        if status != StatusCode::OK || !sound(&text) {
            let excerpt: String = text.chars().take(600).collect();
            anyhow::bail!("GET {uri} answered {status}: {excerpt}");
        }
        size = body.len();
        if n >= warmups {
            times.push(took);
        }
    }
    times.sort();
    Ok((size, times))
}

/// The `p`th percentile of sorted `times` (nearest rank; 100 is the slowest).
fn pct(times: &[Duration], p: usize) -> Duration {
    let rank = (times.len() * p).div_ceil(100).max(1);
    times.get(rank - 1).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1_000.0;
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// splitmix64: a well-spread hash of a counter, so every run writes the same rows.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A Codex-shaped session id (a UUID's layout), unique per `n`.
fn uuid_like(h: u64, n: u64) -> String {
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        0x8000 | (n >> 48) & 0x3fff,
        n & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let times: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(pct(&times, 50), Duration::from_millis(10));
        assert_eq!(pct(&times, 95), Duration::from_millis(19));
        assert_eq!(pct(&times, 100), Duration::from_millis(20));
        assert_eq!(pct(&[], 50), Duration::ZERO);
    }

    #[test]
    fn session_cookie_is_read_from_set_cookie() {
        let mut headers = http::HeaderMap::new();
        for value in [
            "tollgate_console_pending=; Path=/console/; Max-Age=0",
            "tollgate_console=abc123; Path=/console; HttpOnly",
        ] {
            headers.append(SET_COOKIE, value.parse().unwrap());
        }
        assert_eq!(
            cookie(&headers, "tollgate_console").as_deref(),
            Some("abc123")
        );
        assert_eq!(cookie(&headers, "tollgate_console_pending"), None);
    }

    #[test]
    fn rows_start_in_order_within_last_month_and_this_month() {
        let layout = Layout::now(10_000, None).unwrap();
        let starts: Vec<i64> = (0..layout.rows).map(|i| layout.started(i)).collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
        assert!(starts[0] >= layout.last_from_ms);
        assert!(*starts.last().unwrap() < layout.now_ms);
        assert_eq!(
            starts.iter().filter(|s| **s >= layout.this_from_ms).count() as u64,
            layout.this_month_rows()
        );
    }
}
