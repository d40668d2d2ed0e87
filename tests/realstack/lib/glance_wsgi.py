"""gunicorn entry point for Glance: `gunicorn glance_wsgi:application` (config: OS_GLANCE_CONFIG_DIR).

Glance 31+ has no standalone (eventlet) API server any more; the WSGI app reads glance-api.conf from
OS_GLANCE_CONFIG_DIR and the paste pipeline named by its [paste_deploy] section.
"""

import sqlite_immediate  # noqa: F401  (side effect: SQLite locking fix, see that module)
from glance.wsgi.api import application  # noqa: F401
