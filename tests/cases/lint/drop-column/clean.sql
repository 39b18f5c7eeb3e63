-- The status column replaced legacy_status. New rows no longer set it; the
-- column is dropped in a later release.
ALTER TABLE documents ALTER COLUMN legacy_status DROP NOT NULL;
