-- expect-rows: SELECT count(*) FROM {source_schema}.tags
-- Tags; their names stay unique within the tenant.
INSERT INTO {target_schema}.tags
       (tenant_id, id, name, color, created_at)
SELECT {tenant_id}, id, name, color, created_at
FROM   {source_schema}.tags;
