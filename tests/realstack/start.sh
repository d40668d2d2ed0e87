#!/usr/bin/env bash
# Start a real OpenStack for GlanceSync's integration tests: Keystone 30 and Glance 33 from PyPI, in their own
# venv, on 127.0.0.1 only, with SQLite databases and Glance's file store.
#
#   site "source": Keystone :15000 (admin / sourcepass), Glance RegionOne :19292, RegionTwo :19293, RegionThree :19295
#   site "target": an independent Keystone :15357 (admin / targetpass), Glance RegionOne :19294
#
# Every Glance but the source's RegionTwo also offers the glance-download import method (a region's Glance pulls
# an image from another region of its Keystone itself), allowed to fetch from 127.0.0.1 on the stack's Glance
# ports only: RegionTwo is the region that must be streamed, and a region behind a fault proxy (another port)
# is refused by the importing Glance's filtering, which is how the tests make an import fail.
#
# Writes $RUN/clouds.yaml (clouds `source` and `target`), source.env, target.env, glancesync.conf (legacy format,
# master = source, target = target) and stack.json (for tests/realstack/stack.py), and prints where they are.
#
# Usage: tests/realstack/start.sh [--reset]
#   --reset   stop the stack and delete its data (databases, images, logs) first; the venv is kept.
# Idempotent: it reuses the venv (while constraints.txt and the Python version are unchanged) and the data, and
# starts only the services that are not running, so it also restarts a service that was killed.
# Knobs (ports, passwords, directories): see lib/settings.sh.  Stop with tests/realstack/stop.sh [--purge].
# Exits non-zero, naming the service and showing the end of its log, when something does not come up.
#
# Everything here is CPU-bound Python start-up (importing Keystone takes ~5 s of CPU): the steps are ordered so
# that both cores stay busy, and each Keystone/Glance is imported as few times as possible.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIB=$HERE/lib
# shellcheck source=lib/settings.sh
source "$LIB/settings.sh"

T0=$(date +%s%N)
log() {
  local ms=$((($(date +%s%N) - T0) / 1000000))
  printf 'realstack [+%d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*" >&2
}
die() {
  log "ERROR: $*"
  exit 1
}
# On failure, stop the services this run started (their logs stay), so that no half stack is left behind.
STARTED=()
on_exit() {
  local status=$? pid
  ((status == 0)) && return
  ((${#STARTED[@]})) && log "stopping the services started by this run"
  for pid in "${STARTED[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  { kill $(jobs -p) || true; } 2>/dev/null # helpers still running in the background (set-up, catalog)
}
trap on_exit EXIT

# One start.sh at a time per base dir (e.g. two pytest processes calling ensure_stack()).  Children must not
# inherit the lock's descriptor: the services close it (see start_service).
mkdir -p "$RS_BASE"
exec 9>"$RS_BASE/start.lock"
flock -w 900 9 || die "another start.sh still runs for $RS_BASE after 15 min"

case "${1:-}" in
  "") ;;
  --reset) "$HERE/stop.sh" --purge 9>&- >&2 ;;
  *) die "unknown argument '$1' (usage: start.sh [--reset])" ;;
esac

# Passwords end up in INI files read by oslo.config (which expands '$') and configparser (which expands '%'):
# keep them to characters that need no quoting anywhere.
for var in RS_SOURCE_PASSWORD RS_TARGET_PASSWORD RS_GLANCE_PASSWORD; do
  [[ ${!var} =~ ^[A-Za-z0-9._+=-]+$ ]] || die "${var/RS_/GLANCESYNC_REALSTACK_} may only use A-Z a-z 0-9 . _ + = -"
done
for var in RS_SOURCE_KEYSTONE_PORT RS_SOURCE_GLANCE1_PORT RS_SOURCE_GLANCE2_PORT RS_SOURCE_GLANCE3_PORT \
  RS_TARGET_KEYSTONE_PORT RS_TARGET_GLANCE_PORT RS_TIMEOUT; do
  [[ ${!var} =~ ^[0-9]+$ ]] || die "${var/RS_/GLANCESYNC_REALSTACK_} must be a number, not '${!var}'"
done
[[ $RS_GLANCE_STORES == multi || $RS_GLANCE_STORES == legacy ]] ||
  die "GLANCESYNC_REALSTACK_GLANCE_STORES must be multi or legacy, not '$RS_GLANCE_STORES'"

