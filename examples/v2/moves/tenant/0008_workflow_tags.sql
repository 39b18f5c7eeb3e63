-- expect-rows: SELECT count(*) FROM {source_schema}.workflow_tags
-- Which workflow has which tag; last, as it references workflows (0001) and
-- tags (0007). The table has no id of its own.
INSERT INTO {target_schema}.workflow_tags
       (tenant_id, workflow_id, tag_id, created_at)
SELECT {tenant_id}, workflow_id, tag_id, created_at
FROM   {source_schema}.workflow_tags;
