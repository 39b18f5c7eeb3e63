-- Documents belong to an organization.
ALTER TABLE documents
    ADD CONSTRAINT documents_organization_id_fkey
    FOREIGN KEY (organization_id) REFERENCES organizations (id);
