-- Metered usage, the source of billing: tokens, pages and their cost.
-- Append-only and mostly read by time range.

CREATE TABLE usage_events (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at   timestamptz   NOT NULL DEFAULT now(),
    execution_id  bigint        REFERENCES executions (id) ON DELETE SET NULL,
    api_key_id    bigint        REFERENCES api_keys (id) ON DELETE SET NULL,
    kind          text          NOT NULL
                  CONSTRAINT usage_events_kind_valid
                  CHECK (kind IN ('ocr', 'llm', 'storage', 'export')),
    model         text,
    input_tokens  integer       NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens integer       NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    pages         integer       NOT NULL DEFAULT 0 CHECK (pages >= 0),
    cost_usd      numeric(12,6) NOT NULL DEFAULT 0 CHECK (cost_usd >= 0)
);

-- Rows arrive in time order, so a BRIN index is tiny and good enough for
-- monthly billing scans.
CREATE INDEX usage_events_occurred_at_brin ON usage_events USING brin (occurred_at);
CREATE INDEX usage_events_execution_id_idx ON usage_events (execution_id);
