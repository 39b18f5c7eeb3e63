#!/usr/bin/env bash
# scripts/bench.sh: how fast and how lean tenantmig is, on one server.
#
#   scripts/bench.sh                  # N=500, M=10000, throwaway cluster
#   scripts/bench.sh 200              # N=200 (first argument, or N=...)
#   N=1000 M=20000 RUNS=3 scripts/bench.sh
#   DATABASE_URL=postgres://postgres@localhost/postgres scripts/bench.sh
#
# Builds the release binary (honours CARGO_TARGET_DIR, default target), finds
# or starts PostgreSQL (scripts/pg.sh), then measures in one run:
#
#  (a) `tenantmig migrate --tenants-only --jobs J` of the example tenant set
#      (tenant/) over N empty tenant schemas bench_00001..., found with
#      TENANTMIG_TENANTS__PATTERN=bench_%, after the shared set (shared/) was
#      migrated by `tenantmig migrate --shared-only` (timed separately, shown
#      as extra information);
#  (b) the raw baseline, in a second fresh database with the same N empty
#      schemas and the shared set applied by psql: the same tenant SQL applied
#      by J parallel psql processes (xargs -P J), one psql process per tenant:
#      `SET search_path TO <tenant>, public`, every transactional file in ONE
#      transaction (BEGIN; the files in version order; COMMIT, which is what
#      psql --single-transaction does), then the `-- no-transaction` files
#      outside a transaction, in the same psql process. Afterwards it checks
#      that every tenant of both databases has every table and index the
#      tenant set creates, and that both databases hold the same objects;
#  (c) a no-op `tenantmig migrate` and `tenantmig status` over M up-to-date
#      tenants of the light set (scripts/bench/light/), created beforehand by
#      one `tenantmig migrate` with a tenants query naming light_00001...
#      (the tool creates the missing schemas; this setup is timed and shown as
#      extra information);
#  (d) the peak RSS (/usr/bin/time -f %M) of (a), of the no-op migrate and of
#      status;
#  (e) `tenantmig plan` over the same M light tenants, each with work: after
#      (c), a fifth of them (light_00001..., M/5) lose their last history row
#      (one DO block, 500 tenants a transaction), and the plan reads a
#      temporary copy of the light set plus one more migration (the next
#      version, adding a column), so that it shows two groups: "M-M/5
#      tenants: 0004" and "M/5 tenants: 0003, 0004". Timed EF_RUNS times
#      (best and median shown, the median counts), with its peak RSS; checks
#      exit 0, the two grouped lines, and that nothing changed (the history
#      rows of all M tenants, tenantmig.runs, no tenant has the new column);
#  (f) `tenantmig verify` over V tenants of the example tenant set (tenant/)
#      against the default reference (a scratch schema built from the tenant
#      migrations): the database of (a), its tenants topped up to
#      bench_00001..bench_V by `tenantmig migrate --tenants-only` with a
#      tenants query naming them (not timed), then one index
#      (documents_created_at_idx) dropped by hand in bench_V/2. Timed EF_RUNS
#      times (best and median, the median counts), with its peak RSS; checks
#      exit 1, that the drifted tenant is named with "index
#      documents_created_at_idx missing", that the V-1 others match the
#      reference, and that no scratch schema is left behind.
#
# Then it prints the figures, the ratio a/b and the targets with PASS/FAIL:
# a/b <= 1.0; no-op migrate and status over M tenants each < 2 s; peak RSS
# < 100 MB; (e) plan over M tenants < 2 s; (f) verify over V tenants < 5 s.
# A failed check of (e) or (f) is shown in the report and fails its target.
#
# Variables:
#   N=500        tenants for (a) and (b) (the first argument wins)
#   M=10000      up-to-date tenants for (c)
#   JOBS=4       tenantmig --jobs and psql processes of the baseline
#   RUNS=1       runs of (a) and (b), each on freshly created databases; the
#                best time counts, the highest RSS counts
#   PLAN=1       0 skips (e)
#   V=1000       tenants for (f), at least 2; 0 skips (f)
#   EF_RUNS=5    repetitions of (e) and of (f); the median counts, the
#                highest RSS counts
#   KEEP=1       keep the bench databases (tenantmig_bench_tool, _raw, _noop;
#                as (e) and (f) left them: a fifth of the light tenants one
#                history row short, and bench_V/2 without its index)
#   STRICT=1     exit 1 when a target fails (default: exit 0 once measured)
#   DATABASE_URL, TM_PG_KEEP, TM_PG_PORT: see scripts/pg.sh
#
# Any TENANTMIG_* variable of the calling environment is ignored (unset), so
# that only the settings of this script apply. Exit: 0 measured (and, with
# STRICT=1, every target met); 1 a step failed or a target failed (STRICT=1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_NAME=bench   # die's prefix (scripts/bench-lib.sh)
BENCH_MISS=FAIL    # verdict of a target not met
SHOW_LOG_PATHS=1   # show_log names a log by its path
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh
source scripts/bench-lib.sh

