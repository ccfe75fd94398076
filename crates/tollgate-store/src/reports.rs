//! Spend reports: the ledger summed over a time range, grouped by any of team, cost centre, key,
//! model, user, session, HTTP status, day and month, and the reconciliation of the rollups against
//! the ledger. Every group counts its failed, estimated, unpriced and unmetered calls beside its
//! spend, so what a report cannot vouch for is in plain sight.
//!
//! A report is served from `ledger_daily` when that gives the same answer — no user, session or
//! status grouping (the rollup does not keep them) and a range of whole UTC days, bucketed in
//! UTC — and from the ledger otherwise. Either way SQL does the summing in BIGINT and Rust only
//! merges and orders the groups; no float ever touches money.

mod periods;
mod reconcile;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_core::budget::{Calendar, Period};

pub use periods::{local_day, local_month, month_bounds, parse_instant, rfc3339};
pub use reconcile::{DailyDifference, Reconciliation, SessionDifference, SessionTotals};

use crate::error::Result;
use crate::ledger::{TOTALS_COLUMNS, Totals, daily_sums, ledger_sums, totals_at};
use crate::store::Store;

const MS_PER_DAY: i64 = 86_400_000;

/// What a report can group by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Team,
    CostCentre,
    Key,
    Model,
    User,
    /// A client's session id, within its team: two teams' sessions of one id are two groups.
    Session,
    /// The HTTP status sent to the client (`"200"`, `"429"`, `"499"`, …).
    Status,
    Day,
    Month,
}

impl Dimension {
    pub const ALL: [Dimension; 9] = [
        Dimension::Team,
        Dimension::CostCentre,
        Dimension::Key,
        Dimension::Model,
        Dimension::User,
        Dimension::Session,
        Dimension::Status,
        Dimension::Day,
        Dimension::Month,
    ];

    pub fn parse(text: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Team => "team",
            Dimension::CostCentre => "cost_centre",
            Dimension::Key => "key",
            Dimension::Model => "model",
            Dimension::User => "user",
            Dimension::Session => "session",
            Dimension::Status => "status",
            Dimension::Day => "day",
            Dimension::Month => "month",
        }
    }
}

/// Which rows to sum and how to group them.
#[derive(Debug, Clone)]
pub struct ReportQuery {
    /// Rows that started in `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// Group keys in column order; repeats are ignored.
    pub group_by: Vec<Dimension>,
    /// Only this team's rows (a team admin's view).
    pub team_id: Option<String>,
    /// The zone `day` and `month` buckets are local to.
    pub calendar: Calendar,
}

/// Where a report's numbers were summed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Source {
    #[serde(rename = "ledger_daily")]
    Rollups,
    #[serde(rename = "ledger")]
    Ledger,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Rollups => "ledger_daily",
            Source::Ledger => "ledger",
        }
    }
}

/// One group's sums. Only the grouped fields are set; a grouped field with no value (no user,
/// no cost centre, no session) is `None` too — the query's `group_by` tells the two apart.
/// Grouping by session sets each session's team too, since a session id alone does not name a
/// session; calls without a session are one group, with no team unless teams are grouped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportRow {
    pub team_id: Option<String>,
    /// The team's current name, when it still exists.
    pub team_name: Option<String>,
    pub cost_centre: Option<String>,
    pub key_id: Option<String>,
    /// The model served, else the one requested.
    pub model: Option<String>,
    pub user: Option<String>,
    pub session_id: Option<String>,
    /// The HTTP status sent to the client, as text (`"429"`).
    pub status: Option<String>,
    /// `YYYY-MM-DD` in the query's zone.
    pub day: Option<String>,
    /// `YYYY-MM` in the query's zone.
    pub month: Option<String>,
    pub totals: Totals,
}

impl ReportRow {
    /// The value of one group key (`team` gives the team id).
    pub fn value(&self, dimension: Dimension) -> Option<&str> {
        match dimension {
            Dimension::Team => self.team_id.as_deref(),
            Dimension::CostCentre => self.cost_centre.as_deref(),
            Dimension::Key => self.key_id.as_deref(),
            Dimension::Model => self.model.as_deref(),
            Dimension::User => self.user.as_deref(),
            Dimension::Session => self.session_id.as_deref(),
            Dimension::Status => self.status.as_deref(),
            Dimension::Day => self.day.as_deref(),
            Dimension::Month => self.month.as_deref(),
        }
    }

