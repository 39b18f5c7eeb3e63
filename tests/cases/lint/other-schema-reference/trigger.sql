-- Record that the tenant was migrated.
INSERT INTO audit.events (kind) VALUES ('tenant migrated');