N=${1:-${N:-500}}
M=${M:-10000}
JOBS=${JOBS:-4}
RUNS=${RUNS:-1}
KEEP=${KEEP:-0}
STRICT=${STRICT:-0}
PLAN=${PLAN:-1}
V=${V:-1000}
EF_RUNS=${EF_RUNS:-5}
need_counts N M JOBS RUNS EF_RUNS
((N <= 99999 && M <= 99999)) || die "N and M are at most 99999 (schema names have 5 digits)"
[[ $PLAN == 0 || $PLAN == 1 ]] || die "PLAN must be 0 or 1, not '$PLAN'"
[[ $V == 0 ]] || { is_count "$V" && ((V >= 2 && V <= 99999)); } ||
    die "V must be 0 (skip (f)) or from 2 to 99999, not '$V'"

TOOL_DB=tenantmig_bench_tool
RAW_DB=tenantmig_bench_raw
NOOP_DB=tenantmig_bench_noop
SHARED_DIR=shared
TENANT_DIR=tenant
LIGHT_DIR=scripts/bench/light
PATTERN='bench_%'
# The light tenants are named by a query, so that `tenantmig migrate`
# creates their schemas.
LIGHT_QUERY="SELECT format('light_%s', lpad(g::text, 5, '0')) FROM generate_series(1, $M) AS g ORDER BY 1"
HISTORY_TABLE=_sqlx_migrations # tenantmig's default history_table
# (f): the tenants bench_00001..bench_V, named by a query (the tool creates
# the missing ones), and the index dropped by hand in one of them.
VERIFY_QUERY="SELECT format('bench_%s', lpad(g::text, 5, '0')) FROM generate_series(1, $V) AS g ORDER BY 1"
DRIFT_TENANT=bench_$(printf '%05d' $((V / 2 > 0 ? V / 2 : 1)))
DRIFT_INDEX=documents_created_at_idx

unset_tenantmig_env
need_cargo_and_gnu_time
build_release "cargo build --release"

tm_ensure_postgres
ADMIN_URL=$TM_ADMIN_URL

work=$(mktemp -d /tmp/tenantmig-bench.XXXXXX)
# Dropped on exit unless KEEP=1 (bench_cleanup).
BENCH_DBS=("$TOOL_DB" "$RAW_DB" "$NOOP_DB")
trap bench_cleanup EXIT

# ---------------------------------------------------------------- helpers

# ordered_files DIR: "kind<TAB>path" per migration of DIR in version order;
# kind is tx or notx (first line exactly `-- no-transaction`); .down.sql
# files are left out.
ordered_files() {
    local dir=$1 f base
    shopt -s nullglob
    local files=("$dir"/*.sql)
    shopt -u nullglob
    [[ ${#files[@]} -gt 0 ]] || die "$dir has no .sql files"
    for f in "${files[@]}"; do
        base=${f##*/}
        [[ $base == *.down.sql ]] && continue
        [[ $base =~ ^([0-9]+)_ ]] || die "$f: no version prefix"
        if [[ $(head -n 1 "$f") == "-- no-transaction" ]]; then
            printf '%s\tnotx\t%s\n' "$((10#${BASH_REMATCH[1]}))" "$PWD/$f"
        else
            printf '%s\ttx\t%s\n' "$((10#${BASH_REMATCH[1]}))" "$PWD/$f"
        fi
    done | sort -n -k1,1 | cut -f2-
}

# create_schemas URL PREFIX COUNT: empty schemas PREFIX00001... in one
# statement (a DO block; psql variables are not expanded inside its body, so
# the prefix and count come in as custom settings).
create_schemas() {
    PGOPTIONS="-c bench.prefix=$2 -c bench.n=$3" psql "$1" -Xq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
DO $$
DECLARE
    prefix text := current_setting('bench.prefix');
    n      int  := current_setting('bench.n')::int;
BEGIN
    FOR i IN 1..n LOOP
        EXECUTE format('CREATE SCHEMA %I', prefix || lpad(i::text, 5, '0'));
    END LOOP;
END
$$;
SQL
}

# catalog URL: the objects of the bench_ schemas (minus tenantmig's history
# table) with, for each, the number of schemas that have it.
catalog() {
    psql "$1" -XAtq -F ' ' -v ON_ERROR_STOP=1 -v h="$HISTORY_TABLE" <<'SQL'
WITH s AS (
    SELECT oid FROM pg_namespace WHERE nspname LIKE 'bench\_%'
), obj AS (
    SELECT s.oid AS ns, format('rel %s %s valid=%s', c.relname, c.relkind,
                               coalesce(i.indisvalid::text, '-')) AS line
    FROM s JOIN pg_class c ON c.relnamespace = s.oid
    LEFT JOIN pg_index i ON i.indexrelid = c.oid
    WHERE c.relname NOT LIKE :'h' || '%'
    UNION ALL
    SELECT s.oid, format('col %s.%s %s notnull=%s', c.relname, a.attname,
                         format_type(a.atttypid, a.atttypmod), a.attnotnull)
    FROM s JOIN pg_class c ON c.relnamespace = s.oid
    JOIN pg_attribute a ON a.attrelid = c.oid
    WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relname NOT LIKE :'h' || '%'
    UNION ALL
    SELECT s.oid, format('con %s %s', con.conname, con.contype)
    FROM s JOIN pg_constraint con ON con.connamespace = s.oid
    WHERE con.conname NOT LIKE :'h' || '%'
)
SELECT count(DISTINCT ns), line FROM obj GROUP BY line ORDER BY line;
SQL
}

