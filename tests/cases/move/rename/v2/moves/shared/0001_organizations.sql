-- expect-rows: SELECT count(*) FROM {source_schema}.organizations
INSERT INTO {target_schema}.organizations (id, schema_name)
SELECT id, schema_name FROM {source_schema}.organizations;
