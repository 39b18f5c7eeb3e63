#!/usr/bin/env bash
# scripts/check-migrations.sh: checks migration sets with plain psql, without
# tenantmig, so a broken example file is caught even when the Rust side is.
#
#   scripts/check-migrations.sh [SHARED_DIR [TENANT_DIR]]
#   scripts/check-migrations.sh - scripts/bench/light   # no shared set
#
# Defaults: shared/ and tenant/. In a scratch database on the server that
# scripts/pg.sh finds (DATABASE_URL or a throwaway cluster), it:
#   - lints the file names (sqlx convention, unique versions, .up/.down
#     pairs) and rejects BEGIN/COMMIT/ROLLBACK inside files;
#   - applies the shared set to `public`, in version order;
#   - applies the tenant set to two schemas, t_a and t_b, with
#     search_path "<tenant>", public: a `-- no-transaction` file as is, every
#     other file inside one transaction (psql --single-transaction);
#   - runs the .down.sql files of the trailing reversible migrations (newest
#     first) and checks that each restores the schema's catalog exactly as it
#     was before its .up.sql, then applies the .up.sql files again and checks
#     the schema matches the first full apply;
#   - checks t_a and t_b ended up identical;
#   - drops the scratch database.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh

shared_dir=${1:-shared}
tenant_dir=${2:-tenant}
[[ $shared_dir == - ]] && shared_dir=""
[[ $tenant_dir == - ]] && tenant_dir=""

fail() {
    printf 'check-migrations: FAIL: %s\n' "$*" >&2
    exit 1
}
say() { printf 'check-migrations: %s\n' "$*" >&2; }

# ordered_files DIR: prints "version<TAB>kind<TAB>path" for every migration
# of DIR in version order, kind being simple, up or notx (down files are
# found from their up file). Fails on bad names or pairs.
ordered_files() {
    local dir=$1 f base version kind rest
    local -A seen=()
    [[ -d $dir ]] || fail "$dir is not a directory"
    shopt -s nullglob
    local files=("$dir"/*.sql)
    shopt -u nullglob
    [[ ${#files[@]} -gt 0 ]] || fail "$dir has no .sql files"
    for f in "${files[@]}"; do
        base=${f##*/}
        [[ $base =~ ^([0-9]+)_([A-Za-z0-9_]+)(\.up|\.down)?\.sql$ ]] ||
            fail "$f: name does not follow <version>_<description>[.up|.down].sql"
        version=$((10#${BASH_REMATCH[1]}))
        rest=${BASH_REMATCH[3]}
        if grep -qiE '^[[:space:]]*(BEGIN|COMMIT|ROLLBACK|START[[:space:]]+TRANSACTION|END)[[:space:]]*;' "$f"; then
            fail "$f: contains a transaction statement; the tool wraps each file itself"
        fi
        case $rest in
        .down)
            [[ -f ${f%.down.sql}.up.sql ]] || fail "$f: no matching .up.sql"
            continue
            ;;
        .up)
            [[ -f ${f%.up.sql}.down.sql ]] || fail "$f: no matching .down.sql"
            kind=up
            ;;
        *) kind=simple ;;
        esac
        if [[ -n ${seen[$version]:-} ]]; then
            fail "$f: version $version is also used by ${seen[$version]}"
        fi
        seen[$version]=$f
        if [[ $(head -n 1 "$f") == "-- no-transaction" ]]; then
            [[ $kind == up ]] && fail "$f: a reversible migration cannot be -- no-transaction here"
            kind=notx
        elif grep -qiE '^[[:space:]]*--[[:space:]]*no-transaction' "$f"; then
            fail "$f: '-- no-transaction' must be the exact first line"
        fi
        printf '%s\t%s\t%s\n' "$version" "$kind" "$f"
    done | sort -n -k1,1
}

# apply URL SCHEMA_PATH KIND FILE: runs one migration file.
apply() {
    local url=$1 path=$2 kind=$3 file=$4
    local -a opts=(-X -q -v ON_ERROR_STOP=1 -f "$file")
    [[ $kind != notx ]] && opts=(--single-transaction "${opts[@]}")
    if ! PGOPTIONS="-c search_path=$path -c client_min_messages=warning" psql "$url" "${opts[@]}" >/dev/null; then
        fail "$file failed in search_path $path"
    fi
}

