-- Sessions belong to a team. A session id is chosen by the client, so two teams that send the
-- same id have two sessions: `sessions` and `session_tools` are now keyed by (team, session id).
-- They were keyed by session id alone, with the team that first used the id and the totals of
-- every team's calls under it; here they are rebuilt per (team, session id) from the ledger.
-- What the old rollup counted beyond the ledger (rows retention has since removed) stays with the
-- team that first used the session, as the old row said.

CREATE TABLE sessions_by_team (
    team_id             TEXT   NOT NULL,
    session_id          TEXT   NOT NULL,
    first_seen_ms       BIGINT NOT NULL,
    last_seen_ms        BIGINT NOT NULL,
    requests            BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    reasoning_tokens    BIGINT NOT NULL,
    cost_nanos          BIGINT NOT NULL,
    CONSTRAINT sessions_by_team_pkey PRIMARY KEY (team_id, session_id)
);

CREATE TABLE session_tools_by_team (
    team_id    TEXT   NOT NULL,
    session_id TEXT   NOT NULL,
    tool       TEXT   NOT NULL,
    calls      BIGINT NOT NULL,
    CONSTRAINT session_tools_by_team_pkey PRIMARY KEY (team_id, session_id, tool)
);

INSERT INTO sessions_by_team (team_id, session_id, first_seen_ms, last_seen_ms, requests,
    input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos)
SELECT team_id, session_id, MIN(started_at_ms), MAX(finished_at_ms), COUNT(*),
       SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens), SUM(reasoning_tokens),
       SUM(cost_nanos)
FROM ledger WHERE session_id IS NOT NULL
GROUP BY team_id, session_id;

-- The remainder: the old row minus every team's ledger rows of that id. Retention removes the
-- oldest rows first, so the remainder ended before the first surviving row started.
WITH l AS (
    SELECT session_id, COUNT(*) AS requests, SUM(input_tokens) AS input_tokens,
           SUM(cached_input_tokens) AS cached_input_tokens, SUM(output_tokens) AS output_tokens,
           SUM(reasoning_tokens) AS reasoning_tokens, SUM(cost_nanos) AS cost_nanos,
           MIN(started_at_ms) AS first_ms
    FROM ledger WHERE session_id IS NOT NULL GROUP BY session_id
)
INSERT INTO sessions_by_team (team_id, session_id, first_seen_ms, last_seen_ms, requests,
    input_tokens, cached_input_tokens, output_tokens, reasoning_tokens, cost_nanos)
SELECT s.team_id, s.session_id, s.first_seen_ms,
       CASE WHEN l.first_ms IS NULL THEN s.last_seen_ms
            ELSE MAX(s.first_seen_ms, MIN(s.last_seen_ms, l.first_ms)) END,
       s.requests - COALESCE(l.requests, 0),
       s.input_tokens - COALESCE(l.input_tokens, 0),
       s.cached_input_tokens - COALESCE(l.cached_input_tokens, 0),
       s.output_tokens - COALESCE(l.output_tokens, 0),
       s.reasoning_tokens - COALESCE(l.reasoning_tokens, 0),
       s.cost_nanos - COALESCE(l.cost_nanos, 0)
FROM sessions s LEFT JOIN l ON l.session_id = s.session_id
WHERE s.requests > COALESCE(l.requests, 0)
ON CONFLICT (team_id, session_id) DO UPDATE SET
    first_seen_ms = MIN(sessions_by_team.first_seen_ms, excluded.first_seen_ms),
    last_seen_ms = MAX(sessions_by_team.last_seen_ms, excluded.last_seen_ms),
    requests = sessions_by_team.requests + excluded.requests,
    input_tokens = sessions_by_team.input_tokens + excluded.input_tokens,
    cached_input_tokens = sessions_by_team.cached_input_tokens + excluded.cached_input_tokens,
    output_tokens = sessions_by_team.output_tokens + excluded.output_tokens,
    reasoning_tokens = sessions_by_team.reasoning_tokens + excluded.reasoning_tokens,
    cost_nanos = sessions_by_team.cost_nanos + excluded.cost_nanos;

-- Tool calls from the ledger's `name=count,…` text; `%`, `,` and `=` in a name are escaped as
-- `%25`, `%2C` and `%3D`, so each entry has exactly one `=`. Split on `,` recursively.
WITH RECURSIVE split (team_id, session_id, entry, rest) AS (
    SELECT team_id, session_id, '', tool_calls || ','
    FROM ledger WHERE session_id IS NOT NULL AND tool_calls IS NOT NULL
    UNION ALL
    SELECT team_id, session_id, substr(rest, 1, instr(rest, ',') - 1),
           substr(rest, instr(rest, ',') + 1)
    FROM split WHERE rest <> ''
), entries AS (
    SELECT team_id, session_id, substr(entry, 1, instr(entry, '=') - 1) AS name,
           substr(entry, instr(entry, '=') + 1) AS count
    FROM split WHERE instr(entry, '=') > 0
)
INSERT INTO session_tools_by_team (team_id, session_id, tool, calls)
SELECT team_id, session_id,
       replace(replace(replace(name, '%2C', ','), '%3D', '='), '%25', '%'),
       SUM(CAST(count AS INTEGER))
FROM entries WHERE count <> '' AND count NOT GLOB '*[^0-9]*'
GROUP BY 1, 2, 3;

WITH t AS (
    SELECT session_id, tool, SUM(calls) AS calls FROM session_tools_by_team
    GROUP BY session_id, tool
)
INSERT INTO session_tools_by_team (team_id, session_id, tool, calls)
SELECT s.team_id, o.session_id, o.tool, o.calls - COALESCE(t.calls, 0)
FROM session_tools o
JOIN sessions s ON s.session_id = o.session_id
LEFT JOIN t ON t.session_id = o.session_id AND t.tool = o.tool
WHERE o.calls > COALESCE(t.calls, 0)
ON CONFLICT (team_id, session_id, tool) DO UPDATE SET
    calls = session_tools_by_team.calls + excluded.calls;

DROP TABLE session_tools;
DROP TABLE sessions;
ALTER TABLE sessions_by_team RENAME TO sessions;
ALTER TABLE session_tools_by_team RENAME TO session_tools;
CREATE INDEX sessions_team_last_seen_idx ON sessions (team_id, last_seen_ms);
-- `GET /admin/v1/sessions/{id}` without a team looks up which teams have that id.
CREATE INDEX sessions_session_idx ON sessions (session_id);
