-- Exports moved to object storage.
DROP TABLE legacy_exports;
