-- Undoes 0009_create_tags.up.sql: drops the link table first, then the tags.
-- Their indexes, constraints and identity sequences go with them.

DROP TABLE workflow_tags;
DROP TABLE tags;
