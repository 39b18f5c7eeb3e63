-- Organizations: the customers of the SaaS. Each organization owns exactly one
-- tenant schema, named in schema_name; tenantmig's demo tenant query reads
-- this column (SELECT schema_name FROM public.organizations ORDER BY id).
--
-- Runs once in the shared schema; names are unqualified on purpose (the tool
-- sets search_path to the shared schema).

CREATE TABLE organizations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL CHECK (length(btrim(name)) > 0),
    -- A plain, unquoted PostgreSQL identifier: lower case, at most 63 bytes,
    -- and never one of the system prefixes.
    schema_name text        NOT NULL UNIQUE
                CONSTRAINT organizations_schema_name_format
                CHECK (schema_name ~ '^[a-z_][a-z0-9_]{0,62}$'
                       AND schema_name !~ '^pg_'
                       AND schema_name NOT IN ('public', 'information_schema', 'tenantmig')),
    plan        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE organizations IS 'Customer organizations; one tenant schema each.';
COMMENT ON COLUMN organizations.schema_name IS 'Name of the tenant schema that holds this organization''s data.';
