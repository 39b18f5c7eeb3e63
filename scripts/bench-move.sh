#!/usr/bin/env bash
# scripts/bench-move.sh: how fast `tenantmig migrate-to` moves every schema
# to a new version with the clone strategy, against copying the same schemas
# one by one with `tenantmig copy-into-new-schema`.
#
#   scripts/bench-move.sh                     # TENANTS=50, ROWS=2000, throwaway cluster
#   scripts/bench-move.sh 20                  # TENANTS=20 (first argument, or TENANTS=...)
#   TENANTS=100 ROWS=500 RUNS=5 JOBS=8 scripts/bench-move.sh
#   DATABASE_URL=postgres://postgres@localhost/postgres scripts/bench-move.sh
#
# Builds the release binary (into CARGO_TARGET_DIR, default
# /tmp/tenantmig-bench-move-target, so that it never waits on the lock of
# the work tree's target/), finds or starts PostgreSQL (scripts/pg.sh),
# creates the database tenantmig_bench_move (dropped at the end unless
# KEEP=1; no other database is touched) and, in it:
#
#  setup: `tenantmig migrate --shared-only` (shared/ into public), then
#      tests/cases/move/seed_shared.sql, TENANTS organizations move_00001...
#      in public.organizations, `tenantmig migrate --tenants-only` (which
#      creates their schemas and applies tenant/), and each tenant seeded by
#      tests/cases/move/seed_tenant.sql with ROWS workflows (about 17 * ROWS
#      rows per tenant), JOBS psql processes at a time; then VACUUM (FREEZE,
#      ANALYZE), so that neither step below pays for hint bits or
#      statistics. The tenants are those of the config's tenants query
#      (SELECT schema_name FROM public.organizations ORDER BY id).
#  (a) `tenantmig migrate-to v2 --jobs JOBS` with a clone version:
#          [versions.v2]
#          strategy = "clone"
#          shared_schema = "public_v2"
#          tenant_schema = "{schema}_v2"
#      (the version's migrations default to shared/ and tenant/, so nothing
#      is pending in the copies: the move is the copies and their checks),
#      wall clock and peak RSS. Checks exit 0, that public_v2 and every
#      <tenant>_v2 exist and that each of their tables has the rows of its
#      source. Then `tenantmig migrate-to v2 --abort --yes` drops them (timed
#      as extra information) and the script checks that they are gone.
#  (b) the same schemas copied one by one, as an operator without migrate-to
#      would: one `tenantmig copy-into-new-schema SRC SRC_seq --jobs 1`
#      process per schema, public first, then the tenants in the order of the
#      tenants query; the wall clock of the whole loop, and the highest peak
#      RSS of its processes. Checks the rows like (a), then drops the copies
#      (DROP SCHEMA ... CASCADE, one statement each).
#
# (a) and (b) run RUNS times, each on the same source schemas, alternating
# which goes first; each figure is the median of its repetitions. A
# CHECKPOINT precedes every timed step. Then it prints the figures, a/b and
# the target with PASS/MISS:
#   a/b < 1.0 (the move copies JOBS tenants at once, so it should be faster)
# and the distinct warnings the tool printed, with how often.
#
# Variables:
#   TENANTS=50    tenant schemas (at most 99999; the first argument wins)
#   ROWS=2000     workflows per tenant (seed_tenant.sql writes about 17 rows
#                 per workflow over its tables: ~34,000 rows, ~8 MB with
#                 indexes, per tenant)
#   JOBS=4        migrate-to --jobs, and psql processes seeding the tenants
#   RUNS=3        repetitions of (a) and (b); the median counts
#   KEEP=1        keep the database tenantmig_bench_move (at v1: the copies
#                 of the last run are dropped all the same) and the config
#                 file (/tmp/tenantmig_bench_move.toml)
#   STRICT=1      exit 1 when the target is missed (default: exit 0 once
#                 measured)
#   CARGO_TARGET_DIR  where to build (default /tmp/tenantmig-bench-move-target)
#   DATABASE_URL, TM_PG_KEEP, TM_PG_PORT: see scripts/pg.sh
#
# Any TENANTMIG_* variable of the calling environment is ignored (unset), so
# that only the settings of this script apply. Needs psql, PostgreSQL 12 or
# later (the example schema has a generated column) and GNU time
# (/usr/bin/time, for the peak RSS). Exit: 0 measured (and, with STRICT=1,
# the target met); 1 a step failed, a check failed, or the target was missed
# (STRICT=1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_NAME=bench-move # die's prefix (scripts/bench-lib.sh)
BENCH_MISS=MISS       # verdict of a target not met
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh
source scripts/bench-lib.sh

