#!/usr/bin/env bash
# scripts/bench-copy.sh: how fast tenantmig copies a tenant schema, against
# what PostgreSQL alone does, and what a template saves in `tenant add`.
#
#   scripts/bench-copy.sh                     # ROWS=1000000, throwaway cluster
#   scripts/bench-copy.sh 200000              # ROWS=200000 (first argument, or ROWS=...)
#   ROWS=100000 RUNS=3 JOBS=4 scripts/bench-copy.sh
#   DATABASE_URL=postgres://postgres@localhost/postgres scripts/bench-copy.sh
#
# Builds the release binary (into CARGO_TARGET_DIR, default
# /tmp/tenantmig-bench-copy-target, so that it never waits on the lock of
# the work tree's target/), finds or starts PostgreSQL (scripts/pg.sh),
# creates the database tenantmig_bench_copy (dropped at the end unless
# KEEP=1; no other database is touched) and, in it:
#
#  setup: `tenantmig tenant add bench_src` (the example tenant set, tenant/,
#      replayed), then fills bench_src with about ROWS rows in all, with
#      generate_series in one psql transaction: a few workflows, tags,
#      workflow_tags and api_keys, 5% documents, 15% document_pages, 30%
#      executions and the rest usage_events, all consistent with the foreign
#      keys, NOT NULL and CHECK constraints of the example schema; then
#      VACUUM (FREEZE, ANALYZE), so that no step below pays for hint bits or
#      statistics. Prints the rows per table and the schema's size.
#  (a) `tenantmig copy-into-new-schema bench_src bench_a --jobs JOBS` (with
#      `--verify VERIFY` when VERIFY is set), wall clock and peak RSS; then
#      checks that every table of bench_a has as many rows as in bench_src
#      and that both schemas have the same columns, indexes and constraints.
#  (b) the raw baseline: one psql process, ONE transaction: CREATE SCHEMA
#      bench_b, then for each table of bench_src `CREATE TABLE bench_b.t
#      (LIKE bench_src.t INCLUDING ALL)` and `INSERT INTO bench_b.t (cols)
#      [OVERRIDING SYSTEM VALUE] SELECT cols FROM bench_src.t` (generated
#      columns left out of cols; OVERRIDING SYSTEM VALUE for tables with a
#      GENERATED ALWAYS identity). The SQL is generated from the catalog
#      beforehand; only running it is timed. LIKE copies no foreign keys and
#      the indexes exist before the rows go in.
#  (c) `pg_dump -n bench_src | sed 's/\bbench_src\b/bench_c/g' |
#      psql -q -v ON_ERROR_STOP=1` (no single transaction, as psql does by
#      default).
#  (d) `tenant add`, from a template against a replay: the empty, up-to-date
#      template bench_tmpl is made with `tenant add bench_tmpl` (not timed),
#      then `tenant add bench_d_tmpl --from-template bench_tmpl` and
#      `tenant add bench_d_replay` are timed, D_RUNS times each, in
#      alternating order, removing both (`tenant remove --yes`) between
#      repetitions. With LONG_EXTRA > 0 the same comparison runs again with a
#      longer history: a temporary copy of tenant/ plus LONG_EXTRA small
#      migrations (tables created, some dropped again, columns added and
#      dropped, indexes), passed to every command of that part with
#      --tenant-migrations.
#
# MB/s in the report is the size of bench_src with its indexes over the
# time taken. Steps (a) to (c) run RUNS times, dropping bench_a, bench_b and bench_c in
# between; each figure is the median of its repetitions. A CHECKPOINT
# precedes every timed step. Then it prints the figures, the ratios and the
# targets with PASS/MISS:
#   a/b <= 1.0; a/c < 0.5; (d) template / replay < 1.0 (each history).
#
# Variables:
#   ROWS=1000000  rows to put in bench_src, all tables together (at least
#                 1000; the first argument wins)
#   JOBS=2        tenantmig copy-into-new-schema --jobs
#   VERIFY=       when set (counts|checksums|none): --verify for (a);
#                 otherwise the tool's default
#   RUNS=1        repetitions of (a), (b) and (c); the median counts
#   D_RUNS=5      repetitions of each (d) command; the median counts
#   LONG_EXTRA=150 extra migrations for the long-history (d); 0 skips it
#   KEEP=1        keep the database tenantmig_bench_copy (with the last
#                 bench_a, bench_b, bench_c and the (d) tenants in it)
#   STRICT=1      exit 1 when a target is missed (default: exit 0 once
#                 measured)
#   CARGO_TARGET_DIR  where to build (default /tmp/tenantmig-bench-copy-target)
#   DATABASE_URL, TM_PG_KEEP, TM_PG_PORT: see scripts/pg.sh
#
# Any TENANTMIG_* variable of the calling environment is ignored (unset), so
# that only the settings of this script apply. Needs psql and pg_dump (of a
# version at least the server's), PostgreSQL 12 or later (the example schema
# has a generated column) and GNU time (/usr/bin/time, for the peak RSS).
# Exit: 0 measured (and, with STRICT=1, every target met); 1 a step failed,
# a check failed, or a target was missed (STRICT=1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_NAME=bench-copy # die's prefix (scripts/bench-lib.sh)
BENCH_MISS=MISS       # verdict of a target not met
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh
source scripts/bench-lib.sh

