-- no-transaction
-- The dashboard filters executions by status.
CREATE INDEX CONCURRENTLY executions_status_idx ON executions (status);