    fn set(&mut self, dimension: Dimension, value: Option<String>) {
        let slot = match dimension {
            Dimension::Team => &mut self.team_id,
            Dimension::CostCentre => &mut self.cost_centre,
            Dimension::Key => &mut self.key_id,
            Dimension::Model => &mut self.model,
            Dimension::User => &mut self.user,
            Dimension::Session => &mut self.session_id,
            Dimension::Status => &mut self.status,
            Dimension::Day => &mut self.day,
            Dimension::Month => &mut self.month,
        };
        *slot = value;
    }
}

/// A report: its rows ordered by the group keys (missing values first), and their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: Source,
    pub group_by: Vec<Dimension>,
    pub rows: Vec<ReportRow>,
    pub totals: Totals,
}

/// `a + b`, field by field (saturating: a report never wraps around).
pub(crate) fn add(a: &mut Totals, b: &Totals) {
    a.requests = a.requests.saturating_add(b.requests);
    a.input_tokens = a.input_tokens.saturating_add(b.input_tokens);
    a.cached_input_tokens = a.cached_input_tokens.saturating_add(b.cached_input_tokens);
    a.output_tokens = a.output_tokens.saturating_add(b.output_tokens);
    a.reasoning_tokens = a.reasoning_tokens.saturating_add(b.reasoning_tokens);
    a.cost = a.cost.saturating_add(b.cost);
    a.estimated_requests = a.estimated_requests.saturating_add(b.estimated_requests);
    a.failed_requests = a.failed_requests.saturating_add(b.failed_requests);
    a.unpriced_requests = a.unpriced_requests.saturating_add(b.unpriced_requests);
    a.unmetered_requests = a.unmetered_requests.saturating_add(b.unmetered_requests);
}

/// One grouped column of the inner query: plain text, or a `ledger_names` id the outer query
/// turns into its name (joining ~20 names after grouping instead of 1M rows before).
enum Column {
    Text(String),
    NameRef(&'static str),
}

/// How a dimension's value is read back from its first column.
enum Read {
    Text,
    /// An integer, shown as its decimal text.
    Number,
    /// Two names, served then requested: the first that is set.
    ServedElseRequested,
    /// A bucket number, an index into these labels. Grouping by a small integer is 2-3x
    /// faster on PostgreSQL than by a text label: it hashes instead of sorting through disk.
    Bucket(Vec<String>),
}

/// The statement for a report, and where each dimension's value is read back.
struct Plan {
    sql: String,
    columns: Vec<(usize, Read)>,
    /// Index of the first of the `TOTALS_COLUMNS` sums, after the grouped columns.
    sums_at: usize,
}

impl ReportQuery {
    fn dimensions(&self) -> Vec<Dimension> {
        let mut seen = Vec::with_capacity(self.group_by.len());
        for d in &self.group_by {
            if !seen.contains(d) {
                seen.push(*d);
            }
        }
        seen
    }

    /// The dimensions rows are keyed by: those asked for and, after a session, its team when the
    /// team was not asked for (a session id is unique only within its team).
    fn key_dimensions(&self) -> Vec<Dimension> {
        let mut dims = self.dimensions();
        if !dims.contains(&Dimension::Team)
            && let Some(at) = dims.iter().position(|d| *d == Dimension::Session)
        {
            dims.insert(at + 1, Dimension::Team);
        }
        dims
    }

    /// Where the report will be summed from: `ledger_daily` answers exactly when it holds every
    /// key asked for and the range and the buckets are whole UTC days.
    pub fn source(&self) -> Source {
        let dims = self.dimensions();
        let ledger_only = dims
            .iter()
            .any(|d| matches!(d, Dimension::User | Dimension::Session | Dimension::Status));
        let buckets = dims
            .iter()
            .any(|d| matches!(d, Dimension::Day | Dimension::Month));
        let whole_days =
            self.from_ms.rem_euclid(MS_PER_DAY) == 0 && self.to_ms.rem_euclid(MS_PER_DAY) == 0;
        if ledger_only || !whole_days || (buckets && !periods::is_utc(&self.calendar)) {
            Source::Ledger
        } else {
            Source::Rollups
        }
    }