ROWS=${1:-${ROWS:-1000000}}
JOBS=${JOBS:-2}
VERIFY=${VERIFY:-}
RUNS=${RUNS:-1}
D_RUNS=${D_RUNS:-5}
LONG_EXTRA=${LONG_EXTRA:-150}
KEEP=${KEEP:-0}
STRICT=${STRICT:-0}
need_counts ROWS JOBS RUNS D_RUNS
[[ $LONG_EXTRA =~ ^[0-9]+$ ]] || die "LONG_EXTRA must be a non-negative integer, not '$LONG_EXTRA'"
((LONG_EXTRA <= 900)) || die "LONG_EXTRA is at most 900"
((ROWS >= 1000)) || die "ROWS must be at least 1000, not $ROWS"
((ROWS <= 2000000000)) || die "ROWS must be at most 2000000000"
case $VERIFY in
'' | counts | checksums | none) ;;
*) die "VERIFY must be counts, checksums or none, not '$VERIFY'" ;;
esac

DB=tenantmig_bench_copy
SRC=bench_src
TENANT_DIR=tenant
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/tenantmig-bench-copy-target}

unset_tenantmig_env
need_cargo_and_gnu_time
build_release "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
REVISION=$(git describe --always --dirty 2>/dev/null || echo '?')

tm_ensure_postgres
ADMIN_URL=$TM_ADMIN_URL
command -v pg_dump >/dev/null 2>&1 || die "pg_dump not found (install the PostgreSQL client, e.g. postgresql-client)"

work=$(mktemp -d /tmp/tenantmig-bench-copy.XXXXXX)
# The bench database joins BENCH_DBS (dropped on exit unless KEEP=1) once
# this script has created it.
trap bench_cleanup EXIT

# ---------------------------------------------------------------- helpers

# tool LABEL ARGS...: runs tenantmig (untimed setup step); dies with the
# command and its output when it fails.
tool() {
    local label=$1
    shift
    tool_cmd "$URL" -- "$@"
    if ! "${TOOL_CMD[@]}" >"$work/tool.log" 2>&1; then
        show_log "$work/tool.log"
        die "$label: tenantmig failed; reproduce with: $TOOL_SHOW"
    fi
}

# tool_timed LABEL LOG ARGS...: runs tenantmig under `timed`; dies with the
# command and its output when it fails. Sets T_SECS, T_KB and LAST_SHOW.
tool_timed() {
    local label=$1 log=$2
    shift 2
    tool_cmd "$URL" -- "$@"
    LAST_SHOW=$TOOL_SHOW
    timed "$log" "${TOOL_CMD[@]}"
    if [[ $T_RC != 0 ]]; then
        show_log "$log"
        die "$label: tenantmig exited $T_RC; reproduce with: $TOOL_SHOW"
    fi
}

# drop_schema NAME: drops a schema made by (a), (b) or (c), if it exists.
drop_schema() {
    psql "$URL" -Xq -v ON_ERROR_STOP=1 -v s="$1" >/dev/null <<'SQL'
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS :"s" CASCADE;
SQL
}

# table_counts SCHEMA: "table rows" per table of SCHEMA, by name (exact
# counts, one query).
table_counts() {
    psql "$URL" -XAtq -F ' ' -v ON_ERROR_STOP=1 -v s="$1" <<'SQL'
SELECT c.relname,
       (xpath('/row/n/text()',
              query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                           false, true, '')))[1]::text::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :'s' AND c.relkind IN ('r', 'p')
ORDER BY 1;
SQL
}

# shape SCHEMA: the columns, indexes and constraints of SCHEMA's tables, one
# a line, with the schema's own name replaced by <s>.
shape() {
    psql "$URL" -XAtq -v ON_ERROR_STOP=1 -v s="$1" <<'SQL'
SET search_path = pg_catalog;
WITH t AS (
    SELECT c.oid, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :'s' AND c.relkind IN ('r', 'p')
)
SELECT line FROM (
    SELECT format('col %s.%s %s notnull=%s identity=%s generated=%s default=%s',
                  t.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                  a.attidentity, a.attgenerated,
                  replace(coalesce(pg_get_expr(d.adbin, d.adrelid), ''), :'s' || '.', '<s>.')) AS line
    FROM t JOIN pg_attribute a ON a.attrelid = t.oid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('idx %s %s', t.relname,
                  replace(pg_get_indexdef(i.indexrelid), :'s' || '.', '<s>.'))
    FROM t JOIN pg_index i ON i.indrelid = t.oid
    UNION ALL
    SELECT format('con %s %s %s', t.relname, con.conname,
                  replace(pg_get_constraintdef(con.oid), :'s' || '.', '<s>.'))
    FROM t JOIN pg_constraint con ON con.conrelid = t.oid
) x
ORDER BY line;
SQL
}

