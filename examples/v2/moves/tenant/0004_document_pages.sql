-- expect-rows: SELECT count(*) FROM {source_schema}.document_pages
-- The pages of the documents copied by 0002.
INSERT INTO {target_schema}.document_pages
       (tenant_id, id, document_id, page_number, width_px, height_px, text_content, layout,
        ocr_confidence, created_at)
SELECT {tenant_id}, id, document_id, page_number, width_px, height_px, text_content, layout,
        ocr_confidence, created_at
FROM   {source_schema}.document_pages;
