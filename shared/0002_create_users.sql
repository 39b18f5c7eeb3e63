-- Users are global: one person can belong to several organizations
-- (see memberships). Tenant tables may point at users(id).

CREATE TABLE users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stored lower-cased, so the unique constraint is case-insensitive.
    email         text        NOT NULL UNIQUE
                  CONSTRAINT users_email_lower CHECK (email = lower(email))
                  CONSTRAINT users_email_shape CHECK (email ~ '^[^@\s]+@[^@\s]+$'),
    display_name  text,
    -- An argon2id/bcrypt hash; NULL for users who only sign in through SSO.
    password_hash text,
    is_superadmin boolean     NOT NULL DEFAULT false,
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);

COMMENT ON TABLE users IS 'Accounts of people; shared by every organization.';
