# shellcheck shell=bash
# scripts/pg.sh: find or start a PostgreSQL server for tenantmig's scripts.
#
# Source it, then call the functions:
#
#   source scripts/pg.sh
#   tm_ensure_postgres                 # exports DATABASE_URL and TM_ADMIN_URL
#   url=$(tm_create_db my_scratch_db)  # fresh database, prints its URL
#   tm_url_for_db other_db             # the admin URL with another database
#
# tm_ensure_postgres uses $DATABASE_URL when it is set and answers. Otherwise
# it starts a throwaway cluster (initdb into /tmp/tenantmig-pg.XXXXXX, on a
# free port from 54329 up) and stops and removes it when the calling shell
# exits. Call it directly, not inside $( ) or a pipeline: the EXIT trap must
# belong to the script's own shell.
#
# Variables it reads:
#   DATABASE_URL   server to use (any database on it; needs CREATEDB)
#   TM_PG_KEEP=1   keep a throwaway cluster running after exit (prints how to
#                  stop it)
#   TM_PG_PORT     first port to try for a throwaway cluster (default 54329)
# Variables it exports:
#   DATABASE_URL   as given, or the throwaway cluster's postgres database
#   TM_ADMIN_URL   URL of a database on the same server to run CREATE/DROP
#                  DATABASE from (the server's `postgres` database when it
#                  answers, else DATABASE_URL itself)
#   TM_PG_THROWAWAY 1 when the server is a throwaway cluster started here,
#                  else 0; TM_PG_DIR, TM_PG_BIN (throwaway only)
#
# Works with and without `set -euo pipefail` in the calling script.

# Messages go to stderr so that stdout stays clean for $(tm_create_db ...).
tm_log() { printf 'tenantmig: %s\n' "$*" >&2; }
tm_die() {
    printf 'tenantmig: error: %s\n' "$*" >&2
    return 1
}