TENANTS=${1:-${TENANTS:-50}}
ROWS=${ROWS:-2000}
JOBS=${JOBS:-4}
RUNS=${RUNS:-3}
KEEP=${KEEP:-0}
STRICT=${STRICT:-0}
need_counts TENANTS ROWS JOBS RUNS
((TENANTS <= 99999)) || die "TENANTS is at most 99999 (schema names have 5 digits)"
((ROWS <= 1000000)) || die "ROWS is at most 1000000"

DB=tenantmig_bench_move
VERSION=v2
SHARED=public         # the shared schema (tenantmig's default)
SHARED_V2=public_v2   # the version's shared schema
SUFFIX_A=_v2          # the version's tenant_schema is {schema}_v2
SUFFIX_B=_seq         # (b)'s copies
PREFIX=move_          # tenant schemas move_00001...
SEED_DIR=tests/cases/move
TENANTS_QUERY="SELECT schema_name FROM public.organizations ORDER BY id"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/tenantmig-bench-move-target}

unset_tenantmig_env
need_cargo_and_gnu_time
build_release "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
REVISION=$(git describe --always --dirty 2>/dev/null || echo '?')

tm_ensure_postgres
ADMIN_URL=$TM_ADMIN_URL

work=$(mktemp -d /tmp/tenantmig-bench-move.XXXXXX)
# The bench database joins BENCH_DBS (dropped on exit unless KEEP=1) once
# this script has created it.
trap bench_cleanup EXIT

# The config: in $work (removed on exit), or kept beside it with KEEP=1 so
# that the reproduce lines of the report still work.
if [[ $KEEP == 1 ]]; then
    CFG=/tmp/$DB.toml
else
    CFG=$work/tenantmig.toml
fi
cat >"$CFG" <<EOF
# scripts/bench-move.sh: the tenants and the clone version it moves to.
[tenants]
query = "$TENANTS_QUERY"

[versions.$VERSION]
strategy = "clone"
shared_schema = "$SHARED_V2"
tenant_schema = "{schema}$SUFFIX_A"
EOF

# ---------------------------------------------------------------- helpers

# tool LOG ARGS...: runs tenantmig with the config (untimed step), output to
# LOG; dies with the command and its output when it fails.
tool() {
    local log=$1
    shift
    tool_cmd "$URL" -- --config "$CFG" "$@"
    if ! "${TOOL_CMD[@]}" >"$log" 2>&1; then
        show_log "$log"
        die "tenantmig failed; reproduce with: $TOOL_SHOW"
    fi
}

# tool_timed LABEL LOG ARGS...: runs tenantmig with the config under `timed`;
# dies with the command and its output when it fails. Sets T_SECS, T_KB and
# LAST_SHOW.
tool_timed() {
    local label=$1 log=$2
    shift 2
    tool_cmd "$URL" -- --config "$CFG" "$@"
    LAST_SHOW=$TOOL_SHOW
    timed "$log" "${TOOL_CMD[@]}"
    if [[ $T_RC != 0 ]]; then
        show_log "$log"
        die "$label: tenantmig exited $T_RC; reproduce with: $TOOL_SHOW"
    fi
}

# copies SHARED_TARGET SUFFIX: "source table rows" per table of the copies:
# SHARED_TARGET for public, <tenant>SUFFIX for each tenant, named by their
# source schema (exact counts, one query). With public and no suffix: the
# sources themselves.
copies() {
    psql "$URL" -XAtq -F ' ' -v ON_ERROR_STOP=1 -v shared="$1" -v suffix="$2" -v src_shared="$SHARED" <<'SQL'
WITH pairs AS (
    SELECT :'src_shared'::text AS src, :'shared'::text AS dst
    UNION ALL
    SELECT schema_name, schema_name || :'suffix' FROM public.organizations
)
SELECT p.src, c.relname,
       (xpath('/row/n/text()',
              query_to_xml(format('SELECT count(*) AS n FROM %I.%I', p.dst, c.relname),
                           false, true, '')))[1]::text::bigint
FROM pairs p
JOIN pg_namespace n ON n.nspname = p.dst
JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p')
ORDER BY 1, 2;
SQL
}

