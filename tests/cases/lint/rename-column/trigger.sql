-- A document's name is its title.
ALTER TABLE documents RENAME COLUMN name TO title;
