-- Batch API jobs tollgate follows until they settle.
--
-- A row is written before `POST /v1/batches` reaches the upstream, keyed by tollgate's request id
-- (state 0, an intent, batch_id NULL), and gets the upstream's batch id when the creation
-- answers (state 1, pending). If the process dies in between, the intent is reconciled on the
-- next start from the upstream's batch list (by input_file_id), or marked abandoned (state 3).
-- The follower settles a pending batch once it ends (state 2): one ledger row per request line
-- (request_id '<batch_id>:<custom_id>', endpoint code 17), then the batch's line count and total
-- cost here. reserved_nanos is what the creation reserved against budgets until the batch
-- settles; one gateway process at a time holds it (holder, its replica id, renewed on every poll
-- until held_until_ms), so N replicas do not hold a running batch's money N times, and another
-- process takes the hold over when its holder stops renewing it (a restart, a crash).
--
-- Endpoint codes in ledger.endpoint (no schema change; 0007 lists 0-8): 9 images.generations,
-- 10 images.edits, 11 images.variations, 12 audio.speech, 13 audio.transcriptions,
-- 14 audio.translations, 15 batches (the creation call, cost 0), 16 files (uploads, reads and
-- deletes of files, cost 0, not flagged), 17 batch (one settled request line of a batch).
CREATE TABLE batches (
    request_id     TEXT     NOT NULL PRIMARY KEY,
    batch_id       TEXT     UNIQUE,
    state          SMALLINT NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 3),
    team_id        TEXT     NOT NULL,
    key_id         TEXT     NOT NULL,
    cost_centre    TEXT,
    user_name      TEXT,
    session_id     TEXT,
    input_file_id  TEXT     NOT NULL,
    endpoint       TEXT     NOT NULL,
    reserved_nanos BIGINT   NOT NULL,
    created_at_ms  BIGINT   NOT NULL,
    settled_at_ms  BIGINT,
    lines          BIGINT,
    cost_nanos     BIGINT,
    holder         TEXT,
    held_until_ms  BIGINT
);

-- The follower's every poll: the unsettled ones.
CREATE INDEX batches_state ON batches (state);
