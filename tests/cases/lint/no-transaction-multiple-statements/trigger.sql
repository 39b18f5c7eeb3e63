-- no-transaction
CREATE INDEX CONCURRENTLY executions_started_at_idx ON executions (started_at);
CREATE INDEX CONCURRENTLY executions_document_id_idx ON executions (document_id);
