-- Requests tollgate refused (over a budget or a rate limit, a model not allowed or not priced,
-- a looping session), per UTC day, team name and reason. Refused calls cost nothing and have no
-- ledger row; each gateway adds its counts here every few seconds (an upsert that adds), so the
-- console's overview and GET /admin/v1/reports/refusals show every replica's refusals.
CREATE TABLE refusals_daily (
    day      TEXT    NOT NULL,
    team     TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    requests BIGINT  NOT NULL,
    PRIMARY KEY (day, team, reason)
);
