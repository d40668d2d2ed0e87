#!/usr/bin/env bash
# Stop the PostgreSQL and Redis of tests/services/start.sh (--purge also removes their data).
set -uo pipefail
run_dir=${GLANCESYNC_SERVICES_DIR:-/tmp/glancesync-services}
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
as_pg=()
[[ $(id -u) == 0 ]] && as_pg=(runuser -u postgres --)
[[ -f $run_dir/pg/PG_VERSION ]] && "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$run_dir/pg" -m fast stop >/dev/null 2>&1
[[ -f $run_dir/redis.pid ]] && kill "$(cat "$run_dir/redis.pid")" 2>/dev/null
[[ ${1:-} == --purge ]] && rm -rf "$run_dir"
exit 0
