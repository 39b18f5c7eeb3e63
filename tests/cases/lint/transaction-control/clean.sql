-- Runs in one transaction with its history row.
ALTER TABLE documents ADD COLUMN summary text;
