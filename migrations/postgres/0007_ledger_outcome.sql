-- How each call ended, and whether it went to an endpoint tollgate cannot price.
--
-- outcome: 0 complete, 1 upstream_cut (the upstream broke the body off), 2 client_gone (the
-- client left mid-body), 3 client_gone_before_headers (the client left while the upstream had
-- the request), 4 upstream_timeout (no response headers in time), 5 upstream_unreachable.
-- Anything but 0 with estimated = 1 is a charge tollgate estimated because usage never came.
-- New endpoint codes (no schema change): 6 responses.compact, 7 moderations, 8 stored (reading,
-- cancelling or deleting a stored response or chat completion; counting input tokens).
-- unmetered: 1 for a call forwarded under [proxy] unmetered: its cost is unknown, not zero.
ALTER TABLE ledger ADD COLUMN outcome SMALLINT NOT NULL DEFAULT 0 CHECK (outcome BETWEEN 0 AND 5);
ALTER TABLE ledger ADD COLUMN unmetered SMALLINT NOT NULL DEFAULT 0 CHECK (unmetered IN (0, 1));

-- CREATE OR REPLACE keeps the view's existing columns and appends the new ones.
CREATE OR REPLACE VIEW ledger_readable AS
SELECT l.request_id, l.started_at_ms, l.finished_at_ms, l.team_id, l.key_id,
       cc.name AS cost_centre, u.name AS user_name, l.session_id, l.turn_id, l.endpoint,
       mr.name AS model_requested, ms.name AS model_served, l.status,
       l.input_tokens, l.cached_input_tokens, l.output_tokens, l.reasoning_tokens, l.cost_nanos,
       p.name AS price_id, l.estimated, l.unpriced, st.name AS service_tier, l.ttfb_ms,
       l.latency_ms, l.tool_calls, l.outcome, l.unmetered
FROM ledger l
LEFT JOIN ledger_names cc ON cc.id = l.cost_centre_ref
LEFT JOIN ledger_names u ON u.id = l.user_ref
LEFT JOIN ledger_names mr ON mr.id = l.model_requested_ref
LEFT JOIN ledger_names ms ON ms.id = l.model_served_ref
LEFT JOIN ledger_names p ON p.id = l.price_ref
LEFT JOIN ledger_names st ON st.id = l.service_tier_ref;
