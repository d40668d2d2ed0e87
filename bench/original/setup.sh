#!/bin/bash
# Prepare the original GlanceSync for `bench/plan.py --original DIR`: its source with one fix, its Python 2
# libraries and its settings, in DIR (made anew).
# Usage: bench/original/setup.sh SOURCE PYTHON2 DIR
#   SOURCE  a checkout of https://github.com/telefonicaid/fiware-glancesync (measured at 5ad0c80)
#   PYTHON2 a Python 2.7 interpreter with pip (e.g. pyenv's 2.7.18)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source=$1 python2=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
cp -r "$source/." "$dir/src" && rm -rf "$dir/src/.git"
# It crashes on a master kernel_id/ramdisk_id naming an image it does not keep (a queued kernel of the fleet):
# keep the id, as our engine and the fleet's truth do. No other change.
patch -s -d "$dir/src" -p1 < "$here/glancesync_ami.patch"
# keystoneclient is imported though the mock never calls it; these are the last releases for Python 2.7.
"$python2" -m pip install -q --target "$dir/py2lib" -c "$here/constraints.txt" "python-keystoneclient<3.22"
cp "$dir/src/fiwareglancesync/app/settings/fiware-glancesync.cfg" "$dir/src/fiwareglancesync/app/settings/fiware-glancesync-logging.cfg" "$dir/"
cp "$here/run_status.py" "$dir/"
echo "$python2" > "$dir/python2"
echo "prepared $dir: bench/plan.py --only original --original $dir"
