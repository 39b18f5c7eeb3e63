-- Free-form tags that users put on workflows (reversible: see the matching
-- 0009_create_tags.down.sql).

CREATE TABLE tags (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,31}$'),
    -- A CSS colour for the UI, e.g. #4f46e5.
    color      text        NOT NULL DEFAULT '#6b7280' CHECK (color ~ '^#[0-9a-f]{6}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tags_name_key UNIQUE (name)
);

CREATE TABLE workflow_tags (
    workflow_id bigint      NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    tag_id      bigint      NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workflow_id, tag_id)
);

-- The primary key serves "tags of a workflow"; this serves "workflows with a tag".
CREATE INDEX workflow_tags_tag_id_idx ON workflow_tags (tag_id);
