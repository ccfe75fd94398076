//! Reading the ledger back: one row by request id, totals over the ledger or its daily rollup
//! (equal to the unit, which the tests check), and a session's rollup with its tool calls.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::{CallOutcome, LedgerEvent, Money, ToolCount, Units, Usage};

use super::codec::{decode_tools, endpoint_label};
use crate::error::Result;
use crate::store::Store;

/// One ledger row with its names resolved, as reports and the admin API show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LedgerRow {
    pub request_id: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub team_id: String,
    pub key_id: String,
    pub cost_centre: Option<String>,
    pub user: Option<String>,
    pub session_id: Option<String>,
    pub turn_id: Option<String>,
    pub endpoint: String,
    pub model_requested: Option<String>,
    pub model_served: Option<String>,
    pub status: u16,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub cost_nanos: i64,
    /// `cost_nanos` as exact decimal USD (`"0.01234"`), for people and spreadsheets.
    pub cost_usd: String,
    pub price_id: Option<String>,
    pub estimated: bool,
    pub unpriced: bool,
    pub service_tier: Option<String>,
    pub ttfb_ms: Option<i64>,
    pub latency_ms: i64,
    pub tool_calls: Vec<ToolCount>,
    /// How the call ended (`complete`, `upstream_cut`, `client_gone`, …).
    pub outcome: CallOutcome,
    /// Forwarded under `proxy.unmetered`: an endpoint tollgate cannot price.
    pub unmetered: bool,
    /// What the call billed beyond text tokens (images, characters, audio, tool calls).
    pub units: Units,
    /// The upstream's id of the response (`resp_…`), when it sent one.
    pub response_id: Option<String>,
}

impl LedgerRow {
    /// The event this row records (equal to the one written, for events within the ledger's
    /// limits: known endpoint label, counts below 2^31, text without NULs under 512 bytes).
    pub fn to_event(&self) -> LedgerEvent {
        LedgerEvent {
            request_id: self.request_id.clone(),
            started_at_ms: self.started_at_ms,
            finished_at_ms: self.finished_at_ms,
            team_id: self.team_id.clone(),
            key_id: self.key_id.clone(),
            cost_centre: self.cost_centre.clone(),
            user: self.user.clone(),
            session_id: self.session_id.clone(),
            turn_id: self.turn_id.clone(),
            endpoint: self.endpoint.clone(),
            model_requested: self.model_requested.clone(),
            model_served: self.model_served.clone(),
            status: self.status,
            usage: Usage {
                input: self.input_tokens,
                cached_input: self.cached_input_tokens,
                output: self.output_tokens,
                reasoning: self.reasoning_tokens,
            },
            cost: Money(self.cost_nanos),
            price_id: self.price_id.clone(),
            estimated: self.estimated,
            unpriced: self.unpriced,
            service_tier: self.service_tier.clone(),
            ttfb_ms: self.ttfb_ms,
            latency_ms: self.latency_ms,
            tool_calls: self.tool_calls.clone(),
            outcome: self.outcome,
            unmetered: self.unmetered,
            units: self.units.clone(),
            response_id: self.response_id.clone(),
        }
    }
}

/// Requests, tokens by kind and cost summed over a range of the ledger or of a rollup, and how
/// many of those requests finance should look at twice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    #[serde(rename = "cost_nanos")]
    pub cost: Money,
    /// Charged from an estimate of the usage: the upstream never reported it.
    pub estimated_requests: i64,
    /// Failed: the client got a status of 400 or more, or the call did not complete
    /// (`outcome` other than `complete`), whatever was charged for it.
    pub failed_requests: i64,
    /// Charged at the unpriced fallback: the price table had no price for the model.
    pub unpriced_requests: i64,
    /// Forwarded to an endpoint tollgate cannot price: their cost is unknown, not zero.
    pub unmetered_requests: i64,
}

/// One session's rollup: who, when, how much, and which tools it called how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionSummary {
    pub session_id: String,
    pub team_id: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub requests: i64,
    pub input_tokens: i64,
    pub cached_input_tokens: i64,
    pub output_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nanos: i64,
    pub cost_usd: String,
    /// Calls by tool name.
    pub tools: BTreeMap<String, i64>,
}

/// SUM over an empty range is NULL, and on PostgreSQL a BIGINT sum is NUMERIC, which the Any
/// driver cannot decode: every sum is wrapped in this.
fn sum(column: &str) -> String {
    format!("CAST(COALESCE(SUM({column}), 0) AS BIGINT)")
}

