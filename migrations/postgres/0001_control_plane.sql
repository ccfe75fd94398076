-- Control plane: teams, their API keys, admin tokens, and the revision counter replicas poll.
--
-- Conventions shared with the SQLite dialect (sqlx's Any driver carries only integers, text and
-- bytes reliably across both): ids are TEXT, times are BIGINT epoch milliseconds, money is BIGINT
-- integer units, flags are BIGINT 0/1.

-- One row. Every change to `teams` or `api_keys` bumps it (UPDATE … RETURNING rev) first in its
-- transaction and stamps the changed row with the new value; the row lock held until commit makes
-- revisions commit in order, so `WHERE rev > $last` never misses a change.
CREATE TABLE revision (
    id  BIGINT PRIMARY KEY CHECK (id = 1),
    rev BIGINT NOT NULL
);
INSERT INTO revision (id, rev) VALUES (1, 0);

CREATE TABLE teams (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    cost_centre   TEXT,
    disabled      BIGINT NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    rev           BIGINT NOT NULL
);
CREATE INDEX teams_rev_idx ON teams (rev);

-- `id` is the key's public id (the middle of `tg-<id>-<secret>`); only the SHA-256 of the whole
-- token is kept, as hex.
CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    team_id       TEXT NOT NULL REFERENCES teams (id),
    name          TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT,
    rev           BIGINT NOT NULL
);
CREATE INDEX api_keys_rev_idx ON api_keys (rev);
CREATE INDEX api_keys_team_id_idx ON api_keys (team_id);

-- Tokens for /admin/v1, hashed like team keys. A team_admin token belongs to exactly one team;
-- the other roles belong to none.
CREATE TABLE admin_tokens (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'team_admin', 'finance')),
    team_id       TEXT REFERENCES teams (id),
    token_hash    TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    revoked_at_ms BIGINT,
    CHECK ((role = 'team_admin') = (team_id IS NOT NULL))
);
