#!/usr/bin/env bash
# scripts/bench-scale.sh: how tenantmig's read path scales with the number of
# tenants: `status`, `status --format json`, `plan` and a no-op `migrate`
# over 10,000, 50,000 and 100,000 up-to-date tenant schemas.
#
#   scripts/bench-scale.sh                        # SIZES="10000 50000 100000", throwaway cluster
#   SIZES="10000 100000" RUNS=5 scripts/bench-scale.sh
#   scripts/bench-scale.sh --rebuild              # build the databases afresh
#   DATABASE_URL=postgres://postgres@localhost/postgres scripts/bench-scale.sh
#
# Builds the release binary (honours CARGO_TARGET_DIR, default target), finds
# or starts PostgreSQL (scripts/pg.sh), then for each size N:
#
#  build: the database tenantmig_scale_N, built on the server in bulk, not by
#      running the tenant migrations N times:
#      - `tenantmig migrate --tenant bench_template` with the example sets
#        (shared/ and tenant/): the shared schema (public) and the control
#        schema are migrated by the real binary, and so is one template
#        schema, bench_template, whose history table (_sqlx_migrations, as
#        the tool creates it) has one applied row per tenant migration, with
#        the checksums the tool computed from the files;
#      - N tenant schemas scale_000001..., each holding only a copy of that
#        history table (CREATE TABLE ... (LIKE bench_template._sqlx_migrations
#        INCLUDING ALL), then INSERT ... SELECT of its rows), BATCH schemas
#        per transaction, BUILD_JOBS psql sessions at once (each batch one
#        DO block); the batch shrinks when max_locks_per_transaction is small
#        (a new table takes about four lock slots: table, primary key, TOAST
#        table and its index);
#      - VACUUM ANALYZE of the catalogs that grew, and a marker: the
#        database's comment names N and a fingerprint of shared/ and tenant/.
#      A database whose marker matches is reused as it is (a rerun against a
#      kept server skips the build); --rebuild (or REBUILD=1) forces a new
#      one. A reused database that fails the warm-up check is rebuilt once.
#      The tenants are found with TENANTMIG_TENANTS__PATTERN='scale\_%'
#      (bench_template is not one of them).
#  warm-up: one `tenantmig status`, not timed (it also sets the hint bits of
#      freshly written tables), which must exit 0 with "N up to date".
#  measure: each of these RUNS times (a CHECKPOINT before each run), the
#      median counts, the highest peak RSS (/usr/bin/time %M) counts:
#        status                 exit 0, "N up to date"
#        status --format json   exit 0, N+1 schemas "up_to_date" (shared too)
#        plan                   exit 0, "N tenants up to date", no tenant with work
#        migrate (no-op)        exit 0, "0 tenants migrated, N already up to
#                               date", no run_tenants row for its run, and the
#                               relations of the tenant schemas unchanged
#                               (nothing ran there)
#  faults (at the largest size, FAULTS=1): in three tenants, at a quarter, a
#      half and three quarters of the list: an edited checksum (version 0003's
#      recorded checksum overwritten), a failed row (the last version's
#      success = false) and a missing history table (dropped). Then status,
#      status --format json, plan and migrate, RUNS times each: checks that
#      each of the three is named (status: checksum mismatch, failed, behind;
#      JSON: their states; plan: the two refused named and the third one
#      with work; migrate: the two refused named under failures, the third
#      migrated), and the exit code: 1, except plan (always 0: it only
#      plans). migrate applies the tenant set to the tenant without history
#      table, so the faults are laid again before each migrate run. The three
#      tenants are restored afterwards (dropped and cloned from the template
#      again).
#
# Then it prints one table (median, best, every run, the client's CPU
# seconds (user + system, median), peak RSS, exit, checks),
# the cost per 1,000 tenants and the ratio to the smallest size, and the
# targets at 100,000 tenants with PASS/FAIL: each command < 3 s (median) and
# < 100 MB peak RSS, and each fault run < 3 s with its checks passed.
#
# Timings are wall clock on a machine that may be shared: give proportions
# (the ratios, the per-1,000 cost) more weight than single figures, and look
# at the load average printed with the report.
#
# Variables:
#   SIZES="10000 50000 100000"  tenant counts (1..999999)
#   RUNS=3         repetitions of each measured command; the median counts
#   BATCH=5000     schemas created per transaction while building
#   BUILD_JOBS=2   psql sessions creating schemas at once
#   FAULTS=1       0 skips the fault runs at the largest size
#   REBUILD=1      same as --rebuild
#   KEEP=0         drop the tenantmig_scale_N databases at the end (default:
#                  keep them, so that a rerun against the same server reuses
#                  them; a throwaway cluster takes them with it unless
#                  TM_PG_KEEP=1, then rerun with DATABASE_URL set to it)
#   STRICT=1       exit 1 when a target fails (default: exit 0 once measured)
#   DATABASE_URL, TM_PG_KEEP, TM_PG_PORT: see scripts/pg.sh
#
# Any TENANTMIG_* variable of the calling environment is ignored (unset), so
# that only the settings of this script apply. Exit: 0 measured (and, with
# STRICT=1, every target met); 1 a step or a check failed, or a target failed
# (STRICT=1).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BENCH_NAME=bench-scale # die's prefix (scripts/bench-lib.sh)
BENCH_MISS=FAIL        # verdict of a target not met
SHOW_LOG_PATHS=0       # show_log names a log by its file name
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh
source scripts/bench-lib.sh

