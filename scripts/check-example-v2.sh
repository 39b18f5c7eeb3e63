#!/usr/bin/env bash
# scripts/check-example-v2.sh: checks the worked example of a version move
# (examples/v2: the example app's v1 consolidated into one row-level-tenancy
# schema) with plain psql, without tenantmig, doing by hand what
# `tenantmig migrate-to v2` does with the reshape strategy.
#
#   scripts/check-example-v2.sh
#
# In a scratch database tm_example_v2_check, created afresh and dropped at
# the end, on the server of DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres; scripts/pg.sh starts a
# throwaway cluster when nothing answers there), it:
#   - builds v1: shared/ in `public` plus tests/cases/move/seed_shared.sql,
#     three organizations (tenant_a, tenant_b, tenant_c, with ids that are
#     not 1, 2, 3) and their memberships, and per tenant a schema with every
#     tenant/ migration (search_path "<tenant>", public; a `-- no-transaction`
#     file outside a transaction, every other one inside one) seeded by
#     tests/cases/move/seed_tenant.sql with 20, 30 and 5 workflows;
#   - builds v2: schema app_v2 and examples/v2/shared/* in it (search_path
#     app_v2, one transaction per file);
#   - lints the data-move files (names, `-- expect-rows:` first line, no
#     transaction statements, only placeholders the kind of file has);
#   - runs examples/v2/moves/shared/* once and examples/v2/moves/tenant/* for
#     each tenant, with the placeholders substituted the way the engine
#     does, each file in one transaction (psql -1), and checks that the rows
#     the file wrote (the INSERT/UPDATE/DELETE tags psql prints) equal its
#     expect-rows query;
#   - prints per table and tenant the v1 count and the app_v2 count
#     (WHERE tenant_id = the tenant's id), and checks they match, and that the
#     rows themselves match (every v1 column, generated duration_ms included,
#     compared with EXCEPT ALL both ways);
#   - checks, in a transaction it rolls back, the composite foreign keys'
#     ON DELETE actions (SET NULL (document_id) and the tenant_id cascade).
# Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh

fail() {
    printf 'check-example-v2: FAIL: %s\n' "$*" >&2
    exit 1
}
say() { printf 'check-example-v2: %s\n' "$*" >&2; }

v1_shared_dir=shared
v1_tenant_dir=tenant
v2_migrations=examples/v2/shared
shared_moves=examples/v2/moves/shared
tenant_moves=examples/v2/moves/tenant
seed_dir=tests/cases/move
v2_schema=app_v2
tenants=(tenant_a tenant_b tenant_c)
seed_rows=(20 30 5)
shared_tables=(plans organizations users memberships)
tenant_tables=(workflows documents executions document_pages api_keys usage_events tags workflow_tags)

export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
tm_ensure_postgres
db=tm_example_v2_check
url=$(tm_create_db "$db")
work=$(mktemp -d)
cleanup_db() {
    psql "$TM_ADMIN_URL" -Xq -v db="$db" >/dev/null 2>&1 <<<'DROP DATABASE IF EXISTS :"db" WITH (FORCE);' || true
}
trap 'cleanup_db; rm -rf -- "$work"; tm_stop_postgres' EXIT
say "scratch database $db"

# q SQL: one value (or rows) of a query, unaligned.
q() { psql "$url" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }

# migration_files DIR: the migrations of DIR in version order, .down.sql
# files left out.
migration_files() {
    local dir=$1
    [[ -d $dir ]] || fail "$dir is not a directory"
    find "$dir" -maxdepth 1 -type f -name '*.sql' ! -name '*.down.sql' -printf '%f\n' |
        sort -t_ -k1,1n | sed "s#^#$dir/#"
}

# apply SEARCH_PATH FILE: runs one migration file, in one transaction unless
# its first line is `-- no-transaction`.
apply() {
    local path=$1 file=$2
    local -a opts=(-X -q -v ON_ERROR_STOP=1 -f "$file")
    [[ $(head -n 1 "$file") != "-- no-transaction" ]] && opts=(--single-transaction "${opts[@]}")
    PGOPTIONS="-c search_path=$path -c client_min_messages=warning" psql "$url" "${opts[@]}" >/dev/null ||
        fail "$file failed in search_path $path"
}

