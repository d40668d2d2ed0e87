# Settings shared by start.sh and stop.sh (sourced, not run).  Every knob is an environment variable;
# the defaults keep clear of a DevStack-style stack on the usual ports (5000, 35357, 9292...).
#
#   GLANCESYNC_REALSTACK_DIR                 base dir (default ~/.cache/glancesync-realstack), holds venv/ and run/
#   GLANCESYNC_REALSTACK_VENV                the venv (default $DIR/venv): cacheable, rebuilt when constraints change
#   GLANCESYNC_REALSTACK_PYTHON              interpreter for the venv (default python3)
#   GLANCESYNC_REALSTACK_SOURCE_KEYSTONE_PORT  15000   source Keystone
#   GLANCESYNC_REALSTACK_SOURCE_GLANCE1_PORT   19292   source Glance, region RegionOne
#   GLANCESYNC_REALSTACK_SOURCE_GLANCE2_PORT   19293   source Glance, region RegionTwo (without glance-download)
#   GLANCESYNC_REALSTACK_SOURCE_GLANCE3_PORT   19295   source Glance, region RegionThree
#   GLANCESYNC_REALSTACK_TARGET_KEYSTONE_PORT  15357   target Keystone
#   GLANCESYNC_REALSTACK_TARGET_GLANCE_PORT    19294   target Glance, region RegionOne
#   GLANCESYNC_REALSTACK_SOURCE_PASSWORD     source admin password (default sourcepass)
#   GLANCESYNC_REALSTACK_TARGET_PASSWORD     target admin password (default targetpass)
#   GLANCESYNC_REALSTACK_GLANCE_PASSWORD     password of the `glance` service user in both Keystones
#   GLANCESYNC_REALSTACK_GLANCE_STORES       multi (default: enabled_backends, store "fs") or legacy ([glance_store] stores=file)
#   GLANCESYNC_REALSTACK_TIMEOUT             seconds to wait for the services to answer (default 120)

RS_BASE=${GLANCESYNC_REALSTACK_DIR:-${HOME:?}/.cache/glancesync-realstack}
RS_VENV=${GLANCESYNC_REALSTACK_VENV:-$RS_BASE/venv}
RS_RUN=$RS_BASE/run   # databases, keys, image files, logs, pid files, client files
RS_PYTHON=${GLANCESYNC_REALSTACK_PYTHON:-python3}
RS_SOURCE_KEYSTONE_PORT=${GLANCESYNC_REALSTACK_SOURCE_KEYSTONE_PORT:-15000}
RS_SOURCE_GLANCE1_PORT=${GLANCESYNC_REALSTACK_SOURCE_GLANCE1_PORT:-19292}
RS_SOURCE_GLANCE2_PORT=${GLANCESYNC_REALSTACK_SOURCE_GLANCE2_PORT:-19293}
RS_SOURCE_GLANCE3_PORT=${GLANCESYNC_REALSTACK_SOURCE_GLANCE3_PORT:-19295}
RS_TARGET_KEYSTONE_PORT=${GLANCESYNC_REALSTACK_TARGET_KEYSTONE_PORT:-15357}
RS_TARGET_GLANCE_PORT=${GLANCESYNC_REALSTACK_TARGET_GLANCE_PORT:-19294}
RS_SOURCE_PASSWORD=${GLANCESYNC_REALSTACK_SOURCE_PASSWORD:-sourcepass}
RS_TARGET_PASSWORD=${GLANCESYNC_REALSTACK_TARGET_PASSWORD:-targetpass}
RS_GLANCE_PASSWORD=${GLANCESYNC_REALSTACK_GLANCE_PASSWORD:-glancepass}
RS_GLANCE_STORES=${GLANCESYNC_REALSTACK_GLANCE_STORES:-multi}
RS_TIMEOUT=${GLANCESYNC_REALSTACK_TIMEOUT:-120}

# The gunicorn process title is "gunicorn: master [$RS_NAME_PREFIX<service>]": stop.sh and stack.py only
# signal a pid from a pid file whose command line still shows that, never a recycled pid.
RS_NAME_PREFIX=glancesync-realstack-