# existing SCHEMA: 1 when the schema exists, else 0.
existing() { psql_q "$URL" "SELECT count(*) FROM pg_namespace WHERE nspname = '$1'"; }

# check_copies LABEL SHARED_TARGET SUFFIX [CMD]: SHARED_TARGET and every
# <tenant>SUFFIX exist and each of their tables has the rows of its source;
# the failure names CMD to reproduce it, if given.
check_copies() {
    local label=$1 shared=$2 suffix=$3 cmd=${4:-} n got
    n=$(psql_q "$URL" "SELECT count(*) FROM public.organizations o JOIN pg_namespace n ON n.nspname = o.schema_name || '$suffix'")
    [[ $(existing "$shared") == 1 ]] || die "$label: schema $shared does not exist${cmd:+; reproduce with: $cmd}"
    [[ $n == "$TENANTS" ]] || die "$label: $n of the $TENANTS tenant copies <tenant>$suffix exist${cmd:+; reproduce with: $cmd}"
    got=$(copies "$shared" "$suffix")
    if [[ $got != "$SRC_COUNTS" ]]; then
        diff <(printf '%s\n' "$SRC_COUNTS") <(printf '%s\n' "$got") | head -n 40 | sed 's/^/      /' >&2 || true
        die "$label: the copies (>) do not have the rows of their sources (<) (diff above: source table rows)${cmd:+; reproduce with: $cmd}"
    fi
    say "checked: $shared and $TENANTS x <tenant>$suffix exist; their $(wc -l <<<"$got") tables have the rows of their sources"
}

# drop_seq: drops (b)'s copies, one statement (transaction) each.
drop_seq() {
    local s
    {
        echo 'SET client_min_messages = warning;'
        for s in "${SOURCES[@]}"; do
            printf 'DROP SCHEMA IF EXISTS "%s" CASCADE;\n' "$s$SUFFIX_B"
        done
    } | psql "$URL" -Xq -v ON_ERROR_STOP=1 >/dev/null
}

# warnings LOG: the distinct warnings of one tenantmig process in LOG
# ("warning: ..." lines, however indented: copy-into-new-schema prints each
# as it happens and again in its summary).
warnings() { sed -nE 's/^[[:space:]]*(warning: .*)$/\1/p' "$1" | sort -u; }

# ---------------------------------------------------------------- database

step "create database $DB"
URL=$(tm_create_db "$DB")
BENCH_DBS+=("$DB")
server_version=$(psql_q "$URL" 'SHOW server_version')
server_num=$(psql_q "$URL" 'SHOW server_version_num')
((server_num >= 120000)) || die "PostgreSQL $server_version is too old: the example schema needs 12 or later"
max_conn=$(psql_q "$URL" 'SHOW max_connections')
say "$(tm_mask_url "$URL"): PostgreSQL $server_version; max_connections=$max_conn, shared_buffers=$(psql_q "$URL" 'SHOW shared_buffers'), fsync=$(psql_q "$URL" 'SHOW fsync'), synchronous_commit=$(psql_q "$URL" 'SHOW synchronous_commit')"
say "config $CFG:"
sed 's/^/      /' "$CFG" >&2

# ---------------------------------------------------------------- setup

setup_start=$(now)
step "setup: tenantmig migrate --shared-only, then $SEED_DIR/seed_shared.sql"
tool "$work/setup.log" migrate --shared-only
sed 's/^/    /' "$work/setup.log" >&2
PGOPTIONS="-c search_path=$SHARED -c client_min_messages=warning" \
    psql "$URL" -X -q -v ON_ERROR_STOP=1 --single-transaction -f "$SEED_DIR/seed_shared.sql" >/dev/null ||
    die "$SEED_DIR/seed_shared.sql failed"

step "setup: $TENANTS organizations ${PREFIX}00001..${PREFIX}$(printf '%05d' "$TENANTS"), tenantmig migrate --tenants-only --jobs $JOBS"
psql "$URL" -Xq -v ON_ERROR_STOP=1 -v n="$TENANTS" -v prefix="$PREFIX" >/dev/null <<'SQL'
INSERT INTO public.organizations (name, schema_name, plan)
SELECT 'Organization ' || g,
       :'prefix' || lpad(g::text, 5, '0'),
       (ARRAY['free', 'pro', 'enterprise'])[1 + g % 3]