REBUILD=${REBUILD:-0}
for arg in "$@"; do
    case $arg in
    --rebuild) REBUILD=1 ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument '$arg' (only --rebuild; sizes go in SIZES=...)" ;;
    esac
done

SIZES=${SIZES:-10000 50000 100000}
RUNS=${RUNS:-3}
BATCH=${BATCH:-5000}
BUILD_JOBS=${BUILD_JOBS:-2}
FAULTS=${FAULTS:-1}
KEEP=${KEEP:-1}
STRICT=${STRICT:-0}
need_counts RUNS BATCH BUILD_JOBS
[[ $FAULTS == 0 || $FAULTS == 1 ]] || die "FAULTS must be 0 or 1, not '$FAULTS'"
read -r -a sizes <<<"$SIZES"
((${#sizes[@]} > 0)) || die "SIZES is empty"
for n in "${sizes[@]}"; do
    { is_count "$n" && ((n <= 999999)); } || die "each size in SIZES must be from 1 to 999999, not '$n'"
done
mapfile -t sizes < <(printf '%s\n' "${sizes[@]}" | sort -n -u)
LARGEST=${sizes[${#sizes[@]} - 1]}

SHARED_DIR=shared
TENANT_DIR=tenant
HISTORY_TABLE=_sqlx_migrations # tenantmig's default history_table
SHARED_SCHEMA=public           # tenantmig's default shared_schema
CONTROL_SCHEMA=tenantmig       # tenantmig's default control_schema
TEMPLATE=bench_template
PREFIX=scale_
PATTERN='scale\_%'
TARGET_SIZE=100000
TARGET_SECS=3
TARGET_MB=100
COMMANDS=(status status-json plan migrate)

unset_tenantmig_env
need_cargo_and_gnu_time
build_release "cargo build --release"

tm_ensure_postgres
ADMIN_URL=$TM_ADMIN_URL

work=$(mktemp -d /tmp/tenantmig-bench-scale.XXXXXX)
# The databases go on exit only with KEEP=0 (bench_cleanup); the list is
# filled as they are made.
trap bench_cleanup EXIT

# ---------------------------------------------------------------- helpers

# tenant_name I: scale_000042.
tenant_name() { printf '%s%06d' "$PREFIX" "$1"; }

fmt2() { awk -v x="$1" 'BEGIN { printf "%.2f", x }'; }
# thousands N: N as tenantmig prints counts (9996 -> 9,996).
thousands() { awk -v n="$1" 'BEGIN { s = n ""; while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s); print s }'; }

# load_avg: the 1-minute load average (how busy the machine was).
load_avg() { cut -d ' ' -f 1 /proc/loadavg 2>/dev/null || echo '?'; }

# sets_fingerprint: what the databases are built from (the example sets'
# files, names and contents); a change means a rebuild.
sets_fingerprint() {
    find "$SHARED_DIR" "$TENANT_DIR" -maxdepth 1 -name '*.sql' -type f -print0 |
        sort -z | xargs -0 sha256sum | sha256sum | cut -c 1-16
}

# marker N: the database comment of a complete build of N tenants.
marker() { printf 'tenantmig bench-scale: %s tenants %s000001.., history %s, sets %s' "$1" "$PREFIX" "$HISTORY_TABLE" "$FINGERPRINT"; }

# db_comment DB: the comment of database DB ("" when none or no database).
db_comment() {
    psql "$ADMIN_URL" -XAtq -v ON_ERROR_STOP=1 -v db="$1" <<'SQL'
SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = :'db';
SQL
}

# tenant_relations URL: the relations (tables, indexes, TOAST) in the tenant
# schemas, counted: what a migration run would change.
tenant_relations() {
    psql_q "$1" "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE '$PATTERN'"
}

# tenant_histories URL: the tenant schemas that have a history table.
tenant_histories() {
    psql_q "$1" "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname LIKE '$PATTERN' AND c.relname = '$HISTORY_TABLE' AND c.relkind = 'r'"
}

# clone_tenants URL FROM TO: creates the tenant schemas FROM..TO, each with a
# copy of the template's history table and rows, in one transaction (one DO
# block; psql variables are not expanded inside its body, so the settings
# come in as custom options).
clone_tenants() {
    PGOPTIONS="-c bench.prefix=$PREFIX -c bench.from=$2 -c bench.to=$3 -c bench.template=$TEMPLATE -c bench.history=$HISTORY_TABLE" \
        psql "$1" -Xq -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SET client_min_messages = warning;
DO $$
DECLARE
    prefix   text := current_setting('bench.prefix');
    first    int  := current_setting('bench.from')::int;
    last     int  := current_setting('bench.to')::int;
    template text := current_setting('bench.template');
    history  text := current_setting('bench.history');
    s        text;
BEGIN
    FOR i IN first..last LOOP
        s := prefix || lpad(i::text, 6, '0');
        EXECUTE format('CREATE SCHEMA %I', s);
        EXECUTE format('CREATE TABLE %I.%I (LIKE %I.%I INCLUDING ALL)', s, history, template, history);
        EXECUTE format('INSERT INTO %I.%I SELECT * FROM %I.%I', s, history, template, history);
    END LOOP;
END
$$;
SQL
}

# restore_tenant URL I: tenant I dropped and cloned from the template again.
restore_tenant() {
    psql "$1" -Xq -v ON_ERROR_STOP=1 -v s="$(tenant_name "$2")" >/dev/null <<<'SET client_min_messages = warning; DROP SCHEMA IF EXISTS :"s" CASCADE;'
    clone_tenants "$1" "$2" "$2"
}

# tool URL ARGS...: sets TOOL_CMD/TOOL_SHOW (tool_cmd) for the scale tenants.
tool() {
    local url=$1
    shift
    tool_cmd "$url" TENANTMIG_TENANTS__PATTERN="$PATTERN" \
        TENANTMIG_SHARED_MIGRATIONS="$SHARED_DIR" TENANTMIG_TENANT_MIGRATIONS="$TENANT_DIR" \
        -- "$@"
}

# command_args NAME: the tenantmig arguments of a measured command.
command_args() {
    case $1 in
    status) echo status ;;
    status-json) echo status --format json ;;
    plan) echo plan ;;
    migrate) echo migrate ;;
    esac
}

# ---------------------------------------------------------------- build

# build_db N URL: the database of N tenants, built afresh (see the top).
build_db() {
    local n=$1 url=$2 start from to batch jobs=0 failed=0 pids=()
    start=$(now)
    tool "$url" migrate --tenant "$TEMPLATE"
    timed "$work/build_template.log" "${TOOL_CMD[@]}"
    if [[ $T_RC != 0 ]]; then
        show_log "$work/build_template.log"
        die "tenantmig migrate --tenant $TEMPLATE exited $T_RC; reproduce with: $TOOL_SHOW"
    fi
    local rows
    rows=$(psql_q "$url" "SELECT count(*) FROM $TEMPLATE.$HISTORY_TABLE WHERE success")
    [[ $rows == "$N_TENANT_MIGRATIONS" ]] ||
        die "$TEMPLATE has $rows applied history rows, expected $N_TENANT_MIGRATIONS (one per tenant migration)"
    say "migrated $SHARED_SCHEMA, $CONTROL_SCHEMA and $TEMPLATE with the real binary ($rows history rows) in $(fmt2 "$T_SECS") s"

    # Every session gets work, even at small sizes.
    batch=$(((n + BUILD_JOBS - 1) / BUILD_JOBS))
    ((batch > BUILD_BATCH)) && batch=$BUILD_BATCH
    for ((from = 1; from <= n; from += batch)); do
        to=$((from + batch - 1 < n ? from + batch - 1 : n))
        clone_tenants "$url" "$from" "$to" >"$work/clone_$from.log" 2>&1 &
        pids+=($!)
        jobs=$((jobs + 1))
        if ((jobs >= BUILD_JOBS)); then
            wait -n || failed=1
            jobs=$((jobs - 1))
        fi
        ((failed == 0)) || break
        if ((to % (batch * BUILD_JOBS * 4) == 0 || to == n)); then
            say "  $(thousands "$to") of $(thousands "$n") schemas started, $(fmt2 "$(elapsed "$start" "$(now)")") s"
        fi
    done
    while ((jobs > 0)); do
        wait -n || failed=1
        jobs=$((jobs - 1))
    done
    if ((failed)); then
        cat "$work"/clone_*.log >&2 || true
        die "creating the tenant schemas of tenantmig_scale_$n failed (above)"
    fi
    psql "$url" -Xq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || die "VACUUM ANALYZE of the catalogs failed"
SET client_min_messages = warning;
VACUUM ANALYZE pg_catalog.pg_namespace, pg_catalog.pg_class, pg_catalog.pg_attribute,
    pg_catalog.pg_type, pg_catalog.pg_depend, pg_catalog.pg_index, pg_catalog.pg_constraint,
    pg_catalog.pg_attrdef;
SQL
    local have
    have=$(tenant_histories "$url")
    [[ $have == "$n" ]] || die "tenantmig_scale_$n: $have tenant schemas with a history table, expected $n"
    psql "$ADMIN_URL" -Xq -v ON_ERROR_STOP=1 -v db="tenantmig_scale_$n" -v m="$(marker "$n")" >/dev/null \
        <<<'COMMENT ON DATABASE :"db" IS :'"'"'m'"'"';'
    BUILD_SECS=$(elapsed "$start" "$(now)")
    say "built $(thousands "$n") tenant schemas in $(fmt2 "$BUILD_SECS") s ($BUILD_JOBS sessions, $batch schemas a transaction)"
}

# warm_up N URL: an untimed status, which must say all N are up to date.
warm_up() {
    local n=$1 url=$2
    tool "$url" status
    timed "$work/warm_up.log" "${TOOL_CMD[@]}"
    WARM_SECS=$T_SECS
    [[ $T_RC == 0 ]] && grep -qxF "  $(thousands "$n") up to date" "$work/warm_up.log"
}

# ---------------------------------------------------------------- checks

# check_output NAME N LOG RC URL: "ok" or what is wrong with one run of an
# up-to-date measurement (REL_BEFORE: the tenant relations before the run).
# shellcheck disable=SC2317 # called through measure
check_output() {
    local name=$1 n=$2 log=$3 rc=$4 url=$5 problems=() got
    [[ $rc == 0 ]] || problems+=("exit $rc")
    case $name in
    status)
        grep -qxF "  $(thousands "$n") up to date" "$log" || problems+=("no line '$(thousands "$n") up to date'")
        ;;
    status-json)
        got=$(grep -o '"state":"up_to_date"' "$log" | wc -l)
        [[ $got == $((n + 1)) ]] || problems+=("$got schemas up_to_date, expected $((n + 1))")
        ;;
    plan)
        grep -qxF "$(thousands "$n") tenants up to date" "$log" || problems+=("no line '$(thousands "$n") tenants up to date'")
        if grep -qE '^[0-9,]+ tenants?: ' "$log"; then problems+=("tenants with work"); fi
        ;;
    migrate)
        grep -qF "0 tenants migrated, $(thousands "$n") already up to date, 0 failed, 0 refused, 0 stopped, 0 not reached" "$log" ||
            problems+=("no summary '0 tenants migrated, $(thousands "$n") already up to date, …'")
        local run_id touched rel
        run_id=$(sed -nE 's/.*\(run ([0-9]+)\)$/\1/p' "$log" | tail -n 1)
        if [[ -z $run_id ]]; then
            problems+=("no run id in the summary")
        else
            touched=$(psql_q "$url" "SELECT count(*) FROM $CONTROL_SCHEMA.run_tenants WHERE run_id = $run_id")
            [[ $touched == 0 ]] || problems+=("run $run_id has $touched run_tenants rows")
        fi
        rel=$(tenant_relations "$url")
        [[ $rel == "$REL_BEFORE" ]] || problems+=("tenant relations $REL_BEFORE -> $rel")
        ;;
    esac
    if ((${#problems[@]} > 0)); then
        (IFS=';'; echo "FAILED: ${problems[*]}")
    else
        echo ok
    fi
}

# check_faults NAME LOG RC URL: "ok" or what is wrong with one fault run.
# shellcheck disable=SC2317 # called through measure
check_faults() {
    local name=$1 log=$2 rc=$3 url=$4 problems=() want_rc=1
    [[ $name == plan ]] && want_rc=0
    [[ $rc == "$want_rc" ]] || problems+=("exit $rc, not $want_rc")
    case $name in
    status)
        grep -qE "^    $T_EDIT: migration [0-9]+ was edited after it was applied" "$log" || problems+=("$T_EDIT not named as edited")
        grep -qE "^    $T_FAIL: migration [0-9]+ \(no-transaction\) failed" "$log" || problems+=("$T_FAIL not named as failed")
        grep -qE "^  behind: .*\\b$T_GONE\\b" "$log" || problems+=("$T_GONE not named as behind")
        grep -qxF "  $(thousands $((FAULT_N - 3))) up to date, 1 behind, 1 checksum mismatch, 1 failed" "$log" ||
            problems+=("no line '$(thousands $((FAULT_N - 3))) up to date, 1 behind, 1 checksum mismatch, 1 failed'")
        ;;
    status-json)
        grep -qF "\"schema\":\"$T_EDIT\",\"state\":\"checksum_mismatch\"" "$log" || problems+=("$T_EDIT not checksum_mismatch")
        grep -qF "\"schema\":\"$T_FAIL\",\"state\":\"failed\"" "$log" || problems+=("$T_FAIL not failed")
        grep -qF "\"schema\":\"$T_GONE\",\"state\":\"behind\"" "$log" || problems+=("$T_GONE not behind")
        ;;
    plan)
        grep -qE "^2 tenants refused \(see \`tenantmig status\`\): ($T_EDIT, $T_FAIL|$T_FAIL, $T_EDIT)\$" "$log" ||
            problems+=("no line '2 tenants refused …: $T_EDIT, $T_FAIL'")
        grep -qE "^1 tenant: .* \($T_GONE\)\$" "$log" || problems+=("$T_GONE not planned")
        ;;
    migrate)
        grep -qF "1 tenant migrated, $(thousands $((FAULT_N - 3))) already up to date, 0 failed, 2 refused" "$log" ||
            problems+=("no summary '1 tenant migrated, $(thousands $((FAULT_N - 3))) already up to date, 0 failed, 2 refused …'")
        grep -qF "$T_EDIT" "$log" || problems+=("$T_EDIT not named")
        grep -qF "$T_FAIL" "$log" || problems+=("$T_FAIL not named")
        local rows
        rows=$(psql_q "$url" "SELECT count(*) FROM $T_GONE.$HISTORY_TABLE WHERE success" 2>/dev/null || echo none)
        [[ $rows == "$N_TENANT_MIGRATIONS" ]] || problems+=("$T_GONE has $rows applied rows after the run")
        ;;
    esac
    if ((${#problems[@]} > 0)); then
        (IFS=';'; echo "FAILED: ${problems[*]}")
    else
        echo ok
    fi
}

# lay_faults URL: the three faults (see the top), on freshly restored tenants.
lay_faults() {
    local url=$1 i
    for i in "$I_EDIT" "$I_FAIL" "$I_GONE"; do
        restore_tenant "$url" "$i"
    done
    psql "$url" -Xq -v ON_ERROR_STOP=1 -v e="$T_EDIT" -v f="$T_FAIL" -v g="$T_GONE" -v h="$HISTORY_TABLE" \
        -v ev="$V_EDIT" -v fv="$V_FAIL" >/dev/null <<'SQL' || die "laying the faults failed"
SET client_min_messages = warning;
UPDATE :"e".:"h" SET checksum = sha384('edited by bench-scale') WHERE version = :ev;
UPDATE :"f".:"h" SET success = false WHERE version = :fv;
DROP TABLE :"g".:"h";
SQL
}

# ---------------------------------------------------------------- measure

# timed_cpu LOG CMD...: timed (T_SECS, T_KB, T_RC), plus T_CPU: the CPU
# seconds (user + system) of the tenantmig process, which a busy machine
# inflates less than the wall clock.
timed_cpu() {
    local log=$1 start end line
    shift
    start=$(now)
    if /usr/bin/time -f '%U %S %M' -o "$work/rss" "$@" >"$log" 2>&1; then
        T_RC=0
    else
        T_RC=$?
    fi
    end=$(now)
    T_SECS=$(elapsed "$start" "$end")
    # time writes "Command exited with non-zero status N" first on failure.
    line=$(tail -n 1 "$work/rss")
    read -r T_CPU T_KB <<<"$(awk '{ printf "%.2f %s", $1 + $2, $3 }' <<<"$line")"
    [[ $T_KB =~ ^[0-9]+$ ]] || T_KB=0
}

# measure KEY NAME LOG URL CHECKER...: runs the command NAME RUNS times (a
# CHECKPOINT before each), checks each run with CHECKER, and records the
# figures under KEY (FIG_*). With FAULT_PREP set, runs it before each run.
declare -A FIG_MED FIG_BEST FIG_ALL FIG_KB FIG_RC FIG_CHECK FIG_CPU
measure() {
    local key=$1 name=$2 log=$3 url=$4 r times=() cpus=() kb=0 rc="" check=ok c
    shift 4
    # shellcheck disable=SC2046 # the arguments are words
    tool "$url" $(command_args "$name")
    CMDS[$name]=$TOOL_SHOW
    for ((r = 1; r <= RUNS; r++)); do
        [[ -n ${FAULT_PREP:-} ]] && $FAULT_PREP "$url"
        REL_BEFORE=$(tenant_relations "$url")
        checkpoint "$url"
        timed_cpu "$log" "${TOOL_CMD[@]}"
        times+=("$T_SECS")
        cpus+=("$T_CPU")
        kb=$(max "$T_KB" "$kb")
        if [[ -z $rc ]]; then rc=$T_RC; elif [[ $rc != "$T_RC" ]]; then rc=mixed; fi
        c=$("$@" "$name" "$log" "$T_RC" "$url")
        if [[ $c != ok ]]; then
            check=$c
            show_log "$log" 15
        fi
        say "$name run $r/$RUNS: $(fmt2 "$T_SECS") s (client CPU $T_CPU s), peak RSS $(mb "$T_KB") MB, exit $T_RC, load $(load_avg); check $c"
    done
    FIG_MED[$key]=$(median "${times[@]}")
    FIG_BEST[$key]=$(printf '%s\n' "${times[@]}" | sort -g | head -n 1)
    FIG_ALL[$key]=$(all "${times[@]}")
    FIG_KB[$key]=$kb
    FIG_CPU[$key]=$(median "${cpus[@]}")
    FIG_RC[$key]=$rc
    FIG_CHECK[$key]=$check
}

# check_up_to_date NAME LOG RC URL: check_output for the current size.
# shellcheck disable=SC2317 # called through measure
check_up_to_date() { check_output "$1" "$CUR_N" "$2" "$3" "$4"; }

# ---------------------------------------------------------------- server

server_version=$(psql_q "$ADMIN_URL" 'SHOW server_version')
max_locks=$(psql_q "$ADMIN_URL" 'SHOW max_locks_per_transaction')
max_conn=$(psql_q "$ADMIN_URL" 'SHOW max_connections')
max_prepared=$(psql_q "$ADMIN_URL" 'SHOW max_prepared_transactions')
say "PostgreSQL $server_version; max_connections=$max_conn, max_locks_per_transaction=$max_locks"
# Lock slots are shared by the whole server: leave room for the rest.
lock_slots=$((max_locks * (max_conn + max_prepared)))
BUILD_BATCH=$((lock_slots / (8 * BUILD_JOBS)))
((BUILD_BATCH > BATCH)) && BUILD_BATCH=$BATCH
((BUILD_BATCH >= 50)) || die "max_locks_per_transaction=$max_locks is too small to build in batches; raise it or lower BUILD_JOBS"
((BUILD_BATCH < BATCH)) && say "note: $BUILD_BATCH schemas a transaction, not $BATCH (max_locks_per_transaction=$max_locks)"

N_TENANT_MIGRATIONS=$(find "$TENANT_DIR" -maxdepth 1 -name '*.sql' ! -name '*.down.sql' | wc -l)
FINGERPRINT=$(sets_fingerprint)
mapfile -t tenant_versions < <(find "$TENANT_DIR" -maxdepth 1 -name '*.sql' ! -name '*.down.sql' -printf '%f\n' |
    sed -nE 's/^([0-9]+)_.*/\1/p' | sort -n)
((${#tenant_versions[@]} >= 3)) || die "$TENANT_DIR needs at least 3 migrations for the fault runs"
V_EDIT=$((10#${tenant_versions[2]}))
V_FAIL=$((10#${tenant_versions[${#tenant_versions[@]} - 1]}))
load_start=$(load_avg)

# ---------------------------------------------------------------- sizes

declare -A BUILT_HOW CMDS WARM
for n in "${sizes[@]}"; do
    db=tenantmig_scale_$n
    url=$(tm_url_for_db "$db" "$ADMIN_URL")
    BENCH_DBS+=("$db")
    CUR_N=$n
    step "$(thousands "$n") tenants: database $db"
    reused=0
    if [[ $REBUILD != 1 && $(db_comment "$db") == "$(marker "$n")" ]]; then
        if [[ $(tenant_histories "$url") == "$n" ]]; then
            reused=1
        else
            say "the marker of $db matches but its tenant count does not: rebuilding"
        fi
    fi
    if ((reused)); then
        say "reusing $db (its marker matches; --rebuild builds it afresh)"
        BUILT_HOW[$n]="reused"
        if ! warm_up "$n" "$url"; then
            show_log "$work/warm_up.log" 10
            say "the reused $db fails the warm-up check: rebuilding it"
            reused=0
        fi
    fi
    if ((!reused)); then
        url=$(tm_create_db "$db")
        build_db "$n" "$url"
        BUILT_HOW[$n]="built in $(fmt2 "$BUILD_SECS") s"
        if ! warm_up "$n" "$url"; then
            show_log "$work/warm_up.log"
            die "warm-up status over the new $db did not say '$(thousands "$n") up to date' (exit $T_RC)"
        fi
    fi
    WARM[$n]=$WARM_SECS
    say "warm-up status: $(fmt2 "$WARM_SECS") s (not counted)"

    step "$(thousands "$n") tenants: status, status --format json, plan, no-op migrate (RUNS=$RUNS)"
    FAULT_PREP=""
    for c in "${COMMANDS[@]}"; do
        measure "$n/$c" "$c" "$work/$n-$c.log" "$url" check_up_to_date
    done
done

# ---------------------------------------------------------------- faults

FAULT_N=$LARGEST
if [[ $FAULTS == 1 ]]; then
    db=tenantmig_scale_$FAULT_N
    url=$(tm_url_for_db "$db" "$ADMIN_URL")
    I_EDIT=$(((FAULT_N + 3) / 4)) I_FAIL=$(((FAULT_N + 1) / 2)) I_GONE=$(((3 * FAULT_N + 3) / 4))
    ((I_GONE > I_FAIL && I_FAIL > I_EDIT)) || die "FAULTS needs at least 4 tenants at the largest size"
    T_EDIT=$(tenant_name "$I_EDIT") T_FAIL=$(tenant_name "$I_FAIL") T_GONE=$(tenant_name "$I_GONE")
    step "$(thousands "$FAULT_N") tenants with faults: $T_EDIT edited checksum (version $V_EDIT), $T_FAIL failed row (version $V_FAIL), $T_GONE no history table"
    # So that a failed check or Ctrl-C does not leave a database whose
    # marker says it is clean.
    psql "$ADMIN_URL" -Xq -v db="$db" >/dev/null <<<'COMMENT ON DATABASE :"db" IS NULL;'
    lay_faults "$url"
    for c in status status-json plan; do
        FAULT_PREP=""
        measure "faults/$c" "$c" "$work/faults-$c.log" "$url" check_faults
    done
    # migrate applies the tenant set where the history table is missing.
    FAULT_PREP=lay_faults
    measure "faults/migrate" migrate "$work/faults-migrate.log" "$url" check_faults
    FAULT_PREP=""
    for i in "$I_EDIT" "$I_FAIL" "$I_GONE"; do
        restore_tenant "$url" "$i"
    done
    [[ $(tenant_histories "$url") == "$FAULT_N" ]] || die "restoring $T_EDIT, $T_FAIL and $T_GONE failed"
    tool "$url" status
    timed "$work/restored.log" "${TOOL_CMD[@]}"
    [[ $T_RC == 0 ]] || { show_log "$work/restored.log"; die "status after restoring the faults exited $T_RC"; }
    psql "$ADMIN_URL" -Xq -v ON_ERROR_STOP=1 -v db="$db" -v m="$(marker "$FAULT_N")" >/dev/null \
        <<<'COMMENT ON DATABASE :"db" IS :'"'"'m'"'"';'
    say "restored $T_EDIT, $T_FAIL and $T_GONE (status exit 0 again)"
fi

# ---------------------------------------------------------------- report

load_end=$(load_avg)
smallest=${sizes[0]}
# row LABEL KEY: one line of the table.
row() {
    local label=$1 key=$2
    printf '%-32s %7s %7s  %-22s %7s %7s  %4s  %s\n' "$label" "$(fmt2 "${FIG_MED[$key]}")" "$(fmt2 "${FIG_BEST[$key]}")" \
        "[${FIG_ALL[$key]}]" "$(fmt2 "${FIG_CPU[$key]}")" "$(mb "${FIG_KB[$key]}")" "${FIG_RC[$key]}" "${FIG_CHECK[$key]}"
}
target_lines=()
# target LABEL KEY: the target lines (time, RSS, checks) of one measurement.
target() {
    local label=$1 key=$2 ok_t ok_m
    ok_t=$(lt "${FIG_MED[$key]}" "$TARGET_SECS")
    [[ ${FIG_CHECK[$key]} == ok ]] || ok_t=0
    ok_m=$(lt "$(mb "${FIG_KB[$key]}")" "$TARGET_MB")
    target_lines+=("$(printf '  %-50s %8s s  %s' "$label < $TARGET_SECS s (median, checks ok)" "$(fmt2 "${FIG_MED[$key]}")" "$(verdict "$ok_t")")")
    target_lines+=("$(printf '  %-50s %7s MB  %s' "$label peak RSS < $TARGET_MB MB" "$(mb "${FIG_KB[$key]}")" "$(verdict "$ok_m")")")
}

{
    echo
    echo "==================== tenantmig scale benchmark ===================="
    printf 'server     PostgreSQL %s at %s%s\n' "$server_version" "$(tm_mask_url "$ADMIN_URL")" \
        "$([[ ${TM_PG_THROWAWAY:-0} == 1 ]] && echo ' (throwaway cluster)')"
    printf 'host       %s CPUs; load average %s at the start, %s at the end (timings are wall clock)\n' \
        "$(nproc 2>/dev/null || echo '?')" "$load_start" "$load_end"
    printf 'tenants    %s000001... with only %s (%s applied rows: %s/), pattern %s; runs %s\n' \
        "$PREFIX" "$HISTORY_TABLE" "$N_TENANT_MIGRATIONS" "$TENANT_DIR" "$PATTERN" "$RUNS"
    for n in "${sizes[@]}"; do
        printf 'database   tenantmig_scale_%s: %s; warm-up status %s s\n' "$n" "${BUILT_HOW[$n]}" "$(fmt2 "${WARM[$n]}")"
    done
    echo
    printf '%-32s %7s %7s  %-22s %7s %7s  %4s  %s\n' "tenants / command" "median" "best" "runs (s)" "CPU s" "RSS MB" "exit" "check"
    for n in "${sizes[@]}"; do
        for c in "${COMMANDS[@]}"; do
            row "$(printf '%9s  %s' "$(thousands "$n")" "$c")" "$n/$c"
        done
    done
    if [[ $FAULTS == 1 ]]; then
        for c in "${COMMANDS[@]}"; do
            row "$(printf '%9s  %s' "$(thousands "$FAULT_N")" "$c +3 faults")" "faults/$c"
        done
        printf '  faults: %s edited checksum, %s failed row, %s no history table\n' "$T_EDIT" "$T_FAIL" "$T_GONE"
    fi
    echo "  CPU s: the tenantmig process's own CPU (user + system, median); the rest of the wall clock is"
    echo "  PostgreSQL's work and waiting (for the server, the network, or the CPUs on a busy machine)"
    echo
    echo "per 1,000 tenants (median s / thousands of tenants) and ratio to $(thousands "$smallest") tenants (time, RSS)"
    for c in "${COMMANDS[@]}"; do
        line=$(printf '  %-12s' "$c")
        for n in "${sizes[@]}"; do
            line+=$(printf '  %s: %s s/1k, x%s, RSS x%s' "$(thousands "$n")" \
                "$(fmt3 "$(awk -v t="${FIG_MED[$n/$c]}" -v n="$n" 'BEGIN { print t * 1000 / n }')")" \
                "$(ratio "${FIG_MED[$n/$c]}" "${FIG_MED[$smallest/$c]}")" \
                "$(ratio "${FIG_KB[$n/$c]}" "${FIG_KB[$smallest/$c]}")")
        done
        echo "$line"
    done
    echo
    if [[ " ${sizes[*]} " == *" $TARGET_SIZE "* ]]; then
        for c in "${COMMANDS[@]}"; do
            target "$c, $(thousands "$TARGET_SIZE") tenants" "$TARGET_SIZE/$c"
        done
        if [[ $FAULTS == 1 && $FAULT_N == "$TARGET_SIZE" ]]; then
            for c in "${COMMANDS[@]}"; do
                target "$c +3 faults" "faults/$c"
            done
        fi
        echo "targets at $(thousands "$TARGET_SIZE") tenants"
        printf '%s\n' "${target_lines[@]}"
    else
        echo "targets: not judged ($(thousands "$TARGET_SIZE") is not in SIZES)"
    fi
    echo
    echo "reproduce (KEEP=1, the default, keeps the databases; a throwaway cluster only with TM_PG_KEEP=1):"
    for c in "${COMMANDS[@]}"; do
        echo "  ${CMDS[$c]}"
    done
    echo "  (against tenantmig_scale_N; the last size shown)"
    echo "==================================================================="
} | tee "$work/report"
strict_exit "$work/report"
