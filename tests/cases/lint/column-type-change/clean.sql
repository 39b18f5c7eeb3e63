-- Long-running executions overflow an integer: a bigint column next to the
-- old one. It is backfilled in batches and takes over reads; the old column
-- is dropped in a later release.
ALTER TABLE executions ADD COLUMN duration_ms_big bigint;