    fn plan(&self, source: Source) -> Result<Plan> {
        let mut inner = Vec::new();
        let mut columns = Vec::new();
        for dimension in self.key_dimensions() {
            let (sql, read) = match source {
                Source::Rollups => (
                    vec![Column::Text(rollup_column(dimension).to_owned())],
                    Read::Text,
                ),
                Source::Ledger => self.ledger_columns(dimension)?,
            };
            columns.push((inner.len(), read));
            inner.extend(sql);
        }
        let (table, range, sums) = match source {
            Source::Rollups => (
                "ledger_daily t",
                "t.day >= $1 AND t.day < $2",
                daily_sums("t.").to_vec(),
            ),
            Source::Ledger => (
                "ledger t",
                "t.started_at_ms >= $1 AND t.started_at_ms < $2",
                [vec!["COUNT(*)".to_owned()], ledger_sums("t.").to_vec()].concat(),
            ),
        };
        let mut select = Vec::new();
        let mut outer = Vec::new();
        let mut joins = String::new();
        for (i, column) in inner.iter().enumerate() {
            match column {
                Column::Text(expr) => {
                    select.push(format!("{expr} AS k{i}"));
                    outer.push(format!("g.k{i}"));
                }
                Column::NameRef(expr) => {
                    select.push(format!("{expr} AS k{i}"));
                    outer.push(format!("n{i}.name"));
                    joins.push_str(&format!(" LEFT JOIN ledger_names n{i} ON n{i}.id = g.k{i}"));
                }
            }
        }
        let names: [&str; TOTALS_COLUMNS] = ["n", "i", "ci", "o", "r", "c", "e", "f", "u", "m"];
        for (name, expr) in names.iter().zip(&sums) {
            select.push(format!("{expr} AS s_{name}"));
            outer.push(format!("g.s_{name}"));
        }
        let team = if self.team_id.is_some() {
            " AND t.team_id = $3"
        } else {
            ""
        };
        let group = if inner.is_empty() {
            String::new()
        } else {
            let ordinals: Vec<String> = (1..=inner.len()).map(|i| i.to_string()).collect();
            format!(" GROUP BY {}", ordinals.join(", "))
        };
        let sql = format!(
            "SELECT {} FROM (SELECT {} FROM {table} WHERE {range}{team}{group}) g{joins}",
            outer.join(", "),
            select.join(", "),
        );
        Ok(Plan {
            sql,
            columns,
            sums_at: inner.len(),
        })
    }

    fn ledger_columns(&self, dimension: Dimension) -> Result<(Vec<Column>, Read)> {
        let bucket = |period| -> Result<(Vec<Column>, Read)> {
            let buckets = periods::buckets(&self.calendar, period, self.from_ms, self.to_ms)?;
            let starts: Vec<i64> = buckets.iter().map(|(start, _)| *start).collect();
            let sql = periods::bucket_sql("t.started_at_ms", &starts);
            let labels = buckets.into_iter().map(|(_, label)| label).collect();
            Ok((vec![Column::Text(sql)], Read::Bucket(labels)))
        };
        let text = |sql: &str| (vec![Column::Text(sql.to_owned())], Read::Text);
        let name = |sql| (vec![Column::NameRef(sql)], Read::Text);
        Ok(match dimension {
            Dimension::Team => text("t.team_id"),
            Dimension::CostCentre => name("t.cost_centre_ref"),
            Dimension::Key => text("t.key_id"),
            // The rollup's rule (served, else requested) is applied after naming both.
            Dimension::Model => (
                vec![
                    Column::NameRef("t.model_served_ref"),
                    Column::NameRef("t.model_requested_ref"),
                ],
                Read::ServedElseRequested,
            ),
            Dimension::User => name("t.user_ref"),
            Dimension::Session => text("t.session_id"),
            Dimension::Status => (vec![Column::Text("t.status".to_owned())], Read::Number),
            Dimension::Day => bucket(Period::Day)?,
            Dimension::Month => bucket(Period::Month)?,
        })
    }
}

fn rollup_column(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::Team => "t.team_id",
        Dimension::CostCentre => "t.cost_centre",
        Dimension::Key => "t.key_id",
        Dimension::Model => "t.model",
        Dimension::Day => "t.day",
        Dimension::Month => "SUBSTR(t.day, 1, 7)",
        // Never planned: `source()` sends these to the ledger.
        Dimension::User | Dimension::Session | Dimension::Status => "NULL",
    }
}

