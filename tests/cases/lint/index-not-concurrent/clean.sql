-- no-transaction
-- The document list sorts by creation time.
CREATE INDEX CONCURRENTLY documents_created_at_idx ON documents (created_at);