# --- v1 --------------------------------------------------------------------

say "v1 shared: $v1_shared_dir -> public"
while read -r f; do apply public "$f"; done < <(migration_files "$v1_shared_dir")
apply public "$seed_dir/seed_shared.sql"

# A deleted organization first, so that the tenants' ids are not 1, 2, 3 and
# a move that confused ids with positions would show.
psql "$url" -Xq -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || fail "could not create the organizations"
INSERT INTO public.organizations (name, schema_name) VALUES ('Gone', 'tenant_gone');
DELETE FROM public.organizations WHERE schema_name = 'tenant_gone';
INSERT INTO public.organizations (name, schema_name, plan) VALUES
    ('Tenant A', 'tenant_a', 'free'),
    ('Tenant B', 'tenant_b', 'pro'),
    ('Tenant C', 'tenant_c', 'enterprise');
INSERT INTO public.memberships (organization_id, user_id, role, invited_by, created_at)
SELECT o.id, u.id,
       CASE WHEN u.email LIKE 'alice@%' THEN 'owner' ELSE 'member' END,
       CASE WHEN u.email LIKE 'alice@%' THEN NULL
            ELSE (SELECT id FROM public.users WHERE email LIKE 'alice@%') END,
       timestamptz '2024-01-05 00:00:00+00'
FROM   public.organizations o
CROSS  JOIN public.users u
WHERE  u.email LIKE 'alice@%' OR o.schema_name = 'tenant_a';
SQL

declare -A tenant_id=()
for i in "${!tenants[@]}"; do
    t=${tenants[i]}
    q "CREATE SCHEMA $t" >/dev/null
    while read -r f; do apply "$t,public" "$f"; done < <(migration_files "$v1_tenant_dir")
    PGOPTIONS="-c search_path=$t,public -c client_min_messages=warning" \
        psql "$url" -X -q -v ON_ERROR_STOP=1 --single-transaction \
        -c "SET tenantmig_seed.rows = '${seed_rows[i]}'" -f "$seed_dir/seed_tenant.sql" >/dev/null ||
        fail "$seed_dir/seed_tenant.sql failed in $t"
    tenant_id[$t]=$(q "SELECT id FROM public.organizations WHERE schema_name = '$t'")
    [[ -n ${tenant_id[$t]} ]] || fail "no organization for $t"
    say "v1 tenant $t (organization ${tenant_id[$t]}): $v1_tenant_dir applied, seeded with ${seed_rows[i]} workflows"
done

# --- v2 --------------------------------------------------------------------

q "CREATE SCHEMA $v2_schema" >/dev/null
while read -r f; do
    apply "$v2_schema" "$f"
    say "v2: applied $f"
done < <(migration_files "$v2_migrations")

