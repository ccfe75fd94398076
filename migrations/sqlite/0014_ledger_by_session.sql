-- A session's calls in order, for the console's session page and
-- GET /admin/v1/teams/{team}/sessions/{id}/calls: without it, one session's page would read the
-- whole ledger. Partial: calls without a session id (most SDK traffic) cost the index nothing.
CREATE INDEX ledger_team_session_idx ON ledger (team_id, session_id, started_at_ms)
    WHERE session_id IS NOT NULL;
