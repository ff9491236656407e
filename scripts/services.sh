#!/usr/bin/env bash
# Start or stop the real services the tests use, as ../shared/SERVICES.md describes:
#   bash scripts/services.sh start postgres   # prints the URL; PostgreSQL 15 on 127.0.0.1:55432
#   bash scripts/services.sh stop postgres
#   bash scripts/services.sh start mosquitto  # prints the URL; Mosquitto 2 on 127.0.0.1:18830
#   bash scripts/services.sh stop mosquitto
#   bash scripts/services.sh start chromium   # installs Debian's Chromium; prints its path
#   bash scripts/services.sh start ray        # prints the address; Ray head on 127.0.0.1:16379
#   bash scripts/services.sh stop ray
# Each server lives in a temporary directory recorded in $WALKOUT_SERVICES_STATE (default
# /tmp/walkout-services); PostgreSQL is stopped with pg_ctl, Mosquitto by the PID recorded at
# its start, never by process name; Ray by killing its `ray start --block` process (which stops
# every process of the head; killing single Ray processes leaves a stale cluster marker behind).
set -euo pipefail
STATE=${WALKOUT_SERVICES_STATE:-/tmp/walkout-services}
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=${WALKOUT_PG_PORT:-55432}
PG_URL="postgresql://postgres@127.0.0.1:${PG_PORT}/postgres"
MQ_PORT=${WALKOUT_MQTT_PORT:-18830}
MQ_URL="mqtt://127.0.0.1:${MQ_PORT}"
RAY_PORT=${WALKOUT_RAY_PORT:-16379}
RAY_ADDR="127.0.0.1:${RAY_PORT}"
RAY_BIN=${WALKOUT_RAY_BIN:-$(dirname "$0")/../.venv/bin/ray}

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

mq_exe() { command -v mosquitto || { [ -x /usr/sbin/mosquitto ] && echo /usr/sbin/mosquitto; }; }

mq_install() {
  mq_exe >/dev/null && return 0
  echo "installing Mosquitto (apt-get)..." >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mosquitto >&2
}

mq_running() {  # ours: the recorded PID is alive and is a mosquitto
  [ -f "$STATE/mq.pid" ] && grep -qa mosquitto "/proc/$(cat "$STATE/mq.pid")/cmdline" 2>/dev/null
}

mq_start() {
  mkdir -p "$STATE"
  if mq_running; then echo "$MQ_URL"; return 0; fi
  mq_install
  local w; w=$(mktemp -d /tmp/walkout-mq.XXXXXX); chmod 755 "$w"
  [ "$(id -u)" = 0 ] && chown mosquitto:mosquitto "$w"   # it drops to the mosquitto user
  # unbounded queues: a slow consumer must make the broker wait, not drop QoS 1 messages
  printf '%s\n' "listener $MQ_PORT 127.0.0.1" "allow_anonymous true" "persistence false" \
    "max_queued_messages 1000000" "max_inflight_messages 1000" "log_dest stderr" > "$w/mq.conf"
  "$(mq_exe)" -c "$w/mq.conf" </dev/null >"$w/mq.log" 2>&1 &
  echo $! > "$STATE/mq.pid"
  echo "$w" > "$STATE/mq.dir"
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$MQ_PORT") 2>/dev/null && { echo "$MQ_URL"; return 0; }
    mq_running || break
    sleep 0.1
  done
  cat "$w/mq.log" >&2; mq_stop; exit 1
}

# stop_recorded KEY LABEL RUNNING_FN TENTHS: stop a server started here in the background
# (PID in $STATE/KEY.pid, work dir in $STATE/KEY.dir), waiting up to TENTHS/10 s for it
stop_recorded() {
  local key=$1 label=$2 running=$3 tenths=$4
  [ -f "$STATE/$key.pid" ] || { echo "$label: not started by this script" >&2; return 0; }
  if "$running"; then
    local pid; pid=$(cat "$STATE/$key.pid")
    kill "$pid"
    for _ in $(seq "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  [ -f "$STATE/$key.dir" ] && rm -rf "$(cat "$STATE/$key.dir")"
  rm -f "$STATE/$key.pid" "$STATE/$key.dir"
}

mq_stop() { stop_recorded mq mosquitto mq_running 50; }

ray_running() {  # ours: the recorded PID is alive and is the `ray start --block` process
  [ -f "$STATE/ray.pid" ] && grep -qa -- --block "/proc/$(cat "$STATE/ray.pid")/cmdline" 2>/dev/null
}

ray_start() {
  mkdir -p "$STATE"
  if ray_running; then echo "$RAY_ADDR"; return 0; fi
  [ -x "$RAY_BIN" ] || { echo "ray not installed at $RAY_BIN (bash scripts/setup.sh)" >&2; exit 1; }
  local w; w=$(mktemp -d /tmp/walkout-ray.XXXXXX)
  # worker ports away from the head's and the other services' ports (Ray's default range,
  # 10002-19999, holds them); loopback only (else Ray listens on every interface and drivers hang), no auth token (else
  # an explicit address fails with InvalidAuthToken), no dashboard, no usage reports
  RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 \
    "$RAY_BIN" start --head --port="$RAY_PORT" --node-ip-address=127.0.0.1 \
    --include-dashboard=false --num-cpus="${WALKOUT_RAY_CPUS:-2}" --disable-usage-stats \
    --min-worker-port=30000 --max-worker-port=30999 \
    --temp-dir="$w/ray" --block </dev/null >"$w/ray.log" 2>&1 &
  echo $! > "$STATE/ray.pid"
  echo "$w" > "$STATE/ray.dir"
  for _ in $(seq 600); do
    grep -q 'Ray runtime started' "$w/ray.log" 2>/dev/null && { echo "$RAY_ADDR"; return 0; }
    ray_running || break
    sleep 0.1
  done
  cat "$w/ray.log" >&2; ray_stop; exit 1
}

ray_stop() { stop_recorded ray ray ray_running 300; }

chromium_start() {  # not a server: installed here (Debian's), its path printed for Playwright
  local exe; exe=$(command -v chromium || true)
  if [ -z "$exe" ]; then
    echo "installing Chromium (apt-get)..." >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
    exe=$(command -v chromium)
  fi
  echo "$exe"
}

case "${1:-} ${2:-}" in
  "start chromium") chromium_start ;;
  "stop chromium") ;;  # nothing runs: each test launches and closes its own browser
  "start ray") ray_start ;;
  "stop ray") ray_stop ;;
  "start postgres") pg_start ;;
  "stop postgres") pg_stop ;;
  "start mosquitto") mq_start ;;
  "stop mosquitto") mq_stop ;;
  *) echo "usage: $0 start|stop postgres|mosquitto|ray|chromium" >&2; exit 2 ;;
esac
