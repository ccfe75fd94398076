-- What Codex's own telemetry (its OTLP logs and traces, sent to tollgate's intake at /otlp/v1/*)
-- says about a session, under the team of the key that sent it: the session's time to
-- resolution (its `session_loop` span), each turn's duration and Codex's own token counts (its
-- `session_task.turn` spans), tool-call decisions (`codex.tool_decision` log events) and failed
-- model API requests. One row per span or event; `source_id` (the span id, the tool call id, the
-- log record's time) makes a retried export add nothing. No prompt, tool input or output is kept.
--
--   signal         name        detail     duration_ms   tokens
--   session        -           -          set           -
--   turn           -           -          set           set
--   tool_decision  tool name   decision   -             -
--   api_error      transport   status     -             -
CREATE TABLE session_signals (
    id                  BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id             TEXT     NOT NULL,
    session_id          TEXT     NOT NULL,
    signal              TEXT     NOT NULL,
    source_id           TEXT     NOT NULL,
    turn_id             TEXT,
    name                TEXT,
    detail              TEXT,
    duration_ms         BIGINT,
    input_tokens        BIGINT,
    cached_input_tokens BIGINT,
    output_tokens       BIGINT,
    reasoning_tokens    BIGINT,
    at_ms               BIGINT   NOT NULL,
    UNIQUE (team_id, session_id, signal, source_id)
);
