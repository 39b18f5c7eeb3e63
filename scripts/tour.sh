#!/usr/bin/env bash
# scripts/tour.sh: runs the examples of the README's tour, and of guide
# pages, for real, and prints them as the README and the guide show them.
#
#   scripts/tour.sh                      # the README's "A short tour"
#   scripts/tour.sh schemas-and-copies   # one guide page's examples
#   scripts/tour.sh all                  # the tour, then every page below
#   KEEP=1 scripts/tour.sh               # keep the databases afterwards
#   DATABASE_URL=postgres://postgres@localhost/postgres scripts/tour.sh
#
# Sections (a guide page's file name, under docs/src/):
#   readme                 the README's tour (the default)
#   migrating              migrate, plan, --target, status, tenants, runs
#   rollback-stamp-repair  rollback, stamp, repair
#   verify-and-lint        verify, lint
#   authoring              new, history, show (they need no database)
#   concepts               a COMMIT in a file that runs in one transaction
#   configuration          a malformed [versions.v2]
#   schemas-and-copies     create-schema, drop-schema, copy-into-new-schema,
#                          tenant add and remove
#   version-moves          migrate-to, cutover (the worked example examples/v2,
#                          a broken copy of it, a renamed table, a clone)
#   snapshots              snapshot create, list, restore, prune
#
# Builds the release binary, finds a PostgreSQL server (DATABASE_URL, or a
# throwaway cluster; see scripts/pg.sh), and runs each section in a
# temporary folder of its own holding copies of shared/, tenant/,
# examples/, tests/cases/move/, tests/cases/lint/ and scripts/bench/light/,
# so that the files a section adds or breaks (the failing tenant/0010 and
# 0011 of the tour, say) never touch the repository; the folder is removed
# at the end. Each section (re)creates its own databases, all named
# tenantmig_tour*, and they are dropped at the end unless KEEP=1; no other
# database is touched. Sections that kill a command on purpose (migrating,
# schemas-and-copies) wait for its output or its sessions, not for a time.
#
# Output (stdout): each command as `$ COMMAND`, then what it printed,
# stdout and stderr together, then `[exit N]` when N is not 0. `### …`
# lines name the part of the README or the page that follows. The commands
# run with CI=true (plain progress lines, as without a terminal), and with
# no TENANTMIG_* variable of the calling environment. Timings, run ids'
# dates and snapshot names differ from run to run.
#
# Exit: 0 when every example ran (whatever their own exit codes, which
# are part of the examples), 1 when the set-up failed, 2 for an unknown
# section.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh
# shellcheck source-path=SCRIPTDIR/..
source scripts/build-deps.sh

all_sections=(readme migrating rollback-stamp-repair verify-and-lint authoring concepts
    configuration schemas-and-copies version-moves snapshots)

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

sections=()
for arg in "${@:-readme}"; do
    case $arg in
    -h | --help)
        usage
        exit 0
        ;;
    all) sections+=("${all_sections[@]}") ;;
    *)
        if [[ " ${all_sections[*]} " != *" $arg "* ]]; then
            echo "error: unknown section '$arg'; one of: ${all_sections[*]} all" >&2
            exit 2
        fi
        sections+=("$arg")
        ;;
    esac
done

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi

# Only this script's settings apply.
while IFS= read -r name; do unset "$name"; done < <(env | sed -n 's/^\(TENANTMIG_[A-Za-z0-9_]*\)=.*/\1/p')
export CI=true PSQLRC=/dev/null
unset RUST_LOG

work=""     # the current directory of the examples
workroot="" # the section's temporary folder (work, or its parent)
bindir=""   # holds the `tenantmig` of the examples
databases=()
throwaway=0 # 1 when the server is a throwaway cluster of scripts/pg.sh

# drop_db NAME: drops database NAME, terminating its sessions.
drop_db() {
    PGCONNECT_TIMEOUT=5 psql "$TM_ADMIN_URL" -Xq -v ON_ERROR_STOP=1 -v db="$1" >/dev/null 2>&1 <<'SQL'
SET client_min_messages = warning;
SELECT current_setting('server_version_num')::int >= 130000 AS has_force \gset
\if :has_force
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
\else
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :'db' AND pid <> pg_backend_pid();
DROP DATABASE IF EXISTS :"db";
\endif
SQL
}

