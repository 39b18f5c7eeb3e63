-- expect-rows: SELECT count(*) FROM {source_schema}.plans
-- The billing plans, first: organizations.plan references them. v2's
-- migrations create the table empty, so v1's rows (the three seeded plans
-- and any added since) are copied as they are.
INSERT INTO {target_schema}.plans
       (code, name, monthly_price_cents, max_pages_per_month, max_workflows, features)
SELECT  code, name, monthly_price_cents, max_pages_per_month, max_workflows, features
FROM    {source_schema}.plans;
