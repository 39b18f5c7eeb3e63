-- no-transaction
CREATE INDEX CONCURRENTLY executions_started_at_idx ON executions (started_at);