# expect_same WANT GOT MESSAGE: when GOT is not WANT, shows their diff
# (WANT <, GOT >) and dies with MESSAGE.
expect_same() {
    if [[ $2 != "$1" ]]; then
        diff <(printf '%s\n' "$1") <(printf '%s\n' "$2") | sed 's/^/      /' >&2 || true
        die "$3"
    fi
}

# check_counts SCHEMA LABEL: SCHEMA has the tables of bench_src, each with as
# many rows.
check_counts() {
    local got
    got=$(table_counts "$1")
    expect_same "$SRC_COUNTS" "$got" "$2: the tables of $1 (>) do not have the rows of $SRC (<) (diff above: table rows)"
}

# check_shape SCHEMA LABEL [CMD]: SCHEMA has the columns, indexes and
# constraints of bench_src; the failure names CMD to reproduce it, if given.
check_shape() {
    local got
    got=$(shape "$1")
    expect_same "$SRC_SHAPE" "$got" \
        "$2 $1 (>) and $SRC (<) differ in columns, indexes or constraints (diff above)${3:+; reproduce with: $3}"
}

# ---------------------------------------------------------------- database

step "create database $DB"
URL=$(tm_create_db "$DB")
BENCH_DBS+=("$DB")
server_version=$(psql_q "$URL" 'SHOW server_version')
server_num=$(psql_q "$URL" 'SHOW server_version_num')
((server_num >= 120000)) || die "PostgreSQL $server_version is too old: the example schema needs 12 or later"
say "$(tm_mask_url "$URL"): PostgreSQL $server_version; shared_buffers=$(psql_q "$URL" 'SHOW shared_buffers'), fsync=$(psql_q "$URL" 'SHOW fsync'), synchronous_commit=$(psql_q "$URL" 'SHOW synchronous_commit')"
dump_version=$(pg_dump --version | sed -nE 's/^pg_dump \(PostgreSQL\) ([0-9][^ ]*).*/\1/p' | head -n 1)
dump_major=${dump_version%%.*}
say "pg_dump ${dump_version:-?}"
if [[ $dump_major =~ ^[0-9]+$ ]] && ((dump_major * 10000 < server_num / 10000 * 10000)); then
    die "pg_dump $dump_major is older than the server ($server_version); put a newer pg_dump first in PATH"
fi

# ---------------------------------------------------------------- setup

step "setup: tenantmig tenant add $SRC (the tenant set of $TENANT_DIR/, replayed)"
tool "setup" tenant add "$SRC"
sed 's/^/    /' "$work/tool.log" >&2

step "setup: fill $SRC with about $ROWS rows"
start=$(now)
psql "$URL" -Xq -v ON_ERROR_STOP=1 -v s="$SRC" -v rows="$ROWS" >/dev/null <<'SQL'
SET client_min_messages = warning;
SET search_path TO :"s";
-- The same data on every run.
SELECT setseed(0.42);

-- How many rows each table gets. usage_events takes what is left of ROWS.
SELECT greatest(10, :rows / 10000)     AS n_wf,
       40                              AS n_tags,
       greatest(5, :rows / 50000)      AS n_keys,
       greatest(10, :rows * 5 / 100)   AS n_docs,
       greatest(10, :rows * 30 / 100)  AS n_exec
\gset

BEGIN;

INSERT INTO workflows (id, name, description, config, is_active, created_by,
                       created_at, updated_at, slug)
OVERRIDING SYSTEM VALUE
SELECT g,
       'Workflow ' || g,
       CASE WHEN g % 3 <> 0 THEN 'Extracts the fields of incoming invoices, batch ' || g END,
       jsonb_build_object('steps', jsonb_build_array('ocr', 'classify', 'extract'),
                          'model', 'model-' || (g % 4),
                          'temperature', 0.2,
                          'output', jsonb_build_object('total', 'number', 'currency', 'string')),
       g % 10 <> 0,
       g % 50 + 1,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour',
       timestamptz '2024-06-01 00:00:00+00' + g * interval '1 hour',
       'workflow-' || g
FROM generate_series(1, :n_wf) AS g;

INSERT INTO tags (id, name, color, created_at)
OVERRIDING SYSTEM VALUE
SELECT g,
       'tag-' || g,
       '#' || lpad(to_hex((g::bigint * 2654435761) % 16777216), 6, '0'),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 day'
FROM generate_series(1, :n_tags) AS g;

-- 1 to 4 tags per workflow; k * 13 mod 40 differs for k = 1..4.
INSERT INTO workflow_tags (workflow_id, tag_id, created_at)
SELECT w, (w * 7 + k * 13) % :n_tags + 1,
       timestamptz '2024-02-01 00:00:00+00' + w * interval '1 hour' + k * interval '1 minute'
FROM generate_series(1, :n_wf) AS w, generate_series(1, 1 + w % 4) AS k;

INSERT INTO api_keys (id, name, key_prefix, key_hash, scopes, created_at,
                      last_used_at, expires_at, revoked_at)
