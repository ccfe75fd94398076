//! Spend reports as finance sees them: a ledger seeded with known rows (two months, three teams,
//! several models, users and sessions, rows either side of midnight in Berlin) must come back
//! from `/admin/v1/reports/spend` with exactly the sums this file computes on its own, for every
//! grouping, in JSON and CSV alike; reconciliation finds nothing until a rollup is edited by hand.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

use std::collections::{BTreeMap, HashMap};

use http::{Method, StatusCode};
use serde_json::{Value, json};

use tollgate::control::Reply;
use tollgate::control::reply::ReportBody;
use tollgate_core::{CallOutcome, LedgerEvent, Money, Usage};
use tollgate_store::ledger::utc_day;
use tollgate_tests::{ADMIN_TOKEN, Backend, Harness};

const HOUR: i64 = 3_600_000;
/// 2026-11-01T00:00:00Z and 2027-01-01T00:00:00Z.
const NOV_1: i64 = 1_793_491_200_000;
const JAN_1: i64 = 1_798_761_600_000;
/// Berlin is on CET (UTC+1) from 25 Oct 2026 to 28 Mar 2027: all of the seeded range.
const BERLIN_OFFSET: i64 = HOUR;

/// More than 2^53 nano-USD: a sum through `f64` would lose the last digit.
const HUGE_COST: i64 = 9_007_199_254_740_993;

const DIMENSIONS: [&str; 9] = [
    "team",
    "cost_centre",
    "key",
    "model",
    "user",
    "session",
    "day",
    "month",
    "status",
];

fn admin() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

/// A small deterministic generator, so a failure reproduces.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The seeded ledger: random rows from 31 Oct to 1 Jan plus the boundary cases by hand.
fn events(teams: &[(String, String)]) -> Vec<LedgerEvent> {
    let models: [(Option<&str>, Option<&str>); 4] = [
        (Some("gpt-5"), Some("gpt-5-2025-08-07")),
        (Some("gpt-5-mini"), Some("gpt-5-mini-2025-08-07")),
        // Never answered: the report falls back to the model requested.
        (Some("gpt-4.1"), None),
        (None, None),
    ];
    // Text a spreadsheet would run as a formula, and a comma that needs quoting.
    let users = [Some("ann"), Some("bo"), Some("=1+2"), Some("@carl"), None];
    let sessions = [
        Some("s-1"),
        Some("s-2"),
        Some("-s3"),
        Some("s-4"),
        None,
        None,
    ];
    let centres = [Some("CC-A"), Some("Ops, EMEA"), None];
    let mut rng = Lcg(42);
    let start = NOV_1 - 24 * HOUR;
    let span = (JAN_1 + 12 * HOUR - start) as u64;
    let mut at: Vec<i64> = (0..400).map(|_| start + rng.below(span) as i64).collect();
    at.extend([
        NOV_1 - HOUR / 2,                       // 31 Oct UTC, 1 Nov in Berlin
        NOV_1,                                  // first instant of the UTC range
        NOV_1 + 29 * 24 * HOUR + 23 * HOUR - 1, // 30 Nov 22:59:59.999 UTC, still 30 Nov in Berlin
        NOV_1 + 29 * 24 * HOUR + 23 * HOUR,     // 30 Nov 23:00 UTC, midnight 1 Dec in Berlin
        JAN_1 - HOUR / 2,                       // 31 Dec UTC, 1 Jan in Berlin
        JAN_1,                                  // just past the UTC range
    ]);
    at.iter()
        .enumerate()
        .map(|(i, started)| {
            let team = rng.below(3) as usize;
            let (requested, served) = *rng.pick(&models);
            LedgerEvent {
                request_id: format!("req_{i:04}"),
                started_at_ms: *started,
                finished_at_ms: started + 1_500,
                team_id: teams[team].0.clone(),
                key_id: format!("key{team}{}", rng.below(2)),
                cost_centre: centres[team].map(Into::into),
                user: rng.pick(&users).map(Into::into),
                session_id: rng.pick(&sessions).map(Into::into),
                turn_id: None,
                endpoint: "responses".into(),
                model_requested: requested.map(Into::into),
                model_served: served.map(Into::into),
                status: *rng.pick(&[200, 200, 200, 429, 499, 502]),
                usage: Usage {
                    input: rng.below(50_000),
                    cached_input: rng.below(10_000),
                    output: rng.below(5_000),
                    reasoning: rng.below(2_000),
                },
                cost: Money(if i == 7 {
                    HUGE_COST
                } else {
                    rng.below(50_000_000) as i64
                }),
                price_id: None,
                estimated: rng.below(5) == 0,
                unpriced: rng.below(7) == 0,
                service_tier: None,
                ttfb_ms: Some(100),
                latency_ms: 1_500,
                tool_calls: Vec::new(),
                outcome: *rng.pick(&[
                    CallOutcome::Complete,
                    CallOutcome::Complete,
                    CallOutcome::ClientGone,
                ]),
                unmetered: rng.below(9) == 0,
                units: Default::default(),
                response_id: None,
            }
        })
        .collect()
}

