"""Make Keystone's and Glance's SQLite databases safe for a multi-threaded gunicorn worker.

Imported (for its side effect) by keystone_wsgi.py and glance_wsgi.py before the applications load.

Why: SQLAlchemy/pysqlite start transactions as DEFERRED; two threads that both read and then try to write
cannot upgrade their locks, and SQLite answers SQLITE_BUSY at once ("database is locked"), which Glance turns
into HTTP 500 under parallel uploads.  WAL mode made it worse.  The fix that held is to begin every transaction
with BEGIN IMMEDIATE (take the write lock up front) and to wait up to 60 s for a busy database.

The listeners are registered on the Engine *class*, so they run before oslo.db's per-engine "begin" listener;
that one sees conn.info["in_transaction"] and then skips its own BEGIN.
"""

import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Engine

BUSY_TIMEOUT_MS = 60_000


@event.listens_for(Engine, "connect")
def _sqlite_connect(dbapi_conn, _connection_record):
    if isinstance(dbapi_conn, sqlite3.Connection):
        dbapi_conn.isolation_level = None  # let us issue BEGIN ourselves (pysqlite would emit a DEFERRED one)
        dbapi_conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


@event.listens_for(Engine, "begin")
def _sqlite_begin(conn):
    if conn.dialect.name == "sqlite" and "in_transaction" not in conn.info:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        conn.info["in_transaction"] = True
