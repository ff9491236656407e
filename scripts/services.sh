#!/usr/bin/env bash
# Start or stop the real services the tests use, as ../shared/SERVICES.md describes:
#   bash scripts/services.sh start postgres   # prints the URL; PostgreSQL 15 on 127.0.0.1:55432
#   bash scripts/services.sh stop postgres
# The server lives in a temporary directory recorded in $WALKOUT_SERVICES_STATE (default
# /tmp/walkout-services); it is stopped with pg_ctl, never by process name.
set -euo pipefail
STATE=${WALKOUT_SERVICES_STATE:-/tmp/walkout-services}
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=${WALKOUT_PG_PORT:-55432}
PG_URL="postgresql://postgres@127.0.0.1:${PG_PORT}/postgres"

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

pg_install() {
  [ -x "$PG_BIN/initdb" ] && return 0
  echo "installing PostgreSQL 15 (apt-get)..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2
}

pg_start() {
  mkdir -p "$STATE"
  if [ -f "$STATE/pg.dir" ] && as_postgres "$PG_BIN/pg_ctl" -D "$(cat "$STATE/pg.dir")/data" status >/dev/null 2>&1; then
    echo "$PG_URL"; return 0                      # already ours and running
  fi
  pg_install
  local w; w=$(mktemp -d /tmp/walkout-pg.XXXXXX); chmod 755 "$w"
  mkdir -p "$w/pg"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$w/pg"
  as_postgres "$PG_BIN/initdb" -D "$w/pg/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_postgres "$PG_BIN/pg_ctl" -D "$w/pg/data" -l "$w/pg/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $w/pg" start >/dev/null \
    || { cat "$w/pg/log" >&2; exit 1; }
  echo "$w/pg" > "$STATE/pg.dir"
  echo "$PG_URL"
}

pg_stop() {
  [ -f "$STATE/pg.dir" ] || { echo "postgres: not started by this script" >&2; return 0; }
  local d; d=$(cat "$STATE/pg.dir")
  as_postgres "$PG_BIN/pg_ctl" -D "$d/data" -m fast -w stop >/dev/null || true
  rm -rf "$(dirname "$d")" "$STATE/pg.dir"
}

case "${1:-} ${2:-}" in
  "start postgres") pg_start ;;
  "stop postgres") pg_stop ;;
  *) echo "usage: $0 start|stop postgres" >&2; exit 2 ;;
esac
