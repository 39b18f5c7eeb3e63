-- Every document gets a workflow status.
ALTER TABLE documents ADD COLUMN status text NOT NULL;
