-- Every document gets a workflow status; existing ones start as drafts.
ALTER TABLE documents ADD COLUMN status text NOT NULL DEFAULT 'draft';
