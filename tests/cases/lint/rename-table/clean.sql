-- Organizations are called workspaces in the product now. The view answers
-- to the new name (simple views are updatable) while the application moves.
CREATE VIEW workspaces AS SELECT * FROM organizations;