# tm_mask_url URL: the URL with its password replaced by ****.
tm_mask_url() {
    local url=$1
    if [[ $url == *://* ]]; then
        # scheme://user:password@host... -> scheme://user:****@host...
        # and ?password=secret -> ?password=****
        sed -E -e 's#^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@?]*):[^@/?]*@#\1:****@#' \
            -e 's#([?&]password=)[^&\#]*#\1****#g' <<<"$url"
    else
        # key=value connection string: password=secret -> password=****
        sed -E "s#(password[[:space:]]*=[[:space:]]*)('[^']*'|[^[:space:]]+)#\\1****#g" <<<"$url"
    fi
}

# tm_url_for_db NAME [URL]: URL (default $TM_ADMIN_URL, else $DATABASE_URL)
# with its database name replaced by NAME. Keeps user, password, host, port
# and the query string (minus any dbname= parameter, which would override the
# path). A key=value connection string gets " dbname=NAME" appended (the last
# setting wins in libpq).
tm_url_for_db() {
    local name=${1:-} base=${2:-${TM_ADMIN_URL:-${DATABASE_URL:-}}}
    [[ -n $name ]] || { tm_die "tm_url_for_db: missing database name"; return 1; }
    [[ -n $base ]] || { tm_die "tm_url_for_db: no URL given and neither TM_ADMIN_URL nor DATABASE_URL is set"; return 1; }
    if [[ $base != *://* ]]; then
        printf "%s dbname='%s'\n" "$base" "${name//\'/\\\'}"
        return 0
    fi
    local scheme=${base%%://*} rest=${base#*://} query="" fragment="" authority
    if [[ $rest == *'#'* ]]; then
        fragment="#${rest#*#}"
        rest=${rest%%#*}
    fi
    if [[ $rest == *'?'* ]]; then
        local q=${rest#*\?} part parts=() kept=()
        rest=${rest%%\?*}
        IFS='&' read -r -a parts <<<"$q"
        for part in "${parts[@]}"; do
            [[ -z $part || $part == dbname=* ]] && continue
            kept+=("$part")
        done
        if [[ ${#kept[@]} -gt 0 ]]; then
            local IFS='&'
            query="?${kept[*]}"
        fi
    fi
    authority=${rest%%/*}
    # Database names in URLs are percent-encoded; the names used by the
    # scripts are plain identifiers, so only encode the few risky bytes.
    local enc=${name//%/%25}
    enc=${enc//\//%2F}
    enc=${enc//\?/%3F}
    enc=${enc//#/%23}
    enc=${enc// /%20}
    printf '%s://%s/%s%s%s\n' "$scheme" "$authority" "$enc" "$query" "$fragment"
}

# tm__psql_ok URL: true when a server answers `select 1` at URL.
tm__psql_ok() {
    PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-5} psql "$1" -XAtqc 'select 1' >/dev/null 2>&1
}

# tm__find_pg_bin: prints the directory holding initdb and pg_ctl.
tm__find_pg_bin() {
    local p dir
    if p=$(command -v initdb 2>/dev/null) && [[ -n $p ]]; then
        dir=$(dirname "$(readlink -f "$p")")
        if [[ -x $dir/pg_ctl ]]; then
            printf '%s\n' "$dir"
            return 0
        fi
        if command -v pg_ctl >/dev/null 2>&1; then
            dirname "$(readlink -f "$(command -v pg_ctl)")"
            return 0
        fi
    fi
    # Debian/Ubuntu keep the server binaries out of PATH; take the newest.
    p=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [[ -n $p && -x $p/initdb && -x $p/pg_ctl ]]; then
        printf '%s\n' "$p"
        return 0
    fi
    # Other common places (RHEL's pgdg packages, Homebrew).
    for p in /usr/pgsql-*/bin /opt/homebrew/opt/postgresql*/bin /usr/local/opt/postgresql*/bin; do
        if [[ -x $p/initdb && -x $p/pg_ctl ]]; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

# tm__as_pg CMD ARGS...: runs a command as the postgres OS user when root
# (initdb and postgres refuse to run as root), else as the current user.
tm__as_pg() {
    if [[ $(id -u) -ne 0 ]]; then
        "$@"
    elif command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        local cmd
        cmd=$(printf '%q ' "$@")
        su postgres -s /bin/sh -c "$cmd"
    fi
}

# tm__port_busy PORT: true when something listens on 127.0.0.1:PORT.
tm__port_busy() {
    local port=$1
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# tm__install_postgres: installs PostgreSQL with apt-get when root.
tm__install_postgres() {
    if [[ $(id -u) -ne 0 ]]; then
        tm_die "PostgreSQL is not installed (no initdb/pg_ctl found in PATH or /usr/lib/postgresql/*/bin)." \
            "Install it (e.g. 'sudo apt-get install postgresql') or set DATABASE_URL to a reachable server."
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        tm_die "PostgreSQL is not installed and apt-get is not available; install PostgreSQL or set DATABASE_URL."
        return 1
    fi
    tm_log "PostgreSQL not found; installing it with apt-get (this takes a minute)"
    if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; } >&2; then
        tm_die "apt-get install postgresql failed"
        return 1
    fi
}

# tm_stop_postgres: stops and removes a throwaway cluster started by
# tm_ensure_postgres (does nothing for a server given through DATABASE_URL).
# Safe to call more than once.
tm_stop_postgres() {
    [[ ${TM_PG_THROWAWAY:-0} == 1 && -n ${TM_PG_DIR:-} ]] || return 0
    # Only act in the shell that started the cluster, never in a subshell
    # that happened to inherit the variables.
    [[ ${TM__PG_OWNER_PID:-} == "${BASHPID:-$$}" ]] || return 0
    local dir=$TM_PG_DIR
    if [[ ${TM_PG_KEEP:-0} == 1 ]]; then
        tm_log "keeping the throwaway cluster (TM_PG_KEEP=1): $(tm_mask_url "${TM_ADMIN_URL:-}")"
        tm_log "stop it with: $(tm__stop_hint "$dir")"
        TM_PG_THROWAWAY=0
        return 0
    fi
    if [[ -d $dir/data ]]; then
        (cd "$dir" && tm__as_pg "$TM_PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1) || true
    fi
    rm -rf -- "$dir"
    tm_log "stopped and removed the throwaway cluster in $dir"
    TM_PG_THROWAWAY=0
    unset TM_PG_DIR
}

tm__stop_hint() {
    local dir=$1 cmd
    cmd=$(printf '%q ' "$TM_PG_BIN/pg_ctl" -D "$dir/data" -m fast stop)
    if [[ $(id -u) -eq 0 ]]; then
        printf 'runuser -u postgres -- %s&& rm -rf %q\n' "$cmd" "$dir"
    else
        printf '%s&& rm -rf %q\n' "$cmd" "$dir"
    fi
}

# tm__start_throwaway: initdb + pg_ctl start on a free port; exports the URLs.
tm__start_throwaway() {
    local bin dir port first last started=0
    if ! bin=$(tm__find_pg_bin); then
        tm__install_postgres || return 1
        bin=$(tm__find_pg_bin) || { tm_die "PostgreSQL was installed but initdb/pg_ctl are still not found"; return 1; }
    fi
    if ! command -v psql >/dev/null 2>&1; then
        if [[ -x $bin/psql ]]; then
            export PATH="$PATH:$bin"
        else
            tm_die "psql not found (install postgresql-client)"
            return 1
        fi
    fi
    if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
        tm_log "creating the 'postgres' OS user (initdb refuses to run as root)"
        useradd --system --no-create-home --shell /bin/sh postgres ||
            { tm_die "could not create the postgres OS user"; return 1; }
    fi

    dir=$(mktemp -d /tmp/tenantmig-pg.XXXXXX) || { tm_die "mktemp failed"; return 1; }
    chmod 700 "$dir"
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir" || { rm -rf -- "$dir"; tm_die "chown postgres $dir failed"; return 1; }
    fi
    # Register the cleanup before anything can fail half-way.
    export TM_PG_THROWAWAY=1 TM_PG_DIR=$dir TM_PG_BIN=$bin
    TM__PG_OWNER_PID=${BASHPID:-$$}
    tm__install_trap

    if ! (cd "$dir" && tm__as_pg "$bin/initdb" -D "$dir/data" --auth=trust -U postgres \
        --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1); then
        cat "$dir/initdb.log" >&2 2>/dev/null || true
        tm_die "initdb failed (log above)"
        tm_stop_postgres
        return 1
    fi

    first=${TM_PG_PORT:-54329}
    last=$((first + 100))
    for ((port = first; port <= last; port++)); do
        tm__port_busy "$port" && continue
        # Another script may grab the same port at the same moment; then
        # the start fails and the next port is tried.
        if (cd "$dir" && tm__as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 -c shared_buffers=256MB -c max_locks_per_transaction=256" \
            start >/dev/null 2>&1); then
            started=1
            break
        fi
        if ! grep -qiE 'could not bind|address already in use|could not create any TCP/IP sockets|lock file .* already exists' "$dir/log" 2>/dev/null; then
            tail -n 20 "$dir/log" >&2 2>/dev/null || true
            tm_die "pg_ctl start failed (log above, from $dir/log)"
            tm_stop_postgres
            return 1
        fi
        # Stale log from the failed attempt; start the next one afresh.
        : >"$dir/log"
    done
    if [[ $started != 1 ]]; then
        tm_die "no free port between $first and $last for the throwaway cluster"
        tm_stop_postgres
        return 1
    fi

    export TM_PG_PORT_USED=$port
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    export TM_ADMIN_URL=$DATABASE_URL
    local version
    version=$(psql "$DATABASE_URL" -XAtqc 'show server_version' 2>/dev/null || echo '?')
    tm_log "using a throwaway PostgreSQL $version cluster at $DATABASE_URL (data in $dir; removed on exit)"
}

# tm__install_trap: stop the throwaway cluster when the shell exits, keeping
# any EXIT trap the calling script set before; make INT/TERM exit (so the EXIT
# trap runs) unless the script handles them itself.
tm__install_trap() {
    local prev="" sig words=()
    if [[ -n $(trap -p EXIT) ]]; then
        # `trap -p EXIT` prints: trap -- 'COMMAND' EXIT (shell-quoted).
        eval "words=($(trap -p EXIT))"
        prev=${words[2]:-}
    fi
    if [[ $prev != *tm_stop_postgres* ]]; then
        if [[ -n $prev ]]; then
            # shellcheck disable=SC2064 # expand $prev now, on purpose
            trap "tm_stop_postgres; $prev" EXIT
        else
            trap tm_stop_postgres EXIT
        fi
    fi
    for sig in INT TERM HUP; do
        if [[ -z $(trap -p "$sig") ]]; then
            case $sig in
            INT) trap 'exit 130' INT ;;
            TERM) trap 'exit 143' TERM ;;
            HUP) trap 'exit 129' HUP ;;
            esac
        fi
    done
}

# tm_ensure_postgres: makes sure a server is reachable and exports
# DATABASE_URL and TM_ADMIN_URL (see the top of this file).
tm_ensure_postgres() {
    # Already done in this shell (e.g. a script sourced by another one).
    if [[ -n ${TM_ADMIN_URL:-} && -n ${DATABASE_URL:-} ]] && tm__psql_ok "$TM_ADMIN_URL"; then
        export DATABASE_URL TM_ADMIN_URL
        tm_log "using PostgreSQL at $(tm_mask_url "$DATABASE_URL") (set up by the calling script)"
        return 0
    fi
    if [[ -n ${DATABASE_URL:-} ]]; then
        if ! command -v psql >/dev/null 2>&1; then
            tm_die "psql not found; install the PostgreSQL client (e.g. apt-get install postgresql-client)"
            return 1
        fi
        if tm__psql_ok "$DATABASE_URL"; then
            local admin
            admin=$(tm_url_for_db postgres "$DATABASE_URL") || return 1
            if [[ $admin != "$DATABASE_URL" ]] && tm__psql_ok "$admin"; then
                export TM_ADMIN_URL=$admin
            else
                export TM_ADMIN_URL=$DATABASE_URL
            fi
            export DATABASE_URL TM_PG_THROWAWAY=0
            local version
            version=$(psql "$DATABASE_URL" -XAtqc 'show server_version' 2>/dev/null || echo '?')
            tm_log "using PostgreSQL $version at $(tm_mask_url "$DATABASE_URL") (from DATABASE_URL)"
            return 0
        fi
        tm_log "DATABASE_URL is set but no server answers at $(tm_mask_url "$DATABASE_URL"); starting a throwaway cluster instead"
    fi
    tm__start_throwaway
}

# tm_create_db NAME: drops database NAME if it exists (terminating its
# sessions) and creates it afresh on the server of TM_ADMIN_URL; prints the
# new database's URL on stdout.
tm_create_db() {
    local name=${1:-}
    if [[ ! $name =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]]; then
        tm_die "tm_create_db: '$name' is not a plain database name ([A-Za-z_][A-Za-z0-9_]*, at most 63 characters)"
        return 1
    fi
    local admin=${TM_ADMIN_URL:-${DATABASE_URL:-}}
    [[ -n $admin ]] || { tm_die "tm_create_db: call tm_ensure_postgres first"; return 1; }
    # psql only interpolates :"var" in script input, not in -c strings.
    if ! psql "$admin" -Xq -v ON_ERROR_STOP=1 -v db="$name" >/dev/null <<'SQL'; then
SET client_min_messages = warning;
SELECT current_setting('server_version_num')::int >= 130000 AS has_force \gset
\if :has_force
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
\else
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :'db' AND pid <> pg_backend_pid();
DROP DATABASE IF EXISTS :"db";
\endif
CREATE DATABASE :"db";
SQL
        tm_die "could not (re)create database $name on $(tm_mask_url "$admin")"
        return 1
    fi
    tm_url_for_db "$name" "$admin"
}
