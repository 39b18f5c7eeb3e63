-- expect-rows: SELECT count(*) FROM {source_schema}.usage_events
-- Usage events; execution_id and api_key_id reference the rows copied by 0003
-- and 0005 (both may be NULL).
INSERT INTO {target_schema}.usage_events
       (tenant_id, id, occurred_at, execution_id, api_key_id, kind, model, input_tokens,
        output_tokens, pages, cost_usd)
SELECT {tenant_id}, id, occurred_at, execution_id, api_key_id, kind, model, input_tokens,
        output_tokens, pages, cost_usd
FROM   {source_schema}.usage_events;
