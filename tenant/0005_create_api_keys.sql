-- API keys for programmatic access. Only a SHA-256 hash of the secret is
-- stored; the short prefix is shown in the UI and used to find the row.

CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL,
    key_prefix   text        NOT NULL CHECK (key_prefix ~ '^[A-Za-z0-9]{8}$'),
    key_hash     bytea       NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    scopes       text[]      NOT NULL DEFAULT ARRAY['documents:read']::text[],
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at   timestamptz,
    revoked_at   timestamptz
);

-- Authentication looks keys up by prefix, and only live keys matter.
CREATE INDEX api_keys_live_prefix_idx ON api_keys (key_prefix) WHERE revoked_at IS NULL;
