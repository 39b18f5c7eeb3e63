#!/usr/bin/env bash
# scripts/demo.sh: tenantmig end to end on the example app (shared/, tenant/).
#
#   scripts/demo.sh                                   # throwaway cluster
#   DATABASE_URL=postgres://postgres@localhost/postgres scripts/demo.sh
#
# Builds the release binary, (re)creates the database tenantmig_demo, runs the
# shared migrations, registers five organizations (one tenant schema each)
# in public.organizations, then lists the tenants, migrates them all, and
# shows their status and the run ledger.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh
# shellcheck source-path=SCRIPTDIR/..
source scripts/build-deps.sh

step() { printf '\n==> %s\n' "$*"; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found; install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi

tm_ensure_build_deps
tm_ensure_postgres

step "cargo build --release"
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/tenantmig
[[ -x $bin ]] || { echo "error: $bin was not built" >&2; exit 1; }

step "create database tenantmig_demo"
DATABASE_URL=$(tm_create_db tenantmig_demo)
export DATABASE_URL
echo "DATABASE_URL=$(tm_mask_url "$DATABASE_URL")"

# The demo's tenants are the organizations of the example app.
export TENANTMIG_TENANTS__QUERY='SELECT schema_name FROM public.organizations ORDER BY id'

tenantmig() {
    step "tenantmig $*"
    "$bin" "$@"
}

tenantmig migrate --shared-only

step "insert 5 demo organizations into public.organizations"
psql "$DATABASE_URL" -X -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO public.organizations (name, schema_name, plan) VALUES
    ('Acme Corp',        'tenant_acme',     'enterprise'),
    ('Globex',           'tenant_globex',   'pro'),
    ('Initech',          'tenant_initech',  'free'),
    ('Umbrella',         'tenant_umbrella', 'pro'),
    ('Hooli',            'tenant_hooli',    'enterprise')
ON CONFLICT (schema_name) DO NOTHING;

INSERT INTO public.users (email, display_name) VALUES
    ('wile@acme.example',     'Wile E. Coyote'),
    ('hank@globex.example',   'Hank Scorpio'),
    ('peter@initech.example', 'Peter Gibbons')
ON CONFLICT (email) DO NOTHING;

INSERT INTO public.memberships (organization_id, user_id, role)
SELECT o.id, u.id, 'owner'
FROM   public.organizations o
JOIN   public.users u ON split_part(u.email, '@', 2) = substr(o.schema_name, 8) || '.example'
ON CONFLICT DO NOTHING;
SQL
psql "$DATABASE_URL" -X -c 'SELECT id, name, schema_name, plan FROM public.organizations ORDER BY id'

tenantmig tenants
tenantmig migrate
tenantmig status
tenantmig runs

step "done"
if [[ ${TM_PG_THROWAWAY:-0} == 1 && ${TM_PG_KEEP:-0} != 1 ]]; then
    echo "The demo ran on a throwaway cluster, which is removed now that the script ends."
    echo "To keep it, run with TM_PG_KEEP=1, or point DATABASE_URL at your own server."
else
    echo "The demo database is kept. Inspect it with:"
    echo "  psql '$(tm_mask_url "$DATABASE_URL")' -c '\\dn'"
    echo "  DATABASE_URL='$(tm_mask_url "$DATABASE_URL")' \\"
    echo "  TENANTMIG_TENANTS__QUERY=\"$TENANTMIG_TENANTS__QUERY\" \\"
    echo "    $bin status"
fi
