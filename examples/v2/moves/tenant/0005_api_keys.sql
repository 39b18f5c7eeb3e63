-- expect-rows: SELECT count(*) FROM {source_schema}.api_keys
-- API keys. key_hash is unique across all tenants in v2: a hash that two v1
-- tenants share (only possible if a secret was reused) fails this step.
INSERT INTO {target_schema}.api_keys
       (tenant_id, id, name, key_prefix, key_hash, scopes, created_at, last_used_at, expires_at,
        revoked_at)
SELECT {tenant_id}, id, name, key_prefix, key_hash, scopes, created_at, last_used_at, expires_at,
        revoked_at
FROM   {source_schema}.api_keys;
