# Python 2.7: the original GlanceSync's --show-status on a folder of backup CSVs (bench/plan.py --original).
# The CSVs are loaded into the original's in-memory mock facade, as its own unit tests do
# (GLANCESYNC_USE_MOCK, ServersFacade.add_images_from_csv_to_mock), then its sync.py runs unchanged.
# Usage: python2 run_status.py FOLDER sync.py-arguments...   (the facade reads every *.csv of FOLDER)
import os
import runpy
import sys

os.environ["GLANCESYNC_USE_MOCK"] = "True"
from fiwareglancesync.glancesync_serverfacade_mock import ServersFacade  # noqa: E402

ServersFacade.add_images_from_csv_to_mock(sys.argv[1])
sync_py = os.path.join(os.environ["GLANCESYNC_ORIGINAL_SRC"], "fiwareglancesync", "sync.py")
sys.argv = [sync_py] + sys.argv[2:]
runpy.run_path(sync_py, run_name="__main__")