#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
struct Sums {
    requests: i64,
    input: i64,
    cached: i64,
    output: i64,
    reasoning: i64,
    estimated: i64,
    failed: i64,
    unpriced: i64,
    unmetered: i64,
    cost: i64,
}

impl Sums {
    fn add(&mut self, e: &LedgerEvent) {
        self.requests += 1;
        self.input += e.usage.input as i64;
        self.cached += e.usage.cached_input as i64;
        self.output += e.usage.output as i64;
        self.reasoning += e.usage.reasoning as i64;
        self.estimated += i64::from(e.estimated);
        self.failed += i64::from(e.status >= 400 || e.outcome != CallOutcome::Complete);
        self.unpriced += i64::from(e.unpriced);
        self.unmetered += i64::from(e.unmetered);
        self.cost += e.cost.nanos();
    }

    fn from_json(v: &Value) -> Sums {
        let int = |f: &str| v[f].as_i64().unwrap_or_else(|| panic!("{f} in {v}"));
        let cost = int("cost_nano_usd");
        // The decimal string says exactly the same amount, always with nine decimals.
        let usd = v["cost_usd"].as_str().unwrap();
        assert_eq!(Money::parse_usd(usd), Some(Money(cost)), "{v}");
        assert_eq!(usd.split_once('.').map(|(_, f)| f.len()), Some(9), "{v}");
        Sums {
            requests: int("requests"),
            input: int("input_tokens"),
            cached: int("cached_input_tokens"),
            output: int("output_tokens"),
            reasoning: int("reasoning_tokens"),
            estimated: int("estimated_requests"),
            failed: int("failed_requests"),
            unpriced: int("unpriced_requests"),
            unmetered: int("unmetered_requests"),
            cost,
        }
    }
}

/// A row's value for a dimension. A session is its team's and its id: two teams that send
/// the same session id have two sessions.
fn value_of(row: &Value, dimension: &str) -> Option<String> {
    let field = |f: &str| row[f].as_str().map(str::to_owned);
    match dimension {
        "team" => field("team_id"),
        "cost_centre" => field("cost_centre"),
        "key" => field("key_id"),
        "model" => field("model"),
        "user" => field("user"),
        // Sessions sort by id, then by team.
        "session" => {
            field("session_id").map(|s| format!("{s}/{}", row["team_id"].as_str().unwrap()))
        }
        "day" => field("day"),
        "month" => field("month"),
        "status" => field("status"),
        other => panic!("unknown dimension {other}"),
    }
}

type Groups = BTreeMap<Vec<Option<String>>, Sums>;

/// What the report must say, computed from the events alone.
fn expected(
    events: &[LedgerEvent],
    group_by: &[&str],
    (from, to): (i64, i64),
    offset: i64,
) -> Groups {
    let mut out = Groups::new();
    for e in events
        .iter()
        .filter(|e| e.started_at_ms >= from && e.started_at_ms < to)
    {
        let day = utc_day(e.started_at_ms + offset);
        let key = group_by
            .iter()
            .map(|d| match *d {
                "team" => Some(e.team_id.clone()),
                "cost_centre" => e.cost_centre.clone(),
                "key" => Some(e.key_id.clone()),
                "model" => e.model_served.clone().or(e.model_requested.clone()),
                "user" => e.user.clone(),
                "session" => e.session_id.as_ref().map(|s| format!("{s}/{}", e.team_id)),
                "day" => Some(day.clone()),
                "month" => Some(day[..7].to_owned()),
                "status" => Some(e.status.to_string()),
                other => panic!("unknown dimension {other}"),
            })
            .collect();
        out.entry(key).or_default().add(e);
    }
    out
}