OVERRIDING SYSTEM VALUE
SELECT g,
       'key ' || g,
       substr(md5('prefix' || g), 1, 8),
       sha256(convert_to('secret-' || g, 'UTF8')),
       CASE WHEN g % 2 = 0 THEN ARRAY['documents:read', 'documents:write']
            ELSE ARRAY['documents:read'] END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 day',
       timestamptz '2024-09-01 00:00:00+00' + g * interval '1 hour',
       CASE WHEN g % 4 = 0 THEN timestamptz '2026-01-01 00:00:00+00' END,
       CASE WHEN g % 7 = 0 THEN timestamptz '2024-10-01 00:00:00+00' END
FROM generate_series(1, :n_keys) AS g;

-- page_count matches the document_pages rows inserted below (1 + g % 5).
INSERT INTO documents (id, workflow_id, filename, mime_type, size_bytes,
                       storage_key, sha256, status, created_at, updated_at, page_count)
OVERRIDING SYSTEM VALUE
SELECT g,
       g % :n_wf + 1,
       'scan-' || g || CASE WHEN g % 4 = 0 THEN '.png' ELSE '.pdf' END,
       CASE WHEN g % 4 = 0 THEN 'image/png' ELSE 'application/pdf' END,
       (20000 + random() * 5000000)::bigint,
       'tenants/bench/docs/' || g || '/' || md5('doc' || g),
       CASE WHEN g % 20 <> 0 THEN sha256(convert_to('doc-bytes-' || g, 'UTF8')) END,
       CASE WHEN g % 20 = 0 THEN 'failed'
            WHEN g % 50 = 1 THEN 'processing'
            WHEN g % 97 = 0 THEN 'uploaded'
            ELSE 'processed' END,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds',
       timestamptz '2024-01-01 00:05:00+00' + g * interval '30 seconds',
       1 + g % 5
FROM generate_series(1, :n_docs) AS g;

INSERT INTO document_pages (document_id, page_number, width_px, height_px,
                            text_content, layout, ocr_confidence, created_at)
SELECT d, p, 2480, 3508,
       'INVOICE ' || d || ' page ' || p || E'\n'
           || repeat(md5(d || '/' || p) || ' lorem ipsum dolor sit amet ', 6),
       jsonb_build_object('blocks', jsonb_build_array(
           jsonb_build_object('x', 120, 'y', 200 + p, 'w', 2200, 'h', 90, 'kind', 'title'),
           jsonb_build_object('x', 120, 'y', 400, 'w', 2200, 'h', (random() * 2500)::int, 'kind', 'body'))),
       (0.5 + random() / 2)::real,
       timestamptz '2024-01-01 00:10:00+00' + d * interval '30 seconds'
FROM generate_series(1, :n_docs) AS d, generate_series(1, 1 + d % 5) AS p;

INSERT INTO executions (id, workflow_id, document_id, status, attempt, error,
                        result, queued_at, started_at, finished_at)
OVERRIDING SYSTEM VALUE
SELECT g, workflow_id, document_id, status,
       CASE WHEN g % 17 = 0 THEN 2 ELSE 1 END,
       CASE WHEN status = 'failed' THEN 'extraction failed: no total found on page ' || (g % 5 + 1) END,
       CASE WHEN status = 'succeeded' THEN
           jsonb_build_object('total', round((random() * 10000)::numeric, 2),
                              'currency', 'EUR', 'invoice_no', 'INV-' || g,
                              'confidence', round(random()::numeric, 3)) END,
       queued_at,
       CASE WHEN status <> 'queued' THEN queued_at + interval '2 seconds' END,
       CASE WHEN status IN ('succeeded', 'failed', 'cancelled')
            THEN queued_at + interval '2 seconds' + random() * interval '90 seconds' END
FROM (
    SELECT g,
           g % :n_wf + 1 AS workflow_id,
           CASE WHEN g % 10 <> 0 THEN g % :n_docs + 1 END AS document_id,
           CASE WHEN g % 100 < 85 THEN 'succeeded'
                WHEN g % 100 < 92 THEN 'failed'
                WHEN g % 100 < 95 THEN 'cancelled'
                WHEN g % 100 < 98 THEN 'running'
                ELSE 'queued' END AS status,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '5 seconds' AS queued_at
    FROM generate_series(1, :n_exec) AS g
) AS e;

SELECT :rows - (SELECT count(*) FROM workflows) - (SELECT count(*) FROM tags)
             - (SELECT count(*) FROM workflow_tags) - (SELECT count(*) FROM api_keys)
             - (SELECT count(*) FROM documents) - (SELECT count(*) FROM document_pages)
             - (SELECT count(*) FROM executions) AS n_events
\gset

-- In time order, as the BRIN index expects.
INSERT INTO usage_events (id, occurred_at, execution_id, api_key_id, kind, model,
                          input_tokens, output_tokens, pages, cost_usd)
OVERRIDING SYSTEM VALUE
SELECT g,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '3 seconds',
       CASE WHEN g % 25 <> 0 THEN g % :n_exec + 1 END,
       CASE WHEN g % 3 = 0 THEN g % :n_keys + 1 END,
       kind,
       CASE WHEN kind = 'llm' THEN 'model-' || (g % 4) END,
       CASE WHEN kind = 'llm' THEN (random() * 4000)::int ELSE 0 END,
       CASE WHEN kind = 'llm' THEN (random() * 800)::int ELSE 0 END,
       CASE WHEN kind = 'ocr' THEN 1 + g % 5 ELSE 0 END,
       round((random() * 0.05)::numeric, 6)
