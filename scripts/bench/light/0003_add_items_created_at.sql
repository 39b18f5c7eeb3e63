-- A catalog-only column add (non-volatile default, no table rewrite), handy
-- for "one new migration over many up-to-date tenants" runs.
ALTER TABLE items ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();
