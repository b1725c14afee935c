#!/usr/bin/env bash
# A throwaway PostgreSQL server for the store's tests (relay/src/store/tests.rs), started if it is not running, and
# the variable that names it printed on standard output (the only thing printed there):
#   eval "$(bash scripts/postgres.sh)"    # export PSGATE_TEST_POSTGRES=postgres://psgate@127.0.0.1:55432/psgate_test
#   bash scripts/postgres.sh stop         # stops it (its files stay; the next start reuses them)
# Idempotent and safe to run from several checkouts at once (a lock; one server per port). The cluster lives in
# $PSGATE_POSTGRES_DIR (default: a folder in /tmp named after the port), listens on 127.0.0.1:$PSGATE_POSTGRES_PORT
# (default 55432) only, with trust authentication (its databases hold test data only) and no fsync. PostgreSQL
# refuses to run as root: as root, the cluster belongs to the `postgres` account Debian's package makes. Each test
# makes a database of its own from the `psgate` superuser's connection and drops it at its end.
set -euo pipefail
port="${PSGATE_POSTGRES_PORT:-55432}"
dir="${PSGATE_POSTGRES_DIR:-${TMPDIR:-/tmp}/psgate-postgres-$port}"
url="postgres://psgate@127.0.0.1:$port/psgate_test"
log() { printf '[postgres] %s\n' "$*" >&2; }

bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  log "PostgreSQL is not installed: bash scripts/setup.sh --test installs it (Debian's postgresql)"
  exit 1
fi
as=()
if [ "$(id -u)" = 0 ]; then
  getent passwd postgres >/dev/null || { log "running as root needs the postgres account (Debian's postgresql package makes it)"; exit 1; }
  as=(runuser -u postgres --)
fi
mkdir -p "$dir"
[ "$(id -u)" = 0 ] && chown postgres: "$dir"
# One caller at a time sets up and starts it (the lock is released when this script ends).
exec 9>"$dir.lock"
flock 9
data="$dir/data"

if [ "${1:-}" = stop ]; then
  if [ -f "$data/PG_VERSION" ] && "${as[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    "${as[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >&2
  fi
  exit 0
fi

if [ ! -f "$data/PG_VERSION" ]; then
  log "creating a cluster in $data"
  rm -rf "$data"
  "${as[@]}" "$bin/initdb" -D "$data" -U psgate --auth=trust -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
fi
if ! "${as[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  # The server must not inherit the lock (fd 9).
  log "starting PostgreSQL on 127.0.0.1:$port"
  "${as[@]}" "$bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start </dev/null >/dev/null 9>&- || { tail -n 20 "$dir/server.log" >&2; exit 1; }
fi
psql() { "${as[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U psgate -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }
if [ "$(psql "SELECT 1 FROM pg_database WHERE datname = 'psgate_test'")" != 1 ]; then
  psql "CREATE DATABASE psgate_test" >&2
fi
echo "export PSGATE_TEST_POSTGRES=$url"