/// `''` is how the rollup spells "none"; reports say `None` on either path.
fn text(row: &AnyRow, index: usize) -> Result<Option<String>> {
    let value: Option<String> = row.try_get(index)?;
    Ok(value.filter(|v| !v.is_empty()))
}

impl Store {
    /// Sums the ledger over `query`'s range, grouped as it asks, from `ledger_daily` when that
    /// gives the same answer and from the ledger otherwise.
    pub async fn spend_report(&self, query: &ReportQuery) -> Result<Report> {
        let source = query.source();
        let group_by = query.dimensions();
        let mut report = Report {
            source,
            group_by: group_by.clone(),
            rows: Vec::new(),
            totals: Totals::default(),
        };
        if query.from_ms >= query.to_ms {
            return Ok(report);
        }
        let plan = query.plan(source)?;
        let mut sql = sqlx::query(sqlx::AssertSqlSafe(plan.sql));
        sql = match source {
            Source::Rollups => sql
                .bind(crate::ledger::utc_day(query.from_ms))
                .bind(crate::ledger::utc_day(query.to_ms)),
            Source::Ledger => sql.bind(query.from_ms).bind(query.to_ms),
        };
        if let Some(team) = &query.team_id {
            sql = sql.bind(team.as_str());
        }
        let fetched = sql.fetch_all(&self.pool).await?;

        let key_dims = query.key_dimensions();
        // The team `key_dimensions` put after the session: calls without a session are one
        // group, whatever their team.
        let session_at = key_dims
            .iter()
            .position(|d| *d == Dimension::Session)
            .filter(|_| !group_by.contains(&Dimension::Team));
        // Key: the group values in `key_dims` order, so the map's order is the report's.
        let mut groups: BTreeMap<Vec<Option<String>>, Totals> = BTreeMap::new();
        for row in &fetched {
            let mut key = Vec::with_capacity(plan.columns.len());
            for (index, read) in &plan.columns {
                let value = match read {
                    Read::Text => text(row, *index)?,
                    Read::Number => row
                        .try_get::<Option<i64>, _>(*index)?
                        .map(|n| n.to_string()),
                    Read::ServedElseRequested => text(row, *index)?.or(text(row, index + 1)?),
                    Read::Bucket(labels) => {
                        let bucket: i64 = row.try_get(*index)?;
                        usize::try_from(bucket)
                            .ok()
                            .and_then(|b| labels.get(b))
                            .cloned()
                    }
                };
                key.push(value);
            }
            if let Some(at) = session_at
                && key.get(at) == Some(&None)
                && let Some(team) = key.get_mut(at + 1)
            {
                *team = None;
            }
            let totals = totals_at(row, plan.sums_at)?;
            // Without grouping, SQL answers one row of zeros for an empty range.
            if totals.requests == 0 {
                continue;
            }
            add(groups.entry(key).or_default(), &totals);
        }

        let team_names = if key_dims.contains(&Dimension::Team) {
            self.team_names().await?
        } else {
            HashMap::new()
        };
        for (key, totals) in groups {
            let mut row = ReportRow {
                totals,
                ..ReportRow::default()
            };
            for (dimension, value) in key_dims.iter().zip(key) {
                row.set(*dimension, value);
            }
            row.team_name = row
                .team_id
                .as_ref()
                .and_then(|id| team_names.get(id).cloned());
            add(&mut report.totals, &row.totals);
            report.rows.push(row);
        }
        Ok(report)
    }

    async fn team_names(&self) -> Result<HashMap<String, String>> {
        let rows = sqlx::query("SELECT id, name FROM teams")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }
}
