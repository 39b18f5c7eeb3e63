-- Version moves (migrate-to), cut-overs and snapshots.

-- One row per (version, source schema, step) of a move: the checkpoints a
-- rerun resumes from. A data-move step's row commits in the same transaction
-- as the rows it moved; a copy's row commits with the rename of the copy.
CREATE TABLE move_steps (
    version        TEXT        NOT NULL,
    source_schema  TEXT        NOT NULL,
    -- create | copy | migrate | move NNNN | check | finish
    step           TEXT        NOT NULL,
    target_schema  TEXT        NOT NULL,
    -- running | done | failed
    state          TEXT        NOT NULL,
    run_id         BIGINT      REFERENCES runs (id) ON DELETE SET NULL,
    rows_read      BIGINT,
    rows_written   BIGINT,
    error          TEXT,
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at    TIMESTAMPTZ,
    duration_ms    BIGINT,
    PRIMARY KEY (version, source_schema, step)
);

-- Schemas a move created: what `migrate-to VERSION --abort` drops. Each row
-- commits with the creation (or the copy's rename) of its schema.
CREATE TABLE move_schemas (
    version       TEXT        NOT NULL,
    schema_name   TEXT        NOT NULL,
    source_schema TEXT        NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (version, schema_name)
);

-- Cut-overs: the renames that made a version live, so --revert undoes
-- exactly those. renames is a JSON array of [from, to] pairs in order.
CREATE TABLE cutovers (
    version     TEXT        PRIMARY KEY,
    -- live | reverted
    state       TEXT        NOT NULL,
    renames     JSONB       NOT NULL,
    cut_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    reverted_at TIMESTAMPTZ,
    run_id      BIGINT      REFERENCES runs (id) ON DELETE SET NULL
);

-- Snapshots: rollback points, one copy per schema under a dated name.
CREATE TABLE snapshots (
    id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- complete | partial | restored
    state      TEXT        NOT NULL DEFAULT 'partial',
    -- why it was taken, e.g. "schemas replaced by restoring snapshot 3"
    note       TEXT,
    run_id     BIGINT      REFERENCES runs (id) ON DELETE SET NULL
);

CREATE TABLE snapshot_schemas (
    snapshot_id BIGINT      NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    schema_name TEXT        NOT NULL,
    copy_name   TEXT        NOT NULL UNIQUE,
    rows        BIGINT,
    bytes       BIGINT,
    restored_at TIMESTAMPTZ,
    PRIMARY KEY (snapshot_id, schema_name)
);
