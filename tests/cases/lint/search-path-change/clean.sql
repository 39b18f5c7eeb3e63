-- Unqualified: created in each tenant's own schema (tenantmig sets
-- search_path to the tenant's schema, then the shared schema).
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, kind text);
