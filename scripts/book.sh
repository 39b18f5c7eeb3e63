#!/usr/bin/env bash
# scripts/book.sh: builds the guide (docs/, an mdBook) into docs/book/.
#
#   scripts/book.sh            # then open docs/book/index.html
#   scripts/book.sh serve      # mdbook serve docs: rebuilds on change, on localhost:3000
#
# Needs mdbook. When it is missing, this script installs it with
# `cargo install --locked mdbook` (built from crates.io into ~/.cargo/bin,
# a few minutes on a small machine) and says so.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v mdbook >/dev/null 2>&1; then
    if [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/mdbook ]]; then
        PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
    elif command -v cargo >/dev/null 2>&1; then
        echo "mdbook not found: installing it with 'cargo install --locked mdbook' (a few minutes)" >&2
        cargo install --locked mdbook
        PATH=${CARGO_HOME:-$HOME/.cargo}/bin:$PATH
    else
        echo "error: mdbook not found, nor cargo to install it; install the Rust toolchain" \
            "(https://rustup.rs), then: cargo install --locked mdbook" >&2
        exit 1
    fi
fi

if [[ ${1:-} == serve ]]; then
    exec mdbook serve docs
fi
mdbook build docs
echo "built the guide: docs/book/index.html"
