-- The old imports schema is no longer used.
DROP SCHEMA IF EXISTS legacy_imports CASCADE;
