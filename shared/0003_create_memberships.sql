-- Which user belongs to which organization, and with what role.

CREATE TABLE memberships (
    organization_id bigint      NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id         bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text        NOT NULL DEFAULT 'member'
                    CONSTRAINT memberships_role_valid
                    CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    invited_by      bigint      REFERENCES users (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, user_id)
);

-- The primary key serves lookups by organization; this one serves
-- "which organizations can this user see" at sign-in.
CREATE INDEX memberships_user_id_idx ON memberships (user_id);
