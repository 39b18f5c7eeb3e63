-- Extra shared data for the version-move tests and
-- scripts/check-example-v2.sh: the v1 shared migrations already seed the
-- plans; this adds two users. Runs once, in a fresh v1 shared schema, with
-- search_path set to it (names unqualified, like the shared migrations).
INSERT INTO users (email, display_name, password_hash, is_superadmin, last_login_at, created_at)
VALUES ('alice@example.com', 'Alice Martin', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo', true,
        timestamptz '2024-03-01 09:00:00+00', timestamptz '2024-01-01 00:00:00+00'),
       ('bob@example.com', 'Bob Chen', NULL, false,
        NULL, timestamptz '2024-01-02 00:00:00+00');
