-- Usage is billed monthly; events older than 90 days are no longer needed.
DELETE FROM usage_events WHERE created_at < now() - interval '90 days';
