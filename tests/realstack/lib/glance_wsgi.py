"""gunicorn entry point for Glance: `gunicorn glance_wsgi:application` (config: OS_GLANCE_CONFIG_DIR).

Glance 31+ has no standalone (eventlet) API server any more; the WSGI app reads glance-api.conf from
OS_GLANCE_CONFIG_DIR and the paste pipeline named by its [paste_deploy] section.
"""

import sqlite_immediate  # noqa: F401  (side effect: SQLite locking fix, see that module)
from glance.wsgi.api import application  # noqa: F401
from gunicorn.http import unreader

# gunicorn 27 reads up to 1 MiB per recv() for a body of known length, then hands it out in the 64 KiB
# pieces Glance asks for, copying the rest of its buffer on every piece: O(n^2) per recv.  Every upload
# with a Content-Length (the only kind some production servers accept) then costs this Glance about 60 %
# more CPU than the same bytes sent chunked.  Production servers (uWSGI, mod_wsgi) read what the
# application asks for; recv() no more than Glance's own 64 KiB does the same here.  bench/transfer.py
# measures both encodings.
unreader.SocketUnreader.max_body_chunk = 64 * 1024
