# shellcheck shell=bash
# scripts/bench-lib.sh: the helpers that scripts/bench.sh,
# scripts/bench-copy.sh and scripts/bench-move.sh share. Source it after
# scripts/pg.sh (it uses tm_mask_url and tm_stop_postgres):
#
#   BENCH_NAME=bench
#   source scripts/pg.sh
#   source scripts/bench-lib.sh
#
# It sources scripts/build-deps.sh itself (libclang for the lint feature).
#
# What it holds:
#   messages     step, say, die
#   setup        need_counts, unset_tenantmig_env, need_cargo_and_gnu_time,
#                build_release, bench_cleanup (the EXIT trap)
#   psql         psql_q, checkpoint
#   timing       now, elapsed, timed, show_log
#   tenantmig    shq, tool_cmd
#   figures      mb, lt, le, max, fmt3, ratio, median, all
#   targets      verdict, strict_exit
#
# Variables it expects of the calling script (read when a function runs, so
# they may be set after sourcing, before the first call):
#   BENCH_NAME       the prefix of die's messages ("bench: error: ...")
#   BENCH_MISS       verdict's word for a target not met (FAIL, MISS)
#   STRICT           1: strict_exit exits 1 when a target was not met
#   work             the script's temporary folder (timed writes $work/rss;
#                    bench_cleanup removes it)
#   bin              the tenantmig binary (set by build_release; tool_cmd)
#   KEEP             1 keeps the databases of BENCH_DBS (bench_cleanup)
#   ADMIN_URL        where bench_cleanup drops the databases from
#   BENCH_DBS        array: the databases bench_cleanup drops on exit (empty
#                    here; add each one the script creates or may create)
#   SHOW_LOG_PATHS   1: show_log names a log by its full path, else by its
#                    file name
#
# Variables its functions set: T_SECS, T_KB, T_RC (timed), TOOL_CMD,
# TOOL_SHOW (tool_cmd), bin (build_release).

# shellcheck source=scripts/build-deps.sh
source "$(dirname "${BASH_SOURCE[0]}")/build-deps.sh"

BENCH_DBS=()

# ---------------------------------------------------------------- messages

step() { printf '\n==> %s\n' "$*" >&2; }
say() { printf '    %s\n' "$*" >&2; }
die() {
    printf '%s: error: %s\n' "$BENCH_NAME" "$*" >&2
    exit 1
}

# ---------------------------------------------------------------- setup

is_count() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }

# need_counts VAR...: dies unless every named variable is a positive integer.
need_counts() {
    local v
    for v in "$@"; do
        is_count "${!v}" || die "$v must be a positive integer, not '${!v}'"
    done
}

# unset_tenantmig_env: only the calling script's settings apply, no inherited
# TENANTMIG_* variable (a stray TENANTMIG_TENANTS__QUERY next to a pattern
# would even be an error).
unset_tenantmig_env() {
    local var
    while IFS= read -r var; do
        unset "$var"
    done < <(compgen -e | grep '^TENANTMIG_' || true)
}

# need_cargo_and_gnu_time: cargo, and GNU time for the peak RSS (%M, in KB),
# installed with apt-get when running as root and it is missing.
need_cargo_and_gnu_time() {
    command -v cargo >/dev/null 2>&1 || die "cargo not found; install the Rust toolchain (https://rustup.rs)"
    if ! [[ -x /usr/bin/time ]] || ! /usr/bin/time -f '%M' true >/dev/null 2>&1; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
            step "installing GNU time (apt-get install time)"
            { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time; } >&2 ||
                die "apt-get install time failed"
        else
            die "/usr/bin/time (GNU time) is needed for the peak RSS; install the 'time' package"
        fi
    fi
}

# build_release STEP: says STEP, builds the release binary (into
# CARGO_TARGET_DIR, default target) and sets bin to it.
build_release() {
    step "$1"
    tm_ensure_build_deps || die "cannot build tenantmig without libclang (see above)"
    cargo build --release --quiet
    bin=${CARGO_TARGET_DIR:-target}/release/tenantmig
    [[ -x $bin ]] || die "$bin was not built"
}

