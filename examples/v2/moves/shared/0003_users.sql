-- expect-rows: SELECT count(*) FROM {source_schema}.users
-- The users, with their v1 ids (memberships and workflows.created_by hold
-- them).
INSERT INTO {target_schema}.users
       (id, email, display_name, password_hash, is_superadmin, last_login_at, created_at, disabled_at)
SELECT  id, email, display_name, password_hash, is_superadmin, last_login_at, created_at, disabled_at
FROM    {source_schema}.users;