/// Minimal RFC 4180 reader: quoted cells, doubled quotes, CRLF records.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut cell) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => assert_eq!(chars.next(), Some('\n'), "CR without LF"),
            (false, '\n') => panic!("bare LF in {text:?}"),
            (false, c) => cell.push(c),
        }
        if !quoted && c == '\r' {
            row.push(std::mem::take(&mut cell));
            rows.push(std::mem::take(&mut row));
        }
    }
    assert!(row.is_empty() && cell.is_empty(), "unterminated last line");
    rows
}

/// How a JSON value must appear in the CSV: text that looks like a formula gets a `'`.
fn as_csv(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) if s.starts_with(['=', '+', '-', '@']) => format!("'{s}"),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

struct Seeded {
    h: Harness,
    events: Vec<LedgerEvent>,
    names: HashMap<String, String>,
}

async fn seed(backend: Backend) -> Seeded {
    let h = Harness::start(backend).await;
    let mut teams = Vec::new();
    for name in ["alpha", "beta", "gamma"] {
        let created = h
            .http
            .json(
                Method::POST,
                &format!("{}/admin/v1/teams", h.base()),
                &admin(),
                serde_json::json!({"name": name}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        teams.push((
            created.json()["id"].as_str().unwrap().to_owned(),
            name.to_owned(),
        ));
    }
    let events = events(&teams);
    let outcome = h.gateway.store.insert_ledger_batch(&events).await.unwrap();
    assert_eq!(outcome.inserted, events.len() as u64);
    Seeded {
        h,
        events,
        names: teams.into_iter().collect(),
    }
}

impl Seeded {
    async fn get(&self, path_and_query: &str) -> tollgate_tests::Reply {
        self.h
            .http
            .send(
                Method::GET,
                &format!("{}/admin/v1/reports/{path_and_query}", self.h.base()),
                &admin(),
                "",
            )
            .await
    }

    /// Fetches one grouping as JSON and CSV and checks both against the events.
    async fn check(&self, range: &str, bounds: (i64, i64), offset: i64, group_by: &[&str]) {
        let groups = group_by.join(",");
        let what = format!("{range}&group_by={groups}");
        let reply = self.get(&format!("spend?{what}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{what}: {reply:?}");
        let report = reply.json();
        assert_eq!(report["object"], "spend_report");
        let user_or_session = group_by
            .iter()
            .any(|d| ["user", "session", "status"].contains(d));
        let whole_utc_days =
            offset == 0 && bounds.0 % (24 * HOUR) == 0 && bounds.1 % (24 * HOUR) == 0;
        let source = if whole_utc_days && !user_or_session {
            "ledger_daily"
        } else {
            "ledger"
        };
        assert_eq!(report["source"], source, "{what}");

        let want = expected(&self.events, group_by, bounds, offset);
        let rows = report["data"].as_array().unwrap();
        let mut got = Groups::new();
        for row in rows {
            let key: Vec<Option<String>> = group_by.iter().map(|d| value_of(row, d)).collect();
            if let Some(team) = row.get("team_id").and_then(Value::as_str) {
                assert_eq!(
                    row["team_name"].as_str(),
                    self.names.get(team).map(String::as_str)
                );
            }
            assert!(
                got.insert(key, Sums::from_json(row)).is_none(),
                "{what}: repeated {row}"
            );
        }
        assert_eq!(got, want, "{what}");
        // Rows come in key order (missing values first), as the map orders them.
        let keys: Vec<_> = rows
            .iter()
            .map(|r| group_by.iter().map(|d| value_of(r, d)).collect::<Vec<_>>())
            .collect();
        assert!(keys.iter().eq(want.keys()), "{what}: rows out of order");

        let mut total = Sums::default();
        for s in want.values() {
            total.requests += s.requests;
            total.input += s.input;
            total.cached += s.cached;
            total.output += s.output;
            total.reasoning += s.reasoning;
            total.estimated += s.estimated;
            total.failed += s.failed;
            total.unpriced += s.unpriced;
            total.unmetered += s.unmetered;
            total.cost += s.cost;
        }
        assert_eq!(Sums::from_json(&report["totals"]), total, "{what}");

        // The CSV says the same, cell for cell.
        let csv = self.get(&format!("spend?{what}&format=csv")).await;
        assert_eq!(csv.status, StatusCode::OK, "{what}: {csv:?}");
        assert_eq!(
            csv.headers.get("content-type").unwrap(),
            "text/csv; charset=utf-8"
        );
        let lines = parse_csv(std::str::from_utf8(&csv.body).unwrap());
        let header = &lines[0];
        let mut columns: Vec<&str> = report["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        // Without grouping the one group is everything: one line, labelled `all`.
        let everything = [report["totals"].clone()];
        let csv_rows = if group_by.is_empty() {
            columns.insert(0, "scope");
            &everything[..]
        } else {
            &rows[..]
        };
        assert_eq!(*header, columns, "{what}: the CSV's columns are the JSON's");
        assert_eq!(lines.len(), csv_rows.len() + 1, "{what}: header + rows");
        for (json_row, csv_row) in csv_rows.iter().zip(&lines[1..]) {
            assert_eq!(csv_row.len(), header.len());
            for (name, cell) in header.iter().zip(csv_row) {
                if name == "scope" {
                    assert_eq!(cell, "all");
                } else {
                    assert_eq!(*cell, as_csv(&json_row[name.as_str()]), "{what}: {name}");
                }
            }
        }
        // A TOTAL line only when asked for: a SUM over the column would count it twice.
        let with_total = self
            .get(&format!("spend?{what}&format=csv&total_row=true"))
            .await;
        let with_total = parse_csv(std::str::from_utf8(&with_total.body).unwrap());
        assert_eq!(with_total[..with_total.len() - 1], lines[..], "{what}");
        let last = with_total.last().unwrap();
        assert_eq!(last[0], "TOTAL");
        for (name, cell) in header.iter().zip(last) {
            if let Some(v) = report["totals"].get(name.as_str()) {
                assert_eq!(*cell, as_csv(v), "{what}: TOTAL {name}");
            }
        }
    }
}

async fn every_grouping_adds_up_to_the_seeded_ledger(backend: Backend) {
    let s = seed(backend).await;
    let mut groupings: Vec<Vec<&str>> = DIMENSIONS.iter().map(|d| vec![*d]).collect();
    groupings.extend([
        vec![],
        vec!["team", "model"],
        vec!["cost_centre", "day"],
        vec!["month", "team", "user"],
        vec!["key", "session"],
        DIMENSIONS.to_vec(),
    ]);
    let utc = "from=2026-11-01&to=2027-01-01";
    let berlin = "from=2026-11-01&to=2027-01-01&tz=Europe/Berlin";
    let berlin_bounds = (NOV_1 - BERLIN_OFFSET, JAN_1 - BERLIN_OFFSET);
    for group_by in &groupings {
        s.check(utc, (NOV_1, JAN_1), 0, group_by).await;
        s.check(berlin, berlin_bounds, BERLIN_OFFSET, group_by)
            .await;
    }
    // A ragged range in two notations is read from the ledger.
    let ragged = "from=2026-11-15T12:00:00Z&to=2026-12-10T06:30:00%2B01:00";
    let ragged_bounds = (
        NOV_1 + 14 * 24 * HOUR + 12 * HOUR,
        NOV_1 + 39 * 24 * HOUR + 5 * HOUR + HOUR / 2,
    );
    for group_by in [vec!["team"], vec!["day", "model"]] {
        s.check(ragged, ragged_bounds, 0, &group_by).await;
    }

    // The huge row is there to the last nano-dollar.
    let all = s.get(&format!("spend?{utc}")).await.json();
    let cost = all["totals"]["cost_nano_usd"].as_i64().unwrap();
    assert!(cost > HUGE_COST);
    assert_eq!(
        Money::parse_usd(all["totals"]["cost_usd"].as_str().unwrap()),
        Some(Money(cost))
    );

    // What a report covers is in its body, its headers and its file name; the last day is
    // the inclusive one a person reads.
    let november = s
        .get("spend?from=2026-11-01&to=2026-12-01&tz=Europe/Berlin&format=csv")
        .await;
    let header = |name: &str| {
        november
            .headers
            .get(name)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        header("content-disposition"),
        "attachment; filename=\"spend-2026-11-01-to-2026-11-30.csv\""
    );
    assert_eq!(
        header("x-tollgate-period-from"),
        "2026-11-01T00:00:00+01:00"
    );
    assert_eq!(header("x-tollgate-period-to"), "2026-12-01T00:00:00+01:00");
    assert_eq!(header("x-tollgate-period-last-day"), "2026-11-30");
    assert_eq!(header("x-tollgate-timezone"), "Europe/Berlin");
    assert_eq!(header("x-tollgate-currency"), "USD");
    let json = s
        .get("spend?from=2026-11-01&to=2026-12-01&tz=Europe/Berlin")
        .await
        .json();
    assert_eq!(
        (
            &json["first_day"],
            &json["last_day"],
            &json["timezone"],
            &json["currency"]
        ),
        (
            &json!("2026-11-01"),
            &json!("2026-11-30"),
            &json!("Europe/Berlin"),
            &json!("USD")
        )
    );

    // Without from and to, a report is this month in its zone.
    let this_month = s.get("spend?tz=Asia/Tokyo").await.json();
    let tokyo = chrono::Utc::now().with_timezone(&chrono_tz::Asia::Tokyo);
    assert_eq!(
        this_month["first_day"],
        json!(format!("{}-01", tokyo.format("%Y-%m")))
    );
    assert_eq!(this_month["from"].as_str().unwrap()[19..], *"+09:00");
}

#[tokio::test]
async fn every_grouping_adds_up_to_the_seeded_ledger_sqlite() {
    every_grouping_adds_up_to_the_seeded_ledger(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_grouping_adds_up_to_the_seeded_ledger_postgres() {
    every_grouping_adds_up_to_the_seeded_ledger(Backend::Postgres).await;
}

async fn reconcile_names_the_edited_rollup_key(backend: Backend) {
    let s = seed(backend).await;
    let range = "from=2026-11-01&to=2027-01-01";
    let clean = s.get(&format!("reconcile?{range}")).await;
    assert_eq!(clean.status, StatusCode::OK, "{clean:?}");
    let clean = clean.json();
    assert_eq!(clean["clean"], true, "{clean}");
    assert!(
        clean["daily_keys_checked"].as_u64().unwrap() > 100,
        "{clean}"
    );
    assert!(clean["sessions_checked"].as_u64().unwrap() >= 4, "{clean}");

    // One hand edit of the rollup, and one session's rollup lost.
    let alpha = s
        .names
        .iter()
        .find(|(_, n)| *n == "alpha")
        .unwrap()
        .0
        .clone();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&s.h.db.url).await.unwrap();
    let edited = sqlx::query(
        "UPDATE ledger_daily SET cost_nanos = cost_nanos + 1 WHERE (day, team_id, key_id, model, cost_centre) IN \
         (SELECT day, team_id, key_id, model, cost_centre FROM ledger_daily \
          WHERE team_id = $1 AND day = '2026-11-20' ORDER BY key_id, model LIMIT 1)",
    )
    .bind(&alpha)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(edited.rows_affected(), 1);
    // Each team that sent `s-2` has its own session: remove alpha's only.
    sqlx::query("DELETE FROM sessions WHERE team_id = $1 AND session_id = 's-2'")
        .bind(&alpha)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let dirty = s.get(&format!("reconcile?{range}")).await.json();
    assert_eq!(dirty["clean"], false);
    let daily = dirty["daily_differences"].as_array().unwrap();
    assert_eq!(daily.len(), 1, "{dirty}");
    assert_eq!(daily[0]["day"], "2026-11-20");
    assert_eq!(daily[0]["team_id"], alpha.as_str());
    let ledger = daily[0]["ledger"]["cost_nano_usd"].as_i64().unwrap();
    assert_eq!(
        daily[0]["rollup"]["cost_nano_usd"].as_i64(),
        Some(ledger + 1)
    );
    let sessions = dirty["session_differences"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{dirty}");
    assert_eq!(sessions[0]["session_id"], "s-2");
    assert_eq!(sessions[0]["team_id"], alpha.as_str());
    assert_eq!(sessions[0]["rollup"], Value::Null);
    let want = s
        .events
        .iter()
        .filter(|e| e.team_id == alpha && e.session_id.as_deref() == Some("s-2"))
        .count();
    assert_eq!(
        sessions[0]["ledger"]["requests"].as_u64(),
        Some(want as u64)
    );
}

#[tokio::test]
async fn reconcile_names_the_edited_rollup_key_sqlite() {
    reconcile_names_the_edited_rollup_key(Backend::Sqlite).await;
}

#[tokio::test]
async fn reconcile_names_the_edited_rollup_key_postgres() {
    reconcile_names_the_edited_rollup_key(Backend::Postgres).await;
}

#[tokio::test]
async fn bad_parameters_are_all_named_at_once() {
    let s = seed(Backend::Sqlite).await;
    let reply = s
        .get("spend?from=2026-13-01&group_by=team,colour&format=xlsx&tz=Mars/Olympus&tema=x&total_row=yes")
        .await;
    reply.assert_error(422, "invalid_fields");
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for field in [
        "from:",
        "group_by:",
        "format:",
        "tz:",
        "total_row:",
        "query: 'tema' is not a parameter",
    ] {
        assert!(message.contains(field), "{field} not in {message}");
    }
    let backwards = s.get("spend?from=2026-12-01&to=2026-11-01").await;
    backwards.assert_error(422, "invalid_fields");
    assert!(
        backwards.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("to: must be after from")
    );
    // A bound left out is this month's, and the message says so rather than contradicting
    // a `from` the caller never gave.
    for (query, left_out) in [("to=2020-11-01", "from"), ("from=2999-01-01", "to")] {
        let reply = s.get(&format!("spend?{query}")).await;
        reply.assert_error(422, "invalid_fields");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains(&format!(
                "{left_out} was left out, so it is this month's bound"
            )),
            "{query}: {message}"
        );
    }
    // Too many local buckets (the ledger is read, not the UTC rollups): the advice fits the
    // grouping asked for.
    for (group_by, advice) in [
        ("day", "narrow it or group by month"),
        ("month", "narrow it"),
    ] {
        let reply = s
            .get(&format!(
                "spend?from=1000-01-01&to=2999-01-01&tz=Europe/Berlin&group_by={group_by}"
            ))
            .await;
        reply.assert_error(422, "invalid_fields");
        let message = reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.ends_with(advice), "{group_by}: {message}");
    }
    s.get("reconcile?from=2026-11-31")
        .await
        .assert_error(422, "invalid_fields");
    s.get("spend?from=2026-11-01&to=2026-12-01&team=nope")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn a_team_admin_sees_only_its_own_team() {
    let s = seed(Backend::Sqlite).await;
    let store = &s.h.gateway.store;
    let (alpha, beta) = {
        let id = |name: &str| s.names.iter().find(|(_, n)| *n == name).unwrap().0.clone();
        (id("alpha"), id("beta"))
    };
    let query = "from=2026-11-01&to=2027-01-01&group_by=team,user";
    let Ok(Reply::Report {
        body: ReportBody::Json(report),
        ..
    }) = tollgate::control::reports::spend(store, Some(query), Some(alpha.clone())).await
    else {
        panic!("a JSON report");
    };
    let rows = report["data"].as_array().unwrap();
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|r| r["team_id"] == alpha.as_str()),
        "{report}"
    );
    let want = expected(&s.events, &["team"], (NOV_1, JAN_1), 0);
    let alpha_cost = want[&vec![Some(alpha.clone())]].cost;
    assert_eq!(report["totals"]["cost_nano_usd"].as_i64(), Some(alpha_cost));

    // Naming another team is refused, naming its own is fine.
    let other = format!("{query}&team={beta}");
    let refused = tollgate::control::reports::spend(store, Some(&other), Some(alpha.clone())).await;
    assert_eq!(refused.err().map(|e| e.status), Some(403));
    let own = format!("{query}&team=alpha");
    let allowed = tollgate::control::reports::spend(store, Some(&own), Some(alpha)).await;
    assert!(allowed.is_ok());
}
