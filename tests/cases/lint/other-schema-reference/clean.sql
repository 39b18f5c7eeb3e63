-- Record that the tenant was migrated, in the tenant's own events table.
INSERT INTO events (kind) VALUES ('tenant migrated');
