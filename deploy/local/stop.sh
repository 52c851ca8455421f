#!/usr/bin/env bash
# Stops everything deploy/local/run.sh --detach started: the services, then the broker if it
# started one. PostgreSQL is a system service and keeps running.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! ls "$RUN_DIR"/*.pid >/dev/null 2>&1; then
  say "Nothing to stop (no pid files in $RUN_DIR)"
  exit 0
fi
for name in prometheus producer gateway recover relay projector consumer registry kafka; do
  stop_pidfile "$name"
done
for file in "$RUN_DIR"/*.pid; do
  [ -e "$file" ] && stop_pidfile "$(basename "$file" .pid)"
done
say "Stopped"
