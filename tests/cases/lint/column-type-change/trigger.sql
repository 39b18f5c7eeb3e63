-- Long-running executions overflow an integer.
ALTER TABLE executions ALTER COLUMN duration_ms TYPE bigint;