# lint_moves DIR KIND: checks the data-move files of DIR (KIND shared or
# tenant) and prints them in version order.
lint_moves() {
    local dir=$1 kind=$2 f base
    local -A seen=()
    [[ -d $dir ]] || fail "$dir is not a directory"
    shopt -s nullglob
    local files=("$dir"/*.sql)
    shopt -u nullglob
    [[ ${#files[@]} -gt 0 ]] || fail "$dir has no .sql files"
    for f in "${files[@]}"; do
        base=${f##*/}
        [[ $base =~ ^([0-9]+)_[A-Za-z0-9_]+\.sql$ ]] ||
            fail "$f: name does not follow <version>_<description>.sql"
        local version=$((10#${BASH_REMATCH[1]}))
        [[ -z ${seen[$version]:-} ]] || fail "$f: version $version is also used by ${seen[$version]}"
        seen[$version]=$f
        [[ $(head -n 1 "$f") =~ ^--\ expect-rows:\ .+ ]] ||
            fail "$f: the first line must be '-- expect-rows: <SQL>'"
        if grep -qiE '^[[:space:]]*(BEGIN|COMMIT|ROLLBACK|START[[:space:]]+TRANSACTION|END)[[:space:]]*;' "$f"; then
            fail "$f: contains a transaction statement; each file runs in one transaction"
        fi
        if [[ $kind == shared ]] && grep -qE '\{tenant(_id)?\}' "$f"; then
            fail "$f: {tenant} and {tenant_id} are not available in shared data-move files"
        fi
        printf '%s\t%s\n' "$version" "$f"
    done | sort -n -k1,1 | cut -f2
}

# render FILE SOURCE TARGET SOURCE_SHARED TARGET_SHARED [TENANT TENANT_ID]:
# FILE with its placeholders substituted as the engine does (identifiers
# double-quoted, tenant and tenant_id as quoted literals).
render() {
    local file=$1 src=$2 tgt=$3 src_shared=$4 tgt_shared=$5 tenant=${6:-} tid=${7:-}
    local -a subst=(
        -e "s/{source_schema}/\"$src\"/g"
        -e "s/{target_schema}/\"$tgt\"/g"
        -e "s/{source_shared}/\"$src_shared\"/g"
        -e "s/{target_shared}/\"$tgt_shared\"/g"
    )
    [[ -n $tenant ]] && subst+=(-e "s/{tenant}/'$tenant'/g" -e "s/{tenant_id}/'$tid'/g")
    sed "${subst[@]}" "$file"
}

# run_move FILE LABEL RENDER_ARGS...: runs one data-move file in one
# transaction and compares the rows it wrote with its expect-rows query.
run_move() {
    local file=$1 label=$2
    shift 2
    local rendered=$work/${file##*/} expect_sql expected out written
    render "$file" "$@" >"$rendered"
    expect_sql=$(head -n 1 "$rendered" | sed 's/^-- expect-rows: //')
    local env_opts="-c search_path=\"$v2_schema\" -c client_min_messages=warning"
    expected=$(PGOPTIONS=$env_opts psql "$url" -XAtq -v ON_ERROR_STOP=1 -c "$expect_sql") ||
        fail "$label: ${file##*/}: the expect-rows query failed: $expect_sql"
    [[ $expected =~ ^[0-9]+$ ]] || fail "$label: ${file##*/}: the expect-rows query returned '$expected', not one number"
    out=$(PGOPTIONS=$env_opts psql "$url" -X -v ON_ERROR_STOP=1 --single-transaction -f "$rendered") ||
        fail "$label: ${file##*/} failed"
    written=$(awk '/^INSERT [0-9]+ [0-9]+$/ { n += $3 } /^(UPDATE|DELETE|MERGE|COPY) [0-9]+$/ { n += $2 } END { print n + 0 }' <<<"$out")
    [[ $written == "$expected" ]] ||
        fail "$label: ${file##*/} wrote $written rows, its expect-rows query says $expected"
    say "  $label: ${file##*/}: $written rows (expected $expected)"
}

say "shared data moves: public -> $v2_schema"
while read -r f; do
    run_move "$f" shared public "$v2_schema" public "$v2_schema"
done < <(lint_moves "$shared_moves" shared)

for t in "${tenants[@]}"; do
    say "tenant data moves: $t -> $v2_schema (tenant_id ${tenant_id[$t]})"
    while read -r f; do
        run_move "$f" "$t" "$t" "$v2_schema" public "$v2_schema" "$t" "${tenant_id[$t]}"
    done < <(lint_moves "$tenant_moves" tenant)
done

# --- comparison ------------------------------------------------------------

# diff_rows SOURCE TARGET [WHERE]: rows of SOURCE missing from TARGET
# (filtered by WHERE) plus the reverse, over SOURCE's columns.
diff_rows() {
    local src=$1 tgt=$2 where=${3:-true} cols
    cols=$(q "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute
              WHERE attrelid = '$src'::regclass AND attnum > 0 AND NOT attisdropped")
    q "SELECT (SELECT count(*) FROM (SELECT $cols FROM $src EXCEPT ALL SELECT $cols FROM $tgt WHERE $where) a)
            + (SELECT count(*) FROM (SELECT $cols FROM $tgt WHERE $where EXCEPT ALL SELECT $cols FROM $src) b)"
}

mismatch=0
header=$(printf '%-16s' table)
for t in "${tenants[@]}"; do header+=$(printf '  %-22s' "$t (id ${tenant_id[$t]}) v1/v2"); done
printf '%s\n' "${header%"${header##*[! ]}"}"
for table in "${shared_tables[@]}"; do
    src=$(q "SELECT count(*) FROM public.$table")
    dst=$(q "SELECT count(*) FROM $v2_schema.$table")
    diff=$(diff_rows "public.$table" "$v2_schema.$table")
    mark=""
    [[ $src == "$dst" && $diff == 0 ]] || { mark="  MISMATCH ($diff rows differ)"; mismatch=1; }
    printf '%-16s  %s%s\n' "$table" "$src/$dst (shared)" "$mark"
done
for table in "${tenant_tables[@]}"; do
    line=$(printf '%-16s' "$table")
    for t in "${tenants[@]}"; do
        id=${tenant_id[$t]}
        src=$(q "SELECT count(*) FROM $t.$table")
        dst=$(q "SELECT count(*) FROM $v2_schema.$table WHERE tenant_id = $id")
        diff=$(diff_rows "$t.$table" "$v2_schema.$table" "tenant_id = $id")
        cell="$src/$dst"
        [[ $src == "$dst" && $diff == 0 && $src -gt 0 ]] || { cell+=" MISMATCH($diff)"; mismatch=1; }
        line+=$(printf '  %-22s' "$cell")
    done
    printf '%s\n' "${line%"${line##*[! ]}"}"
done
[[ $mismatch == 0 ]] || fail "app_v2 does not hold exactly the v1 rows (see MISMATCH above)"

# --- ON DELETE actions of the composite foreign keys (rolled back) ---------

a=${tenant_id[tenant_a]}
psql "$url" -Xq -v ON_ERROR_STOP=1 >/dev/null <<SQL || fail "ON DELETE behaviour of $v2_schema is wrong"
BEGIN;
SET LOCAL search_path = $v2_schema;
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE victim ON COMMIT DROP AS
    SELECT e.id AS execution_id, e.document_id FROM executions e
    WHERE e.tenant_id = $a AND e.document_id IS NOT NULL ORDER BY e.id LIMIT 1;
DELETE FROM documents d USING victim v WHERE d.tenant_id = $a AND d.id = v.document_id;
DO \$\$
BEGIN
    ASSERT (SELECT e.document_id IS NULL AND e.tenant_id = $a FROM executions e JOIN victim v ON e.id = v.execution_id AND e.tenant_id = $a),
        'ON DELETE SET NULL (document_id) did not keep the execution with document_id NULL';
    ASSERT NOT EXISTS (SELECT FROM document_pages p JOIN victim v ON p.document_id = v.document_id AND p.tenant_id = $a),
        'the pages of the deleted document are still there';
    ASSERT (SELECT count(*) FROM documents d JOIN victim v ON d.id = v.document_id) = ${#tenants[@]} - 1,
        'documents of other tenants with the same id were touched';
END
\$\$;
DELETE FROM organizations WHERE id = $a;
DO \$\$
BEGIN
    ASSERT NOT EXISTS (SELECT FROM workflows WHERE tenant_id = $a)
       AND NOT EXISTS (SELECT FROM usage_events WHERE tenant_id = $a)
       AND NOT EXISTS (SELECT FROM workflow_tags WHERE tenant_id = $a),
        'deleting the organization left tenant rows behind';
END
\$\$;
ROLLBACK;
SQL
say "ON DELETE actions OK (SET NULL (document_id), cascades, organization delete; rolled back)"

cleanup_db
say "OK: $v2_schema holds every v1 row of ${#tenants[@]} tenants and the shared schema"
