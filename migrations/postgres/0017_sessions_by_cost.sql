-- A team's most expensive sessions (the console's team page, GET /admin/v1/teams/{team}/sessions)
-- in index order: without it every session of the team is sorted for the top ten (45 ms at 200k
-- sessions on PostgreSQL; 0.07 ms with it).
CREATE INDEX sessions_team_cost_idx ON sessions (team_id, cost_nanos DESC, session_id);
