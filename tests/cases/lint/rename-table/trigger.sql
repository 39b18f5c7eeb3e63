-- Organizations are called workspaces in the product now.
ALTER TABLE organizations RENAME TO workspaces;
