BEGIN;
ALTER TABLE documents ADD COLUMN summary text;
COMMIT;