/// How many sums a [`Totals`] is read from.
pub(crate) const TOTALS_COLUMNS: usize = 10;

/// The sums of a `ledger` query's [`Totals`] after its `COUNT(*)`: tokens, cost, then estimated,
/// failed, unpriced and unmetered calls, each column behind `prefix` (`""`, or a table alias and
/// dot).
pub(crate) fn ledger_sums(prefix: &str) -> [String; TOTALS_COLUMNS - 1] {
    let failed =
        format!("CASE WHEN {prefix}status >= 400 OR {prefix}outcome <> 0 THEN 1 ELSE 0 END");
    [
        format!("{prefix}input_tokens"),
        format!("{prefix}cached_input_tokens"),
        format!("{prefix}output_tokens"),
        format!("{prefix}reasoning_tokens"),
        format!("{prefix}cost_nanos"),
        format!("{prefix}estimated"),
        failed,
        format!("{prefix}unpriced"),
        format!("{prefix}unmetered"),
    ]
    .map(|expr| sum(&expr))
}

/// The sums of a `ledger_daily` query's [`Totals`], in order, each column behind `prefix`.
pub(crate) fn daily_sums(prefix: &str) -> [String; TOTALS_COLUMNS] {
    [
        "requests",
        "input_tokens",
        "cached_input_tokens",
        "output_tokens",
        "reasoning_tokens",
        "cost_nanos",
        "estimated_requests",
        "failed_requests",
        "unpriced_requests",
        "unmetered_requests",
    ]
    .map(|column| sum(&format!("{prefix}{column}")))
}