FROM (
    SELECT g,
           CASE WHEN g % 10 < 6 THEN 'llm'
                WHEN g % 10 < 8 THEN 'ocr'
                WHEN g % 10 = 8 THEN 'storage'
                ELSE 'export' END AS kind
    FROM generate_series(1, greatest(:n_events, 0)) AS g
) AS u;

-- The identity sequences continue after the ids given above.
SELECT format('SELECT setval(%L::regclass, coalesce(max(id), 0) + 1, false) FROM %I.%I',
              pg_get_serial_sequence(format('%I.%I', :'s', t), 'id'), :'s', t)
FROM unnest(ARRAY['workflows', 'tags', 'api_keys', 'documents', 'document_pages',
                  'executions', 'usage_events']) AS t
\gexec

COMMIT;

-- Hint bits, visibility map and statistics, so that the first copy does not
-- pay for them.
SELECT format('VACUUM (FREEZE, ANALYZE) %I.%I', n.nspname, c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :'s' AND c.relkind = 'r'
ORDER BY c.relname
\gexec
SQL
t_fill=$(elapsed "$start" "$(now)")

SRC_COUNTS=$(table_counts "$SRC")
SRC_SHAPE=$(shape "$SRC")
total_rows=$(awk '{ s += $2 } END { print s }' <<<"$SRC_COUNTS")
n_tables=$(wc -l <<<"$SRC_COUNTS")
read -r src_bytes src_heap_bytes src_pretty < <(psql "$URL" -XAtq -F ' ' -v ON_ERROR_STOP=1 -v s="$SRC" <<'SQL'
SELECT sum(pg_total_relation_size(c.oid)), sum(pg_table_size(c.oid)),
       pg_size_pretty(sum(pg_total_relation_size(c.oid)))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :'s' AND c.relkind IN ('r', 'p');
SQL
)
src_mb=$(awk -v b="$src_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
src_heap_mb=$(awk -v b="$src_heap_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
say "filled and vacuumed in $(fmt3 "$t_fill") s: $total_rows rows in $n_tables tables, $src_pretty with indexes ($src_heap_mb MB without)"
TABLE_REPORT=$(psql "$URL" -XAtq -v ON_ERROR_STOP=1 -v s="$SRC" <<'SQL'
SELECT format('  %-18s %10s rows  %9s (indexes %s)', c.relname,
              (xpath('/row/n/text()',
                     query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                                  false, true, '')))[1]::text,
              pg_size_pretty(pg_total_relation_size(c.oid)),
              pg_size_pretty(pg_indexes_size(c.oid)))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :'s' AND c.relkind IN ('r', 'p')
ORDER BY pg_total_relation_size(c.oid) DESC, c.relname;
SQL
)
printf '%s\n' "$TABLE_REPORT" >&2

# ---------------------------------------------------------------- (b) SQL

# The baseline's script, from the catalog: one transaction, a LIKE ...
# INCLUDING ALL table and an INSERT ... SELECT per table of bench_src.
raw_sql=$work/raw_copy.sql
{
    echo 'SET client_min_messages = warning;'
    echo 'BEGIN;'
    echo 'CREATE SCHEMA bench_b;'
    psql "$URL" -XAtq -v ON_ERROR_STOP=1 -v src="$SRC" -v dst=bench_b <<'SQL'
SELECT format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING ALL);', :'dst', c.relname, :'src', c.relname)
       || E'\n'
       || format('INSERT INTO %I.%I (%s) %sSELECT %s FROM %I.%I;',
                 :'dst', c.relname, col.list,
                 CASE WHEN col.always_identity THEN 'OVERRIDING SYSTEM VALUE ' ELSE '' END,
                 col.list, :'src', c.relname)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL (
    SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) AS list,
           bool_or(a.attidentity = 'a') AS always_identity
    FROM pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
) AS col
WHERE n.nspname = :'src' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname;
SQL
    echo 'COMMIT;'
} >"$raw_sql"
say "baseline SQL: $(grep -c '^CREATE TABLE' "$raw_sql") tables, in $raw_sql while the script runs"

# ---------------------------------------------------------------- (a) (b) (c)

# copy_b: the baseline (b), output to $work/b.log.
# shellcheck disable=SC2317 # called by raw_timed
copy_b() { psql "$URL" -X -q -v ON_ERROR_STOP=1 -f "$raw_sql" >"$work/b.log" 2>&1; }
# copy_c: the baseline (c), output to $work/c_dump.log and $work/c.log.
# shellcheck disable=SC2317 # called by raw_timed
copy_c() {
    pg_dump "$URL" -n "$SRC" 2>"$work/c_dump.log" |
        sed -E "s/\\b$SRC\\b/bench_c/g" |
        psql "$URL" -X -q -v ON_ERROR_STOP=1 >"$work/c.log" 2>&1
}

