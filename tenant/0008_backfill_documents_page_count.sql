-- Denormalise the number of pages onto documents, so listings do not count
-- document_pages every time. Add the column with a constant default (a
-- catalog-only change since PostgreSQL 11), then backfill existing rows.

ALTER TABLE documents
    ADD COLUMN page_count integer NOT NULL DEFAULT 0
        CONSTRAINT documents_page_count_nonnegative CHECK (page_count >= 0);

UPDATE documents AS d
SET    page_count = p.pages
FROM  (SELECT document_id, count(*)::integer AS pages
       FROM   document_pages
       GROUP  BY document_id) AS p
WHERE  p.document_id = d.id
AND    d.page_count IS DISTINCT FROM p.pages;

-- Same idea for workflows: a URL-friendly slug, derived from the name for
-- existing rows, then made mandatory and unique.
ALTER TABLE workflows ADD COLUMN slug text;

UPDATE workflows
SET    slug = coalesce(nullif(btrim(regexp_replace(lower(name), '[^a-z0-9]+', '-', 'g'), '-'), ''), 'workflow')
              || '-' || id
WHERE  slug IS NULL;

ALTER TABLE workflows
    ALTER COLUMN slug SET NOT NULL,
    ADD CONSTRAINT workflows_slug_key UNIQUE (slug),
    ADD CONSTRAINT workflows_slug_format CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$');
