-- Deterministic data for ONE v1 tenant schema of the example app (shared/ +
-- tenant/ through 0009), for the version-move tests and
-- scripts/check-example-v2.sh. Runs once, on a freshly migrated schema, with
-- search_path "<tenant>", public. The caller sets the size first:
--
--   SET tenantmig_seed.rows = '20';   -- R, the number of workflows
--
-- Rows written: R workflows, 3R documents, 6R document_pages, 3R executions,
-- 2 api_keys, 3R usage_events, 3 tags, R workflow_tags.
--
-- Rows that reference others find them through joins (never by assuming the
-- ids start at 1), and every insert is ordered, so the identity columns hand
-- out the same ids on every run. Times are fixed, not now().

-- Workflows: unique names and slugs; created_by cycles through the shared
-- users when there are any (users.id, no foreign key in v1).
INSERT INTO workflows (name, description, config, is_active, created_by, created_at, updated_at, slug)
SELECT 'Workflow ' || g,
       CASE WHEN g % 4 <> 0 THEN 'Extracts the fields of batch ' || g END,
       jsonb_build_object('steps', jsonb_build_array('ocr', CASE WHEN g % 2 = 0 THEN 'classify' ELSE 'summarise' END),
                          'model', 'm-' || (g % 3)),
       g % 5 <> 0,
       (SELECT u.id FROM users AS u ORDER BY u.id
        OFFSET g % greatest((SELECT count(*) FROM users), 1) LIMIT 1),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' + interval '5 minutes',
       'workflow-' || g
FROM   generate_series(1, current_setting('tenantmig_seed.rows')::int) AS g
ORDER  BY g;

-- Three documents per workflow; storage keys unique (the schema name is part
-- of them), two of three with a sha256 and page_count 2, the third with
-- neither (as if never backfilled: it still gets its two pages below).
INSERT INTO documents (workflow_id, filename, mime_type, size_bytes, storage_key, sha256, status,
                       created_at, updated_at, page_count)
SELECT w.id,
       w.slug || '-' || d || '.pdf',
       CASE WHEN d = 3 THEN 'image/png' ELSE 'application/pdf' END,
       1000 * w.id + d,
       current_schema() || '/' || w.slug || '/' || d,
       CASE WHEN d <> 3 THEN sha256(convert_to(current_schema() || '/' || w.slug || '/' || d, 'UTF8')) END,
       (ARRAY['uploaded', 'processing', 'processed', 'failed'])[1 + (w.id + d) % 4],
       w.created_at + d * interval '1 minute',
       w.created_at + d * interval '2 minutes',
       CASE WHEN d <> 3 THEN 2 ELSE 0 END
FROM   workflows AS w
CROSS  JOIN generate_series(1, 3) AS d
ORDER  BY w.id, d;

-- Two pages per document.
INSERT INTO document_pages (document_id, page_number, width_px, height_px, text_content, layout,
                            ocr_confidence, created_at)
SELECT doc.id,
       p,
       1240,
       CASE WHEN p = 1 THEN 1754 ELSE 1700 END,
       'Page ' || p || ' of ' || doc.filename,
       CASE WHEN p = 1 THEN jsonb_build_object('blocks', jsonb_build_array(jsonb_build_object('x', 10, 'y', 20, 'w', 300, 'h', 40))) END,
       CASE WHEN doc.id % 7 <> 0 THEN (0.5 + (doc.id % 50) / 100.0)::real END,
       doc.created_at + p * interval '10 seconds'
FROM   documents AS doc
CROSS  JOIN generate_series(1, 2) AS p
ORDER  BY doc.id, p;

-- One execution per document, in every status. queued: no timings;
-- running: started; succeeded, failed: started and finished (failed with an
-- error, the only status allowed one); cancelled: finished only.
INSERT INTO executions (workflow_id, document_id, status, attempt, error, result,
                        queued_at, started_at, finished_at)
