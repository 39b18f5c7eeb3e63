-- expect-rows: SELECT count(*) FROM {source_schema}.workflow_workflow
-- copies: workflow_workflow -> workflow
-- The table is renamed: the final check counts workflow (the tenant's rows)
-- against workflow_workflow because of the line above.
INSERT INTO {target_schema}.workflow (tenant_id, id, name)
SELECT {tenant_id}, id, name
FROM   {source_schema}.workflow_workflow;
