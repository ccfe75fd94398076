//! What Codex's own telemetry says about a session (`session_signals`, migration 0013): rows the
//! OTLP intake derives from Codex's spans and log events, and their sum for the session view.

use std::collections::BTreeMap;

use sqlx::Row;

use crate::error::Result;
use crate::store::Store;

/// One span or log event of a session, as stored. See the migration for which fields each kind
/// sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSignal {
    pub team_id: String,
    pub session_id: String,
    pub kind: SignalKind,
    /// The span id, tool call id or log time: the same span exported twice is stored once.
    pub source_id: String,
    pub turn_id: Option<String>,
    pub duration_ms: Option<i64>,
    pub tokens: Option<CodexTokens>,
    pub at_ms: i64,
}

/// Which span or event a [`SessionSignal`] came from, with what only it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalKind {
    /// Codex's `session_loop` span: the session's time to resolution.
    Session,
    /// A `session_task.turn` span.
    Turn,
    /// A `codex.tool_decision` log event.
    ToolDecision { tool: String, decision: String },
    /// A failed model API request: `transport` `http` or `websocket`, `status` the HTTP status,
    /// `none` or `stream`.
    ApiError { transport: String, status: String },
}

impl SignalKind {
    fn parts(&self) -> (&'static str, Option<&str>, Option<&str>) {
        match self {
            SignalKind::Session => ("session", None, None),
            SignalKind::Turn => ("turn", None, None),
            SignalKind::ToolDecision { tool, decision } => {
                ("tool_decision", Some(tool), Some(decision))
            }
            SignalKind::ApiError { transport, status } => {
                ("api_error", Some(transport), Some(status))
            }
        }
    }
}

/// Token counts as Codex itself counted them (cached input is part of input, reasoning part of
/// output, as in OpenAI's usage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CodexTokens {
    pub input: i64,
    pub cached_input: i64,
    pub output: i64,
    pub reasoning: i64,
}

/// A session's Codex telemetry, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionSignals {
    /// Rows stored for the session: 0 means its Codex sent no telemetry through tollgate.
    pub rows: i64,
    /// The sum of its `session_loop` spans (a resumed session runs one loop per resume); `None`
    /// while the session is still running.
    pub session_ms: Option<i64>,
    pub turns: i64,
    /// The turns' durations, summed.
    pub turn_ms: i64,
    pub tokens: CodexTokens,
    /// Tool → decision → count.
    pub tool_decisions: BTreeMap<String, BTreeMap<String, i64>>,
    pub api_errors: i64,
}

impl Store {
    /// Stores rows in one transaction; a row already stored (same team, session, kind and
    /// source id) is skipped. Returns, per row, whether it was new.
    pub async fn record_session_signals(&self, rows: &[SessionSignal]) -> Result<Vec<bool>> {
        let mut tx = self.pool.begin().await?;
        let mut added = Vec::with_capacity(rows.len());
        for row in rows {
            let (signal, name, detail) = row.kind.parts();
            let tokens = row.tokens;
            let inserted = sqlx::query(
                "INSERT INTO session_signals (team_id, session_id, signal, source_id, turn_id, \
                 name, detail, duration_ms, input_tokens, cached_input_tokens, output_tokens, \
                 reasoning_tokens, at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (team_id, session_id, signal, source_id) DO NOTHING",
            )
            .bind(&row.team_id)
            .bind(&row.session_id)
            .bind(signal)
            .bind(&row.source_id)
            .bind(&row.turn_id)
            .bind(name)
            .bind(detail)
            .bind(row.duration_ms)
            .bind(tokens.map(|t| t.input))
            .bind(tokens.map(|t| t.cached_input))
            .bind(tokens.map(|t| t.output))
            .bind(tokens.map(|t| t.reasoning))
            .bind(row.at_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            added.push(inserted > 0);
        }
        tx.commit().await?;
        Ok(added)
    }

    /// `team_id`'s telemetry of `session_id`, summed: two reads on the table's unique index.
    pub async fn session_signals(&self, team_id: &str, session_id: &str) -> Result<SessionSignals> {
        let sums = sqlx::query(
            "SELECT COUNT(*), \
             CAST(SUM(CASE WHEN signal = 'session' THEN duration_ms END) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN signal = 'turn' THEN 1 ELSE 0 END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN signal = 'turn' THEN duration_ms END), 0) AS BIGINT), \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(cached_input_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(reasoning_tokens), 0) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN signal = 'api_error' THEN 1 ELSE 0 END), 0) AS BIGINT) \
             FROM session_signals WHERE team_id = $1 AND session_id = $2",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_one(&self.pool)
        .await?;
        let rows: i64 = sums.try_get(0)?;
        if rows == 0 {
            return Ok(SessionSignals::default());
        }
        let decisions = sqlx::query(
            "SELECT name, detail, COUNT(*) FROM session_signals \
             WHERE team_id = $1 AND session_id = $2 AND signal = 'tool_decision' \
             GROUP BY name, detail",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        let mut tool_decisions: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        for row in &decisions {
            let tool: String = row.try_get(0)?;
            let decision: String = row.try_get(1)?;
            tool_decisions
                .entry(tool)
                .or_default()
                .insert(decision, row.try_get(2)?);
        }
        Ok(SessionSignals {
            rows,
            session_ms: sums.try_get(1)?,
            turns: sums.try_get(2)?,
            turn_ms: sums.try_get(3)?,
            tokens: CodexTokens {
                input: sums.try_get(4)?,
                cached_input: sums.try_get(5)?,
                output: sums.try_get(6)?,
                reasoning: sums.try_get(7)?,
            },
            tool_decisions,
            api_errors: sums.try_get(8)?,
        })
    }

    /// The newest task type `team_id`'s hooks reported for `session_id` (`tollgate hook
    /// --task-type`), if any.
    pub async fn session_task_type(
        &self,
        team_id: &str,
        session_id: &str,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT task_type FROM session_events WHERE team_id = $1 AND session_id = $2 \
             AND task_type IS NOT NULL ORDER BY at_ms DESC, id DESC LIMIT 1",
        )
        .bind(team_id)
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
    }
}
