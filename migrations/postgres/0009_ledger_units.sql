-- What a call billed beyond its text tokens, as JSON (NULL for the many calls with nothing
-- more): image and audio token counts (subsets of the token columns), images billed per image
-- with their size and quality, characters spoken, milliseconds of audio transcribed and
-- built-in tool calls billed per call, e.g.
--   {"images":{"count":2,"size":"1024x1024","quality":"hd"}}
--   {"audio_ms":61250}
--   {"tool_calls":[{"tool":"web_search","calls":3}]}
-- With the row's price_id it reproduces the row's cost_nanos by hand.
-- New endpoint codes (no schema change): 9 images.generations, 10 images.edits,
-- 11 images.variations, 12 audio.speech, 13 audio.transcriptions, 14 audio.translations.
ALTER TABLE ledger ADD COLUMN units TEXT;

CREATE OR REPLACE VIEW ledger_readable AS
SELECT l.request_id, l.started_at_ms, l.finished_at_ms, l.team_id, l.key_id,
       cc.name AS cost_centre, u.name AS user_name, l.session_id, l.turn_id, l.endpoint,
       mr.name AS model_requested, ms.name AS model_served, l.status,
       l.input_tokens, l.cached_input_tokens, l.output_tokens, l.reasoning_tokens, l.cost_nanos,
       p.name AS price_id, l.estimated, l.unpriced, st.name AS service_tier, l.ttfb_ms,
       l.latency_ms, l.tool_calls, l.outcome, l.unmetered, l.units
FROM ledger l
LEFT JOIN ledger_names cc ON cc.id = l.cost_centre_ref
LEFT JOIN ledger_names u ON u.id = l.user_ref
LEFT JOIN ledger_names mr ON mr.id = l.model_requested_ref
LEFT JOIN ledger_names ms ON ms.id = l.model_served_ref
LEFT JOIN ledger_names p ON p.id = l.price_ref
LEFT JOIN ledger_names st ON st.id = l.service_tier_ref;
