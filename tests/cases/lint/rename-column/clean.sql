-- A document's name is its title. The application writes both columns and
-- moves its reads to title; name is dropped in a later release.
ALTER TABLE documents ADD COLUMN title text;
UPDATE documents SET title = name WHERE title IS NULL;
