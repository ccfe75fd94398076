-- SQLite dialect of migrations/postgres/0008_report_counts.sql; keep the two in step.
--
-- Reports show, beside each group's spend, the calls finance should look at twice: failed (a
-- status of 400 or more sent to the client, or a call that did not complete), charged at the
-- unpriced fallback (no price for the model), and unmetered (forwarded to an endpoint tollgate
-- cannot price). `ledger_daily` keeps the three counts so that a report served from it shows
-- them too; the writer adds to them in the transaction that inserts the rows, as to the others.
ALTER TABLE ledger_daily ADD COLUMN failed_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_daily ADD COLUMN unpriced_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE ledger_daily ADD COLUMN unmetered_requests BIGINT NOT NULL DEFAULT 0;

-- Counted from the rows the ledger holds, keyed as the writer keys the rollup: UTC day, team,
-- key, model (served, else requested, else '') and cost centre ('' for none). Rows retention has
-- already removed are not counted: their flags went with them. The day is the floor of the epoch
-- day (SQLite's `/` truncates towards zero), which is the writer's UTC day before 1970 too.
WITH g AS (
    SELECT (started_at_ms - ((started_at_ms % 86400000) + 86400000) % 86400000) / 86400000
               AS day_index,
           team_id, key_id, model_served_ref, model_requested_ref, cost_centre_ref,
           SUM(CASE WHEN status >= 400 OR outcome <> 0 THEN 1 ELSE 0 END) AS failed,
           SUM(unpriced) AS unpriced,
           SUM(unmetered) AS unmetered
    FROM ledger
    WHERE status >= 400 OR outcome <> 0 OR unpriced = 1 OR unmetered = 1
    GROUP BY 1, 2, 3, 4, 5, 6
), c AS (
    SELECT date(g.day_index * 86400, 'unixepoch') AS day,
           g.team_id, g.key_id, COALESCE(ms.name, mr.name, '') AS model,
           COALESCE(cc.name, '') AS cost_centre,
           SUM(g.failed) AS failed, SUM(g.unpriced) AS unpriced, SUM(g.unmetered) AS unmetered
    FROM g
    LEFT JOIN ledger_names ms ON ms.id = g.model_served_ref
    LEFT JOIN ledger_names mr ON mr.id = g.model_requested_ref
    LEFT JOIN ledger_names cc ON cc.id = g.cost_centre_ref
    GROUP BY 1, 2, 3, 4, 5
)
UPDATE ledger_daily
SET failed_requests = c.failed, unpriced_requests = c.unpriced, unmetered_requests = c.unmetered
FROM c
WHERE ledger_daily.day = c.day AND ledger_daily.team_id = c.team_id
  AND ledger_daily.key_id = c.key_id AND ledger_daily.model = c.model
  AND ledger_daily.cost_centre = c.cost_centre;
