"""On PostgreSQL, a trigram index for searching a part of an image's name (issue #17).

The matrix and the region page search names with `icontains`, which Django writes `UPPER(image_name) LIKE
UPPER('%…%')` there. No B-tree serves a pattern with a leading wildcard, so across a fleet's 2,000,000 rows the
search read them all (1.3 s). A GIN index of the upper-cased name's trigrams (`pg_trgm`) serves it.

The index is PostgreSQL's own, so it is not in the model's Meta (SQLite, whose search stays within the page
goal, has no such index). pg_trgm is a trusted extension: the owner of the database may create it. Where the
role may not, or the server lacks the contrib modules, the migration warns and goes on: the search then works
as before, only slower."""

import logging

from django.db import DatabaseError, migrations, transaction

log = logging.getLogger(__name__)

INDEX = "state_name_trgm"


def add_trigram_index(apps, schema_editor) -> None:
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        try:
            with transaction.atomic(using=connection.alias):  # a savepoint: a refusal leaves the migration going
                cursor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
                cursor.execute(
                    f"CREATE INDEX IF NOT EXISTS {INDEX} ON sync_imagestate USING gin (UPPER(image_name) gin_trgm_ops)"
                )
        except DatabaseError as error:
            log.warning("no trigram index for name searches (searching names will be slower): %s", error)


def drop_trigram_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    dependencies = [("sync", "0024_imagestate_digest")]

    operations = [migrations.RunPython(add_trigram_index, drop_trigram_index)]
