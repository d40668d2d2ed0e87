"""gunicorn entry point for Keystone: `gunicorn keystone_wsgi:application` (config: OS_KEYSTONE_CONFIG_FILES).

Keystone's WSGI initialisation parses sys.argv with oslo.config.  Under gunicorn that is gunicorn's own command
line, which it rejects; the worker then dies and is restarted in a loop while the port stays open (so a plain
port check says "up").  Hide the arguments before importing it.
"""

import sys

sys.argv = sys.argv[:1]

import sqlite_immediate  # noqa: E402,F401  (side effect: SQLite locking fix, see that module)
from keystone.wsgi.api import application  # noqa: E402,F401
