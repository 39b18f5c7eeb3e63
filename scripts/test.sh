#!/usr/bin/env bash
# scripts/test.sh: the whole test suite.
#
# Needs the Rust toolchain (cargo, rustfmt, clippy) and PostgreSQL: either
# DATABASE_URL pointing at a server where the user may create databases, or
# local PostgreSQL binaries for a throwaway cluster (see scripts/pg.sh).
# The integration tests use #[sqlx::test], which creates one database per
# test from DATABASE_URL and drops it afterwards.
#
# Steps: example migrations and the worked example of a version move
# (examples/v2) checked with plain psql, cargo fmt --check,
# cargo clippy -D warnings (with and without the lint feature), cargo test
# (all targets), cargo test --doc, and the guide (mdbook build docs) when
# mdbook is installed (scripts/book.sh installs it; CI does not).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source-path=SCRIPTDIR/..
source scripts/pg.sh
# shellcheck source-path=SCRIPTDIR/..
source scripts/build-deps.sh

step() { printf '\n==> %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo not found. Install the Rust toolchain (https://rustup.rs)," \
        "then: rustup component add rustfmt clippy" >&2
    exit 1
fi
for component in fmt clippy; do
    if ! cargo "$component" --version >/dev/null 2>&1; then
        name=$component
        [[ $name == fmt ]] && name=rustfmt
        echo "error: 'cargo $component' is not available; run: rustup component add $name" >&2
        exit 1
    fi
done

tm_ensure_build_deps
tm_ensure_postgres
export DATABASE_URL

step "example migrations (plain psql, shared/ + tenant/ and scripts/bench/light/)"
bash scripts/check-migrations.sh shared tenant
bash scripts/check-migrations.sh - scripts/bench/light

step "the worked example of a version move (plain psql, examples/v2)"
bash scripts/check-example-v2.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo clippy --no-default-features (a build without lint, for machines without libclang)"
cargo clippy --no-default-features --all-targets -- -D warnings

step "cargo test --all-targets -- --test-threads=4"
cargo test --all-targets -- --test-threads=4

step "cargo test --doc"
cargo test --doc

step "the guide (mdbook build docs)"
if command -v mdbook >/dev/null 2>&1; then
    mdbook build docs
else
    echo "skipped: mdbook is not installed; scripts/book.sh builds the guide (and installs mdbook)" >&2
fi

step "all tests passed"
