-- Benchmark tenant set: deliberately tiny, so creating 10,000 tenants is
-- dominated by the tool's own overhead rather than by DDL.
CREATE TABLE items (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL
);
