#!/usr/bin/env bash
# PostgreSQL and Redis on loopback for the scale-out pass of the queue tests, from Debian's packages.
# Prints the environment variables that select them; tests/services/stop.sh stops both.
#   eval "$(tests/services/start.sh)"   then   .venv/bin/python -m pytest tests/queue tests/test_runs.py
set -euo pipefail
run_dir=${GLANCESYNC_SERVICES_DIR:-/tmp/glancesync-services}
pg_port=${GLANCESYNC_PG_PORT:-15432}
redis_port=${GLANCESYNC_REDIS_PORT:-16379}

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [[ -z $pg_bin || ! -x $(command -v redis-server) ]]; then
  echo "services: need Debian's postgresql and redis-server packages" >&2
  exit 1
fi
mkdir -p "$run_dir"
as_pg=()
if [[ $(id -u) == 0 ]]; then  # PostgreSQL refuses to run as root
  chown postgres: "$run_dir"
  as_pg=(runuser -u postgres --)
fi
if [[ ! -f $run_dir/pg/PG_VERSION ]]; then
  "${as_pg[@]}" "$pg_bin/initdb" -D "$run_dir/pg" -U glancesync --auth=trust >"$run_dir/initdb.log"
fi
if ! "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$run_dir/pg" status >/dev/null 2>&1; then
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$run_dir/pg" -l "$run_dir/pg.log" -w \
    -o "-p $pg_port -k $run_dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
fi
if ! redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
  redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes --save "" --appendonly no \
    --pidfile "$run_dir/redis.pid" --logfile "$run_dir/redis.log" --dir "$run_dir" >/dev/null
fi
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
cat <<VARS
export GLANCESYNC_DB_ENGINE=postgresql GLANCESYNC_DB_HOST=127.0.0.1 GLANCESYNC_DB_PORT=$pg_port
export GLANCESYNC_DB_USER=glancesync GLANCESYNC_DB_NAME=glancesync
export GLANCESYNC_REDIS_URL=redis://127.0.0.1:$redis_port/0
VARS
