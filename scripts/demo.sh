#!/usr/bin/env bash
# Set up on a fresh machine and run the demo: `bash scripts/demo.sh [demo options]`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/walkout demo "$@"