impl Store {
    /// The ledger row of one request, or `None`. On PostgreSQL this is one primary-key probe per
    /// month partition.
    pub async fn ledger_row(&self, request_id: &str) -> Result<Option<LedgerRow>> {
        let row = sqlx::query(
            "SELECT request_id, started_at_ms, finished_at_ms, team_id, key_id, cost_centre, \
             user_name, session_id, turn_id, endpoint, model_requested, model_served, status, \
             input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos, \
             price_id, estimated, unpriced, service_tier, ttfb_ms, latency_ms, tool_calls, \
             outcome, unmetered, units, response_id FROM ledger_readable WHERE request_id = $1",
        )
        .bind(request_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(ledger_row_from).transpose()
    }

    /// A team's session's calls, oldest first, at most `limit` of them (its first ones).
    pub async fn session_calls(
        &self,
        team_id: &str,
        session_id: &str,
        limit: i64,
    ) -> Result<Vec<LedgerRow>> {
        let rows = sqlx::query(
            "SELECT request_id, started_at_ms, finished_at_ms, team_id, key_id, cost_centre, \
             user_name, session_id, turn_id, endpoint, model_requested, model_served, status, \
             input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos, \
             price_id, estimated, unpriced, service_tier, ttfb_ms, latency_ms, tool_calls, \
             outcome, unmetered, units, response_id FROM ledger_readable \
             WHERE team_id = $1 AND session_id = $2 ORDER BY started_at_ms, request_id LIMIT $3",
        )
        .bind(team_id)
        .bind(session_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ledger_row_from).collect()
    }

    /// Totals over ledger rows that started in `[from_ms, to_ms)`.
    pub async fn ledger_totals(&self, from_ms: i64, to_ms: i64) -> Result<Totals> {
        let sql = format!(
            "SELECT COUNT(*), {} FROM ledger WHERE started_at_ms >= $1 AND started_at_ms < $2",
            ledger_sums("").join(", "),
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one(&self.pool)
            .await?;
        totals_at(&row, 0)
    }

    /// Totals over `ledger_daily` for UTC days `from_day..=to_day` (`YYYY-MM-DD`, as
    /// [`utc_day`](crate::ledger::utc_day) gives).
    pub async fn daily_totals(&self, from_day: &str, to_day: &str) -> Result<Totals> {
        let sql = format!(
            "SELECT {} FROM ledger_daily WHERE day >= $1 AND day <= $2",
            daily_sums("").join(", "),
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from_day)
            .bind(to_day)
            .fetch_one(&self.pool)
            .await?;
        totals_at(&row, 0)
    }

    /// A team's session: its rollup and tool counts, or `None` if no call of that team carried
    /// that session id (another team's calls under the same id are another session).
    pub async fn session(&self, team_id: &str, session_id: &str) -> Result<Option<SessionSummary>> {
        let row = sqlx::query(
            "SELECT session_id, team_id, first_seen_ms, last_seen_ms, requests, input_tokens, \
             cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos \
             FROM sessions WHERE team_id = $1 AND session_id = $2",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let tools = sqlx::query(
            "SELECT tool, calls FROM session_tools WHERE team_id = $1 AND session_id = $2",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|t| Ok((t.try_get::<String, _>(0)?, t.try_get::<i64, _>(1)?)))
        .collect::<Result<BTreeMap<_, _>>>()?;
        session_from(&row, tools).map(Some)
    }
}

/// A `sessions` row (session_id, team_id, first/last_seen_ms, requests, the token counts and
/// cost_nanos) with its tool counts.
pub(crate) fn session_from(row: &AnyRow, tools: BTreeMap<String, i64>) -> Result<SessionSummary> {
    let cost_nanos: i64 = row.try_get("cost_nanos")?;
    Ok(SessionSummary {
        session_id: row.try_get("session_id")?,
        team_id: row.try_get("team_id")?,
        first_seen_ms: row.try_get("first_seen_ms")?,
        last_seen_ms: row.try_get("last_seen_ms")?,
        requests: row.try_get("requests")?,
        input_tokens: row.try_get("input_tokens")?,
        cached_input_tokens: row.try_get("cached_input_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        reasoning_tokens: row.try_get("reasoning_tokens")?,
        cost_nanos,
        cost_usd: Money(cost_nanos).to_usd_string(),
        tools,
    })
}

/// The [`Totals`] in a row's columns `at..at + TOTALS_COLUMNS`, in [`daily_sums`] order.
pub(crate) fn totals_at(row: &AnyRow, at: usize) -> Result<Totals> {
    Ok(Totals {
        requests: row.try_get(at)?,
        input_tokens: row.try_get(at + 1)?,
        cached_input_tokens: row.try_get(at + 2)?,
        output_tokens: row.try_get(at + 3)?,
        reasoning_tokens: row.try_get(at + 4)?,
        cost: Money(row.try_get(at + 5)?),
        estimated_requests: row.try_get(at + 6)?,
        failed_requests: row.try_get(at + 7)?,
        unpriced_requests: row.try_get(at + 8)?,
        unmetered_requests: row.try_get(at + 9)?,
    })
}

fn ledger_row_from(row: &AnyRow) -> Result<LedgerRow> {
    // Stored counts are never negative (CHECK constraints); a status is 100–599.
    let count = |column: &str| -> Result<u64> {
        let value: i64 = row.try_get(column)?;
        Ok(u64::try_from(value).unwrap_or(0))
    };
    let cost_nanos: i64 = row.try_get("cost_nanos")?;
    let status: i64 = row.try_get("status")?;
    let endpoint: i64 = row.try_get("endpoint")?;
    let tool_calls: Option<String> = row.try_get("tool_calls")?;
    let units: Option<String> = row.try_get("units")?;
    Ok(LedgerRow {
        request_id: row.try_get("request_id")?,
        started_at_ms: row.try_get("started_at_ms")?,
        finished_at_ms: row.try_get("finished_at_ms")?,
        team_id: row.try_get("team_id")?,
        key_id: row.try_get("key_id")?,
        cost_centre: row.try_get("cost_centre")?,
        user: row.try_get("user_name")?,
        session_id: row.try_get("session_id")?,
        turn_id: row.try_get("turn_id")?,
        endpoint: endpoint_label(endpoint).to_owned(),
        model_requested: row.try_get("model_requested")?,
        model_served: row.try_get("model_served")?,
        status: u16::try_from(status).unwrap_or(0),
        input_tokens: count("input_tokens")?,
        cached_input_tokens: count("cached_input_tokens")?,
        output_tokens: count("output_tokens")?,
        reasoning_tokens: count("reasoning_tokens")?,
        cost_nanos,
        cost_usd: Money(cost_nanos).to_usd_string(),
        price_id: row.try_get("price_id")?,
        estimated: row.try_get::<i64, _>("estimated")? != 0,
        unpriced: row.try_get::<i64, _>("unpriced")? != 0,
        service_tier: row.try_get("service_tier")?,
        ttfb_ms: row.try_get("ttfb_ms")?,
        latency_ms: row.try_get("latency_ms")?,
        tool_calls: tool_calls.as_deref().map(decode_tools).unwrap_or_default(),
        outcome: CallOutcome::from_code(row.try_get("outcome")?),
        unmetered: row.try_get::<i64, _>("unmetered")? != 0,
        units: units
            .as_deref()
            .and_then(|u| serde_json::from_str(u).ok())
            .unwrap_or_default(),
        response_id: row.try_get("response_id")?,
    })
}
