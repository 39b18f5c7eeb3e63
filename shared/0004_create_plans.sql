-- Billing plans and their feature flags, seeded with the three plans the
-- product sells; organizations.plan now has to name one of them.

CREATE TABLE plans (
    code                 text PRIMARY KEY CHECK (code ~ '^[a-z][a-z0-9_]*$'),
    name                 text    NOT NULL,
    monthly_price_cents  integer NOT NULL DEFAULT 0 CHECK (monthly_price_cents >= 0),
    -- NULL means unlimited.
    max_pages_per_month  integer CHECK (max_pages_per_month > 0),
    max_workflows        integer CHECK (max_workflows > 0),
    features             jsonb   NOT NULL DEFAULT '{}'::jsonb
                         CHECK (jsonb_typeof(features) = 'object')
);

INSERT INTO plans (code, name, monthly_price_cents, max_pages_per_month, max_workflows, features) VALUES
    ('free',       'Free',          0,   500,    3, '{"ocr": true, "llm_extraction": false, "sso": false}'),
    ('pro',        'Pro',        4900, 20000,   50, '{"ocr": true, "llm_extraction": true,  "sso": false}'),
    ('enterprise', 'Enterprise',    0,  NULL, NULL, '{"ocr": true, "llm_extraction": true,  "sso": true}');

-- Organizations created before plans existed start on the free plan.
UPDATE organizations SET plan = 'free' WHERE plan IS NULL;

ALTER TABLE organizations
    ALTER COLUMN plan SET DEFAULT 'free',
    ALTER COLUMN plan SET NOT NULL,
    ADD CONSTRAINT organizations_plan_fkey FOREIGN KEY (plan) REFERENCES plans (code);

CREATE INDEX organizations_plan_idx ON organizations (plan);