# raw_timed LABEL WHAT LOG... -- CMD...: a step without tenantmig: a
# CHECKPOINT, then CMD (which writes its output to the LOGs), timed by the
# wall clock only. When it fails, shows the LOGs and dies ("LABEL WHAT
# failed"). Sets T_SECS and says it.
raw_timed() {
    local label=$1 what=$2 start log
    shift 2
    local -a logs=()
    while [[ $1 != -- ]]; do
        logs+=("$1")
        shift
    done
    shift
    checkpoint "$URL"
    start=$(now)
    if ! "$@"; then
        for log in "${logs[@]}"; do
            show_log "$log"
        done
        die "$label $what failed"
    fi
    T_SECS=$(elapsed "$start" "$(now)")
    say "$label $(fmt3 "$T_SECS") s"
}

a_times=() b_times=() c_times=() rss_a=0
verify_args=()
[[ -n $VERIFY ]] && verify_args=(--verify "$VERIFY")
for ((run = 1; run <= RUNS; run++)); do
    if ((run > 1)); then
        drop_schema bench_a
        drop_schema bench_b
        drop_schema bench_c
    fi

    step "run $run/$RUNS: (a) tenantmig copy-into-new-schema $SRC bench_a --jobs $JOBS${VERIFY:+ --verify $VERIFY}"
    checkpoint "$URL"
    tool_timed "(a)" "$work/a.log" copy-into-new-schema "$SRC" bench_a --jobs "$JOBS" "${verify_args[@]}"
    CMD_A=$LAST_SHOW
    a_times+=("$T_SECS")
    rss_a=$(max "$T_KB" "$rss_a")
    sed 's/^/      /' "$work/a.log" >&2
    say "(a) $(fmt3 "$T_SECS") s, peak RSS $(mb "$T_KB") MB"
    check_counts bench_a "(a)"
    check_shape bench_a "(a)" "$CMD_A"
    say "checked: bench_a has the rows of every table of $SRC, and the same $(wc -l <<<"$SRC_SHAPE") columns, indexes and constraints"

    step "run $run/$RUNS: (b) psql baseline: one transaction of CREATE TABLE (LIKE ... INCLUDING ALL) + INSERT ... SELECT"
    raw_timed "(b)" "the psql baseline" "$work/b.log" -- copy_b
    b_times+=("$T_SECS")
    check_counts bench_b "(b)"

    step "run $run/$RUNS: (c) pg_dump -n $SRC | sed | psql"
    raw_timed "(c)" "pg_dump | sed | psql" "$work/c_dump.log" "$work/c.log" -- copy_c
    c_times+=("$T_SECS")
    check_counts bench_c "(c)"
    check_shape bench_c "(c)"
done
med_a=$(median "${a_times[@]}")
med_b=$(median "${b_times[@]}")
med_c=$(median "${c_times[@]}")

# ---------------------------------------------------------------- (d)

# compare_add LABEL TMPL PREFIX [--tenant-migrations DIR]: times `tenant add
# PREFIX_tmpl --from-template TMPL` and `tenant add PREFIX_replay`, D_RUNS
# times each, alternating which goes first, removing both in between. Sets
# D_TMPL and D_REPLAY (medians), D_TMPL_ALL, D_REPLAY_ALL, D_RSS (the
# template's peak RSS), D_SHOW_TMPL and D_SHOW_REPLAY.
compare_add() {
    local label=$1 tmpl=$2 prefix=$3 r order kind
    shift 3
    local -a extra=("$@") t_tmpl=() t_replay=()
    D_RSS=0
    for ((r = 1; r <= D_RUNS; r++)); do
        if ((r % 2)); then order="tmpl replay"; else order="replay tmpl"; fi
        for kind in $order; do
            checkpoint "$URL"
            if [[ $kind == tmpl ]]; then
                tool_timed "$label" "$work/d.log" "${extra[@]}" tenant add "${prefix}_tmpl" --from-template "$tmpl"
                D_SHOW_TMPL=$LAST_SHOW
                t_tmpl+=("$T_SECS")
                D_RSS=$(max "$T_KB" "$D_RSS")
            else
                tool_timed "$label" "$work/d.log" "${extra[@]}" tenant add "${prefix}_replay"
                D_SHOW_REPLAY=$LAST_SHOW
                t_replay+=("$T_SECS")
            fi
            say "$label run $r/$D_RUNS, $kind: $(fmt3 "$T_SECS") s: $(tail -n 1 "$work/d.log")"
        done
        # The two tenants must look the same (the history rows aside).
        local s_tmpl s_replay
        s_tmpl=$(shape "${prefix}_tmpl")
        s_replay=$(shape "${prefix}_replay")
        expect_same "$s_replay" "$s_tmpl" \
            "$label: ${prefix}_tmpl (>) and ${prefix}_replay (<) differ (diff above); reproduce with: $D_SHOW_TMPL"
        if ((r < D_RUNS)) || [[ $KEEP != 1 ]]; then
            tool "$label: cleanup" "${extra[@]}" tenant remove "${prefix}_tmpl" --yes
            tool "$label: cleanup" "${extra[@]}" tenant remove "${prefix}_replay" --yes
        fi
    done
    D_TMPL=$(median "${t_tmpl[@]}")
    D_REPLAY=$(median "${t_replay[@]}")
    D_TMPL_ALL=$(all "${t_tmpl[@]}")
    D_REPLAY_ALL=$(all "${t_replay[@]}")
}

