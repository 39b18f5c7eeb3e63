-- The indexes of the v1 tenant tables (other than those behind primary key
-- and unique constraints, in 0002_tenant_tables.sql). An index that serves
-- a lookup within one tenant gets tenant_id as its leading column; the
-- (tenant_id, id) primary keys also serve the tenant_id foreign keys to
-- organizations (deleting an organization).
--
-- Three stay without tenant_id on purpose, because the query they serve
-- is no longer per tenant once the tenants share one table:
--   - executions_pending_idx: workers poll ONE queue for all tenants now
--     (in v1 they had to visit every tenant schema);
--   - api_keys_live_prefix_idx: authentication finds the key, and with it
--     the tenant, from the key's prefix (the hash is unique across tenants);
--   - usage_events_occurred_at_brin: billing scans by time range; a BRIN
--     index only pays off on a column that follows the physical row order,
--     which tenant_id does not.
--
-- Plain CREATE INDEX: the tables are new and empty when this file runs.

-- Per-tenant, case-insensitive unique workflow names.
CREATE UNIQUE INDEX workflows_name_key ON workflows (tenant_id, lower(name));

CREATE INDEX documents_workflow_id_idx ON documents (tenant_id, workflow_id);
-- Finds duplicate uploads (within the tenant) quickly.
CREATE INDEX documents_sha256_idx ON documents (tenant_id, sha256) WHERE sha256 IS NOT NULL;
-- The document list is sorted by upload time.
CREATE INDEX documents_created_at_idx ON documents (tenant_id, created_at);

CREATE INDEX executions_workflow_id_queued_at_idx ON executions (tenant_id, workflow_id, queued_at DESC);
CREATE INDEX executions_document_id_idx ON executions (tenant_id, document_id);
-- Small partial index for the worker queue: only unfinished executions.
CREATE INDEX executions_pending_idx ON executions (queued_at)
    WHERE status IN ('queued', 'running');

-- Authentication looks keys up by prefix, and only live keys matter.
CREATE INDEX api_keys_live_prefix_idx ON api_keys (key_prefix) WHERE revoked_at IS NULL;

-- Rows arrive in time order, so a BRIN index is tiny and good enough for
-- monthly billing scans.
CREATE INDEX usage_events_occurred_at_brin ON usage_events USING brin (occurred_at);
CREATE INDEX usage_events_execution_id_idx ON usage_events (tenant_id, execution_id);

-- The primary key serves "tags of a workflow"; this serves "workflows with a tag".
CREATE INDEX workflow_tags_tag_id_idx ON workflow_tags (tenant_id, tag_id);