# expected_relations DIR: names of the tables and indexes the set creates
# (and does not drop again in a later file).
expected_relations() {
    local kind f
    while IFS=$'\t' read -r kind f; do
        sed -nE \
            -e 's/^[[:space:]]*CREATE[[:space:]]+TABLE[[:space:]]+(IF[[:space:]]+NOT[[:space:]]+EXISTS[[:space:]]+)?([a-z_][a-z0-9_]*).*/+\2/Ip' \
            -e 's/^[[:space:]]*CREATE[[:space:]]+(UNIQUE[[:space:]]+)?INDEX[[:space:]]+(CONCURRENTLY[[:space:]]+)?(IF[[:space:]]+NOT[[:space:]]+EXISTS[[:space:]]+)?([a-z_][a-z0-9_]*).*/+\4/Ip' \
            -e 's/^[[:space:]]*DROP[[:space:]]+(TABLE|INDEX)[[:space:]]+(CONCURRENTLY[[:space:]]+)?(IF[[:space:]]+EXISTS[[:space:]]+)?([a-z_][a-z0-9_]*).*/-\4/Ip' \
            "$f"
    done < <(ordered_files "$1") | awk '
        /^\+/ { n = substr($0, 2); if (!(n in set)) order[++k] = n; set[n] = 1 }
        /^-/  { delete set[substr($0, 2)] }
        END   { for (i = 1; i <= k; i++) if (order[i] in set) print order[i] }'
}

# check_tenants URL LABEL: every bench_ schema has every expected relation.
check_tenants() {
    local url=$1 label=$2 rel have
    for rel in "${EXPECTED[@]}"; do
        have=$(psql_q "$url" "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE 'bench\_%' AND c.relname = '$rel'")
        [[ $have == "$N" ]] || die "$label: $rel exists in $have of the $N tenant schemas"
    done
}

fmt2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

# thousands N: N as tenantmig prints counts (9996 -> 9,996).
thousands() { awk -v n="$1" 'BEGIN { s = n ""; while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s }'; }
# tenants_word N: "1 tenant", "9,996 tenants".
tenants_word() { if [[ $1 == 1 ]]; then echo "1 tenant"; else echo "$(thousands "$1") tenants"; fi; }

# history_total URL PREFIX COUNT: the history rows of the tenants
# PREFIX00001..., all together, read 500 tables a transaction (a DO block
# that commits, so that the locks do not pile up past
# max_locks_per_transaction); the sum comes back as a custom setting.
history_total() {
    PGOPTIONS="-c bench.prefix=$2 -c bench.n=$3 -c bench.history=$HISTORY_TABLE" \
        psql "$1" -XAtq -v ON_ERROR_STOP=1 <<'SQL'
SET client_min_messages = warning;
DO $$
DECLARE
    prefix  text   := current_setting('bench.prefix');
    n       int    := current_setting('bench.n')::int;
    history text   := current_setting('bench.history');
    total   bigint := 0;
    c       bigint;
BEGIN
    FOR i IN 1..n LOOP
        EXECUTE format('SELECT count(*) FROM %I.%I', prefix || lpad(i::text, 5, '0'), history) INTO c;
        total := total + c;
        IF i % 500 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
    PERFORM set_config('bench.total', total::text, false);
END
$$;
SELECT current_setting('bench.total');
SQL
}

# drop_last_history URL PREFIX COUNT VERSION: deletes the history row of
# VERSION in the tenants PREFIX00001... (COUNT of them), 500 a transaction;
# their schemas keep what that migration did, their history says it is
# pending.
drop_last_history() {
    PGOPTIONS="-c bench.prefix=$2 -c bench.n=$3 -c bench.version=$4 -c bench.history=$HISTORY_TABLE" \
        psql "$1" -Xq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
DO $$
DECLARE
    prefix  text   := current_setting('bench.prefix');
    n       int    := current_setting('bench.n')::int;
    version bigint := current_setting('bench.version')::bigint;
    history text   := current_setting('bench.history');
    gone    int;
BEGIN
    FOR i IN 1..n LOOP
        EXECUTE format('DELETE FROM %I.%I WHERE version = $1', prefix || lpad(i::text, 5, '0'), history)
            USING version;
        GET DIAGNOSTICS gone = ROW_COUNT;
        IF gone <> 1 THEN
            RAISE EXCEPTION 'tenant % has % history rows of version %', prefix || lpad(i::text, 5, '0'), gone, version;
        END IF;
        IF i % 500 = 0 THEN
            COMMIT;
        END IF;
    END LOOP;
END
$$;
SQL
}

# has_line LOG TEXT: LOG has a line that starts with TEXT (fixed string).
has_line() { awk -v t="$2" 'index($0, t) == 1 { found = 1 } END { exit !found }' "$1"; }

