#!/usr/bin/env bash
# Create (once) and start a throw-away PostgreSQL cluster on 127.0.0.1:${PGPORT:-55432}, with its
# data in ${PGDATA:-/tmp/stella-pg}, owned by the "postgres" system user, with trust-authenticated
# databases "stella_test" and "stella_test2". Prints the SQLAlchemy URL on its last line.
#
# `start-postgres.sh stop` stops the cluster of the same PGPORT/PGDATA (fast shutdown); .ci/run
# uses it on exit, with a port and data directory of its own run.
set -euo pipefail
PGPORT=${PGPORT:-55432}
PGDATA=${PGDATA:-/tmp/stella-pg}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ "${1:-start}" = stop ]; then
  if [ -s "$PGDATA/PG_VERSION" ] && run "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
    run "$BIN/pg_ctl" -D "$PGDATA" -w -m fast stop >/dev/null
  fi
  exit 0
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$PGDATA"; fi
  run "$BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! run "$BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  run "$BIN/pg_ctl" -D "$PGDATA" -w -l "$PGDATA/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k /tmp -c max_connections=200 -c fsync=off" start >/dev/null
fi
for db in stella_test stella_test2; do
  run "$BIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" \
    | grep -q 1 || run "$BIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres "$db"
done
echo "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/stella_test"