SELECT doc.workflow_id,
       doc.id,
       s.status,
       CASE WHEN s.status = 'failed' THEN 2 ELSE 1 END,
       CASE WHEN s.status = 'failed' THEN 'OCR engine timed out on ' || doc.filename END,
       CASE WHEN s.status = 'succeeded' THEN jsonb_build_object('fields', doc.id % 11, 'pages', doc.page_count) END,
       doc.created_at + interval '30 seconds',
       CASE WHEN s.status IN ('running', 'succeeded', 'failed')
            THEN doc.created_at + interval '40 seconds' END,
       CASE WHEN s.status IN ('succeeded', 'failed')
            THEN doc.created_at + interval '40 seconds' + (doc.id % 90) * interval '1.5 seconds'
            WHEN s.status = 'cancelled'
            THEN doc.created_at + interval '35 seconds' END
FROM   documents AS doc
CROSS  JOIN LATERAL (SELECT (ARRAY['queued', 'running', 'succeeded', 'failed', 'cancelled'])[1 + doc.id % 5] AS status) AS s
ORDER  BY doc.id;

-- Two API keys; the hash includes the schema name, so it is unique across
-- tenants too (as v2 requires). The second key is revoked.
INSERT INTO api_keys (name, key_prefix, key_hash, scopes, created_at, last_used_at, expires_at, revoked_at)
SELECT 'key ' || k,
       substr(md5(current_schema() || ':prefix:' || k), 1, 8),
       sha256(convert_to(current_schema() || ':api-key:' || k, 'UTF8')),
       CASE WHEN k = 1 THEN ARRAY['documents:read', 'documents:write'] ELSE ARRAY['documents:read'] END,
       timestamptz '2024-01-01 00:00:00+00' + k * interval '1 day',
       CASE WHEN k = 1 THEN timestamptz '2024-03-01 12:00:00+00' END,
       CASE WHEN k = 2 THEN timestamptz '2025-01-01 00:00:00+00' END,
       CASE WHEN k = 2 THEN timestamptz '2024-02-01 00:00:00+00' END
FROM   generate_series(1, 2) AS k
ORDER  BY k;

-- One usage event per execution: every third through the first key, every
-- third through the second, the rest from the UI (no key).
INSERT INTO usage_events (occurred_at, execution_id, api_key_id, kind, model, input_tokens,
                          output_tokens, pages, cost_usd)
SELECT e.queued_at,
       e.id,
       k.id,
       ev.kind,
       CASE WHEN ev.kind = 'llm' THEN 'm-' || (e.id % 3) END,
       CASE WHEN ev.kind = 'llm' THEN 100 * (e.id % 13) ELSE 0 END,
       CASE WHEN ev.kind = 'llm' THEN 10 * (e.id % 17) ELSE 0 END,
       CASE WHEN ev.kind = 'ocr' THEN 2 ELSE 0 END,
       round((e.id % 100) * 0.000137, 6)
FROM   executions AS e
CROSS  JOIN LATERAL (SELECT (ARRAY['ocr', 'llm', 'storage', 'export'])[1 + e.id % 4] AS kind) AS ev
LEFT   JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM api_keys) AS k
       ON k.n = 1 + e.id % 3
ORDER  BY e.id;

-- Three tags.
INSERT INTO tags (name, color, created_at)
SELECT t.name, t.color, timestamptz '2024-01-01 00:00:00+00' + t.n * interval '1 minute'
FROM   (VALUES (1, 'invoices', '#4f46e5'), (2, 'contracts', '#059669'), (3, 'urgent', '#dc2626'))
       AS t (n, name, color)
ORDER  BY t.n;

-- Each workflow gets one tag, round robin.
INSERT INTO workflow_tags (workflow_id, tag_id, created_at)
SELECT w.id, t.id, w.created_at + interval '1 minute'
FROM   (SELECT id, created_at, row_number() OVER (ORDER BY id) AS n FROM workflows) AS w
JOIN   (SELECT id, row_number() OVER (ORDER BY id) AS n, count(*) OVER () AS tags FROM tags) AS t
       ON t.n = 1 + (w.n - 1) % t.tags
ORDER  BY w.id;
