-- Budgets, their spend per window, the leases replicas admit against, and rate limits.
-- Money is BIGINT nano-USD, times are epoch milliseconds (see 0001).

-- A hard limit on a team's (key_id NULL) or one key's spend per period. `reset_at_ms` starts a
-- new window early (an admin's reset): spend before it no longer counts in this period.
CREATE TABLE budgets (
    id                 TEXT PRIMARY KEY,
    team_id            TEXT   NOT NULL REFERENCES teams (id),
    key_id             TEXT   NULL REFERENCES api_keys (id),
    period             TEXT   NOT NULL CHECK (period IN ('day', 'week', 'month', 'total')),
    limit_nanos        BIGINT NOT NULL CHECK (limit_nanos >= 0),
    -- The soft threshold as parts per million of the limit (800000 = 80 %).
    soft_ppm           BIGINT NOT NULL CHECK (soft_ppm BETWEEN 0 AND 1000000),
    session_cap_nanos  BIGINT NULL,
    reset_at_ms        BIGINT NOT NULL DEFAULT 0,
    created_at_ms      BIGINT NOT NULL,
    updated_at_ms      BIGINT NOT NULL
);
CREATE INDEX budgets_team_idx ON budgets (team_id);

-- Settled spend per budget window, added by the ledger writer in the transaction that inserts
-- the rows (only rows actually inserted count, so a replayed spool adds nothing). No foreign key
-- to budgets: a ledger batch racing a budget's deletion must not fail (its rows would be
-- refused); a window left behind by a deleted budget is never read.
CREATE TABLE budget_windows (
    budget_id        TEXT   NOT NULL,
    window_start_ms  BIGINT NOT NULL,
    spent_nanos      BIGINT NOT NULL DEFAULT 0,
    -- When the soft threshold / the limit was first seen crossed in this window (each event
    -- fires once per window, across all replicas).
    soft_fired_ms    BIGINT NULL,
    hard_fired_ms    BIGINT NULL,
    PRIMARY KEY (budget_id, window_start_ms)
);

-- A replica's claim on a window's remaining money. It holds `granted - consumed` (never less
-- than zero): `granted` grows when the replica claims more and shrinks when it gives money back;
-- `consumed` grows by the replica's settled cost in the same transaction that adds it to
-- `spent`. A lease past `expires_at_ms` holds nothing: a dead replica's claim lapses.
CREATE TABLE budget_leases (
    budget_id        TEXT   NOT NULL,
    window_start_ms  BIGINT NOT NULL,
    replica_id       TEXT   NOT NULL,
    granted_nanos    BIGINT NOT NULL,
    consumed_nanos   BIGINT NOT NULL DEFAULT 0,
    expires_at_ms    BIGINT NOT NULL,
    PRIMARY KEY (budget_id, window_start_ms, replica_id)
);

-- Requests and tokens per minute for a team (key_id NULL) or one key; enforced per replica.
CREATE TABLE rate_limits (
    id                  TEXT PRIMARY KEY,
    team_id             TEXT   NOT NULL REFERENCES teams (id),
    key_id              TEXT   NULL REFERENCES api_keys (id),
    requests_per_minute BIGINT NULL,
    tokens_per_minute   BIGINT NULL,
    updated_at_ms       BIGINT NOT NULL
);
CREATE UNIQUE INDEX rate_limits_scope_idx ON rate_limits (team_id, COALESCE(key_id, ''));
