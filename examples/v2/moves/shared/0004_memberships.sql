-- expect-rows: SELECT count(*) FROM {source_schema}.memberships
-- Who belongs to which organization; needs organizations and users first.
INSERT INTO {target_schema}.memberships
       (organization_id, user_id, role, invited_by, created_at)
SELECT  organization_id, user_id, role, invited_by, created_at
FROM    {source_schema}.memberships;
