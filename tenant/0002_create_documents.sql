-- Documents uploaded into a workflow. The bytes live in object storage;
-- this row holds the metadata and the processing state.

CREATE TABLE documents (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id bigint      NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    filename    text        NOT NULL,
    mime_type   text        NOT NULL DEFAULT 'application/octet-stream',
    size_bytes  bigint      NOT NULL CHECK (size_bytes >= 0),
    -- Key of the object in the storage bucket, unique per tenant.
    storage_key text        NOT NULL UNIQUE,
    sha256      bytea       CHECK (octet_length(sha256) = 32),
    status      text        NOT NULL DEFAULT 'uploaded'
                CONSTRAINT documents_status_valid
                CHECK (status IN ('uploaded', 'processing', 'processed', 'failed')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX documents_workflow_id_idx ON documents (workflow_id);
-- Finds duplicate uploads quickly.
CREATE INDEX documents_sha256_idx ON documents (sha256) WHERE sha256 IS NOT NULL;