n_plain=$(find "$TENANT_DIR" -maxdepth 1 -name '*.sql' ! -name '*.down.sql' | wc -l)
step "(d) tenant add from a template against a replay, $TENANT_DIR/ ($n_plain migrations)"
tool "(d) setup" tenant add bench_tmpl
say "$(tail -n 1 "$work/tool.log")"
compare_add "(d)" bench_tmpl bench_d
d_tmpl=$D_TMPL d_replay=$D_REPLAY d_tmpl_all=$D_TMPL_ALL d_replay_all=$D_REPLAY_ALL d_rss=$D_RSS
CMD_D_TMPL=$D_SHOW_TMPL CMD_D_REPLAY=$D_SHOW_REPLAY

if ((LONG_EXTRA > 0)); then
    # A longer history: tenant/ plus LONG_EXTRA small migrations, in groups
    # of four: create a table (with a foreign key and an index), add a column
    # to documents, drop that column again and add one to the new table, then
    # drop the table (every other group) or index it. Half the new tables
    # survive.
    long_dir=$work/tenant-long
    mkdir -p "$long_dir"
    cp "$TENANT_DIR"/*.sql "$long_dir"/
    last=$(find "$TENANT_DIR" -maxdepth 1 -name '*.sql' -printf '%f\n' | sed -nE 's/^([0-9]+)_.*/\1/p' | sort -n | tail -n 1)
    last=$((10#$last))
    for ((i = 1; i <= LONG_EXTRA; i++)); do
        v=$(printf '%04d' $((last + i)))
        k=$(((i - 1) / 4 + 1))
        case $((i % 4)) in
        1)
            cat >"$long_dir/${v}_create_extra_$k.sql" <<EOF
CREATE TABLE extra_$k (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workflow_id bigint      NOT NULL REFERENCES workflows (id) ON DELETE CASCADE,
    label       text        NOT NULL DEFAULT '' CHECK (length(label) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX extra_${k}_workflow_id_idx ON extra_$k (workflow_id);
EOF
            ;;
        2)
            cat >"$long_dir/${v}_add_documents_note_$k.sql" <<EOF
ALTER TABLE documents ADD COLUMN note_$k text;
COMMENT ON COLUMN documents.note_$k IS 'scratch column $k';
EOF
            ;;
        3)
            cat >"$long_dir/${v}_drop_documents_note_$k.sql" <<EOF
ALTER TABLE documents DROP COLUMN note_$k;
ALTER TABLE extra_$k ADD COLUMN flag boolean NOT NULL DEFAULT false;
EOF
            ;;
        0)
            if ((k % 2 == 0)); then
                echo "DROP TABLE extra_$k;" >"$long_dir/${v}_drop_extra_$k.sql"
            else
                echo "CREATE INDEX extra_${k}_label_idx ON extra_$k (label) WHERE NOT flag;" \
                    >"$long_dir/${v}_index_extra_$k.sql"
            fi
            ;;
        esac
    done
    n_long=$(find "$long_dir" -maxdepth 1 -name '*.sql' ! -name '*.down.sql' | wc -l)
    step "(d) long history: tenant add from a template against a replay, $n_long migrations"
    tool "(d) long setup" --tenant-migrations "$long_dir" tenant add bench_tmpl_long
    say "$(tail -n 1 "$work/tool.log")"
    compare_add "(d) long" bench_tmpl_long bench_dl --tenant-migrations "$long_dir"
    dl_tmpl=$D_TMPL dl_replay=$D_REPLAY dl_tmpl_all=$D_TMPL_ALL dl_replay_all=$D_REPLAY_ALL dl_rss=$D_RSS
    CMD_DL_TMPL=$D_SHOW_TMPL CMD_DL_REPLAY=$D_SHOW_REPLAY
fi

# ---------------------------------------------------------------- report

r_ab=$(ratio "$med_a" "$med_b")
r_ac=$(ratio "$med_a" "$med_c")
r_d=$(ratio "$d_tmpl" "$d_replay")
ok_ab=$(le "$r_ab" 1.0)
ok_ac=$(lt "$r_ac" 0.5)
ok_d=$(lt "$r_d" 1.0)
if ((LONG_EXTRA > 0)); then
    r_dl=$(ratio "$dl_tmpl" "$dl_replay")
    ok_dl=$(lt "$r_dl" 1.0)
