#!/usr/bin/env bash
# scripts/build-deps.sh: sourced by the scripts that build tenantmig.
#
# The default `lint` feature builds PostgreSQL's own parser (the pg_query
# crate), whose build needs libclang (bindgen). tm_ensure_build_deps finds
# it, or installs Debian's libclang-dev with apt-get when running as root;
# otherwise it says what to do: install libclang, or build without lint
# (cargo build --no-default-features).

# tm__has_libclang: true when a libclang shared library is visible.
tm__has_libclang() {
    [[ -n ${LIBCLANG_PATH:-} ]] && return 0
    compgen -G '/usr/lib/llvm-*/lib/libclang*.so*' >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/*/libclang*.so*' >/dev/null 2>&1 && return 0
    ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'
}

# tm_ensure_build_deps: makes sure libclang is there (see above).
tm_ensure_build_deps() {
    tm__has_libclang && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        echo "error: libclang not found; the lint feature (PostgreSQL's parser, pg_query) needs it to build." \
            "Install it (e.g. 'sudo apt-get install libclang-dev'), set LIBCLANG_PATH," \
            "or build without lint: cargo build --no-default-features" >&2
        return 1
    fi
    echo "==> libclang not found; installing libclang-dev with apt-get (needed to build PostgreSQL's parser for lint)" >&2
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev; } >&2; then
        echo "error: apt-get install libclang-dev failed" >&2
        return 1
    fi
}
