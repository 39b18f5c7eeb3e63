-- Executions: one run of a workflow over a document, with its status and
-- timings. Workers poll for queued executions.

CREATE TABLE executions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id bigint      NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    document_id bigint      REFERENCES documents (id) ON DELETE SET NULL,
    status      text        NOT NULL DEFAULT 'queued'
                CONSTRAINT executions_status_valid
                CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempt     smallint    NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    error       text,
    result      jsonb,
    queued_at   timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz,
    -- Derived by the server, never written by the application.
    duration_ms bigint GENERATED ALWAYS AS
                ((extract(epoch FROM (finished_at - started_at)) * 1000)::bigint) STORED,
    CONSTRAINT executions_timings_ordered
        CHECK (finished_at IS NULL OR started_at IS NULL OR finished_at >= started_at),
    CONSTRAINT executions_error_only_on_failure
        CHECK (error IS NULL OR status = 'failed')
);

CREATE INDEX executions_workflow_id_queued_at_idx ON executions (workflow_id, queued_at DESC);
CREATE INDEX executions_document_id_idx ON executions (document_id);
-- Small partial index for the worker queue: only unfinished executions.
CREATE INDEX executions_pending_idx ON executions (queued_at)
    WHERE status IN ('queued', 'running');
