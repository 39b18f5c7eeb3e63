-- One row per page of a processed document: the OCR text and its layout.

CREATE TABLE document_pages (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id    bigint  NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    page_number    integer NOT NULL CHECK (page_number >= 1),
    width_px       integer CHECK (width_px > 0),
    height_px      integer CHECK (height_px > 0),
    text_content   text,
    -- Bounding boxes of words and blocks, as produced by the OCR engine.
    layout         jsonb,
    ocr_confidence real    CHECK (ocr_confidence BETWEEN 0 AND 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT document_pages_document_page_key UNIQUE (document_id, page_number)
);
