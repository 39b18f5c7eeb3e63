-- Documents belong to an organization. Only new rows are checked here; the
-- next migration runs VALIDATE CONSTRAINT documents_organization_id_fkey.
ALTER TABLE documents
    ADD CONSTRAINT documents_organization_id_fkey
    FOREIGN KEY (organization_id) REFERENCES organizations (id) NOT VALID;