# fingerprint URL SCHEMA: the schema's objects as sorted text, with the
# schema's own name replaced by <schema> so that schemas compare.
fingerprint() {
    psql "$1" -XAtq -v ON_ERROR_STOP=1 -v s="$2" <<'SQL'
SELECT line FROM (
  SELECT format('rel %s %s', c.relname, c.relkind) AS line
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = :'s'
  UNION ALL
  SELECT format('col %s.%s %s notnull=%s default=%s identity=%s generated=%s',
                c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated)
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE n.nspname = :'s' AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT format('con %s %s', con.conname, pg_get_constraintdef(con.oid))
  FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
  WHERE n.nspname = :'s'
  UNION ALL
  SELECT format('idx %s valid=%s', pg_get_indexdef(i.indexrelid), i.indisvalid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = :'s'
  UNION ALL
  SELECT format('fn %s(%s)', p.proname, pg_get_function_identity_arguments(p.oid))
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
  WHERE n.nspname = :'s'
  UNION ALL
  SELECT format('type %s %s', t.typname, t.typtype)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
  WHERE n.nspname = :'s' AND t.typtype IN ('e', 'd', 'r', 'm')
  UNION ALL
  SELECT format('trg %s', pg_get_triggerdef(tg.oid))
  FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = :'s' AND NOT tg.tgisinternal
) x
ORDER BY 1;
SQL
}

normalise() { sed -e "s/\b$2\./<schema>./g" -e "s/\b$2\b/<schema>/g" <<<"$1"; }

# apply_set URL SCHEMA SEARCH_PATH FILELIST: applies every migration; checks
# the trailing reversible ones down and up again.
apply_set() {
    local url=$1 schema=$2 path=$3 list=$4
    local -a versions=() kinds=() files=() before=()
    local v k f i n
    while IFS=$'\t' read -r v k f; do
        versions+=("$v")
        kinds+=("$k")
        files+=("$f")
    done <<<"$list"
    n=${#files[@]}
    for ((i = 0; i < n; i++)); do
        before[i]=$(fingerprint "$url" "$schema")
        apply "$url" "$path" "${kinds[i]}" "${files[i]}"
        case ${kinds[i]} in
        notx) say "  $schema: applied ${files[i]##*/} (outside a transaction)" ;;
        *) say "  $schema: applied ${files[i]##*/}" ;;
        esac
    done
    local full
    full=$(fingerprint "$url" "$schema")

    # Revert the trailing reversible migrations, newest first.
    local reverted=0
    for ((i = n - 1; i >= 0; i--)); do
        [[ ${kinds[i]} == up ]] || break
        local down=${files[i]%.up.sql}.down.sql
        apply "$url" "$path" simple "$down"
        if [[ $(fingerprint "$url" "$schema") != "${before[i]}" ]]; then
            diff <(printf '%s\n' "${before[i]}") <(fingerprint "$url" "$schema") >&2 || true
            fail "$down does not restore $schema to its state before ${files[i]##*/} (diff above: < expected, > actual)"
        fi
        say "  $schema: reverted ${down##*/} (catalog matches the state before its .up.sql)"
        reverted=$((reverted + 1))
    done
    for ((i = n - reverted; i < n; i++)); do
        apply "$url" "$path" up "${files[i]}"
        say "  $schema: re-applied ${files[i]##*/}"
    done
    if [[ $(fingerprint "$url" "$schema") != "$full" ]]; then
        fail "$schema differs after down + up from its first full apply"
    fi
    for ((i = 0; i < n - reverted; i++)); do
        [[ ${kinds[i]} == up ]] &&
            say "  note: ${files[i]##*/} is reversible but not among the newest migrations; its .down.sql was not run"
    done
    return 0
}

tm_ensure_postgres
db=tenantmig_sqlcheck_$$
url=$(tm_create_db "$db")
cleanup_db() {
    psql "$TM_ADMIN_URL" -Xq -v db="$db" >/dev/null 2>&1 <<<'DROP DATABASE IF EXISTS :"db" WITH (FORCE);' || true
}
trap 'cleanup_db; tm_stop_postgres' EXIT
say "scratch database $db"

if [[ -n $shared_dir ]]; then
    list=$(ordered_files "$shared_dir")
    say "shared set $shared_dir -> public"
    apply_set "$url" public public "$list"
fi

if [[ -n $tenant_dir ]]; then
    list=$(ordered_files "$tenant_dir")
    notx=$(awk -F'\t' '$2 == "notx"' <<<"$list" | wc -l)
    for schema in t_a t_b; do
        psql "$url" -Xq -v ON_ERROR_STOP=1 -c "CREATE SCHEMA $schema" >/dev/null
        say "tenant set $tenant_dir -> $schema (search_path $schema, public)"
        apply_set "$url" "$schema" "$schema,public" "$list"
    done
    a=$(normalise "$(fingerprint "$url" t_a)" t_a)
    b=$(normalise "$(fingerprint "$url" t_b)" t_b)
    [[ $a == "$b" ]] || {
        diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") >&2 || true
        fail "t_a and t_b differ"
    }
    # Nothing of the tenant set may have leaked into the shared schema.
    leaked=$(psql "$url" -XAtq -c "SELECT string_agg(relname, ', ') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND relname IN (SELECT relname FROM pg_class c2 JOIN pg_namespace n2 ON n2.oid = c2.relnamespace WHERE n2.nspname = 't_a')")
    [[ -z $leaked ]] || fail "tenant objects also exist in public: $leaked"
    say "tenant set OK: $(wc -l <<<"$list") migrations, $notx without transaction; t_a and t_b identical"
fi

cleanup_db
say "OK"
