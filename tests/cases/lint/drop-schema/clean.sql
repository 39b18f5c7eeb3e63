-- The old imports schema is no longer used: it is dropped once, with
-- `tenantmig drop-schema legacy_imports --yes`, not from a tenant migration.
COMMENT ON TABLE documents IS 'imports moved out in 2.14';
