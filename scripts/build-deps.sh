#!/usr/bin/env bash
# scripts/build-deps.sh: sourced by the scripts that build tenantmig.
#
# The default `lint` feature builds PostgreSQL's own parser (the pg_query
# crate), whose build needs libclang (bindgen, through clang-sys, loads it at
# build time). tm_ensure_build_deps finds it, or installs Debian's
# libclang-dev with apt-get when running as root; otherwise it says what to
# do: install libclang, or build without lint (cargo build
# --no-default-features).
#
# What counts as libclang is what clang-sys loads: a file named libclang.so,
# libclang.so.N or libclang-N.so[.M]. Not libclang-cpp.so.N, the C++
# interface that some machines have without libclang itself.

# tm__is_libclang NAME: true when a file name is one clang-sys would load.
tm__is_libclang() {
    case $1 in
    libclang-cpp*) return 1 ;;
    libclang.so | libclang.so.[0-9]*) return 0 ;;
    libclang-[0-9]*.so | libclang-[0-9]*.so.[0-9]*) return 0 ;;
    *) return 1 ;;
    esac
}

# tm__libclang_dirs: the folders searched, in clang-sys's spirit: LIBCLANG_PATH,
# LLVM's own folders, then the system's library folders.
tm__libclang_dirs() {
    [[ -n ${LIBCLANG_PATH:-} ]] && printf '%s\n' "$LIBCLANG_PATH"
    local d
    for d in /usr/lib/llvm-*/lib /usr/local/llvm*/lib /usr/lib/*-linux-gnu /usr/lib64 /usr/lib /usr/local/lib; do
        [[ -d $d ]] && printf '%s\n' "$d"
    done
}

# tm__has_libclang [DIR...]: true when one of the folders (default:
# tm__libclang_dirs) holds a libclang that clang-sys would load; prints its path.
tm__has_libclang() {
    local dirs=("$@") d f
    if [[ $# -eq 0 ]]; then
        mapfile -t dirs < <(tm__libclang_dirs)
    fi
    for d in "${dirs[@]}"; do
        for f in "$d"/libclang*.so*; do
            [[ -e $f ]] || continue
            if tm__is_libclang "${f##*/}"; then
                printf '%s\n' "$f"
                return 0
            fi
        done
    done
    return 1
}

# tm_ensure_build_deps: makes sure libclang is there (see above).
tm_ensure_build_deps() {
    tm__has_libclang >/dev/null && return 0
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
    if ! tm__has_libclang >/dev/null; then
        echo "error: libclang-dev was installed but no libclang.so was found; set LIBCLANG_PATH to its folder" >&2
        return 1
    fi
}
