-- Documents can be archived instead of deleted.
ALTER TABLE documents
    ADD COLUMN archived boolean NOT NULL DEFAULT false;