# ---------------------------------------------------------------- server

server_version=$(psql_q "$ADMIN_URL" 'SHOW server_version')
max_locks=$(psql_q "$ADMIN_URL" 'SHOW max_locks_per_transaction')
max_conn=$(psql_q "$ADMIN_URL" 'SHOW max_connections')
say "PostgreSQL $server_version; max_connections=$max_conn, max_locks_per_transaction=$max_locks"
LOCK_NOTE=""
if ((max_locks * max_conn < 2 * M)); then
    LOCK_NOTE="max_locks_per_transaction=$max_locks is small for one query over $M history tables; tenantmig reads them in chunks (400 a query), so (c) is fine"
    say "note: $LOCK_NOTE"
fi

# ---------------------------------------------------------------- files

mapfile -t EXPECTED < <(expected_relations "$TENANT_DIR")
[[ ${#EXPECTED[@]} -gt 0 ]] || die "found no CREATE TABLE/INDEX in $TENANT_DIR"
tenant_files=$(ordered_files "$TENANT_DIR")
n_tenant_migrations=$(wc -l <<<"$tenant_files")
n_light_migrations=$(ordered_files "$LIGHT_DIR" | wc -l)

# The baseline's per-tenant psql script: the tenant's search_path, the
# transactional files in one transaction, then the no-transaction files.
# The tenant name comes in as the psql variable :tenant.
raw_script=$work/raw_tenant.sql
{
    echo 'SET client_min_messages = warning;'
    echo 'SET search_path TO :"tenant", public;'
    echo 'BEGIN;'
    awk -F'\t' '$1 == "tx" { print "\\i " $2 }' <<<"$tenant_files"
    echo 'COMMIT;'
    awk -F'\t' '$1 == "notx" { print "\\i " $2 }' <<<"$tenant_files"
} >"$raw_script"

# ---------------------------------------------------------------- (a) and (b)

best_a="" best_b="" best_shared="" rss_a=0
for ((run = 1; run <= RUNS; run++)); do
    step "run $run/$RUNS: (a) tenantmig migrate, $N tenants"
    tool_url=$(tm_create_db "$TOOL_DB")
    create_schemas "$tool_url" bench_ "$N"
    say "created $N empty schemas bench_00001..bench_$(printf '%05d' "$N") in $TOOL_DB"

    tool_cmd "$tool_url" TENANTMIG_TENANTS__PATTERN="$PATTERN" \
        TENANTMIG_SHARED_MIGRATIONS="$SHARED_DIR" TENANTMIG_TENANT_MIGRATIONS="$TENANT_DIR" \
        -- migrate --shared-only
    timed "$work/a_shared.log" "${TOOL_CMD[@]}"
    if [[ $T_RC != 0 ]]; then
        show_log "$work/a_shared.log"
        die "tenantmig migrate --shared-only exited $T_RC"
    fi
    best_shared=$(min "$T_SECS" "$best_shared")
    say "shared phase (not part of (a)): $(fmt2 "$T_SECS") s"

    tool_cmd "$tool_url" TENANTMIG_TENANTS__PATTERN="$PATTERN" \
        TENANTMIG_SHARED_MIGRATIONS="$SHARED_DIR" TENANTMIG_TENANT_MIGRATIONS="$TENANT_DIR" \
        -- migrate --tenants-only --jobs "$JOBS"
    CMD_A=$TOOL_SHOW
    checkpoint "$tool_url"
    timed "$work/a.log" "${TOOL_CMD[@]}"
    if [[ $T_RC != 0 ]]; then
        show_log "$work/a.log"
        die "(a) tenantmig migrate exited $T_RC; reproduce with: $CMD_A"
    fi
    best_a=$(min "$T_SECS" "$best_a")
    rss_a=$(max "$T_KB" "$rss_a")
    say "(a) $(fmt2 "$T_SECS") s, peak RSS $(mb "$T_KB") MB"
    check_tenants "$tool_url" "(a) $TOOL_DB"

    step "run $run/$RUNS: (b) psql baseline, $N tenants, $JOBS psql processes"
    raw_url=$(tm_create_db "$RAW_DB")
    create_schemas "$raw_url" bench_ "$N"
    while IFS=$'\t' read -r kind f; do
        opts=(-X -q -v ON_ERROR_STOP=1 -f "$f")
        [[ $kind == tx ]] && opts=(--single-transaction "${opts[@]}")
        PGOPTIONS="-c search_path=public -c client_min_messages=warning" \
            psql "$raw_url" "${opts[@]}" >/dev/null || die "$f failed in $RAW_DB"
    done < <(ordered_files "$SHARED_DIR")
    say "created $N empty schemas and applied $SHARED_DIR/ with psql in $RAW_DB"
    checkpoint "$raw_url"
    start=$(now)
    if ! psql_q "$raw_url" "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench\_%' ORDER BY 1" |
        xargs -P "$JOBS" -I '{}' psql "$raw_url" -X -q -v ON_ERROR_STOP=1 -v tenant='{}' -f "$raw_script" \
            >"$work/b.log" 2>&1; then
        show_log "$work/b.log"
        die "(b) the psql baseline failed"
    fi
    end=$(now)
    t_b=$(elapsed "$start" "$end")
    best_b=$(min "$t_b" "$best_b")
    say "(b) $(fmt2 "$t_b") s"

    # The baseline really applied everything, as the tool did.
    check_tenants "$raw_url" "(b) $RAW_DB"
    cat_a=$(catalog "$tool_url")
    cat_b=$(catalog "$raw_url")
    if [[ $cat_a != "$cat_b" ]]; then
        diff <(printf '%s\n' "$cat_a") <(printf '%s\n' "$cat_b") | head -n 40 >&2 || true
        die "the tenant schemas of $TOOL_DB (<) and $RAW_DB (>) differ (diff above: schema count, object)"
    fi
    incomplete=$(awk -v n="$N" '$1 != n' <<<"$cat_a" | head -n 5)
    [[ -z $incomplete ]] || die "objects not in all $N tenant schemas: $incomplete"
    say "checked: all $N tenants of both databases have ${EXPECTED[*]}; $(wc -l <<<"$cat_a") objects each, the same in both"
done

# ---------------------------------------------------------------- (c)

step "(c) setup: tenantmig migrate creates $M light tenants"
noop_url=$(tm_create_db "$NOOP_DB")
light_env=(TENANTMIG_TENANTS__QUERY="$LIGHT_QUERY"
    TENANTMIG_SHARED_MIGRATIONS="$SHARED_DIR" TENANTMIG_TENANT_MIGRATIONS="$LIGHT_DIR")
tool_cmd "$noop_url" "${light_env[@]}" -- migrate --jobs "$JOBS"
CMD_SETUP=$TOOL_SHOW
timed "$work/c_setup.log" "${TOOL_CMD[@]}"
if [[ $T_RC != 0 ]]; then
    show_log "$work/c_setup.log"
    die "(c) setup: tenantmig migrate exited $T_RC; reproduce with: $CMD_SETUP"
fi
t_setup=$T_SECS rss_setup=$T_KB
n_light=$(psql_q "$noop_url" "SELECT count(*) FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = 'items' WHERE n.nspname LIKE 'light\_%'")
[[ $n_light == "$M" ]] || die "(c) setup: $n_light of $M light tenants have the items table"
say "setup $(fmt2 "$t_setup") s, peak RSS $(mb "$rss_setup") MB; $M schemas with items"

step "(c) no-op tenantmig migrate, $M up-to-date tenants"
tool_cmd "$noop_url" "${light_env[@]}" -- migrate --jobs "$JOBS"
CMD_NOOP=$TOOL_SHOW
history_before=$(psql_q "$noop_url" "SELECT count(*) FROM light_00001.$HISTORY_TABLE")
checkpoint "$noop_url"
timed "$work/c_noop.log" "${TOOL_CMD[@]}"
t_noop=$T_SECS rss_noop=$T_KB rc_noop=$T_RC
[[ $rc_noop == 0 ]] || show_log "$work/c_noop.log"
history_after=$(psql_q "$noop_url" "SELECT count(*) FROM light_00001.$HISTORY_TABLE")
[[ $history_before == "$history_after" ]] ||
    say "warning: the no-op migrate changed light_00001's history ($history_before -> $history_after rows)"
say "no-op migrate $(fmt2 "$t_noop") s, peak RSS $(mb "$rss_noop") MB, exit $rc_noop"

step "(c) tenantmig status, $M up-to-date tenants"
tool_cmd "$noop_url" "${light_env[@]}" -- status
CMD_STATUS=$TOOL_SHOW
checkpoint "$noop_url"
timed "$work/c_status.log" "${TOOL_CMD[@]}"
t_status=$T_SECS rss_status=$T_KB rc_status=$T_RC
[[ $rc_status == 0 ]] || show_log "$work/c_status.log"
say "status $(fmt2 "$t_status") s, peak RSS $(mb "$rss_status") MB, exit $rc_status ($(wc -l <"$work/c_status.log") lines of output)"

# ---------------------------------------------------------------- (e)

# timed_reps URL LOG CMD...: runs CMD EF_RUNS times under timed (a
# CHECKPOINT of URL before each) and sets R_TIMES (the repetitions), R_MED, R_BEST, R_KB (the
# highest peak RSS) and R_RC (the exit status, when every run gave the same
# one, else "mixed"); LOG holds the last run's output.
timed_reps() {
    local url=$1 log=$2 r
    shift 2
    R_TIMES=() R_KB=0 R_RC=""
    for ((r = 1; r <= EF_RUNS; r++)); do
        checkpoint "$url"
        timed "$log" "$@"
        R_TIMES+=("$T_SECS")
        R_KB=$(max "$T_KB" "$R_KB")
        if [[ -z $R_RC ]]; then R_RC=$T_RC; elif [[ $R_RC != "$T_RC" ]]; then R_RC=mixed; fi
        say "run $r/$EF_RUNS: $(fmt2 "$T_SECS") s, peak RSS $(mb "$T_KB") MB, exit $T_RC"
    done
    R_MED=$(median "${R_TIMES[@]}")
    R_BEST=$(printf '%s\n' "${R_TIMES[@]}" | sort -g | head -n 1)
}

if [[ $PLAN == 1 ]]; then
    step "(e) setup: one more light migration; $((M / 5)) of the $M light tenants one history row short"
    # The light set plus the next version, in a temporary folder.
    plan_dir=$work/light-plus
    mkdir -p "$plan_dir"
    cp "$LIGHT_DIR"/*.sql "$plan_dir"/
    light_versions=$(find "$LIGHT_DIR" -maxdepth 1 -name '*.sql' ! -name '*.down.sql' -printf '%f\n' |
        sed -nE 's/^([0-9]+)_.*/\1/p' | sort -n)
    v_last=$(tail -n 1 <<<"$light_versions")
    v_next=$(printf '%0*d' "${#v_last}" $((10#$v_last + 1)))
    cat >"$plan_dir/${v_next}_add_items_note.sql" <<'SQL'
-- scripts/bench.sh (e): one more migration, so that every tenant has work.
ALTER TABLE items ADD COLUMN note text;
SQL
    n_behind2=$((M / 5))
    n_behind1=$((M - n_behind2))
    if ((n_behind2 > 0)); then
        drop_last_history "$noop_url" light_ "$n_behind2" "$((10#$v_last))"
        say "deleted version $v_last from the history of light_00001..light_$(printf '%05d' "$n_behind2")"
    fi
    history_e_before=$(history_total "$noop_url" light_ "$M")
    runs_e_before=$(psql_q "$noop_url" "SELECT count(*) FROM tenantmig.runs")
    say "$history_e_before history rows in the $M light tenants; $runs_e_before rows in tenantmig.runs"

    step "(e) tenantmig plan, $M tenants with work (EF_RUNS=$EF_RUNS)"
    plan_env=(TENANTMIG_TENANTS__QUERY="$LIGHT_QUERY"
        TENANTMIG_SHARED_MIGRATIONS="$SHARED_DIR" TENANTMIG_TENANT_MIGRATIONS="$plan_dir")
    tool_cmd "$noop_url" "${plan_env[@]}" -- plan
    CMD_PLAN=$TOOL_SHOW
    timed_reps "$noop_url" "$work/e_plan.log" "${TOOL_CMD[@]}"
    e_times=("${R_TIMES[@]}") e_med=$R_MED e_best=$R_BEST rss_e=$R_KB rc_e=$R_RC
    sed 's/^/      /' "$work/e_plan.log" >&2

    # The checks: exit 0, the grouped lines, nothing changed.
    e_problems=()
    [[ $rc_e == 0 ]] || e_problems+=("exit $rc_e")
    want_1="$(tenants_word "$n_behind1"): $v_next ("
    want_2="$(tenants_word "$n_behind2"): $v_last, $v_next ("
    has_line "$work/e_plan.log" "$want_1" || e_problems+=("no line '$want_1…'")
    if ((n_behind2 > 0)); then
        has_line "$work/e_plan.log" "$want_2" || e_problems+=("no line '$want_2…'")
    fi
    history_e_after=$(history_total "$noop_url" light_ "$M")
    [[ $history_e_after == "$history_e_before" ]] ||
        e_problems+=("history rows changed ($history_e_before -> $history_e_after)")
    runs_e_after=$(psql_q "$noop_url" "SELECT count(*) FROM tenantmig.runs")
    [[ $runs_e_after == "$runs_e_before" ]] ||
        e_problems+=("tenantmig.runs changed ($runs_e_before -> $runs_e_after rows)")
    noted=$(psql_q "$noop_url" "SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE 'light\_%' AND c.relname = 'items' AND a.attname = 'note' AND NOT a.attisdropped")
    [[ $noted == 0 ]] || e_problems+=("$noted tenants have the column items.note")
    if ((${#e_problems[@]} > 0)); then
        e_check="FAILED: $(IFS=';'; echo "${e_problems[*]}")"
        show_log "$work/e_plan.log"
    else
        e_check="ok: exit 0, the grouped lines, $history_e_after history rows and $runs_e_after runs before and after, no items.note"
    fi
    say "plan median $(fmt2 "$e_med") s, best $(fmt2 "$e_best") s, peak RSS $(mb "$rss_e") MB; checks $e_check"
fi

# ---------------------------------------------------------------- (f)

if ((V > 0)); then
    step "(f) setup: $V tenants of $TENANT_DIR/ in $TOOL_DB, then $DRIFT_INDEX dropped in $DRIFT_TENANT"
    verify_env=(TENANTMIG_TENANTS__QUERY="$VERIFY_QUERY"
        TENANTMIG_SHARED_MIGRATIONS="$SHARED_DIR" TENANTMIG_TENANT_MIGRATIONS="$TENANT_DIR")
    tool_cmd "$tool_url" "${verify_env[@]}" -- migrate --tenants-only --jobs "$JOBS"
    CMD_F_SETUP=$TOOL_SHOW
    timed "$work/f_setup.log" "${TOOL_CMD[@]}"
    if [[ $T_RC != 0 ]]; then
        show_log "$work/f_setup.log"
        die "(f) setup: tenantmig migrate exited $T_RC; reproduce with: $CMD_F_SETUP"
    fi
    say "$(tail -n 1 "$work/f_setup.log")"
    n_verify=$(psql_q "$tool_url" "SELECT count(*) FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = '$DRIFT_INDEX' WHERE n.nspname LIKE 'bench\_%' AND n.nspname <= 'bench_$(printf '%05d' "$V")'")
    [[ $n_verify == "$V" ]] || die "(f) setup: $n_verify of $V tenants have the index $DRIFT_INDEX"
    psql "$tool_url" -Xq -v ON_ERROR_STOP=1 -v t="$DRIFT_TENANT" -v i="$DRIFT_INDEX" >/dev/null \
        <<<'DROP INDEX :"t".:"i";' || die "(f) setup: could not drop $DRIFT_TENANT.$DRIFT_INDEX"
    say "dropped the index $DRIFT_TENANT.$DRIFT_INDEX"

    step "(f) tenantmig verify, $V tenants against a scratch reference (EF_RUNS=$EF_RUNS)"
    tool_cmd "$tool_url" "${verify_env[@]}" -- verify
    CMD_VERIFY=$TOOL_SHOW
    timed_reps "$tool_url" "$work/f_verify.log" "${TOOL_CMD[@]}"
    f_times=("${R_TIMES[@]}") f_med=$R_MED f_best=$R_BEST rss_f=$R_KB rc_f=$R_RC
    sed 's/^/      /' "$work/f_verify.log" >&2

    # The checks: exit 1 (drift), the drifted tenant named with its missing
    # index, the others matching, no scratch schema left behind.
    f_problems=()
    [[ $rc_f == 1 ]] || f_problems+=("exit $rc_f, not 1")
    want_drift="1 tenant with fingerprint "
    if ! grep -q "^${want_drift}[0-9a-f]* ($DRIFT_TENANT):\$" "$work/f_verify.log"; then
        f_problems+=("no line '$want_drift… ($DRIFT_TENANT):'")
    fi
    has_line "$work/f_verify.log" "  index $DRIFT_INDEX missing" ||
        f_problems+=("no line 'index $DRIFT_INDEX missing'")
    if ((V - 1 == 1)); then
        want_match="1 tenant matches the reference ("
    else
        want_match="$(thousands $((V - 1))) tenants match the reference ("
    fi
    has_line "$work/f_verify.log" "$want_match" || f_problems+=("no line '$want_match…'")
    has_line "$work/f_verify.log" "drift: 1 of $(tenants_word "$V") differ from the reference" ||
        f_problems+=("no line 'drift: 1 of $(tenants_word "$V") differ…'")
    scratch_left=$(psql_q "$tool_url" "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '\_tenantmig\_verify\_%'")
    [[ $scratch_left == 0 ]] || f_problems+=("$scratch_left scratch schemas left behind")
    if ((${#f_problems[@]} > 0)); then
        f_check="FAILED: $(IFS=';'; echo "${f_problems[*]}")"
        show_log "$work/f_verify.log"
    else
        f_check="ok: exit 1, $DRIFT_TENANT named with 'index $DRIFT_INDEX missing', $(thousands $((V - 1))) match, no scratch schema left"
    fi
    say "verify median $(fmt2 "$f_med") s, best $(fmt2 "$f_best") s, peak RSS $(mb "$rss_f") MB; checks $f_check"
fi

# ---------------------------------------------------------------- report

ratio=$(awk -v a="$best_a" -v b="$best_b" 'BEGIN { printf "%.2f", a / b }')
ok_ratio=$(le "$ratio" 1.0)
ok_noop=$(lt "$t_noop" 2)
[[ $rc_noop == 0 ]] || ok_noop=0
ok_status=$(lt "$t_status" 2)
[[ $rc_status == 0 ]] || ok_status=0
ok_rss_a=$(lt "$(mb "$rss_a")" 100)
ok_rss_noop=$(lt "$(mb "$rss_noop")" 100)
ok_rss_status=$(lt "$(mb "$rss_status")" 100)
best=""
((RUNS > 1)) && best=" (best of $RUNS)"
med=""
((EF_RUNS > 1)) && med=" (median of $EF_RUNS)"
# reps_note BEST X...: the best and all the repetitions X, when there are
# several.
reps_note() {
    local b=$1
    shift
    if (($# > 1)); then printf '  best %s  [%s]' "$(fmt2 "$b")" "$(all "$@")"; fi
}
if [[ $PLAN == 1 ]]; then
    ok_e=$(lt "$e_med" 2)
    [[ $e_check == ok:* ]] || ok_e=0
fi
if ((V > 0)); then
    ok_f=$(lt "$f_med" 5)
    [[ $f_check == ok:* ]] || ok_f=0
fi

{
    echo
    echo "==================== tenantmig benchmark ===================="
    printf 'server     PostgreSQL %s at %s%s\n' "$server_version" "$(tm_mask_url "$ADMIN_URL")" \
        "$([[ ${TM_PG_THROWAWAY:-0} == 1 ]] && echo ' (throwaway cluster)')"
    printf 'host       %s CPUs; jobs %s; runs %s\n' "$(nproc 2>/dev/null || echo '?')" "$JOBS" "$RUNS"
    printf 'sets       %s/ (%s migrations) x N=%s; %s/ (%s migrations) x M=%s\n' \
        "$TENANT_DIR" "$n_tenant_migrations" "$N" "$LIGHT_DIR" "$n_light_migrations" "$M"
    echo
    printf '%-62s %8s s  peak RSS %6s MB\n' "(a) tenantmig migrate --tenants-only, $N tenants$best" "$(fmt2 "$best_a")" "$(mb "$rss_a")"
    printf '%-62s %8s s\n' "    shared phase before it (not in (a))" "$(fmt2 "$best_shared")"
    printf '%-62s %8s s\n' "(b) psql baseline, $JOBS x psql, $N tenants$best" "$(fmt2 "$best_b")"
    printf '%-62s %8s\n' "    a/b" "$ratio"
    printf '%-62s %8s s  peak RSS %6s MB\n' "(c) setup: tenantmig migrate creating $M tenants (info)" "$(fmt2 "$t_setup")" "$(mb "$rss_setup")"
    printf '%-62s %8s s  peak RSS %6s MB  exit %s\n' "    no-op tenantmig migrate, $M up-to-date tenants" "$(fmt2 "$t_noop")" "$(mb "$rss_noop")" "$rc_noop"
    printf '%-62s %8s s  peak RSS %6s MB  exit %s\n' "    tenantmig status, $M up-to-date tenants" "$(fmt2 "$t_status")" "$(mb "$rss_status")" "$rc_status"
    if [[ $PLAN == 1 ]]; then
        printf '%-62s %8s s  peak RSS %6s MB  exit %s%s\n' "(e) tenantmig plan, $M tenants 1 or 2 behind$med" \
            "$(fmt2 "$e_med")" "$(mb "$rss_e")" "$rc_e" "$(reps_note "$e_best" "${e_times[@]}")"
        printf '    check %s\n' "$e_check"
    fi
    if ((V > 0)); then
        printf '%-62s %8s s  peak RSS %6s MB  exit %s%s\n' "(f) tenantmig verify, $V tenants, 1 drifted$med" \
            "$(fmt2 "$f_med")" "$(mb "$rss_f")" "$rc_f" "$(reps_note "$f_best" "${f_times[@]}")"
        printf '    check %s\n' "$f_check"
    fi
    echo
    echo "targets"
    printf '  %-44s %12s  %s\n' "a/b <= 1.00" "$ratio" "$(verdict "$ok_ratio")"
    printf '  %-44s %10s s  %s\n' "no-op migrate over $M tenants < 2 s" "$(fmt2 "$t_noop")" "$(verdict "$ok_noop")"
    printf '  %-44s %10s s  %s\n' "status over $M tenants < 2 s (exit 0)" "$(fmt2 "$t_status")" "$(verdict "$ok_status")"
    printf '  %-44s %9s MB  %s\n' "peak RSS (a) < 100 MB" "$(mb "$rss_a")" "$(verdict "$ok_rss_a")"
    printf '  %-44s %9s MB  %s\n' "peak RSS no-op migrate < 100 MB" "$(mb "$rss_noop")" "$(verdict "$ok_rss_noop")"
    printf '  %-44s %9s MB  %s\n' "peak RSS status < 100 MB" "$(mb "$rss_status")" "$(verdict "$ok_rss_status")"
    if [[ $PLAN == 1 ]]; then
        printf '  %-44s %10s s  %s\n' "(e) plan over $M tenants < 2 s (median)" "$(fmt2 "$e_med")" "$(verdict "$ok_e")"
    fi
    if ((V > 0)); then
        printf '  %-44s %10s s  %s\n' "(f) verify over $V tenants < 5 s (median)" "$(fmt2 "$f_med")" "$(verdict "$ok_f")"
    fi
    [[ -n $LOCK_NOTE ]] && printf '\nnote: %s\n' "$LOCK_NOTE"
    echo
    if [[ ${TM_PG_THROWAWAY:-0} == 1 ]]; then
        echo "reproduce (after a run with KEEP=1 TM_PG_KEEP=1, which keeps the cluster and the databases):"
    else
        echo "reproduce (after a run with KEEP=1, which keeps the databases):"
    fi
    echo "  (a) $CMD_A"
    echo "  (c) $CMD_NOOP"
    echo "      $CMD_STATUS"
    if [[ $PLAN == 1 ]]; then
        echo "  (e) $CMD_PLAN"
        echo "      (the light set plus $v_next is a temporary folder, removed on exit)"
    fi
    if ((V > 0)); then
        echo "  (f) $CMD_VERIFY"
        echo "      (exit 1: $DRIFT_TENANT lacks $DRIFT_INDEX, dropped by hand)"
    fi
    echo "=============================================================="
} | tee "$work/report"
strict_exit "$work/report"
