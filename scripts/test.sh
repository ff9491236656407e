#!/usr/bin/env bash
# Set up on a fresh machine and run the whole test suite: `bash scripts/test.sh [pytest args]`.
# Exits non-zero on any failure, including pytest's exit 5 ("no tests collected").
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed" >&2; exit 1; }
.venv/bin/ruff check src tests scripts || { echo "ruff found problems" >&2; exit 1; }
# PostgreSQL for the storage and service tests, Mosquitto for the MQTT ones and a Ray head for
# the distributed engine's (all started here, all stopped on any exit)
trap 'bash scripts/services.sh stop postgres; bash scripts/services.sh stop mosquitto; bash scripts/services.sh stop ray' EXIT
export WALKOUT_TEST_PG_URL WALKOUT_TEST_MQTT_URL WALKOUT_TEST_RAY_ADDRESS
WALKOUT_TEST_PG_URL=$(bash scripts/services.sh start postgres) \
  || { echo "could not start PostgreSQL (scripts/services.sh)" >&2; exit 1; }
WALKOUT_TEST_MQTT_URL=$(bash scripts/services.sh start mosquitto) \
  || { echo "could not start Mosquitto (scripts/services.sh)" >&2; exit 1; }
WALKOUT_TEST_RAY_ADDRESS=$(bash scripts/services.sh start ray) \
  || { echo "could not start a Ray head (scripts/services.sh)" >&2; exit 1; }
# Debian's Chromium for the browser tests (tests/web, Playwright)
export WALKOUT_TEST_CHROMIUM
WALKOUT_TEST_CHROMIUM=$(bash scripts/services.sh start chromium) \
  || { echo "could not install Chromium (scripts/services.sh)" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
fi
exit "$rc"