# bench_cleanup: the EXIT trap (trap bench_cleanup EXIT). Drops the databases
# of BENCH_DBS unless KEEP=1, removes $work, stops a throwaway cluster, and
# keeps the script's exit status.
# shellcheck disable=SC2317,SC2154 # only called from the EXIT trap; $work is the script's
bench_cleanup() {
    local rc=$? db n=${#BENCH_DBS[@]} i list
    if ((n > 0)); then
        if [[ $KEEP != 1 ]]; then
            for db in "${BENCH_DBS[@]}"; do
                psql "$ADMIN_URL" -Xq -v db="$db" >/dev/null 2>&1 \
                    <<<'DROP DATABASE IF EXISTS :"db" WITH (FORCE);' || true
            done
        elif [[ ${TM_PG_THROWAWAY:-0} == 1 && ${TM_PG_KEEP:-0} != 1 ]]; then
            if ((n == 1)); then
                say "KEEP=1: the database goes with the throwaway cluster all the same (keep it too with TM_PG_KEEP=1)"
            else
                say "KEEP=1: the databases go with the throwaway cluster all the same (keep it too with TM_PG_KEEP=1)"
            fi
        else
            # "a", "a and b", "a, b and c"
            list=${BENCH_DBS[0]}
            for ((i = 1; i < n - 1; i++)); do
                list+=", ${BENCH_DBS[i]}"
            done
            ((n > 1)) && list+=" and ${BENCH_DBS[n - 1]}"
            if ((n == 1)); then
                say "KEEP=1: kept the database $list"
            else
                say "KEEP=1: kept the databases $list"
            fi
        fi
    fi
    rm -rf -- "$work"
    tm_stop_postgres
    return "$rc"
}

# ---------------------------------------------------------------- psql

# psql_q URL SQL: one value, no noise.
psql_q() { psql "$1" -XAtq -v ON_ERROR_STOP=1 -c "$2"; }

# checkpoint URL: flush dirty buffers before a timed step so that a
# checkpoint does not land in the middle of it (needs superuser or
# pg_checkpoint; skipped otherwise).
checkpoint() { psql "$1" -XAtq -c CHECKPOINT >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- timing

# now: seconds since the epoch, nanosecond resolution.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# timed LOG CMD...: runs CMD (stdout and stderr to LOG) under GNU time and
# sets T_SECS (wall clock), T_KB (peak RSS) and T_RC (exit status).
# shellcheck disable=SC2034 # T_SECS, T_RC: for the calling script
timed() {
    local log=$1 start end
    shift
    start=$(now)
    if /usr/bin/time -f '%M' -o "$work/rss" "$@" >"$log" 2>&1; then
        T_RC=0
    else
        T_RC=$?
    fi
    end=$(now)
    T_SECS=$(elapsed "$start" "$end")
    # time writes "Command exited with non-zero status N" first on failure.
    T_KB=$(tail -n 1 "$work/rss")
    [[ $T_KB =~ ^[0-9]+$ ]] || T_KB=0
}

# show_log LOG [LINES]: the end (25 lines) of a failed step's output, named
# by its file name (by its path with SHOW_LOG_PATHS=1).
show_log() {
    local name=${1##*/}
    [[ ${SHOW_LOG_PATHS:-0} == 1 ]] && name=$1
    say "last lines of $name:"
    tail -n "${2:-25}" "$1" | sed 's/^/      /' >&2
}

# ---------------------------------------------------------------- tenantmig

# shq WORD: WORD quoted for a shell when it needs it.
shq() {
    if [[ $1 =~ ^[A-Za-z0-9_./:@%=+,-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# tool_cmd URL [ENV=VALUE...] -- ARGS...: sets TOOL_CMD to the tenantmig
# command line ($bin) against URL with these settings, and TOOL_SHOW to it as
# shell text (the password masked), to print so that a step can be
# reproduced by hand.
# shellcheck disable=SC2034 # TOOL_CMD: for the calling script
tool_cmd() {
    local url=$1 w
    shift
    local -a envs=("DATABASE_URL=$url")
    while [[ $1 != -- ]]; do
        envs+=("$1")
        shift
    done
    shift
    TOOL_CMD=(env "${envs[@]}" "$bin" "$@")
    TOOL_SHOW="DATABASE_URL=$(shq "$(tm_mask_url "$url")")"
    for w in "${envs[@]:1}"; do
        TOOL_SHOW+=" ${w%%=*}=$(shq "${w#*=}")"
    done
    for w in "$bin" "$@"; do
        TOOL_SHOW+=" $(shq "$w")"
    done
}

# ---------------------------------------------------------------- figures

# mb KB: megabytes, one decimal.
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# lt A B, le A B: 1 when A < B (A <= B), else 0.
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }' && echo 1 || echo 0; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }' && echo 1 || echo 0; }
# max A B: the larger (A when B is empty).
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a > b) ? a : b }'; }
# fmt3 X: X with three decimals.
fmt3() { awk -v x="$1" 'BEGIN { printf "%.3f", x }'; }
# ratio A B: A / B with two decimals ("inf" when B is 0).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }'; }
# median X...: the median of the numbers (the mean of the middle two for an
# even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2]; else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# all X...: the repetitions, for the report ("1.234" or "1.234 1.301 ...").
all() { local IFS=' '; printf '%s' "$*"; }

# ---------------------------------------------------------------- targets

# verdict OK: PASS (OK is 1) or $BENCH_MISS.
verdict() { if [[ $1 == 1 ]]; then echo PASS; else echo "$BENCH_MISS"; fi; }

# strict_exit REPORT: exits 1 when STRICT=1 and a target line of REPORT ends
# in $BENCH_MISS, else 0.
strict_exit() {
    local misses
    misses=$(grep -c " $BENCH_MISS\$" "$1" || true)
    if [[ $STRICT == 1 && $misses -gt 0 ]]; then
        exit 1
    fi
    exit 0
}
