-- The spend ledger: one small row per proxied call, and the rollups the ledger writer keeps in the
-- same transaction as the rows it inserts (counting only rows actually inserted, so a replayed
-- spool changes nothing).
--
-- SQLite dialect of migrations/postgres/0002_ledger.sql; keep the two in step. The columns are the
-- same; `ledger` is a plain table keyed by request id (SQLite has no partitions), and
-- `ledger_names.id` is the rowid.

-- Interned strings. Ids are never reassigned, so every process may cache them forever.
CREATE TABLE ledger_names (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE ledger (
    started_at_ms       BIGINT   NOT NULL,
    finished_at_ms      BIGINT   NOT NULL,
    cost_nanos          BIGINT   NOT NULL,
    input_tokens        INTEGER  NOT NULL CHECK (input_tokens >= 0),
    cached_input_tokens INTEGER  NOT NULL CHECK (cached_input_tokens >= 0),
    output_tokens       INTEGER  NOT NULL CHECK (output_tokens >= 0),
    reasoning_tokens    INTEGER  NOT NULL CHECK (reasoning_tokens >= 0),
    latency_ms          INTEGER  NOT NULL,
    ttfb_ms             INTEGER,
    model_requested_ref INTEGER,
    model_served_ref    INTEGER,
    price_ref           INTEGER,
    service_tier_ref    INTEGER,
    user_ref            INTEGER,
    cost_centre_ref     INTEGER,
    status              SMALLINT NOT NULL,
    -- 0 other, 1 responses, 2 chat.completions, 3 completions, 4 embeddings, 5 models
    endpoint            SMALLINT NOT NULL,
    estimated           SMALLINT NOT NULL CHECK (estimated IN (0, 1)),
    unpriced            SMALLINT NOT NULL CHECK (unpriced IN (0, 1)),
    request_id          TEXT     NOT NULL PRIMARY KEY,
    team_id             TEXT     NOT NULL,
    key_id              TEXT     NOT NULL,
    session_id          TEXT,
    turn_id             TEXT,
    -- `exec_command=3,apply_patch=1`; NULL when the response called no tools.
    tool_calls          TEXT
);
CREATE INDEX ledger_started_at_idx ON ledger (started_at_ms);

CREATE VIEW ledger_readable AS
SELECT l.request_id, l.started_at_ms, l.finished_at_ms, l.team_id, l.key_id,
       cc.name AS cost_centre, u.name AS user_name, l.session_id, l.turn_id, l.endpoint,
       mr.name AS model_requested, ms.name AS model_served, l.status,
       l.input_tokens, l.cached_input_tokens, l.output_tokens, l.reasoning_tokens, l.cost_nanos,
       p.name AS price_id, l.estimated, l.unpriced, st.name AS service_tier, l.ttfb_ms,
       l.latency_ms, l.tool_calls
FROM ledger l
LEFT JOIN ledger_names cc ON cc.id = l.cost_centre_ref
LEFT JOIN ledger_names u ON u.id = l.user_ref
LEFT JOIN ledger_names mr ON mr.id = l.model_requested_ref
LEFT JOIN ledger_names ms ON ms.id = l.model_served_ref
LEFT JOIN ledger_names p ON p.id = l.price_ref
LEFT JOIN ledger_names st ON st.id = l.service_tier_ref;

-- Per UTC day, team, key, model (served, else requested, else '') and cost centre ('' for none).
CREATE TABLE ledger_daily (
    day                 TEXT   NOT NULL,
    team_id             TEXT   NOT NULL,
    key_id              TEXT   NOT NULL,
    model               TEXT   NOT NULL,
    cost_centre         TEXT   NOT NULL,
    requests            BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_nanos          BIGINT NOT NULL,
    estimated_requests  BIGINT NOT NULL,
    PRIMARY KEY (day, team_id, key_id, model, cost_centre)
);
CREATE INDEX ledger_daily_team_day_idx ON ledger_daily (team_id, day);

-- Per session id (Codex's `session-id`): the team that first used it, when it was first and last
-- seen (start of its first call, end of its last), and its totals.
CREATE TABLE sessions (
    session_id          TEXT   PRIMARY KEY,
    team_id             TEXT   NOT NULL,
    first_seen_ms       BIGINT NOT NULL,
    last_seen_ms        BIGINT NOT NULL,
    requests            BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_nanos          BIGINT NOT NULL
);
CREATE INDEX sessions_team_last_seen_idx ON sessions (team_id, last_seen_ms);

CREATE TABLE session_tools (
    session_id TEXT   NOT NULL,
    tool       TEXT   NOT NULL,
    calls      BIGINT NOT NULL,
    PRIMARY KEY (session_id, tool)
);
