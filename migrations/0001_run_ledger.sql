-- The run ledger: one row per run, one per schema touched by a run.
CREATE TABLE runs (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command        TEXT        NOT NULL,
    args           JSONB       NOT NULL DEFAULT '[]',
    started_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at    TIMESTAMPTZ,
    -- running | succeeded | failed | stopped | interrupted
    outcome        TEXT        NOT NULL DEFAULT 'running',
    host           TEXT,
    pid            INTEGER,
    -- the ledger connection's backend: a running run whose backend is gone was killed
    backend_pid    INTEGER,
    tenants_total  INTEGER     NOT NULL DEFAULT 0,
    tenants_ok     INTEGER     NOT NULL DEFAULT 0,
    tenants_failed INTEGER     NOT NULL DEFAULT 0,
    tenants_skipped INTEGER    NOT NULL DEFAULT 0,
    message        TEXT
);

CREATE TABLE run_tenants (
    run_id           BIGINT      NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    schema_name      TEXT        NOT NULL,
    -- shared | tenant
    phase            TEXT        NOT NULL,
    -- running | succeeded | failed | refused | stopped | interrupted
    state            TEXT        NOT NULL,
    from_version     BIGINT,
    to_version       BIGINT,
    error            TEXT,
    failed_version   BIGINT,
    failed_statement TEXT,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    duration_ms      BIGINT,
    attempts         INTEGER     NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, schema_name)
);

CREATE INDEX run_tenants_schema_idx ON run_tenants (schema_name, run_id DESC);
