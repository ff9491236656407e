#!/bin/sh
# Nightly backup of the walkout database, keeping the newest few (walkout-backup.timer runs it;
# docs/deploy.md). Installed as /usr/local/bin/walkout-backup. Reads, from the environment
# (/etc/walkout/walkout.env under systemd):
#   WALKOUT_DB_URL          the database, as `walkout serve` (default sqlite:///walkout.db)
#   WALKOUT_BACKUP_DIR      where backups go (default /var/backups/walkout)
#   WALKOUT_BACKUP_KEEP     how many to keep (default 14)
#   WALKOUT_BIN             the walkout command (default /opt/walkout/venv/bin/walkout)
# Backups are named walkout-<UTC time>.db (SQLite) or .dump (PostgreSQL, pg_dump custom
# format); names sort by time. Old ones are removed only after a backup succeeded, so a backup
# that keeps failing never rotates the last good ones away.
set -eu
dir=${WALKOUT_BACKUP_DIR:-/var/backups/walkout}
keep=${WALKOUT_BACKUP_KEEP:-14}
walkout=${WALKOUT_BIN:-/opt/walkout/venv/bin/walkout}
case $keep in
  '' | *[!0-9]* | 0) echo "walkout-backup: WALKOUT_BACKUP_KEEP must be a whole number >= 1" >&2; exit 2 ;;
esac
case ${WALKOUT_DB_URL:-sqlite:} in
  postgres*) ext=dump ;;
  *) ext=db ;;
esac
"$walkout" db backup --out "$dir/walkout-$(date -u +%Y%m%dT%H%M%SZ).$ext"
# the newest $keep stay; only files this script names are ever removed
ls -1 "$dir" | grep -E '^walkout-[0-9]{8}T[0-9]{6}Z\.(db|dump)$' | sort | head -n "-$keep" |
  while IFS= read -r old; do
    rm -f -- "$dir/$old"
    echo "walkout-backup: removed $dir/$old (keeping the newest $keep)"
  done
