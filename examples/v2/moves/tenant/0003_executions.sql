-- expect-rows: SELECT count(*) FROM {source_schema}.executions
-- Executions. duration_ms is a generated column: it cannot be inserted, so it
-- is left out and PostgreSQL computes it again from started_at and
-- finished_at, with the same expression as v1.
INSERT INTO {target_schema}.executions
       (tenant_id, id, workflow_id, document_id, status, attempt, error, result,
        queued_at, started_at, finished_at)
SELECT {tenant_id}, id, workflow_id, document_id, status, attempt, error, result,
        queued_at, started_at, finished_at
FROM   {source_schema}.executions;
