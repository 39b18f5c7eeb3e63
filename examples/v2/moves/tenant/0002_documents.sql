-- expect-rows: SELECT count(*) FROM {source_schema}.documents
-- Documents; (tenant_id, workflow_id) references the workflows copied by 0001.
INSERT INTO {target_schema}.documents
       (tenant_id, id, workflow_id, filename, mime_type, size_bytes, storage_key, sha256, status,
        created_at, updated_at, page_count)
SELECT {tenant_id}, id, workflow_id, filename, mime_type, size_bytes, storage_key, sha256, status,
        created_at, updated_at, page_count
FROM   {source_schema}.documents;
