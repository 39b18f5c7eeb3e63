-- Exports moved to object storage. The application no longer uses this
-- table; it is dropped in a later release.
COMMENT ON TABLE legacy_exports IS 'unused since 2.14; dropped in a later release';
