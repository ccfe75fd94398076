//! A team's most expensive sessions, from the `sessions` rollup (one row per Codex session,
//! kept by the ledger writer), for the admin API's `GET /admin/v1/teams/{team}/sessions`.

use std::collections::BTreeMap;

use crate::error::Result;
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
}
