//! A team's most expensive sessions, from the `sessions` rollup (one row per team and Codex
//! session id, kept by the ledger writer), for the admin API's
//! `GET /admin/v1/teams/{team}/sessions`, and one session looked up with or without its team;
//! and the Codex hook events reported of a session (`session_events`, migration 0012), with
//! what the session view shows of them.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::error::{Result, StoreError};
use crate::ledger::{SessionSummary, session_from};
use crate::store::Store;

impl Store {
    /// Sessions of `team_id` active in `[from_ms, to_ms)` (first seen before `to_ms`, last seen
    /// at or after `from_ms`), most expensive first, ties by session id; at most `limit`, after
    /// the `(cost_nanos, session_id)` cursor `after`. Costs are the sessions' whole totals: the
    /// rollup does not split a session by time. Tool counts are left empty (see `session`).
    pub async fn top_sessions(
        &self,
        team_id: &str,
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<SessionSummary>> {
        // Without a cursor, start above every cost: one statement for both cases.
        let (cost, id) = after.unwrap_or((i64::MAX, String::new()));
        let rows = sqlx::query(
            "SELECT session_id, team_id, first_seen_ms, last_seen_ms, requests, input_tokens, \
             cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos FROM sessions \
             WHERE team_id = $1 AND first_seen_ms < $3 AND last_seen_ms >= $2 \
             AND (cost_nanos < $4 OR (cost_nanos = $4 AND session_id > $5)) \
             ORDER BY cost_nanos DESC, session_id LIMIT $6",
        )
        .bind(team_id)
        .bind(from_ms)
        .bind(to_ms)
        .bind(cost)
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| session_from(row, BTreeMap::new()))
            .collect()
    }

    /// A session by id: `team_id`'s, or with no team the one team that has a session of that
    /// id. The id is the client's choice, so several teams can have it: then nothing is
    /// guessed, and the answer is [`StoreError::Conflict`] naming them.
    pub async fn find_session(
        &self,
        team_id: Option<&str>,
        session_id: &str,
    ) -> Result<Option<SessionSummary>> {
        if let Some(team_id) = team_id {
            return self.session(team_id, session_id).await;
        }
        let teams = sqlx::query(
            "SELECT s.team_id, t.name FROM sessions s LEFT JOIN teams t ON t.id = s.team_id \
             WHERE s.session_id = $1 ORDER BY t.name, s.team_id",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        match teams.as_slice() {
            [] => Ok(None),
            [one] => {
                self.session(&one.try_get::<String, _>(0)?, session_id)
                    .await
            }
            several => {
                let names = several
                    .iter()
                    .map(|t| {
                        let name: Option<String> = t.try_get(1)?;
                        Ok(name.map_or_else(|| t.try_get(0), Ok)?)
                    })
                    .collect::<Result<Vec<String>>>()?;
                Err(StoreError::Conflict(format!(
                    "Session '{session_id}' exists in {} teams ({}); name the team \
                     (?team=, /admin/v1/teams/{{team}}/sessions/{{id}} or --team).",
                    names.len(),
                    names.join(", ")
                )))
            }
        }
    }
}

/// One Codex hook event as stored: under the team of the key that reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub team_id: String,
    pub session_id: String,
    pub turn_id: Option<String>,
    /// Codex's hook event name in snake case: `stop`, `post_tool_use`, …
    pub event: String,
    pub tool_name: Option<String>,
    /// Whether the quality gate the hook ran passed; `None` when it ran none.
    pub gate_passed: Option<bool>,
    pub gate_ms: Option<i64>,
    pub task_type: Option<String>,
    /// On `stop` events: `completed`, `failed` or `gate_failed`.
    pub outcome: Option<String>,
    pub at_ms: i64,
}

/// What a session's hook events add to its view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionHooks {
    /// How many events were reported.
    pub events: i64,
    /// When the newest was received.
    pub last_at_ms: Option<i64>,
    /// The newest `stop` event's outcome.
    pub outcome: Option<String>,
    /// The newest gate run.
    pub gate: Option<GateRun>,
    /// The newest task type reported.
    pub task_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateRun {
    pub passed: bool,
    pub duration_ms: Option<i64>,
}

impl Store {
    /// Stores one hook event.
    pub async fn record_session_event(&self, e: &SessionEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO session_events (team_id, session_id, turn_id, event, tool_name, \
             gate_passed, gate_ms, task_type, outcome, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&e.team_id)
        .bind(&e.session_id)
        .bind(&e.turn_id)
        .bind(&e.event)
        .bind(&e.tool_name)
        .bind(e.gate_passed.map(i16::from))
        .bind(e.gate_ms)
        .bind(&e.task_type)
        .bind(&e.outcome)
        .bind(e.at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The hook events `team_id` reported of `session_id`, summed up for the session view:
    /// four reads on the `(team_id, session_id)` index (a session has tens of events, not
    /// millions).
    pub async fn session_hooks(&self, team_id: &str, session_id: &str) -> Result<SessionHooks> {
        let counted = sqlx::query(
            "SELECT COUNT(*), MAX(at_ms) FROM session_events \
             WHERE team_id = $1 AND session_id = $2",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_one(&self.pool)
        .await?;
        let events: i64 = counted.try_get(0)?;
        if events == 0 {
            return Ok(SessionHooks::default());
        }
        // The newest event with `condition`: fixed SQL, only the column names differ.
        let newest = |condition: &'static str, column: &'static str| {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {column} FROM session_events WHERE team_id = $1 AND session_id = $2 \
                 AND {condition} ORDER BY at_ms DESC, id DESC LIMIT 1"
            )))
        };
        let outcome = newest("outcome IS NOT NULL", "outcome")
            .bind(team_id)
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?
            .map(|row| row.try_get::<String, _>(0))
            .transpose()?;
        let gate = newest(
            "gate_passed IS NOT NULL",
            "CAST(gate_passed AS BIGINT), gate_ms",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| {
            Ok::<_, StoreError>(GateRun {
                passed: row.try_get::<i64, _>(0)? != 0,
                duration_ms: row.try_get(1)?,
            })
        })
        .transpose()?;
        let task_type = self.session_task_type(team_id, session_id).await?;
        Ok(SessionHooks {
            events,
            last_at_ms: counted.try_get(1)?,
            outcome,
            gate,
            task_type,
        })
    }
}
