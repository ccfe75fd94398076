-- Codex hook events (`tollgate hook`, `POST /tollgate/v1/hooks`): what Codex reported about a
-- session beside what tollgate metered of it. One row per event, under the team of the key that
-- reported it (a key of another team writes into that team's session of the same id, never into
-- this one). `event` is Codex's hook event name in snake case (stop, post_tool_use, …);
-- `gate_passed` (0/1) and `gate_ms` are set when the hook ran a quality gate; `outcome` is set on
-- stop events (completed, failed or gate_failed). No prompt, tool input or tool output is kept.
CREATE TABLE session_events (
    id          BIGINT   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    team_id     TEXT     NOT NULL,
    session_id  TEXT     NOT NULL,
    turn_id     TEXT,
    event       TEXT     NOT NULL,
    tool_name   TEXT,
    gate_passed SMALLINT CHECK (gate_passed IN (0, 1)),
    gate_ms     BIGINT,
    task_type   TEXT,
    outcome     TEXT,
    at_ms       BIGINT   NOT NULL
);

-- The session view reads one session's events of one team.
CREATE INDEX session_events_session_idx ON session_events (team_id, session_id);
