-- Workflows: a named document-processing pipeline (extract, classify,
-- summarise...) configured by the organization.
--
-- Runs in every tenant schema. search_path is "<tenant>", <shared schema>,
-- so unqualified names are created in the tenant schema.
--
-- created_by holds the id of a row of the shared users table, without a
-- foreign key on purpose: creating a foreign key to a shared table takes a
-- SHARE ROW EXCLUSIVE lock on it, which conflicts with itself, so every
-- tenant migrated at once would queue behind the others on that lock.

CREATE TABLE workflows (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL CHECK (length(btrim(name)) > 0),
    description text,
    -- Pipeline definition: steps, model settings, output schema.
    config      jsonb       NOT NULL DEFAULT '{}'::jsonb
                CHECK (jsonb_typeof(config) = 'object'),
    is_active   boolean     NOT NULL DEFAULT true,
    created_by  bigint,      -- users.id in the shared schema
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX workflows_name_key ON workflows (lower(name));
