-- Team labels (a JSON object of strings, for finance's own grouping) and the admin audit log.
ALTER TABLE teams ADD COLUMN labels TEXT NULL;

-- Every change made through the admin API: who (the admin token), what (method, path, target),
-- when, and the resource before and after (JSON; NULL when it did not exist).
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    actor_id    TEXT   NOT NULL,
    actor_name  TEXT   NOT NULL,
    actor_role  TEXT   NOT NULL,
    action      TEXT   NOT NULL,
    target      TEXT   NOT NULL,
    before_json TEXT   NULL,
    after_json  TEXT   NULL
);
CREATE INDEX audit_log_at_idx ON audit_log (at_ms, id);
