-- The status column replaced legacy_status.
ALTER TABLE documents DROP COLUMN legacy_status;
