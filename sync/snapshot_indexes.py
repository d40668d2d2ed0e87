"""ImageState's secondary indexes around a first refresh: dropped while it inserts, built again at its end.

A refresh holds the refresh lock (`sync.refresh_lock`) while it drops and builds them: two refreshes doing so at
once would clash on the names."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from django.db import DatabaseError, connection, transaction

from sync.models import ImageState

logger = logging.getLogger(__name__)

INDEXED_PAIRS = 200_000  # pairs a first refresh inserts from which it builds the indexes after
TRIGRAM_INDEX = "state_name_trgm"  # PostgreSQL's index of the names' trigrams (migration 0025), not in Meta
INDEX_BUILD_MEMORY = "256MB"  # PostgreSQL's maintenance_work_mem while a refresh builds them: sorts in memory


@contextmanager
def indexes_built_after(pairs: int) -> Iterator[None]:
    """A first refresh (no ImageState row yet) of at least INDEXED_PAIRS pairs inserts its rows with ImageState's
    secondary indexes dropped (on PostgreSQL the trigram one too), and builds them once at the end (also when it
    fails). Inserted into, they cost most of a first refresh: on SQLite each batch's commit wrote all the index
    pages its regions touched (the name indexes are swept by every region); on PostgreSQL the server's
    inserting into seven indexes, the trigram one the dearest. The pages meanwhile read without them (slower,
    and still whole regions). Every refresh first builds any that a refresh killed meanwhile left dropped."""
    build_missing_indexes()
    if pairs < INDEXED_PAIRS or ImageState.objects.exists():
        yield
        return
    with connection.cursor() as cursor:
        for name in secondary_indexes():  # on PostgreSQL each waits for the pages reading the table
            cursor.execute(f"DROP INDEX IF EXISTS {connection.ops.quote_name(name)}")
    try:
        yield
    finally:
        build_missing_indexes()


def secondary_indexes() -> dict[str, str]:
    """ImageState's indexes a first refresh may drop, {name: the SQL that creates it}: Meta's, and on PostgreSQL
    the trigram one where pg_trgm is installed (migration 0025 creates both, or neither where it may not)."""
    editor = connection.schema_editor(atomic=False)  # for its SQL only: not entered
    indexes = {index.name: str(index.create_sql(ImageState, editor)) for index in ImageState._meta.indexes}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            if cursor.fetchone():
                table = connection.ops.quote_name(ImageState._meta.db_table)
                indexes[TRIGRAM_INDEX] = (
                    f"CREATE INDEX {TRIGRAM_INDEX} ON {table} USING gin (UPPER(image_name) gin_trgm_ops)"
                )
    # IF NOT EXISTS: one another process built meanwhile (a refresh whose lock expired) is no error
    return {name: sql.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1) for name, sql in indexes.items()}


def build_missing_indexes() -> None:
    with connection.cursor() as cursor:
        present = connection.introspection.get_constraints(cursor, ImageState._meta.db_table)
    missing = [(name, sql) for name, sql in secondary_indexes().items() if name not in present]
    if not missing:
        return
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            for _, sql in missing:
                cursor.execute(sql)
        return
    _build_on_postgresql(missing)
    with connection.cursor() as cursor:  # the planner's statistics of a table it last saw empty would be bad
        cursor.execute(f"ANALYZE {connection.ops.quote_name(ImageState._meta.db_table)}")


def _build_on_postgresql(missing: list[tuple[str, str]]) -> None:
    """Each index in its own connection, as many at once as there are CPUs (the server builds each one in one
    process, and the b-trees together take as long as the trigram index alone: 11-12 s each at 1.5 M rows), the
    trigram index first. In a transaction (a test's) they are built in it, one after the other: another
    connection would wait for the transaction's DROP INDEX to end."""
    missing = sorted(missing, key=lambda index: index[0] != TRIGRAM_INDEX)
    builders = min(len(missing), len(os.sched_getaffinity(0)))
    if connection.in_atomic_block or builders < 2:
        for name, sql in missing:
            _build_one(name, sql)
        return
    with ThreadPoolExecutor(max_workers=builders, thread_name_prefix="index-build") as pool:
        for _ in pool.map(_build_in_own_connection, missing):  # the first error, once every build has ended
            pass


def _build_in_own_connection(index: tuple[str, str]) -> None:
    try:
        _build_one(*index)
    finally:
        connection.close()  # this thread's


def _build_one(name: str, sql: str) -> None:
    """One index with INDEX_BUILD_MEMORY to sort in (this session only), the trigram one optional."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW maintenance_work_mem")
        (memory,) = cursor.fetchone()
        cursor.execute(f"SET maintenance_work_mem = '{INDEX_BUILD_MEMORY}'")
        try:
            if name != TRIGRAM_INDEX:
                cursor.execute(sql)
                return
            try:  # optional, as in migration 0025: name searches are only slower without it
                with transaction.atomic():
                    cursor.execute(sql)
            except DatabaseError as error:
                logger.warning("no trigram index for name searches (searching names will be slower): %s", error)
        finally:
            cursor.execute(f"SET maintenance_work_mem = '{memory}'")
