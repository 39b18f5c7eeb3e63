-- expect-rows: SELECT count(*) FROM {source_schema}.workflows
-- One tenant's workflows, tagged with the tenant's organization id. Ids are
-- copied as they are: v2's keys are (tenant_id, id), so they cannot clash with
-- another tenant's. The tenant data moves run in foreign key order: workflows,
-- documents, executions, document_pages, api_keys, usage_events, tags,
-- workflow_tags.
INSERT INTO {target_schema}.workflows
       (tenant_id, id, name, description, config, is_active, created_by, created_at, updated_at, slug)
SELECT {tenant_id}, id, name, description, config, is_active, created_by, created_at, updated_at, slug
FROM   {source_schema}.workflows;
