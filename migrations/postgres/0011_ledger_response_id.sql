-- The upstream's id of each call's response (`resp_…` for the Responses API, `chatcmpl-…` for
-- Chat Completions), NULL when the upstream sent none (a refused, failed or unreadable call). It
-- is what Codex's turn-cost query (`POST /v1/analytics/codex/turn-costs`) matches the responses
-- it saw against, and what the provider's support asks for. About 54 bytes on a row that has one.
ALTER TABLE ledger ADD COLUMN response_id TEXT;

-- The turn-cost query reads "this team's rows of these turn ids". Turn ids are UUIDs, so the
-- turn id alone finds a handful of rows and the team is checked on them; only Codex's calls carry
-- one, so the index leaves every other row out. Created on each month partition (and on the ones
-- made later); building it locks writes to `ledger` for as long as it takes on an existing ledger.
CREATE INDEX ledger_turn_id_idx ON ledger (turn_id) WHERE turn_id IS NOT NULL;

CREATE OR REPLACE VIEW ledger_readable AS
SELECT l.request_id, l.started_at_ms, l.finished_at_ms, l.team_id, l.key_id,
       cc.name AS cost_centre, u.name AS user_name, l.session_id, l.turn_id, l.endpoint,
       mr.name AS model_requested, ms.name AS model_served, l.status,
       l.input_tokens, l.cached_input_tokens, l.output_tokens, l.reasoning_tokens, l.cost_nanos,
       p.name AS price_id, l.estimated, l.unpriced, st.name AS service_tier, l.ttfb_ms,
       l.latency_ms, l.tool_calls, l.outcome, l.unmetered, l.units, l.response_id
FROM ledger l
LEFT JOIN ledger_names cc ON cc.id = l.cost_centre_ref
LEFT JOIN ledger_names u ON u.id = l.user_ref
LEFT JOIN ledger_names mr ON mr.id = l.model_requested_ref
LEFT JOIN ledger_names ms ON ms.id = l.model_served_ref
LEFT JOIN ledger_names p ON p.id = l.price_ref
LEFT JOIN ledger_names st ON st.id = l.service_tier_ref;
