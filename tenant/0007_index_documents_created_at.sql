-- no-transaction
-- The document list is sorted by upload time. documents can be large in old
-- tenants, so the index is built without blocking writes, which PostgreSQL
-- only allows outside a transaction block. IF NOT EXISTS makes a retry after
-- an interrupted run harmless; an interrupted build can leave an INVALID
-- index behind, which has to be dropped (DROP INDEX CONCURRENTLY) by hand.
CREATE INDEX CONCURRENTLY IF NOT EXISTS documents_created_at_idx
    ON documents (created_at);
