-- The tenant registry: the tenant source when no tenants.query or
-- tenants.pattern is configured.
CREATE TABLE tenants (
    schema_name TEXT        PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
