//! `tollgate-bench report-scale`: how long spend reports take over a large ledger. Fills a fresh
//! PostgreSQL database with `--rows` ledger rows for one month (through the ledger writer's own
//! `insert_ledger_batch`, so the rollups are maintained as in production), then times a month's
//! report by team, model and day (served from `ledger_daily`), the same grouping in Berlin's
//! calendar and by session (both read from the ledger), and a reconciliation.
//!
//! A benchmark, not a timed test: it prints numbers for a person to compare, and asserts only
//! that the rollup and ledger paths agree.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use sqlx::Connection;

use tollgate_core::budget::Calendar;
use tollgate_core::{LedgerEvent, Money, Usage};
use tollgate_store::testdb::TestDb;
use tollgate_store::{Dimension, Report, ReportQuery, Store};

#[derive(Debug, Parser)]
#[command(name = "tollgate-bench report-scale")]
struct Args {
    /// Ledger rows to insert, spread over November 2026.
    #[arg(long, default_value_t = 1_000_000)]
    rows: usize,
    /// Rows per `insert_ledger_batch` call (the writer's production batch is up to 5,000).
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Timed repetitions of each report; the table shows the fastest, median and slowest.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// 2026-11-01T00:00:00Z and 2026-12-01T00:00:00Z.
const NOV_1: i64 = 1_793_491_200_000;
const DEC_1: i64 = 1_796_083_200_000;
const TEAMS: u64 = 20;
const KEYS_PER_TEAM: u64 = 5;
const MODELS: [&str; 6] = [
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "gpt-5-codex",
    "gpt-4.1",
    "o4-mini",
];
const USERS: u64 = 500;
/// A Codex session makes tens of calls: 1M rows is ~20,000 sessions.
const CALLS_PER_SESSION: u64 = 50;

/// Runs with the arguments after `report-scale`.
pub fn main(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args = Args::parse_from(std::iter::once("report-scale".to_owned()).chain(args));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let db = TestDb::postgres().await;
    let store = Store::connect(&db.url).await?;
    store.migrate().await?;

    let started = Instant::now();
    let mut rng = Lcg(7);
    let mut inserted = 0;
    while inserted < args.rows {
        let batch: Vec<LedgerEvent> = (inserted..args.rows.min(inserted + args.batch))
            .map(|i| event(&mut rng, i, args.rows))
            .collect();
        store.insert_ledger_batch(&batch).await?;
        inserted += batch.len();
        if inserted % 100_000 < args.batch {
            eprintln!(
                "report-scale: {inserted} rows in {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let fill = started.elapsed();
    // Production tables have planner statistics (autovacuum analyzes after bulk writes); a
    // freshly filled one must be told, or the first plans are guesses.
    let mut conn = sqlx::AnyConnection::connect(&db.url).await?;
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    let _ = conn.close().await;

    let month = |group_by: &[Dimension], calendar: Calendar| ReportQuery {
        from_ms: NOV_1,
        to_ms: DEC_1,
        group_by: group_by.to_vec(),
        team_id: None,
        calendar,
    };
    let berlin = Calendar::new("Europe/Berlin").context("Europe/Berlin")?;
    let by_day = [Dimension::Team, Dimension::Model, Dimension::Day];
    let cases = [
        ("team,model,day (UTC)", month(&by_day, Calendar::default())),
        ("team,model,day (Europe/Berlin)", month(&by_day, berlin)),
        ("session", month(&[Dimension::Session], Calendar::default())),
        (
            "team,model,day (UTC, ragged range)",
            ReportQuery {
                to_ms: DEC_1 - 1,
                ..month(&by_day, Calendar::default())
            },
        ),
    ];

    println!(
        "\n## Spend reports over {} ledger rows (PostgreSQL)\n",
        args.rows
    );
    println!(
        "Filled in {:.1} s ({:.0} rows/s through insert_ledger_batch, {} per batch).\n",
        fill.as_secs_f64(),
        args.rows as f64 / fill.as_secs_f64(),
        args.batch
    );
    println!("| report | source | groups | fastest | median | slowest |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut reports: Vec<Report> = Vec::new();
    for (name, query) in &cases {
        let mut times = Vec::with_capacity(args.runs);
        let mut last = None;
        for _ in 0..args.runs.max(1) {
            let t = Instant::now();
            last = Some(store.spend_report(query).await?);
            times.push(t.elapsed());
        }
        let report = last.context("at least one run")?;
        times.sort();
        println!(
            "| {name} | {} | {} | {} | {} | {} |",
            report.source.as_str(),
            report.rows.len(),
            ms(times[0]),
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
        );
        reports.push(report);
    }
    let t = Instant::now();
    let reconciliation = store.reconcile(NOV_1, DEC_1).await?;
    println!(
        "| reconcile (ledger_daily + sessions vs ledger) | both | {} keys, {} sessions | {} | | |",
        reconciliation.daily_keys,
        reconciliation.sessions,
        ms(t.elapsed())
    );

    // Whole-range sums must agree however they were read.
    let totals: Vec<Money> = reports.iter().map(|r| r.totals.cost).collect();
    anyhow::ensure!(
        totals.windows(2).all(|w| w[0] == w[1]) && reconciliation.is_clean(),
        "reports disagree: {totals:?}, reconciliation clean: {}",
        reconciliation.is_clean()
    );
    println!(
        "\nEvery report totals {} requests, ${}; reconciliation found no differences.",
        reports[0].totals.requests,
        reports[0].totals.cost.to_usd_string()
    );
    store.close().await;
    drop(db);
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1_000.0)
}

/// Row `i` of `rows`: times spread evenly over the month, the rest drawn at random.
fn event(rng: &mut Lcg, i: usize, rows: usize) -> LedgerEvent {
    let span = (DEC_1 - NOV_1) as u64;
    let started = NOV_1 + (i as u64 * span / rows.max(1) as u64) as i64;
    let team = rng.below(TEAMS);
    let model = MODELS[rng.below(MODELS.len() as u64) as usize];
    let input = rng.below(40_000);
    let output = rng.below(4_000);
    LedgerEvent {
        request_id: format!("req_{i:09}"),
        started_at_ms: started,
        finished_at_ms: started + 2_000,
        team_id: format!("tm_team{team:02}"),
        key_id: format!("key{team:02}{}", rng.below(KEYS_PER_TEAM)),
        cost_centre: Some(format!("CC-{}", team % 10)),
        user: Some(format!("user{}", rng.below(USERS))),
        // Consecutive calls share a session, as a Codex run's do.
        session_id: Some(format!("sess{}", i as u64 / CALLS_PER_SESSION)),
        turn_id: None,
        endpoint: "responses".into(),
        model_requested: Some(model.into()),
        model_served: Some(format!("{model}-2026-01-01")),
        status: 200,
        usage: Usage {
            input,
            cached_input: input / 4,
            output,
            reasoning: output / 3,
        },
        cost: Money((input * 1_250 + output * 10_000) as i64),
        price_id: Some(format!("{model}@2026-01-01")),
        estimated: rng.below(100) == 0,
        unpriced: false,
        service_tier: Some("default".into()),
        ttfb_ms: Some(300),
        latency_ms: 2_000,
        tool_calls: Vec::new(),
        outcome: Default::default(),
        unmetered: false,
        units: Default::default(),
        response_id: None,
    }
}

/// A deterministic generator: the same rows on every run.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}