pid_alive() { # $RS_RUN/<name>/service.pid -> true if it names the live gunicorn master of that service
  local pid name
  name=$(basename "$(dirname "$1")")
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && grep -qa "$RS_NAME_PREFIX$name" "/proc/$pid/cmdline" 2>/dev/null
}
any_running() {
  local f
  for f in "$RS_RUN"/*/service.pid; do
    pid_alive "$f" && return 0
  done
  return 1
}
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ------------------------------------------------------------------------------------------------ 1. the venv
# Rebuilt only when what it was built from changes: constraints, top-level pins, Python version.  Installed with
# uv (a pinned PyPI package): pip took 50-80 s here for what uv does in about 10 s.  No bytecode is compiled at
# install time (7,000 files, ~30 s of CPU): our processes compile what they import on first use and the .pyc
# files stay in the venv, hence PYTHONDONTWRITEBYTECODE must not be set for them.
unset PYTHONDONTWRITEBYTECODE
TOP_LEVEL=(keystone==30.0.0 glance==33.0.0 openstacksdk==4.22.0 gunicorn==27.0.1)
UV_VERSION=0.13.8
command -v "$RS_PYTHON" >/dev/null || die "$RS_PYTHON not found (set GLANCESYNC_REALSTACK_PYTHON)"
want_venv=$({
  cat "$HERE/constraints.txt"
  echo "${TOP_LEVEL[*]}"
  "$RS_PYTHON" -c 'import sys; print(sys.version)'
} | sha256sum | cut -d' ' -f1)
stamp=$RS_VENV/.glancesync-realstack.sha256

install_uv() { # -> $UV; kept in the base dir, outside the venv, so that rebuilding the venv reuses it
  UV=$RS_BASE/uv-$UV_VERSION/bin/uv
  [[ -x $UV ]] && return 0
  log "installing uv $UV_VERSION"
  if "$RS_PYTHON" -m pip --version >/dev/null 2>&1; then
    "$RS_PYTHON" -m pip install -q --disable-pip-version-check --target "$RS_BASE/uv-$UV_VERSION" "uv==$UV_VERSION"
  else # a Python without pip of its own (Debian's python3 without python3-pip): go through a venv
    "$RS_PYTHON" -m venv "$RS_BASE/uv-$UV_VERSION" && "$RS_BASE/uv-$UV_VERSION/bin/pip" install -q "uv==$UV_VERSION"
  fi >>"$RS_BASE/install.log" 2>&1 || die "could not install uv (log: $RS_BASE/install.log)"
}

if [[ ! -f $stamp || $(cat "$stamp") != "$want_venv" ]]; then
  any_running && die "the venv must be rebuilt but services are running from it: run $HERE/stop.sh first"
  if [[ -e $RS_VENV ]]; then
    [[ -f $RS_VENV/pyvenv.cfg ]] || die "$RS_VENV exists and is not a venv; refusing to replace it"
    log "constraints or Python changed (or an install was interrupted): rebuilding $RS_VENV"
    rm -rf "$RS_VENV"
  fi
  mkdir -p "$RS_BASE"
  : >"$RS_BASE/install.log"
  install_uv
  log "creating $RS_VENV with $("$RS_PYTHON" -V 2>&1); installing Keystone + Glance (pinned by constraints.txt)"
  "$RS_PYTHON" -m venv --without-pip "$RS_VENV" || die "'$RS_PYTHON -m venv' failed (Debian: install python3-venv)"
  UV_PYTHON_DOWNLOADS=never "$UV" pip install --python "$RS_VENV/bin/python" --constraint "$HERE/constraints.txt" \
    "${TOP_LEVEL[@]}" >>"$RS_BASE/install.log" 2>&1 ||
    { tail -n 30 "$RS_BASE/install.log" >&2; die "installing the venv failed (log: $RS_BASE/install.log)"; }
  echo "$want_venv" >"$stamp"
  log "venv ready"
else
  log "reusing $RS_VENV"
fi
PY=$RS_VENV/bin/python

# ------------------------------------------------------------------------------------------------ 2. data
# Data made with other ports/passwords/store mode would not match (catalog URLs, bootstrap passwords): refuse.
mkdir -p "$RS_RUN"
settings="ports=$RS_SOURCE_KEYSTONE_PORT,$RS_SOURCE_GLANCE1_PORT,$RS_SOURCE_GLANCE2_PORT,$RS_TARGET_KEYSTONE_PORT"
settings+=",$RS_TARGET_GLANCE_PORT stores=$RS_GLANCE_STORES"
settings+=" passwords=$(echo "$RS_SOURCE_PASSWORD $RS_TARGET_PASSWORD $RS_GLANCE_PASSWORD" | sha256sum | cut -c1-16)"
settings+=" glance3=$RS_SOURCE_GLANCE3_PORT"
if [[ -f $RS_RUN/settings ]]; then
  old=$(cat "$RS_RUN/settings")
  # Data made before RegionThree existed: the same settings without it. RegionThree is added to it (the catalog
  # set-up is idempotent), and the other Glances restart below with the glance-download configuration.
  [[ $old == "${settings% glance3=*}" ]] && old=$settings && echo "$settings" >"$RS_RUN/settings"
  [[ $old == "$settings" ]] ||
    die "the data in $RS_RUN was made with other ports/passwords/stores; run '$HERE/stop.sh --purge' or 'start.sh --reset'"
else
  echo "$settings" >"$RS_RUN/settings"
fi

# Empty migrated databases, one per product, copied for each service: one db_sync each instead of one per
# service.  They depend only on the installed versions, so they live in (and are cached with) the venv.
TEMPLATES=$RS_VENV/share/glancesync-realstack
make_template() { # keystone|glance; the finished file appears atomically
  local t=$TEMPLATES kind=$1
  [[ -f $t/$kind.db ]] && return 0
  mkdir -p "$t"
  rm -f "$t/$kind.db.new"
  printf '[database]\nconnection = sqlite:///%s/%s.db.new\n' "$t" "$kind" >"$t/$kind.conf"
  "$RS_VENV/bin/$kind-manage" --config-file "$t/$kind.conf" db_sync >"$t/$kind.log" 2>&1 || {
    tail -n 30 "$t/$kind.log" >&2
    log "ERROR: $kind-manage db_sync failed (log: $t/$kind.log)"
    return 1
  }
  mv "$t/$kind.db.new" "$t/$kind.db"
  log "migrated the $kind template database"
}
copy_template() { # keystone|glance destination: unless the destination exists already
  [[ -f $2 ]] && return 0
  cp "$TEMPLATES/$1.db" "$2.tmp" && mv "$2.tmp" "$2"
}

setup_keystone() { # name port admin_password
  local d=$RS_RUN/$1 port=$2 password=$3
  mkdir -p "$d"
  cat >"$d/keystone.conf" <<EOF
[DEFAULT]
debug = false
[database]
connection = sqlite:///$d/keystone.db
[identity]
# bcrypt's minimum cost: each password check (each new token) takes ~1 ms of CPU instead of ~250 ms.
# A throw-away test stack; it matters on 2 cores where every test authenticates.
password_hash_rounds = 4
[cache]
# In-process cache (one worker process, so it stays consistent): token validation and the catalog are
# otherwise recomputed from SQLite on every request (150-350 ms per API call instead of 10-70 ms).
enabled = true
backend = dogpile.cache.memory
[token]
provider = fernet
expiration = 14400
[fernet_tokens]
key_repository = $d/fernet-keys
[fernet_receipts]
key_repository = $d/fernet-keys
[credential]
key_repository = $d/credential-keys
EOF
  [[ -f $d/.bootstrapped ]] && return 0
  rm -f "$d/keystone.db"
  copy_template keystone "$d/keystone.db"
  "$PY" "$LIB/make_keys.py" "$d/fernet-keys" "$d/credential-keys"
  # bootstrap: admin user/project/role, region RegionOne and Keystone's own identity endpoints
  "$RS_VENV/bin/keystone-manage" --config-file "$d/keystone.conf" bootstrap --bootstrap-password "$password" \
    --bootstrap-region-id RegionOne \
    --bootstrap-admin-url "http://127.0.0.1:$port/v3/" \
    --bootstrap-internal-url "http://127.0.0.1:$port/v3/" \
    --bootstrap-public-url "http://127.0.0.1:$port/v3/" >"$d/manage.log" 2>&1 || {
    tail -n 30 "$d/manage.log" >&2
    log "ERROR: keystone-manage bootstrap failed for $1 (log: $d/manage.log)"
    return 1
  }
  touch "$d/.bootstrapped"
  log "$1: admin user and catalog bootstrapped"
}

setup_glance() { # name keystone_port glance-download|stream-only
  local d=$RS_RUN/$1 ks_port=$2 stores import=""
  mkdir -p "$d/images" "$d/staging" "$d/tasks"
  cp "$RS_VENV/etc/glance/glance-api-paste.ini" "$d/"
  if [[ $RS_GLANCE_STORES == legacy ]]; then
    stores="[DEFAULT]
node_staging_uri = file://$d/staging/
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = $d/images/"
  else
    stores="[DEFAULT]
enabled_backends = fs:file
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $d/images/
[os_glance_staging_store]
filesystem_store_datadir = $d/staging/
[os_glance_tasks_store]
filesystem_store_datadir = $d/tasks/"
  fi
  if [[ $3 == glance-download ]]; then
    # glance-download besides Glance's default methods. Glance refuses to fetch from loopback and from ports
    # other than 80/443 unless allowed: only the stack's own Glance ports are (not the fault proxies' ports).
    stores=${stores/\[DEFAULT\]/"[DEFAULT]
enabled_import_methods = [glance-direct,web-download,copy-image,glance-download]"}
    import="
[import_filtering_opts]
allowed_hosts = [127.0.0.1]
allowed_ports = [80,443,$RS_SOURCE_GLANCE1_PORT,$RS_SOURCE_GLANCE2_PORT,$RS_SOURCE_GLANCE3_PORT,$RS_TARGET_GLANCE_PORT]"
  fi
  # paste flavor "keystone": the pipeline with keystonemiddleware's auth_token, which validates tokens with
  # the `glance` service user that lib/setup_catalog.py creates.
  cat >"$d/glance-api.conf" <<EOF
$stores$import
[database]
connection = sqlite:///$d/glance.db
[paste_deploy]
flavor = keystone
config_file = $d/glance-api-paste.ini
[keystone_authtoken]
www_authenticate_uri = http://127.0.0.1:$ks_port/v3
auth_url = http://127.0.0.1:$ks_port/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = glance
password = $RS_GLANCE_PASSWORD
EOF
  copy_template glance "$d/glance.db"
}

# ------------------------------------------------------------------------------------------------ 3. services
# One gunicorn per service: 1 worker, 4 threads (the SQLite hook makes that safe), long timeout for big
# uploads.  --no-control-socket: gunicorn 27 otherwise shares one control socket per user between all masters.
# setsid: own session and process group, so a Ctrl-C in the terminal that ran start.sh (or pytest) does not
# reach the services, and stop.sh can signal master and worker together.
WAITS=()
start_service() { # name kind port
  local name=$1 kind=$2 port=$3 d=$RS_RUN/$1 app env_var url
  if [[ $kind == keystone ]]; then
    app=keystone_wsgi:application env_var=OS_KEYSTONE_CONFIG_FILES=$d/keystone.conf url=http://127.0.0.1:$port/v3
  else
    app=glance_wsgi:application env_var=OS_GLANCE_CONFIG_DIR=$d url=http://127.0.0.1:$port/
  fi
  WAITS+=(--service "$name" "$url" "$d/service.pid" "$d/service.log")
  # A service runs with the configuration it started with: one started before its configuration changed (an
  # older start.sh) is restarted, so a reused stack offers what this start.sh configures.
  local config
  config=$(cat "$d"/*.conf | sha256sum | cut -d' ' -f1)
  if pid_alive "$d/service.pid"; then
    if [[ $(cat "$d/service.conf.sha256" 2>/dev/null) == "$config" ]]; then
      log "$name already running (pid $(cat "$d/service.pid"))"
      return 0
    fi
    log "$name runs with an older configuration: restarting it"
    kill -TERM -- "-$(cat "$d/service.pid")" 2>/dev/null || true
    local tries=0
    while pid_alive "$d/service.pid" || port_busy "$port"; do
      ((++tries > 100)) && die "$name (pid $(cat "$d/service.pid")) did not stop in 10 s"
      sleep 0.1
    done
  fi
  port_busy "$port" && die "127.0.0.1:$port is in use by something else; choose another port for $name (lib/settings.sh)"
  (
    cd "$d"
    exec 9>&- # the start.sh lock
    exec env "$env_var" PYTHONWARNINGS=ignore::DeprecationWarning setsid "$RS_VENV/bin/gunicorn" \
      --no-control-socket --pythonpath "$LIB" --bind "127.0.0.1:$port" --workers 1 --worker-class gthread \
      --threads 4 --timeout 600 --graceful-timeout 5 --name "$RS_NAME_PREFIX$name" "$app" \
      >>"$d/service.log" 2>&1 </dev/null
  ) &
  echo $! >"$d/service.pid"
  echo "$config" >"$d/service.conf.sha256"
  STARTED+=($!)
  log "started $name (pid $!) on 127.0.0.1:$port"
}

# Order: the Glances first (they need only their database) so that they load while the Keystones are
# bootstrapped; the Keystone template is migrated meanwhile.
[[ -f $TEMPLATES/keystone.db ]] || log "migrating the template databases"
make_template keystone &
keystone_template_job=$!
make_template glance || die "could not make the Glance template database"
setup_glance source-glance-RegionOne "$RS_SOURCE_KEYSTONE_PORT" glance-download
setup_glance source-glance-RegionTwo "$RS_SOURCE_KEYSTONE_PORT" stream-only
setup_glance source-glance-RegionThree "$RS_SOURCE_KEYSTONE_PORT" glance-download
setup_glance target-glance-RegionOne "$RS_TARGET_KEYSTONE_PORT" glance-download
start_service source-glance-RegionOne glance "$RS_SOURCE_GLANCE1_PORT"
if [[ ! -f $TEMPLATES/.glance-compiled ]]; then
  # First use of this venv: the first Glance compiles the modules it imports (~4 s of CPU) and keeps the
  # .pyc files; the other two would do the very same work at the same time, so they start once it answers.
  "$PY" "$LIB/wait_services.py" --timeout "$RS_TIMEOUT" "${WAITS[@]}" || die "source-glance-RegionOne did not come up"
  touch "$TEMPLATES/.glance-compiled"
fi
start_service source-glance-RegionTwo glance "$RS_SOURCE_GLANCE2_PORT"
start_service source-glance-RegionThree glance "$RS_SOURCE_GLANCE3_PORT"
start_service target-glance-RegionOne glance "$RS_TARGET_GLANCE_PORT"
wait "$keystone_template_job" || die "could not make the Keystone template database"
setup_keystone source-keystone "$RS_SOURCE_KEYSTONE_PORT" "$RS_SOURCE_PASSWORD" &
source_job=$!
setup_keystone target-keystone "$RS_TARGET_KEYSTONE_PORT" "$RS_TARGET_PASSWORD" &
target_job=$!
wait "$source_job" || die "set-up of source-keystone failed (see above)"
wait "$target_job" || die "set-up of target-keystone failed (see above)"
start_service source-keystone keystone "$RS_SOURCE_KEYSTONE_PORT"
start_service target-keystone keystone "$RS_TARGET_KEYSTONE_PORT"

"$PY" "$LIB/wait_services.py" --timeout "$RS_TIMEOUT" "${WAITS[@]}" ||
  die "not every service came up (see above)"
log "all six services answer"

# ------------------------------------------------------------------------------------------------ 4. catalog
# Register Glance in each Keystone and prove each Glance accepts that Keystone's tokens.
ADMIN_PASSWORD=$RS_SOURCE_PASSWORD GLANCE_PASSWORD=$RS_GLANCE_PASSWORD "$PY" "$LIB/setup_catalog.py" \
  "http://127.0.0.1:$RS_SOURCE_KEYSTONE_PORT/v3" \
  "RegionOne=http://127.0.0.1:$RS_SOURCE_GLANCE1_PORT" "RegionTwo=http://127.0.0.1:$RS_SOURCE_GLANCE2_PORT" \
  "RegionThree=http://127.0.0.1:$RS_SOURCE_GLANCE3_PORT" >&2 &
source_job=$!
ADMIN_PASSWORD=$RS_TARGET_PASSWORD GLANCE_PASSWORD=$RS_GLANCE_PASSWORD "$PY" "$LIB/setup_catalog.py" \
  "http://127.0.0.1:$RS_TARGET_KEYSTONE_PORT/v3" "RegionOne=http://127.0.0.1:$RS_TARGET_GLANCE_PORT" >&2 &
target_job=$!
wait "$source_job" || die "catalog set-up of the source site failed"
wait "$target_job" || die "catalog set-up of the target site failed"

# ------------------------------------------------------------------------------------------------ 5. client files
export RS_BASE RS_RUN RS_VENV RS_GLANCE_STORES RS_SOURCE_KEYSTONE_PORT RS_SOURCE_GLANCE1_PORT RS_SOURCE_GLANCE2_PORT \
  RS_SOURCE_GLANCE3_PORT \
  RS_TARGET_KEYSTONE_PORT RS_TARGET_GLANCE_PORT RS_SOURCE_PASSWORD RS_TARGET_PASSWORD RS_GLANCE_PASSWORD
"$PY" "$LIB/write_files.py" || die "could not write the client files"
log "READY"
cat <<EOF
clouds.yaml:     $RS_RUN/clouds.yaml  (clouds: source [RegionOne, RegionTwo, RegionThree], target [RegionOne])
glancesync.conf: $RS_RUN/glancesync.conf
env files:       $RS_RUN/source.env $RS_RUN/target.env
stack info:      $RS_RUN/stack.json
use:             export OS_CLIENT_CONFIG_FILE=$RS_RUN/clouds.yaml   (then: openstack --os-cloud source ...)
stop:            $HERE/stop.sh [--purge]
EOF