fi
mbps() { awk -v mb="$src_mb" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", mb / s; else print "-" }'; }
med=""
((RUNS > 1)) && med=" (median of $RUNS)"
dmed=""
((D_RUNS > 1)) && dmed=" (median of $D_RUNS)"
# runs_note X...: the repetitions, when there are several.
runs_note() { if (($# > 1)); then printf '  [%s]' "$(all "$@")"; fi; }
# dnote "X Y ...": the (d) repetitions, when there are several.
dnote() { if ((D_RUNS > 1)); then printf '  [%s]' "$1"; fi; }

{
    echo
    echo "==================== tenantmig copy benchmark ===================="
    printf 'server     PostgreSQL %s at %s%s\n' "$server_version" "$(tm_mask_url "$ADMIN_URL")" \
        "$([[ ${TM_PG_THROWAWAY:-0} == 1 ]] && echo ' (throwaway cluster)')"
    printf 'host       %s CPUs; tenantmig %s; jobs %s; runs %s; (d) runs %s\n' \
        "$(nproc 2>/dev/null || echo '?')" "$REVISION" "$JOBS" "$RUNS" "$D_RUNS"
    printf 'source     %s: %s rows in %s tables, %s with indexes (%s MB without), filled in %s s\n' \
        "$SRC" "$total_rows" "$n_tables" "$src_pretty" "$src_heap_mb" "$(fmt3 "$t_fill")"
    printf '%s\n' "$TABLE_REPORT"
    echo
    printf '%-64s %8s s  %5s MB/s  peak RSS %s MB%s\n' "(a) tenantmig copy-into-new-schema --jobs $JOBS${VERIFY:+ --verify $VERIFY}$med" \
        "$(fmt3 "$med_a")" "$(mbps "$med_a")" "$(mb "$rss_a")" "$(runs_note "${a_times[@]}")"
    printf '%-64s %8s s  %5s MB/s%s\n' "(b) psql LIKE INCLUDING ALL + INSERT SELECT, 1 tx$med" \
        "$(fmt3 "$med_b")" "$(mbps "$med_b")" "$(runs_note "${b_times[@]}")"
    printf '%-64s %8s s  %5s MB/s%s\n' "(c) pg_dump -n | sed | psql$med" \
        "$(fmt3 "$med_c")" "$(mbps "$med_c")" "$(runs_note "${c_times[@]}")"
    printf '%-64s %8s\n' "    a/b" "$r_ab"
    printf '%-64s %8s\n' "    a/c" "$r_ac"
    printf '%-64s %8s s  peak RSS %s MB%s\n' "(d) tenant add --from-template, $n_plain migrations$dmed" \
        "$(fmt3 "$d_tmpl")" "$(mb "$d_rss")" "$(dnote "$d_tmpl_all")"
    printf '%-64s %8s s%s\n' "    tenant add (replay), $n_plain migrations$dmed" \
        "$(fmt3 "$d_replay")" "$(dnote "$d_replay_all")"
    printf '%-64s %8s\n' "    template/replay" "$r_d"
    if ((LONG_EXTRA > 0)); then
        printf '%-64s %8s s  peak RSS %s MB%s\n' "(d) tenant add --from-template, $n_long migrations$dmed" \
            "$(fmt3 "$dl_tmpl")" "$(mb "$dl_rss")" "$(dnote "$dl_tmpl_all")"
        printf '%-64s %8s s%s\n' "    tenant add (replay), $n_long migrations$dmed" \
            "$(fmt3 "$dl_replay")" "$(dnote "$dl_replay_all")"
        printf '%-64s %8s\n' "    template/replay" "$r_dl"
    fi
    echo
    echo "targets"
    printf '  %-48s %8s  %s\n' "a/b <= 1.00 (tool vs LIKE + INSERT SELECT)" "$r_ab" "$(verdict "$ok_ab")"
    printf '  %-48s %8s  %s\n' "a/c < 0.50 (tool vs pg_dump | psql)" "$r_ac" "$(verdict "$ok_ac")"
    printf '  %-48s %8s  %s\n' "(d) template/replay < 1.00, $n_plain migrations" "$r_d" "$(verdict "$ok_d")"
    if ((LONG_EXTRA > 0)); then
        printf '  %-48s %8s  %s\n' "(d) template/replay < 1.00, $n_long migrations" "$r_dl" "$(verdict "$ok_dl")"
    fi
    echo
    echo "checks: every table of bench_a, bench_b and bench_c has the rows of $SRC; bench_a and"
    echo "bench_c have its columns, indexes and constraints; each (d) template tenant those of its replay"
    echo
    if [[ ${TM_PG_THROWAWAY:-0} == 1 ]]; then
        echo "reproduce (after a run with KEEP=1 TM_PG_KEEP=1, which keeps the cluster and the database;"
    else
        echo "reproduce (after a run with KEEP=1, which keeps the database;"
    fi
    echo "first DROP SCHEMA bench_a CASCADE, or tenant remove --yes the (d) tenant):"
    echo "  (a) $CMD_A"
    echo "  (d) $CMD_D_TMPL"
    echo "      $CMD_D_REPLAY"
    if ((LONG_EXTRA > 0)); then
        echo "      $CMD_DL_TMPL"
        echo "      $CMD_DL_REPLAY"
        echo "      (the long-history set is a temporary folder, removed on exit)"
    fi
    echo "=================================================================="
} | tee "$work/report"
strict_exit "$work/report"
