#!/usr/bin/env bash
# Stop the services that tests/realstack/start.sh started, and only those: each one is found by its pid file
# and signalled only if that pid is still one of our gunicorn masters (its title names it).  SIGTERM to the
# service's process group (master and worker), SIGKILL after 10 s.
#
# Usage: tests/realstack/stop.sh [--purge]
#   --purge   also delete the data: databases, keys, images, logs and client files ($RUN); the venv is kept
#             (delete the whole base dir to drop it too).
# Uses the same knobs as start.sh (lib/settings.sh), so run it with the same GLANCESYNC_REALSTACK_DIR.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/settings.sh
source "$HERE/lib/settings.sh"

purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  *)
    echo "usage: stop.sh [--purge]" >&2
    exit 2
    ;;
esac

shopt -s nullglob

group_alive() { # pgid -> true while a process of that group runs (a zombie does not count; no ps needed)
  local pgid=$1 f line
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    line=${line##*) } # drop "pid (comm) ": comm may contain spaces
    set -- $line      # state ppid pgrp ...
    [[ $3 == "$pgid" && $1 != Z ]] && return 0
  done
  return 1
}

signalled=()
for pid_file in "$RS_RUN"/*/service.pid; do
  name=$(basename "$(dirname "$pid_file")")
  pid=$(cat "$pid_file" 2>/dev/null)
  if [[ $pid =~ ^[0-9]+$ ]] && grep -qa "$RS_NAME_PREFIX$name" "/proc/$pid/cmdline" 2>/dev/null; then
    echo "realstack: stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    signalled+=("$pid")
  fi
  rm -f "$pid_file"
done

alive=()
for _ in $(seq 1 50); do
  alive=()
  for pid in "${signalled[@]}"; do
    # the group, not just the master: a worker may outlive its master by a moment
    if group_alive "$pid"; then alive+=("$pid"); fi
  done
  ((${#alive[@]} == 0)) && break
  sleep 0.2
done
for pid in "${alive[@]}"; do
  echo "realstack: pid $pid did not stop in 10 s; killing it"
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
done

if ((purge)); then
  rm -rf "$RS_RUN"
  echo "realstack: deleted $RS_RUN"
fi
echo "realstack: stopped"
