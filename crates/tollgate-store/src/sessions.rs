//! A team's most expensive sessions, from the `sessions` rollup (one row per team and Codex
//! session id, kept by the ledger writer), for the admin API's
//! `GET /admin/v1/teams/{team}/sessions`, and one session looked up with or without its team.

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