# Removes the temporary folders and, unless KEEP=1, the databases. Runs on
# exit, after a throwaway cluster is stopped (which takes them anyway).
cleanup() {
    local db
    if [[ $throwaway == 1 ]]; then
        if [[ ${KEEP:-0} == 1 && ${TM_PG_KEEP:-0} != 1 ]]; then
            echo "KEEP=1 keeps no database of a throwaway cluster: add TM_PG_KEEP=1 to keep the cluster" >&2
        fi
    elif [[ ${#databases[@]} -gt 0 && -n ${TM_ADMIN_URL:-} ]]; then
        if [[ ${KEEP:-0} == 1 ]]; then
            echo "kept (KEEP=1): ${databases[*]} on $(tm_mask_url "$TM_ADMIN_URL")" >&2
        else
            for db in "${databases[@]}"; do
                drop_db "$db" || true
            done
        fi
    fi
    if [[ -n $workroot && -d $workroot ]]; then
        rm -rf -- "$workroot"
    fi
    if [[ -n $bindir && -d $bindir ]]; then
        rm -rf -- "$bindir"
    fi
}
trap cleanup EXIT

tm_ensure_build_deps >&2
tm_ensure_postgres
throwaway=${TM_PG_THROWAWAY:-0}

echo "==> cargo build --release" >&2
cargo build --release --quiet >&2
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir=$repo/$target_dir
bin=$target_dir/release/tenantmig
[[ -x $bin ]] || {
    echo "error: $bin was not built" >&2
    exit 1
}

# ------------------------------------------------------------------ helpers

# `tenantmig` in the examples is the release binary, through a folder put
# first in PATH (so that `env … tenantmig` finds it too).
bindir=$(mktemp -d "${TMPDIR:-/tmp}/tenantmig-tour-bin.XXXXXX")
ln -s "$bin" "$bindir/tenantmig"
export PATH="$bindir:$PATH"

# fresh_workdir: a new temporary folder with copies of the example folders,
# the current directory of every example.
fresh_workdir() {
    if [[ -n $workroot && -d $workroot ]]; then
        rm -rf -- "$workroot"
    fi
    workroot=$(mktemp -d "${TMPDIR:-/tmp}/tenantmig-tour.XXXXXX")
    work=$workroot
    cp -R shared tenant "$work/"
    mkdir -p "$work/tests/cases"
    cp -R examples "$work/"
    cp -R tests/cases/move "$work/tests/cases/"
    cp -R tests/cases/lint "$work/tests/cases/"
    mkdir -p "$work/scripts/bench"
    cp -R scripts/bench/light "$work/scripts/bench/"
}

# use_db NAME: (re)creates database NAME and makes it DATABASE_URL.
use_db() {
    local url
    url=$(tm_create_db "$1")
    databases+=("$1")
    export DATABASE_URL=$url
}

# title TEXT: names the part of the README or page that follows.
title() { printf '\n### %s\n' "$*"; }

# run COMMAND: prints `$ COMMAND`, runs it in the work folder, prints its
# output (stdout and stderr as they come) and `[exit N]` when N is not 0.
# COMMAND is shell text, shown exactly as it runs.
run() {
    local rc=0
    printf '\n$ %s\n' "$1"
    (cd "$work" && eval "$1") 2>&1 || rc=$?
    if ((rc != 0)); then
        printf '[exit %d]\n' "$rc"
    fi
    return 0
}

# run_signal SIGNAL CONDITION COMMAND NOTE: as run, but sends SIGNAL to the
# command once CONDITION (shell code; $out is the file that receives the
# command's output) is true, and shows NOTE after the command, as a comment.
run_signal() {
    local sig=$1 condition=$2 cmd=$3 note=$4 out pid rc=0 i
    printf '\n$ %s      # %s\n' "$cmd" "$note"
    out=$(mktemp "${TMPDIR:-/tmp}/tenantmig-tour-out.XXXXXX")
    (cd "$work" && eval "exec $cmd") >"$out" 2>&1 &
    pid=$!
    for ((i = 0; i < 1200; i++)); do
        eval "$condition" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -s "$sig" "$pid" 2>/dev/null || true
    { wait "$pid"; } 2>/dev/null || rc=$?
    cat "$out"
    rm -f -- "$out"
    if ((rc != 0)); then
        printf '[exit %d]\n' "$rc"
    fi
    return 0
}

# sleeping N: true when N sessions of the database run pg_sleep.
sleeping() {
    (($(psql "$DATABASE_URL" -XAtqc "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep%'") >= $1))
}

# quietly COMMAND: a set-up step whose output is not part of the examples;
# its output is shown only when it fails, and then the script stops.
quietly() {
    local out
    if ! out=$(cd "$work" && eval "$1" 2>&1); then
        printf '%s\n' "$out" >&2
        echo "error: set-up step failed: $1" >&2
        exit 1
    fi
}

# write FILE: writes stdin to FILE in the work folder.
write() { cat >"$work/$1"; }

orgs5="INSERT INTO public.organizations (name, schema_name) VALUES ('Acme Corp', 'tenant_acme'), ('Globex', 'tenant_globex'), ('Initech', 'tenant_initech'), ('Umbrella', 'tenant_umbrella'), ('Hooli', 'tenant_hooli')"
tenants_query='SELECT schema_name FROM public.organizations ORDER BY id'

# setup_app DB: DB with the example app's shared schema and the five
# organizations of scripts/demo.sh, whose tenant schemas do not exist yet.
setup_app() {
    use_db "$1"
    export TENANTMIG_TENANTS__QUERY=$tenants_query
    run 'tenantmig migrate --shared-only'
    run "psql \"\$DATABASE_URL\" -c \"$orgs5\""
}

# add_failing_migrations: the tour's tenant/0010 (a CHECK some rows of
# tenant_globex violate) and 0011 (a -- no-transaction unique index that
# fails in tenant_initech), in the work folder's copy of tenant/.
add_failing_migrations() {
    write tenant/0010_workflows_name_trimmed.sql <<'SQL'
-- Workflow names without leading or trailing blanks.
ALTER TABLE workflows ADD CONSTRAINT workflows_name_trimmed CHECK (name = btrim(name));
SQL
    write tenant/0011_unique_api_key_names.sql <<'SQL'
-- no-transaction
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS api_keys_name_key ON api_keys (name)
SQL
}

# bad_rows_cmd: the psql command that inserts the rows that make 0010 fail
# in tenant_globex and 0011 in tenant_initech.
bad_rows_cmd="psql \"\$DATABASE_URL\" -c \"INSERT INTO tenant_globex.workflows (name, slug) VALUES (' Invoices ', 'invoices')\" \\
                       -c \"INSERT INTO tenant_initech.api_keys (name, key_prefix, key_hash) VALUES ('ci', 'AAAAAAAA', sha256('a')), ('ci', 'BBBBBBBB', sha256('b'))\""

# seed_tenant_cmd SCHEMA ROWS: the psql command that fills a tenant at 0009
# with tests/cases/move/seed_tenant.sql, ROWS workflows (17 rows in all per
# workflow).
seed_tenant_cmd() {
    printf '%s' "psql \"\$DATABASE_URL\" -q -c 'SET search_path TO $1, public' -c \"SET tenantmig_seed.rows = '$2'\" -f tests/cases/move/seed_tenant.sql"
}

# ------------------------------------------------------------------ sections

# README.md, "A short tour": the five tenants of setup_app, a failure and
# its repair, a new schema, a copy of a tenant filled with 20,000
# workflows, then the worked example of a version move on a second database.
section_readme() {
    use_db tenantmig_tour
    export TENANTMIG_TENANTS__QUERY=$tenants_query
    title "readme: set-up (the shared schema, then five organizations, one tenant each)"
    run 'tenantmig migrate --shared-only'
    run "psql \"\$DATABASE_URL\" -c \"$orgs5\""

    title "readme: what would migrate do"
    run 'tenantmig plan'

    title "readme: migrate, then check"
    run 'tenantmig migrate'
    run 'tenantmig status'
    run 'tenantmig runs'

    title "readme: a failure and its rerun"
    add_failing_migrations
    run 'cat tenant/0010_workflows_name_trimmed.sql tenant/0011_unique_api_key_names.sql'
    run "$bad_rows_cmd"
    run 'tenantmig migrate --max-failures 10'
    run 'tenantmig status'
    run "psql \"\$DATABASE_URL\" -c 'DROP INDEX CONCURRENTLY tenant_initech.api_keys_name_key' \\
                       -c \"UPDATE tenant_initech.api_keys SET name = 'ci-2' WHERE key_prefix = 'BBBBBBBB'\""
    run 'tenantmig repair --tenant tenant_initech --yes'
    run "psql \"\$DATABASE_URL\" -c \"UPDATE tenant_globex.workflows SET name = btrim(name)\""
    run 'tenantmig migrate'

    title "readme: create a schema"
    run 'tenantmig create-schema tenant_staging --apply tenant'

    title "readme: copy a schema"
    run "$(seed_tenant_cmd tenant_acme 20000)"
    run 'tenantmig copy-into-new-schema tenant_acme tenant_acme_copy --jobs 4'

    title "readme: move to a new version (the set-up of version-moves)"
    setup_v2 tenantmig_tour_v2
    run 'tenantmig --config examples/v2/tenantmig.toml migrate-to v2'
    run 'tenantmig --config examples/v2/tenantmig.toml migrate-to v2'
}

# setup_v2 DB: the database of the worked example of a version move
# (docs/src/version-moves.md): the example app with three organizations,
# seed_shared.sql, and 50, 20 and 5 workflows of seed_tenant.sql; in a
# fresh work folder.
setup_v2() {
    fresh_workdir
    use_db "$1"
    unset TENANTMIG_TENANTS__QUERY
    run 'tenantmig --config examples/v2/tenantmig.toml migrate --shared-only'
    run "psql \"\$DATABASE_URL\" -c \"INSERT INTO public.organizations (name, schema_name) VALUES ('Acme Corp', 'tenant_acme'), ('Globex', 'tenant_globex'), ('Initech', 'tenant_initech')\""
    run 'psql "$DATABASE_URL" -q -f tests/cases/move/seed_shared.sql'
    run 'tenantmig --config examples/v2/tenantmig.toml migrate'
    local t
    for t in tenant_acme:50 tenant_globex:20 tenant_initech:5; do
        run "$(seed_tenant_cmd "${t%%:*}" "${t##*:}")"
    done
}

# docs/src/migrating.md: the five tenants of setup_app, from no tenant
# schema to a failure and a refused tenant.
section_migrating() {
    title "migrating: set-up"
    setup_app tenantmig_tour_migrating

    title "migrating: before any tenant schema exists"
    run 'tenantmig status'
    run 'tenantmig tenants'
    run "tenantmig tenants --tenant tenant_acme --tenant 'x\"; drop schema public cascade; --' --tenant public"
    run 'tenantmig plan'
    run 'tenantmig plan --format json --tenants-only'
    run 'tenantmig migrate --dry-run --sql --tenant tenant_acme'

    title "migrating: --target"
    run 'tenantmig plan --target 0005'
    run 'tenantmig migrate --target 0005'
    run 'tenantmig status'
    run 'tenantmig plan --target 7 --tenant tenant_acme --format json'
    run 'tenantmig migrate --target 12'
    run 'tenantmig plan --target 7 --shared-only'

    title "migrating: migrate"
    run 'tenantmig migrate --tenant tenant_acme'
    local acme_run
    acme_run=$(last_run)
    run 'tenantmig migrate --canary 1 --exclude tenant_hooli --jobs 2'
    run 'tenantmig migrate --format json'
    run 'tenantmig migrate'
    run 'tenantmig status --format json'
    run "env -u TENANTMIG_TENANTS__QUERY TENANTMIG_TENANTS__PATTERN='tenant\\_%' tenantmig tenants --exclude tenant_hooli"

    title "migrating: a migration edited after it was applied (tenant_edited/: the first line of 0001 reworded)"
    quietly "cp -R tenant tenant_edited && sed -i '1s/.*/-- Workflows: a named document-processing pipeline (OCR, classify, extract,/' tenant_edited/0001_create_workflows.sql"
    run 'tenantmig --tenant-migrations tenant_edited status'

    title "migrating: a run killed with SIGKILL (tenant_slow/: tenant/ and a 0010 that sleeps)"
    quietly 'cp -R tenant tenant_slow'
    write tenant_slow/0010_slow.sql <<'SQL'
SELECT pg_sleep(3);
SQL
    run_signal KILL 'sleeping 2 && sleep 0.5' 'tenantmig --tenant-migrations tenant_slow migrate --jobs 2' 'killed with SIGKILL while the first two tenants sleep'
    local killed_run
    killed_run=$(last_run)
    run 'tenantmig runs --limit 2'
    run 'tenantmig migrate'
    run "tenantmig runs show $killed_run"

    title "migrating: a failing shared migration (shared_bad/: shared/ and 0005)"
    quietly 'cp -R shared shared_bad'
    write shared_bad/0005_short_names.sql <<'SQL'
ALTER TABLE organizations ADD CONSTRAINT organizations_name_short CHECK (length(name) <= 8);
SQL
    run 'cat shared_bad/0005_short_names.sql'
    run 'tenantmig --shared-migrations shared_bad migrate'

    title "migrating: failures (tenant/0010 and 0011 added, and the rows they fail on)"
    add_failing_migrations
    run 'cat tenant/0010_workflows_name_trimmed.sql tenant/0011_unique_api_key_names.sql'
    run "$bad_rows_cmd"
    run 'tenantmig migrate --canary 2 --max-failures 10'
    run 'tenantmig migrate --jobs 1'
    run 'tenantmig migrate --max-failures 10'
    local failed_run
    failed_run=$(last_run)
    run 'tenantmig status'
    run 'tenantmig plan'

    title "migrating: runs"
    run 'tenantmig runs'
    run "tenantmig runs show $failed_run"
    run "tenantmig runs show $acme_run --format json"

    title "migrating: more jobs than the server can serve (150 tenants of scripts/bench/light)"
    run "tenantmig migrate --tenants-only --tenant-migrations scripts/bench/light \$(printf -- '--tenant cap_%03d ' \$(seq 150)) --jobs 500"

    title "migrating: tenants from the registry"
    run 'env -u TENANTMIG_TENANTS__QUERY tenantmig tenant add tenant_new'
    run 'env -u TENANTMIG_TENANTS__QUERY tenantmig tenants --format json'
}

# tenant_rev/: tenant/ plus a reversible -- no-transaction 0010.
add_tenant_rev() {
    quietly 'cp -R tenant tenant_rev'
    write tenant_rev/0010_index_workflows_name.up.sql <<'SQL'
-- no-transaction
CREATE INDEX CONCURRENTLY IF NOT EXISTS workflows_name_idx ON workflows (name)
SQL
    write tenant_rev/0010_index_workflows_name.down.sql <<'SQL'
-- no-transaction
DROP INDEX CONCURRENTLY workflows_name_idx
SQL
}

# docs/src/rollback-stamp-repair.md
section_rollback_stamp_repair() {
    title "rollback-stamp-repair: set-up"
    setup_app tenantmig_tour_rollback
    run 'tenantmig migrate'

    title "rollback-stamp-repair: rollback"
    run 'tenantmig rollback --steps 1'
    run 'tenantmig rollback --steps 1 --tenants-only'
    run 'tenantmig rollback --steps 1 --tenants-only --dry-run --sql --tenant tenant_acme'
    run 'tenantmig rollback --target 8 --tenants-only --exclude tenant_hooli --yes'
    local rollback_run
    rollback_run=$(last_run)
    run 'tenantmig rollback --target 5 --tenants-only'
    run "tenantmig runs show $rollback_run"
    run 'tenantmig rollback --steps 1 --tenant tenant_hooli --yes --format json'
    run 'tenantmig migrate'

    title "rollback-stamp-repair: a -- no-transaction down file that fails (tenant_rev/: tenant/ and a reversible 0010)"
    add_tenant_rev
    run 'cat tenant_rev/0010_index_workflows_name.up.sql tenant_rev/0010_index_workflows_name.down.sql'
    run 'tenantmig --tenant-migrations tenant_rev migrate'
    run "psql \"\$DATABASE_URL\" -c 'DROP INDEX tenant_globex.workflows_name_idx'"
    run 'tenantmig --tenant-migrations tenant_rev rollback --target 9 --tenants-only --max-failures 10 --yes'
    run 'tenantmig --tenant-migrations tenant_rev status'
    run 'tenantmig --tenant-migrations tenant_rev repair --yes'
    run 'tenantmig --tenant-migrations tenant_rev status'

    title "rollback-stamp-repair: stamp (tenant_wayne and tenant_stark built with psql)"
    local files
    files=$(cd "$work" && for f in tenant/*.sql; do [[ $f == *.down.sql ]] || printf ' -f %s' "$f"; done)
    run "for t in tenant_wayne tenant_stark; do
    psql \"\$DATABASE_URL\" -q -v ON_ERROR_STOP=1 -c \"CREATE SCHEMA \$t\" -c \"SET search_path TO \$t, public\" \\
        $files
done"
    run 'tenantmig status --tenant tenant_wayne --tenant tenant_stark'
    run 'tenantmig stamp 9 --tenant tenant_wayne --tenant tenant_stark --dry-run'
    run 'tenantmig stamp 9 --tenant tenant_wayne --tenant tenant_stark --tenant tenant_nope'
    run 'tenantmig status --tenant tenant_wayne --tenant tenant_stark'
    run 'tenantmig verify --tenant tenant_wayne --tenant tenant_stark'

    title "rollback-stamp-repair: repair (tenant/0011 fails in tenant_initech and tenant_umbrella)"
    add_failing_migrations
    run "psql \"\$DATABASE_URL\" -c \"INSERT INTO tenant_initech.api_keys (name, key_prefix, key_hash) VALUES ('ci', 'AAAAAAAA', sha256('a')), ('ci', 'BBBBBBBB', sha256('b'))\" \\
                       -c \"INSERT INTO tenant_umbrella.api_keys (name, key_prefix, key_hash) VALUES ('ci', 'AAAAAAAA', sha256('a')), ('ci', 'BBBBBBBB', sha256('b'))\""
    run 'tenantmig migrate --max-failures 10'
    run 'tenantmig repair'
    run "psql \"\$DATABASE_URL\" -c 'DROP INDEX CONCURRENTLY tenant_initech.api_keys_name_key' \\
                       -c \"UPDATE tenant_initech.api_keys SET name = 'ci-2' WHERE key_prefix = 'BBBBBBBB'\""
    run 'tenantmig repair --tenant tenant_initech --yes'
    run "psql \"\$DATABASE_URL\" -c 'DROP INDEX CONCURRENTLY tenant_umbrella.api_keys_name_key' \\
                       -c \"UPDATE tenant_umbrella.api_keys SET name = 'ci-2' WHERE key_prefix = 'BBBBBBBB'\" \\
                       -c 'CREATE UNIQUE INDEX CONCURRENTLY api_keys_name_key ON tenant_umbrella.api_keys (name)'"
    run 'tenantmig repair --mark-applied --yes'
    run 'tenantmig migrate'
    run 'tenantmig repair'

    title "rollback-stamp-repair: repair --checksums (tenant_edited/: tenant/ with the first line of 0001 reworded)"
    quietly "cp -R tenant tenant_edited && sed -i '1s/.*/-- Workflows: a named document-processing pipeline (OCR, classify, extract,/' tenant_edited/0001_create_workflows.sql"
    run 'diff tenant/0001_create_workflows.sql tenant_edited/0001_create_workflows.sql'
    run 'tenantmig --tenant-migrations tenant_edited status'
    run 'tenantmig --tenant-migrations tenant_edited repair --checksums'
    run 'tenantmig --tenant-migrations tenant_edited repair --checksums --tenant tenant_acme --format json --dry-run'
    run 'tenantmig --tenant-migrations tenant_edited repair --checksums --yes'
    run 'tenantmig --tenant-migrations tenant_edited repair --checksums'

    title "rollback-stamp-repair: rollback --target 0 (in notes/, a small app where every migration is reversible)"
    use_db tenantmig_tour_rollback_notes
    unset TENANTMIG_TENANTS__QUERY
    mkdir -p "$work/notes/shared" "$work/notes/tenant"
    write notes/shared/0001_feature_flags.up.sql <<'SQL'
CREATE TABLE feature_flags (name text PRIMARY KEY, enabled boolean NOT NULL DEFAULT false);
SQL
    write notes/shared/0001_feature_flags.down.sql <<'SQL'
DROP TABLE feature_flags;
SQL
    write notes/tenant/0001_notes.up.sql <<'SQL'
CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);
SQL
    write notes/tenant/0001_notes.down.sql <<'SQL'
DROP TABLE notes;
SQL
    write notes/tenant/0002_notes_pinned.up.sql <<'SQL'
ALTER TABLE notes ADD COLUMN pinned boolean NOT NULL DEFAULT false;
SQL
    write notes/tenant/0002_notes_pinned.down.sql <<'SQL'
ALTER TABLE notes DROP COLUMN pinned;
SQL
    local top=$work
    work=$top/notes
    run 'head shared/* tenant/*'
    run 'tenantmig migrate --shared-only'
    run 'tenantmig tenant add tenant_a'
    run 'tenantmig tenant add tenant_b'
    run 'tenantmig rollback --target 0'
    run 'tenantmig rollback --target 0 --yes'
    run "tenantmig runs show $(last_run)"
    run 'tenantmig migrate'
    run "psql \"\$DATABASE_URL\" -c 'ALTER TABLE tenant_b.notes DROP COLUMN pinned'"
    run 'tenantmig rollback --target 0 --yes --max-failures 5'
    run 'tenantmig status'
    work=$top
}

# docs/src/verify-and-lint.md: the five tenants of setup_app.
section_verify_and_lint() {
    title "verify-and-lint: set-up"
    setup_app tenantmig_tour_verify

    title "verify-and-lint: five tenants at 0008"
    run 'tenantmig migrate --target 8'
    run 'tenantmig verify'

    title "verify-and-lint: drift made by hand"
    run 'tenantmig migrate'
    run "psql \"\$DATABASE_URL\" -c 'CREATE INDEX documents_workflow_created_idx ON tenant_globex.documents (workflow_id, created_at)' \\
                       -c \"ALTER TABLE tenant_initech.workflows ALTER COLUMN description SET DEFAULT 'none'\" \\
                       -c 'ALTER TABLE tenant_initech.api_keys ADD COLUMN note text'"
    run 'tenantmig verify'
    run 'tenantmig verify --reference tenant_acme --tenant tenant_acme --tenant tenant_globex --tenant tenant_ghost'
    add_tenant_rev
    run 'tenantmig --tenant-migrations tenant_rev verify --exclude tenant_initech --exclude tenant_globex'
    run 'tenantmig verify --reference tenant_ghost'
    run 'tenantmig verify --format json --tenant tenant_acme --tenant tenant_initech --tenant tenant_ghost'

    title "verify-and-lint: lint"
    run 'tenantmig lint tests/cases/lint/*/trigger.sql'
    run 'tenantmig lint --all'
    run 'tenantmig lint --all --deny warnings >/dev/null'
    write tenant/0010_index_executions_status.sql <<'SQL'
-- Executions are listed by status.
CREATE INDEX executions_status_idx ON executions (status);
SQL
    run 'cat tenant/0010_index_executions_status.sql'
    run 'tenantmig lint'
    run 'tenantmig lint tenant/0010_index_executions_status.sql --format json'
    run 'tenantmig migrate --tenant tenant_acme'
    run 'TENANTMIG_LINT=deny tenantmig migrate'
}

# docs/src/authoring.md: no database.
section_authoring() {
    use_db tenantmig_tour_authoring
    title "authoring: history and show"
    run 'tenantmig history tenant'
    run 'tenantmig show 9 --down'
    title "authoring: new"
    run 'tenantmig new tenant add workflow archived at --dry-run'
    run 'tenantmig new shared add plan limits --style timestamp --dry-run'
    run 'tenantmig new tenant add workflow archived at'
    run 'tenantmig new tenant "rename tags color" --reversible'
}

# docs/src/concepts.md: a COMMIT in a file that runs in one transaction.
section_concepts() {
    title "concepts: set-up"
    setup_app tenantmig_tour_concepts
    title "concepts: transaction control in a transactional file (tenant/0010_backfill.sql added)"
    write tenant/0010_backfill.sql <<'SQL'
UPDATE documents SET status = 'processed' WHERE status = 'processing';
-- Let the other sessions see the backfill early.
COMMIT;
SQL
    run 'cat tenant/0010_backfill.sql'
    run 'tenantmig migrate'
}

# docs/src/configuration.md: a malformed [versions.v2].
section_configuration() {
    use_db tenantmig_tour_configuration
    title "configuration: a clone version without tenant_schema (bad.toml)"
    write bad.toml <<'TOML'
[versions.v2]
strategy = "clone"
shared_schema = "public_v2"
TOML
    run 'cat bad.toml'
    run 'tenantmig --config bad.toml migrate-to v2 --dry-run'
}

# docs/src/schemas-and-copies.md: three tenants, tenant_acme with ACME_ROWS
# workflows of seed_tenant.sql (17 rows each), tenant_initech with a
# function naming its schema, an aggregate and a trigger function.
section_schemas_and_copies() {
    use_db tenantmig_tour_schemas
    export TENANTMIG_TENANTS__QUERY=$tenants_query
    title "schemas-and-copies: set-up (three tenants; rows in tenant_acme; functions in tenant_initech)"
    run 'tenantmig migrate --shared-only'
    run "psql \"\$DATABASE_URL\" -c \"INSERT INTO public.organizations (name, schema_name) VALUES ('Acme Corp', 'tenant_acme'), ('Globex', 'tenant_globex'), ('Initech', 'tenant_initech')\""
    run 'tenantmig migrate'
    run "$(seed_tenant_cmd tenant_acme "${ACME_ROWS:-20000}")"
    run "psql \"\$DATABASE_URL\" -q <<'SQL'
SET search_path TO tenant_initech, public;
INSERT INTO workflows (name, slug) VALUES ('Invoices', 'invoices'), ('Receipts', 'receipts');
INSERT INTO documents (workflow_id, filename, size_bytes, storage_key)
SELECT id, slug || '.pdf', 1000, 'initech/' || slug FROM workflows;
CREATE FUNCTION pending_documents() RETURNS bigint LANGUAGE sql
    AS \$\$ SELECT count(*) FROM tenant_initech.documents WHERE status = 'uploaded' \$\$;
CREATE AGGREGATE total_size(bigint) (SFUNC = int8pl, STYPE = bigint);
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql SET search_path = tenant_initech, public
    AS \$\$ BEGIN NEW.updated_at := now(); RETURN NEW; END \$\$;
CREATE TRIGGER workflows_touch BEFORE UPDATE ON workflows FOR EACH ROW EXECUTE FUNCTION touch();
SQL"

    title "schemas-and-copies: create-schema"
    run 'tenantmig create-schema unstract_v2 --apply shared'
    run 'tenantmig --shared-schema unstract_v2 status --shared-only'
    run 'tenantmig create-schema unstract_v2 --apply shared'
    run 'tenantmig create-schema unstract_v2 --if-not-exists --apply shared'
    run 'tenantmig create-schema tenant_staging --apply tenant --dry-run'
    run 'tenantmig create-schema tenant_staging --apply tenant'
    run 'tenantmig create-schema scratch'
    run 'tenantmig create-schema pg_mine'
    run 'tenantmig create-schema --format json scratch2'

    title "schemas-and-copies: copy-into-new-schema"
    run 'tenantmig copy-into-new-schema tenant_acme tenant_acme_copy --jobs 4'
    run 'tenantmig copy-into-new-schema tenant_acme tenant_acme_2 --verify checksums -j 2'
    run 'tenantmig copy-into-new-schema tenant_acme tenant_acme_copy'
    run 'tenantmig copy-into-new-schema tenant_nope tenant_x'

    title "schemas-and-copies: a copy interrupted, and one killed"
    run_signal INT 'grep -q "^created " "$out"' 'tenantmig copy-into-new-schema tenant_acme tenant_acme_j' 'Ctrl-C (SIGINT) while the rows are copied'
    run_signal KILL 'grep -q "^created " "$out"' 'tenantmig copy-into-new-schema tenant_acme tenant_acme_k' 'killed with SIGKILL while the rows are copied'
    run "psql \"\$DATABASE_URL\" -Atc \"SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname LIKE 'tenantmig\\_copy\\_%' OR nspname = 'tenant_acme_k'\""
    run 'tenantmig copy-into-new-schema tenant_acme tenant_acme_k'
    run 'tenantmig drop-schema tenant_acme_k --yes'

    title "schemas-and-copies: a copy with warnings, over one connection"
    run 'tenantmig copy-into-new-schema tenant_initech tenant_initech_copy'
    run "psql \"\$DATABASE_URL\" -Atc \"SELECT proconfig FROM pg_proc WHERE oid = 'tenant_initech_copy.touch'::regproc\""

    title "schemas-and-copies: --no-data"
    run 'tenantmig copy-into-new-schema tenant_initech tenant_initech_empty --no-data'
    run 'tenantmig status --tenant tenant_initech_empty'

    title "schemas-and-copies: --format json"
    run 'tenantmig --format json copy-into-new-schema tenant_initech tenant_initech_2 --jobs 2'

    title "schemas-and-copies: drop-schema"
    run 'tenantmig drop-schema tenant_acme_copy'
    run 'tenantmig drop-schema tenant_acme_copy --yes'
    run 'tenantmig drop-schema tenant_acme_copy'
    run 'tenantmig drop-schema tenant_acme_copy --if-exists --yes'
    run 'tenantmig drop-schema public --yes'
    run 'tenantmig drop-schema tenantmig --yes'
    run 'tenantmig drop-schema pg_catalog --yes --allow-shared'
    run 'tenantmig --format json drop-schema tenant_acme_2'
    run 'tenantmig --format json drop-schema tenant_acme_2 --yes'

    title "schemas-and-copies: a view outside the schema goes with it"
    run "psql \"\$DATABASE_URL\" -c 'CREATE VIEW public.all_docs AS SELECT * FROM tenant_initech.documents UNION ALL SELECT * FROM tenant_initech_copy.documents'"
    run 'tenantmig drop-schema tenant_initech_copy'

    title "schemas-and-copies: tenant add and remove, tenants from tenants.query"
    run 'tenantmig tenant add tenant_umbrella --dry-run'
    run 'tenantmig tenant add tenant_umbrella'
    run 'tenantmig tenant add tenant_acme'
    run 'tenantmig create-schema tenant_v8'
    run 'tenantmig migrate --tenant tenant_v8 --target 8'
    run 'tenantmig tenant add tenant_x --from-template tenant_v8'

    title "schemas-and-copies: tenant add and remove, tenants from the registry (unset TENANTMIG_TENANTS__QUERY)"
    unset TENANTMIG_TENANTS__QUERY
    run 'tenantmig tenant add tenant_template'
    run 'tenantmig tenant add tenant_wayne --from-template tenant_template'
    run 'tenantmig tenants'
    run 'tenantmig tenant add tenant_stark --from-template tenant_template --format json'
    run 'tenantmig tenant remove tenant_wayne'
    run 'tenantmig tenant remove tenant_wayne --yes'
    run 'tenantmig tenant remove tenant_wayne'
    run 'tenantmig tenant remove public --yes'

    title "schemas-and-copies: a tenant that cannot reach head"
    quietly 'cp -R tenant tenant_bad'
    write tenant_bad/0010_index_workflows_owner.sql <<'SQL'
CREATE INDEX workflows_owner_idx ON workflows (owner_id);
SQL
    run 'cat tenant_bad/0010_index_workflows_owner.sql'
    run 'tenantmig --tenant-migrations tenant_bad tenant add tenant_oscorp'
    run 'tenantmig tenants'

    title "schemas-and-copies: tenant remove, tenants from tenants.query again"
    export TENANTMIG_TENANTS__QUERY=$tenants_query
    run 'tenantmig tenant remove tenant_umbrella --yes'
}

# last_run [OUTCOME]: the id of the last run in the ledger (with OUTCOME).
last_run() {
    local where=""
    [[ -n ${1:-} ]] && where="WHERE outcome = '$1'"
    psql "$DATABASE_URL" -XAtqc "SELECT max(id) FROM tenantmig.runs $where"
}

# docs/src/version-moves.md: the worked example (examples/v2), a broken
# copy of it (v2-broken/), the final check of a renamed table (rename/, a
# copy of tests/cases/move/rename), and a clone version (./tenantmig.toml and
# v2/), each on a database of its own.
section_version_moves() {
    local v2='tenantmig --config examples/v2/tenantmig.toml'
    local broken='tenantmig --config v2-broken/tenantmig.toml'
    title "version-moves: set-up of the worked example"
    setup_v2 tenantmig_tour_moves

    title "version-moves: migrate-to --dry-run"
    run "$v2 migrate-to v2 --dry-run"
    run "$v2 migrate-to v2 --dry-run --sql"

    title "version-moves: the move"
    run "$v2 migrate-to v2"

    title "version-moves: a rerun"
    run "$v2 migrate-to v2"
    run "$v2 migrate-to v2 --dry-run"
    run "$v2 --format json migrate-to v2"
    run "psql \"\$DATABASE_URL\" -c \"select source_schema, step, state, rows_read, rows_written, run_id from tenantmig.move_steps where source_schema in ('public','tenant_initech') order by source_schema, step\""

    title "version-moves: cutover of the worked example"
    run "$v2 cutover v2 --dry-run"
    run "$v2 --format json cutover v2 --dry-run"
    run "$v2 cutover v2"
    run "$v2 cutover v2"
    run "$v2 migrate-to v2"
    run "$v2 migrate-to v2 --abort"
    run "$v2 cutover v2 --revert --dry-run"
    run "$v2 cutover v2 --revert"

    title "version-moves: --abort"
    run "$v2 migrate-to v2 --abort"
    run "$v2 --format json migrate-to v2 --abort"
    run "$v2 migrate-to v2 --abort --yes"
    run "$v2 migrate-to v2 --abort"

    title "version-moves: a failing data move (a second database; v2-broken/, a copy of examples/v2)"
    setup_v2 tenantmig_tour_moves_broken
    quietly 'cp -R examples/v2 v2-broken && sed -i "s#examples/v2/#v2-broken/#g" v2-broken/tenantmig.toml'
    # The failing statement goes after the leading comments (the headers).
    quietly "awk '!done && !/^--/ { print \"DO \$\$ BEGIN PERFORM 1 / (CASE WHEN {tenant} = '\\''tenant_globex'\\'' THEN 0 ELSE 1 END); END \$\$;\"; done = 1 } { print }' \
        examples/v2/moves/tenant/0002_documents.sql >v2-broken/moves/tenant/0002_documents.sql"
    run 'diff examples/v2/moves/tenant/0002_documents.sql v2-broken/moves/tenant/0002_documents.sql'
    run "$broken migrate-to v2 --max-failures 5"
    local failed_run
    failed_run=$(last_run failed)
    run "$broken migrate-to v2 --dry-run"
    run 'cp examples/v2/moves/tenant/0002_documents.sql v2-broken/moves/tenant/'
    run "$broken migrate-to v2"
    run "$broken runs show $failed_run"

    title "version-moves: a data move that writes fewer rows than expect-rows counts"
    run "$broken migrate-to v2 --abort --yes"
    quietly "sed -i 's#^FROM   {source_schema}.tags;#FROM   {source_schema}.tags WHERE id > (SELECT min(id) FROM {source_schema}.tags);#' v2-broken/moves/tenant/0007_tags.sql"
    run 'diff examples/v2/moves/tenant/0007_tags.sql v2-broken/moves/tenant/0007_tags.sql'
    run "$broken migrate-to v2 --tenant tenant_initech"
    run 'cp examples/v2/moves/tenant/0007_tags.sql v2-broken/moves/tenant/'
    run "$broken migrate-to v2 --tenant tenant_initech"

    title "version-moves: cutover refused"
    run "$broken cutover v2"
    run "$broken cutover v2 --revert"

    title "version-moves: a tenant behind is refused"
    run 'tenantmig rollback --steps 1 --tenant tenant_globex --yes'
    run "$broken migrate-to v2"

    title "version-moves: the final check (a third database; rename/, a copy of tests/cases/move/rename)"
    use_db tenantmig_tour_moves_rename
    quietly 'cp -R tests/cases/move/rename rename'
    write rename/tenantmig.toml <<'TOML'
[tenants]
query = "SELECT schema_name FROM public.organizations ORDER BY id"

[versions.v2]
strategy = "reshape"
shared_schema = "app_v2"
shared_migrations = "v2/shared"
shared_moves = "v2/moves/shared"
tenant_moves = "v2/moves/tenant"
tenant_id_query = "SELECT schema_name, id FROM public.organizations"
tenant_column = "tenant_id"
TOML
    local top=$work
    work=$top/rename
    run 'cat tenantmig.toml v2/moves/tenant/0001_workflows.sql'
    run 'tenantmig migrate --shared-only'
    run "psql \"\$DATABASE_URL\" -c \"INSERT INTO public.organizations (schema_name) VALUES ('tenant_acme'), ('tenant_globex')\""
    run 'tenantmig migrate'
    run "psql \"\$DATABASE_URL\" -c \"INSERT INTO tenant_acme.workflow_workflow (name) SELECT 'w' || g FROM generate_series(1, 50) g\" \\
                       -c \"INSERT INTO tenant_globex.workflow_workflow (name) SELECT 'w' || g FROM generate_series(1, 20) g\""
    quietly 'cp v2/moves/tenant/0001_workflows.sql 0001_workflows.sql.orig'
    quietly "sed -i 's/workflow_workflow\$/workflow_workflow WHERE id > 1/; s/workflow_workflow;/workflow_workflow WHERE id > 1;/' v2/moves/tenant/0001_workflows.sql"
    run 'diff 0001_workflows.sql.orig v2/moves/tenant/0001_workflows.sql'
    run 'tenantmig migrate-to v2 --max-failures 5'
    run 'tenantmig migrate-to v2 --abort --yes'
    quietly "grep -v '^-- copies:' 0001_workflows.sql.orig >v2/moves/tenant/0001_workflows.sql"
    run 'diff 0001_workflows.sql.orig v2/moves/tenant/0001_workflows.sql'
    run 'tenantmig migrate-to v2 --max-failures 5'
    run 'cp 0001_workflows.sql.orig v2/moves/tenant/0001_workflows.sql'
    run 'tenantmig migrate-to v2'
    work=$top

    title "version-moves: a clone version (a fourth database; ./tenantmig.toml and v2/)"
    setup_v2 tenantmig_tour_moves_clone
    write tenantmig.toml <<'TOML'
[tenants]
query = "SELECT schema_name FROM public.organizations ORDER BY id"

[versions.v2]
strategy = "clone"
shared_schema = "public_v2"
tenant_schema = "{schema}_v2"
shared_migrations = ["shared", "v2/shared"]
tenant_migrations = ["tenant", "v2/tenant"]
TOML
    mkdir -p "$work/v2/shared" "$work/v2/tenant"
    write v2/shared/0005_plans_trial_days.sql <<'SQL'
ALTER TABLE plans ADD COLUMN trial_days integer NOT NULL DEFAULT 14;
SQL
    write v2/tenant/0010_workflows_archived_at.sql <<'SQL'
ALTER TABLE workflows ADD COLUMN archived_at timestamptz;
SQL
    run 'cat tenantmig.toml v2/shared/0005_plans_trial_days.sql v2/tenant/0010_workflows_archived_at.sql'
    run "psql \"\$DATABASE_URL\" -q <<'SQL'
ALTER TABLE tenant_globex.workflows ADD FOREIGN KEY (created_by) REFERENCES public.users (id);
CREATE VIEW tenant_globex.workflow_authors AS
    SELECT w.id, u.email FROM tenant_globex.workflows w JOIN public.users u ON u.id = w.created_by;
CREATE FUNCTION tenant_initech.nwf() RETURNS bigint LANGUAGE sql SET search_path = tenant_initech, public
    AS 'SELECT count(*) FROM workflows';
SQL"
    run 'tenantmig migrate-to-v2 --dry-run'
    run 'tenantmig migrate-to-v2'
    run 'tenantmig migrate-to-v2 --abort --yes'
    run 'tenantmig --format json migrate-to-v2'
    run 'tenantmig cutover v2 --dry-run'
    run 'tenantmig create-schema tenant_acme_v1'
    run 'tenantmig cutover v2 --dry-run'
    run 'tenantmig drop-schema tenant_acme_v1 --yes'
    run 'tenantmig cutover v2'
    run "psql \"\$DATABASE_URL\" -Atc \"select n.nspname, p.proname, p.proconfig from pg_proc p join pg_namespace n on n.oid=p.pronamespace where proname='nwf'\""
    run "psql \"\$DATABASE_URL\" -c 'select tenant_initech.nwf()'"
    run 'tenantmig status'
}

# docs/src/snapshots.md: the database of the worked example of a version
# move, before the move.
section_snapshots() {
    local v2='tenantmig --config examples/v2/tenantmig.toml'
    title "snapshots: set-up (the worked example of version-moves)"
    setup_v2 tenantmig_tour_snapshots

    title "snapshots: create and list"
    run "$v2 snapshot list"
    run "$v2 snapshot create"
    # Copies are named by the second they are taken.
    sleep 1
    run "$v2 snapshot create --tenant tenant_acme -j 2"
    run "$v2 snapshot list"

    title "snapshots: restore"
    run "psql \"\$DATABASE_URL\" -c \"DELETE FROM tenant_acme.workflows WHERE id > 10\""
    run "$v2 snapshot restore 2"
    sleep 1
    run "$v2 snapshot restore 2 --yes"
    run "psql \"\$DATABASE_URL\" -Atc \"SELECT count(*) FROM tenant_acme.workflows\""
    sleep 1
    run "$v2 snapshot restore 3 --yes"
    run "$v2 snapshot list"
    run "$v2 snapshot restore 2"

    title "snapshots: prune"
    run "$v2 snapshot prune --older-than 7d"
    sleep 1
    run "$v2 snapshot prune --older-than 1s"
    run "$v2 snapshot prune --older-than 1s --yes"

    title "snapshots: --format json"
    run "tenantmig --format json snapshot create --tenant tenant_initech --tenant tenant_globex"
}

# ------------------------------------------------------------------ main

for section in "${sections[@]}"; do
    fresh_workdir
    unset TENANTMIG_TENANTS__QUERY
    started=$SECONDS
    "section_${section//-/_}"
    echo "==> $section: $((SECONDS - started)) s" >&2
done
