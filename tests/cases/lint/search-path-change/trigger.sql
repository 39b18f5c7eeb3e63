-- Audit tables in their own schema: everything after this line lands there,
-- once for all tenants, instead of in each tenant's schema.
SET search_path TO audit;
CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, kind text);
