-- The document list sorts by creation time.
CREATE INDEX documents_created_at_idx ON documents (created_at);
