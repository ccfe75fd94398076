//! What each of a team's Codex turns cost: the ledger rows that carry the turn id (from
//! `x-codex-turn-metadata`), summed per turn. The gateway answers Codex's turn-cost query
//! (`POST /v1/analytics/codex/turn-costs`) from this.

use std::collections::{BTreeSet, HashMap};

use sqlx::{AssertSqlSafe, Row};
use tollgate_core::Money;

use super::insert::placeholders_from;
use crate::error::{Result, StoreError};
use crate::store::{Backend, Store};

/// The most turn ids one query takes: Codex asks about at most 100 at a time.
pub const MAX_TURN_IDS: usize = 100;

/// One turn's ledger rows, summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCost {
    pub turn_id: String,
    /// One entry per ledger row, oldest first.
    pub responses: Vec<ResponseCost>,
    /// The rows' costs added up.
    pub total: Money,
    /// The model the rows name (served, else requested) when they all agree, else the most
    /// expensive row's; `None` when no row names one.
    pub model: Option<String>,
    /// When the turn's newest row finished (epoch ms).
    pub last_finished_at_ms: i64,
}

/// One ledger row of a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseCost {
    /// The upstream's response id; tollgate's request id for a row without one, so every row is
    /// listed and counted.
    pub response_id: String,
    pub cost: Money,
}

impl Store {
    /// The turns among `turn_ids` that have ledger rows of team `team_id`, by turn id. A turn id
    /// with no row of that team — none at all, or only another team's — is absent: one team never
    /// learns anything about another's turns. Repeated ids count once; more than
    /// [`MAX_TURN_IDS`] distinct ids is `Invalid`.
    pub async fn turn_costs(
        &self,
        team_id: &str,
        turn_ids: &[String],
    ) -> Result<HashMap<String, TurnCost>> {
        let ids: BTreeSet<&str> = turn_ids.iter().map(String::as_str).collect();
        if ids.len() > MAX_TURN_IDS {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_TURN_IDS} turn ids per query, got {}",
                ids.len()
            )));
        }
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let backend = self.backend();
        let team = match backend {
            Backend::Postgres => "$1",
            Backend::Sqlite => "?",
        };
        // Served by `ledger_turn_id_idx` (migration 0011): each turn id finds its few rows.
        let sql = format!(
            "SELECT l.turn_id, l.request_id, l.response_id, l.cost_nanos, l.finished_at_ms, \
             COALESCE(ms.name, mr.name) AS model \
             FROM ledger l \
             LEFT JOIN ledger_names ms ON ms.id = l.model_served_ref \
             LEFT JOIN ledger_names mr ON mr.id = l.model_requested_ref \
             WHERE l.team_id = {team} AND l.turn_id IN {} \
             ORDER BY l.turn_id, l.started_at_ms, l.request_id",
            placeholders_from(backend, 2, 1, ids.len()),
        );
        // The text varies with the number of ids: not worth a cached statement per count.
        let mut query = sqlx::query(AssertSqlSafe(sql))
            .persistent(false)
            .bind(team_id);
        for id in &ids {
            query = query.bind(*id);
        }
        let mut turns: HashMap<String, Turn> = HashMap::new();
        for row in query.fetch_all(&self.pool).await? {
            let turn_id: String = row.try_get("turn_id")?;
            let request_id: String = row.try_get("request_id")?;
            let response_id: Option<String> = row.try_get("response_id")?;
            let cost = Money(row.try_get("cost_nanos")?);
            let finished_at_ms: i64 = row.try_get("finished_at_ms")?;
            let model: Option<String> = row.try_get("model")?;
            turns.entry(turn_id).or_default().add(
                ResponseCost {
                    response_id: response_id.unwrap_or(request_id),
                    cost,
                },
                finished_at_ms,
                model,
            );
        }
        Ok(turns
            .into_iter()
            .map(|(turn_id, turn)| {
                let cost = turn.finish(turn_id.clone());
                (turn_id, cost)
            })
            .collect())
    }
}

/// A turn's rows as they are read, oldest first.
#[derive(Default)]
struct Turn {
    responses: Vec<ResponseCost>,
    total: Money,
    last_finished_at_ms: i64,
    /// The first model named, and whether a later row named another.
    first_model: Option<String>,
    models_differ: bool,
    /// The model of the most expensive row that names one (the earliest, on a tie).
    priciest: Option<(Money, String)>,
}

impl Turn {
    fn add(&mut self, response: ResponseCost, finished_at_ms: i64, model: Option<String>) {
        self.last_finished_at_ms = self.last_finished_at_ms.max(finished_at_ms);
        self.total = self.total.saturating_add(response.cost);
        if let Some(model) = model {
            match &self.first_model {
                None => self.first_model = Some(model.clone()),
                Some(first) => self.models_differ |= *first != model,
            }
            if self
                .priciest
                .as_ref()
                .is_none_or(|(c, _)| response.cost > *c)
            {
                self.priciest = Some((response.cost, model));
            }
        }
        self.responses.push(response);
    }

    fn finish(self, turn_id: String) -> TurnCost {
        let model = match self.models_differ {
            false => self.first_model,
            true => self.priciest.map(|(_, model)| model),
        };
        TurnCost {
            turn_id,
            responses: self.responses,
            total: self.total,
            model,
            last_finished_at_ms: self.last_finished_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, nanos: i64) -> ResponseCost {
        ResponseCost {
            response_id: id.to_owned(),
            cost: Money(nanos),
        }
    }

    #[test]
    fn a_turn_sums_its_rows_and_names_the_model_they_agree_on() {
        let mut turn = Turn::default();
        turn.add(row("resp_1", 1_000_000_001), 50, Some("gpt-5.5".into()));
        turn.add(row("req_2", 249_999_999), 40, None);
        turn.add(row("resp_3", 1), 70, Some("gpt-5.5".into()));
        let cost = turn.finish("t1".into());
        assert_eq!(cost.total, Money(1_250_000_001));
        assert_eq!(cost.total.to_usd_string(), "1.250000001");
        assert_eq!(cost.responses.len(), 3);
        assert_eq!(cost.model.as_deref(), Some("gpt-5.5"));
        assert_eq!(cost.last_finished_at_ms, 70);
    }

    #[test]
    fn models_that_differ_give_the_most_expensive_rows() {
        let mut turn = Turn::default();
        turn.add(row("a", 10), 1, Some("gpt-5-mini".into()));
        turn.add(row("b", 30), 2, Some("gpt-5.5".into()));
        turn.add(row("c", 30), 3, Some("o3".into()));
        assert_eq!(turn.finish("t".into()).model.as_deref(), Some("gpt-5.5"));

        let mut nameless = Turn::default();
        nameless.add(row("a", 10), 1, None);
        assert_eq!(nameless.finish("t".into()).model, None);
    }
}
