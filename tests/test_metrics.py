"""RegionSnapshot.status_counts, which /metrics reads: kept with the ImageState rows at every refresh, and filled
by the migration for existing snapshots."""

from __future__ import annotations

import importlib
from collections import Counter, defaultdict

import pytest
from django.apps import apps

from sync.models import ImageState, RegionSnapshot
from sync.tasks import refresh_status

pytestmark = pytest.mark.django_db


def rows_by_region() -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for region, status in ImageState.objects.values_list("region", "status"):
        counts[region][status] += 1
    return {region: dict(counted) for region, counted in counts.items()}


def stored_counts() -> dict[str, dict[str, int]]:
    return dict(RegionSnapshot.objects.values_list("region", "status_counts"))


# -- status counts ------------------------------------------------------------------------------------------


def test_it_stores_each_regions_status_counts_with_its_rows(demo_cloud):
    refresh_status()
    stored = stored_counts()
    assert len(stored) == 8 and stored == {region: rows_by_region().get(region, {}) for region in stored}
    assert set(stored["Bilbao"]) > {"ok", "pending_upload"}


def test_an_unreadable_region_keeps_the_counts_of_the_rows_it_keeps(demo_cloud):
    refresh_status()
    before = stored_counts()["Zaragoza"]
    (demo_cloud / "backup_Zaragoza.csv").write_text("Zaragoza,too,few,columns\r\n")
    refresh_status()
    snapshot = RegionSnapshot.objects.get(region="Zaragoza")
    assert snapshot.error and snapshot.status_counts == before == rows_by_region()["Zaragoza"]


def test_the_migration_fills_the_counts_of_existing_snapshots(demo_cloud):
    refresh_status()
    expected = stored_counts()
    RegionSnapshot.objects.update(status_counts={})
    migration = importlib.import_module("sync.migrations.0016_regionsnapshot_status_counts")
    migration.fill_status_counts(apps, None)
    assert stored_counts() == expected
