"""Searching a part of an image's name (the matrix's and the region page's `q`), on either database.

On PostgreSQL, migration 0025 adds a trigram index that serves the search; these tests check that the query
Django writes can use it, and that the migration survives a role that may not create the extension. CI runs
this file in its PostgreSQL pass too (`.ci/run`)."""

import importlib
import logging

import pytest
from django.db import connection
from django.utils import timezone

from sync.models import ImageState, RegionSnapshot
from tests.test_overview import table_rows

pytestmark = pytest.mark.django_db

trigram = importlib.import_module("sync.migrations.0025_imagestate_name_trigram")
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigram index is PostgreSQL's")


@pytest.fixture
def fleet():
    now = timezone.now()
    regions = ["Bilbao", "Malaga", "Sevilla"]
    for region in regions:
        RegionSnapshot.objects.create(target="master", region=region, computed_at=now)
    ImageState.objects.bulk_create(
        ImageState(region=region, image_name=f"{kind}-{i:04d}", status="ok", computed_at=now, position=i)
        for region in regions
        for kind in ("ubuntu", "Debian")
        for i in range(200)
    )
    return regions


def names(client, url: str, **params) -> list[str]:
    """The first column of the page's first table, its heading left out."""
    html = client.get(url, params).content.decode()
    return [row[0] for row in table_rows(html.split("</table>", 1)[0])[1:] if row]


def test_it_finds_a_part_of_a_name_in_any_case(viewer_client, fleet):
    assert names(viewer_client, "/matrix/", q="BIAN-012") == [f"Debian-{i:04d}" for i in range(120, 130)]
    assert names(viewer_client, "/matrix/", q="ntu-0199") == ["ubuntu-0199"]
    assert names(viewer_client, "/matrix/", q="no-such-name") == ["No image matches."]
    assert names(viewer_client, "/regions/Malaga/", q="debian-015") == [f"Debian-{i:04d}" for i in range(150, 160)]


@on_postgresql
def test_it_serves_the_search_from_the_trigram_index():
    """100 regions of 1,000 images: enough rows for the planner to prefer the index to reading them all."""
    now = timezone.now()
    template = ImageState.objects.create(region="Region0", image_name="template", status="ok", computed_at=now)
    copied = [f.column for f in ImageState._meta.concrete_fields if f.column not in ("id", "region", "image_name")]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO sync_imagestate (region, image_name, {', '.join(copied)}) "
            f"SELECT 'Region' || (g %% 100), 'image-' || (g / 100), {', '.join('t.' + c for c in copied)} "
            "FROM generate_series(100, 99999) AS g, sync_imagestate AS t WHERE t.id = %s",
            [template.pk],
        )
        cursor.execute("ANALYZE sync_imagestate")
    query = ImageState.objects.filter(image_name__icontains="GE-123").values_list("image_name").distinct()
    plan = query.order_by("image_name").explain()
    assert f"Bitmap Index Scan on {trigram.INDEX}" in plan, plan
    assert list(query.order_by("image_name")) == [("image-123",)]


@on_postgresql
def test_the_migration_goes_on_without_the_extension(caplog):
    with connection.cursor() as cursor:
        cursor.execute("DROP EXTENSION pg_trgm CASCADE")  # the index with it; the test's transaction restores both
        cursor.execute("CREATE ROLE glancesync_no_extensions")
        cursor.execute("GRANT ALL ON TABLE sync_imagestate TO glancesync_no_extensions")
        cursor.execute("SET ROLE glancesync_no_extensions")  # may not create extensions in this database
        with caplog.at_level(logging.WARNING), connection.schema_editor() as editor:
            trigram.add_trigram_index(None, editor)
        assert "no trigram index for name searches" in caplog.text and "permission denied" in caplog.text
        assert ImageState.objects.filter(image_name__icontains="x").count() == 0  # the transaction goes on
        cursor.execute("RESET ROLE")
        with connection.schema_editor() as editor:
            trigram.add_trigram_index(None, editor)
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = %s", [trigram.INDEX])
        assert cursor.fetchone() == (1,)