FROM generate_series(1, :n) AS g
ORDER BY g;
SQL
tool "$work/setup.log" migrate --tenants-only --jobs "$JOBS"
tail -n 1 "$work/setup.log" | sed 's/^/    /' >&2
mapfile -t TENANT_NAMES < <(psql_q "$URL" "$TENANTS_QUERY")
[[ ${#TENANT_NAMES[@]} == "$TENANTS" ]] || die "the tenants query returns ${#TENANT_NAMES[@]} schemas, not $TENANTS"
SOURCES=("$SHARED" "${TENANT_NAMES[@]}")

step "setup: seed $TENANTS tenants with $ROWS workflows each ($SEED_DIR/seed_tenant.sql, $JOBS psql processes)"
seed_start=$(now)
# One psql process per tenant, one transaction each.
if ! printf '%s\n' "${TENANT_NAMES[@]}" |
    xargs -P "$JOBS" -I '{}' psql "$URL" -X -q -v ON_ERROR_STOP=1 --single-transaction \
        -c 'SET client_min_messages = warning' -c 'SET search_path TO "{}", public' \
        -c "SET tenantmig_seed.rows = '$ROWS'" -f "$SEED_DIR/seed_tenant.sql" \
        >"$work/seed.log" 2>&1; then
    show_log "$work/seed.log"
    die "seeding the tenants failed"
fi
t_seed=$(elapsed "$seed_start" "$(now)")
say "seeded in $(fmt3 "$t_seed") s"
vacuum_start=$(now)
psql "$URL" -Xq -v ON_ERROR_STOP=1 -c 'VACUUM (FREEZE, ANALYZE)' >/dev/null || die "VACUUM failed"
t_vacuum=$(elapsed "$vacuum_start" "$(now)")
say "VACUUM (FREEZE, ANALYZE) in $(fmt3 "$t_vacuum") s"
t_setup=$(elapsed "$setup_start" "$(now)")

SRC_COUNTS=$(copies "$SHARED" "")
total_rows=$(awk '{ s += $3 } END { print s }' <<<"$SRC_COUNTS")
tenant_rows=$(awk -v t="${TENANT_NAMES[0]}" '$1 == t { s += $3 } END { print s }' <<<"$SRC_COUNTS")
shared_rows=$(awk -v t="$SHARED" '$1 == t { s += $3 } END { print s }' <<<"$SRC_COUNTS")
n_tables=$(wc -l <<<"$SRC_COUNTS")
read -r all_bytes all_pretty tenant_pretty < <(psql "$URL" -XAtq -F ' ' -v ON_ERROR_STOP=1 -v first="${TENANT_NAMES[0]}" -v shared="$SHARED" <<'SQL'
SELECT sum(pg_total_relation_size(c.oid)),
       replace(pg_size_pretty(sum(pg_total_relation_size(c.oid))), ' ', ''),
       replace(pg_size_pretty(sum(pg_total_relation_size(c.oid)) FILTER (WHERE n.nspname = :'first')), ' ', '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND (n.nspname = :'shared' OR n.nspname IN (SELECT schema_name FROM public.organizations));
SQL
)
all_mb=$(awk -v b="$all_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')
say "setup done in $(fmt3 "$t_setup") s: $total_rows rows in $n_tables tables of ${#SOURCES[@]} schemas, $all_pretty with indexes; ${TENANT_NAMES[0]}: $tenant_rows rows, $tenant_pretty; $SHARED: $shared_rows rows"

# ---------------------------------------------------------------- (a) (b)

# run_a: (a), its checks and its --abort. Appends to a_times, a_abort,
# rss_a, a_jobs; sets CMD_A.
run_a() {
    local left
    step "run $run/$RUNS: (a) tenantmig migrate-to $VERSION --jobs $JOBS"
    checkpoint "$URL"
    tool_timed "(a)" "$work/a.log" migrate-to "$VERSION" --jobs "$JOBS"
    CMD_A=$LAST_SHOW
    a_times+=("$T_SECS")
    rss_a=$(max "$T_KB" "$rss_a")
    warnings "$work/a.log" >>"$work/a_warnings"
    sed 's/^/      /' "$work/a.log" >&2
    # The tenants moved at once, after the tool's cap on connections:
    # "moving 50 tenants to v2, 4 at a time" (older builds: "migrating 50
    # tenants with 4 jobs").
    a_jobs=$(sed -nE -e 's/^moving .*, ([0-9]+) at a time$/\1/p' \
        -e 's/^migrating .* tenants with ([0-9]+) jobs?$/\1/p' "$work/a.log" | tail -n 1)
    say "(a) $(fmt3 "$T_SECS") s, peak RSS $(mb "$T_KB") MB${a_jobs:+, $a_jobs tenants at once}"
    check_copies "(a)" "$SHARED_V2" "$SUFFIX_A" "$CMD_A"

    tool_timed "(a) cleanup" "$work/a_abort.log" migrate-to "$VERSION" --abort --yes
    CMD_ABORT=$LAST_SHOW
    a_abort+=("$T_SECS")
    left=$(psql_q "$URL" "SELECT count(*) FROM pg_namespace WHERE nspname = '$SHARED_V2' OR nspname IN (SELECT schema_name || '$SUFFIX_A' FROM public.organizations)")
    [[ $left == 0 ]] || die "(a) cleanup: $left of the move's schemas are still there after: $CMD_ABORT"
    say "(a) cleanup: migrate-to $VERSION --abort --yes in $(fmt3 "$T_SECS") s: $(tail -n 1 "$work/a_abort.log")"
}

# run_b: (b), its checks and the drops. Appends to b_times and rss_b; sets
# CMD_B (the first command, for the shared schema) and CMD_B_TENANT (the
# last).
run_b() {
    local s start rss=0
    step "run $run/$RUNS: (b) tenantmig copy-into-new-schema SRC SRC$SUFFIX_B --jobs 1, ${#SOURCES[@]} schemas one by one"
    : >"$work/b.log"
    checkpoint "$URL"
    start=$(now)
    for s in "${SOURCES[@]}"; do
        tool_timed "(b) $s" "$work/b_one.log" copy-into-new-schema "$s" "$s$SUFFIX_B" --jobs 1
        if [[ $s == "$SHARED" ]]; then
            CMD_B=$LAST_SHOW
        fi
        CMD_B_TENANT=$LAST_SHOW
        rss=$(max "$T_KB" "$rss")
        cat "$work/b_one.log" >>"$work/b.log"
        warnings "$work/b_one.log" >>"$work/b_warnings"
    done
    T_SECS=$(elapsed "$start" "$(now)")
    b_times+=("$T_SECS")
    rss_b=$(max "$rss" "$rss_b")
    say "(b) $(fmt3 "$T_SECS") s for ${#SOURCES[@]} processes, highest peak RSS $(mb "$rss") MB"
    say "(b) last copy: $(grep -m 1 '^copied schema' "$work/b_one.log" || tail -n 1 "$work/b_one.log")"
    check_copies "(b)" "$SHARED$SUFFIX_B" "$SUFFIX_B"
    start=$(now)
    drop_seq
    say "(b) cleanup: dropped the ${#SOURCES[@]} copies in $(fmt3 "$(elapsed "$start" "$(now)")") s"
}

a_times=() b_times=() a_abort=() rss_a=0 rss_b=0 a_jobs=""
: >"$work/a_warnings"
: >"$work/b_warnings"
for ((run = 1; run <= RUNS; run++)); do
    # Alternate which goes first, so that neither always finds the other's
    # leftovers (dead catalog rows, dirty buffers, a cold cache).
    if ((run % 2)); then
        run_a
        run_b
    else
        run_b
        run_a
    fi
done
med_a=$(median "${a_times[@]}")
med_b=$(median "${b_times[@]}")
med_abort=$(median "${a_abort[@]}")

# ---------------------------------------------------------------- report

r_ab=$(ratio "$med_a" "$med_b")
ok_ab=$(lt "$r_ab" 1.0)
mbps() { awk -v mb="$all_mb" -v s="$1" 'BEGIN { if (s > 0) printf "%.0f", mb / s; else print "-" }'; }
med=""
((RUNS > 1)) && med=" (median of $RUNS)"
# runs_note X...: the repetitions, when there are several.
runs_note() { if (($# > 1)); then printf '  [%s]' "$(all "$@")"; fi; }
# The tool's distinct warnings, with the number of processes that printed
# them, per step.
warn_a=$(sort "$work/a_warnings" | uniq -c | sort -rn | sed 's/^ */      /')
warn_b=$(sort "$work/b_warnings" | uniq -c | sort -rn | sed 's/^ */      /')
# When the tool capped --jobs (its warning says why), or had fewer tenants.
a_note="clone"
if [[ -n $a_jobs && $a_jobs != "$JOBS" ]]; then
    a_note="clone, $a_jobs at once"
fi

{
    echo
    echo "==================== tenantmig move benchmark ===================="
    printf 'server     PostgreSQL %s at %s%s\n' "$server_version" "$(tm_mask_url "$ADMIN_URL")" \
        "$([[ ${TM_PG_THROWAWAY:-0} == 1 ]] && echo ' (throwaway cluster)')"
    printf 'host       %s CPUs; tenantmig %s; jobs %s; runs %s\n' \
        "$(nproc 2>/dev/null || echo '?')" "$REVISION" "$JOBS" "$RUNS"
    printf 'data       %s tenants x %s workflows (%s rows, %s each) + %s (%s rows):\n' \
        "$TENANTS" "$ROWS" "$tenant_rows" "$tenant_pretty" "$SHARED" "$shared_rows"
    printf '           %s rows in %s tables, %s with indexes; set up in %s s (seeding %s s)\n' \
        "$total_rows" "$n_tables" "$all_pretty" "$(fmt3 "$t_setup")" "$(fmt3 "$t_seed")"
    echo
    printf '%-72s %8s s  %4s MB/s  peak RSS %s MB%s\n' "(a) tenantmig migrate-to $VERSION --jobs $JOBS ($a_note)$med" \
        "$(fmt3 "$med_a")" "$(mbps "$med_a")" "$(mb "$rss_a")" "$(runs_note "${a_times[@]}")"
    printf '%-72s %8s s  %4s MB/s  peak RSS %s MB%s\n' "(b) copy-into-new-schema --jobs 1, ${#SOURCES[@]} schemas one by one$med" \
        "$(fmt3 "$med_b")" "$(mbps "$med_b")" "$(mb "$rss_b")" "$(runs_note "${b_times[@]}")"
    printf '%-72s %8s\n' "    a/b" "$r_ab"
    printf '%-72s %8s s%s\n' "    migrate-to $VERSION --abort --yes after (a) (info)$med" \
        "$(fmt3 "$med_abort")" "$(runs_note "${a_abort[@]}")"
    echo
    echo "targets"
    printf '  %-56s %8s  %s\n' "a/b < 1.00 (migrate-to --jobs $JOBS vs one by one)" "$r_ab" "$(verdict "$ok_ab")"
    echo
    echo "warnings printed by tenantmig (processes that printed it, text):"
    if [[ -z $warn_a && -z $warn_b ]]; then
        echo "  none"
    else
        [[ -n $warn_a ]] && { echo "  (a) migrate-to, $RUNS process(es):"; echo "$warn_a"; }
        [[ -n $warn_b ]] && { echo "  (b) copy-into-new-schema, $((RUNS * ${#SOURCES[@]})) processes:"; echo "$warn_b"; }
    fi
    echo
    echo "checks: public_v2 and every <tenant>_v2 of (a), public_seq and every <tenant>_seq of (b)"
    echo "exist, and each of their tables has the rows of its source"
    echo
    if [[ ${TM_PG_THROWAWAY:-0} == 1 ]]; then
        echo "reproduce (after a run with KEEP=1 TM_PG_KEEP=1, which keeps the cluster, the database at"
    else
        echo "reproduce (after a run with KEEP=1, which keeps the database at"
    fi
    echo "v1 and the config $CFG; run from the repository's top folder):"
    [[ $KEEP == 1 ]] || echo "  (without KEEP=1 the config is a temporary file, removed on exit)"
    echo "  (a) $CMD_A"
    echo "      $CMD_ABORT"
    echo "  (b) $CMD_B"
    echo "      ... one process per schema, up to"
    echo "      $CMD_B_TENANT"
    echo "=================================================================="
} | tee "$work/report"
strict_exit "$work/report"
