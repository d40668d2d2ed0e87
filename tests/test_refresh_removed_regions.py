"""A refresh of every region keeps the snapshot to the configured regions: a region or target removed from the
configuration (or an old master region) leaves the overview, the metrics and the alerts at the next refresh."""

from pathlib import Path

import pytest

from sync.models import ImageState, RegionSnapshot
from sync.tasks import refresh_status

pytestmark = pytest.mark.django_db

DEMO_REGIONS = {"Madrid", "Bilbao", "Malaga", "Sevilla", "Valencia", "Zaragoza", "partner:Lisbon", "partner:Porto"}


@pytest.fixture
def refreshed(demo_cloud):
    refresh_status()
    assert set(RegionSnapshot.objects.values_list("region", flat=True)) == DEMO_REGIONS
    return demo_cloud


def configure_without_partner_and_zaragoza(settings, tmp_path) -> None:
    """The demo configuration, its partner target removed and Zaragoza ignored."""
    conf = Path(settings.GLANCESYNC_CONFIG_FILE).read_text()
    conf = conf[: conf.index("[partner]")].replace("[master]\n", "[master]\nignore_regions = Zaragoza\n")
    path = tmp_path / "glancesync.conf"
    path.write_text(conf)
    settings.GLANCESYNC_CONFIG_FILE = str(path)


def regions_of(model) -> set[str]:
    return set(model.objects.values_list("region", flat=True))


def test_it_removes_the_snapshot_of_regions_no_longer_configured(refreshed, settings, tmp_path, caplog):
    kept = {"Madrid", "Bilbao", "Malaga", "Sevilla", "Valencia"}
    rows_before = {r.pk: r.computed_at for r in ImageState.objects.filter(region__in=kept)}
    configure_without_partner_and_zaragoza(settings, tmp_path)
    caplog.set_level("INFO", logger="sync.tasks")
    assert refresh_status() == "statuses of 5 of 5 regions refreshed"
    assert regions_of(RegionSnapshot) == kept and regions_of(ImageState) == kept
    # the kept regions' rows are the same rows, not rewritten
    assert {r.pk: r.computed_at for r in ImageState.objects.all()} == rows_before
    assert "removed 3 regions no longer configured: Zaragoza, partner:Lisbon, partner:Porto" in caplog.text


def test_a_refresh_of_some_regions_removes_nothing(refreshed, settings, tmp_path):
    configure_without_partner_and_zaragoza(settings, tmp_path)
    assert refresh_status(["Bilbao"]) == "statuses of 1 of 1 regions refreshed"
    assert regions_of(RegionSnapshot) == DEMO_REGIONS


def test_a_refresh_that_cannot_read_the_configuration_removes_nothing(refreshed, settings, tmp_path):
    settings.GLANCESYNC_CONFIG_FILE = str(tmp_path / "missing.conf")
    assert refresh_status().startswith("statuses not refreshed:")
    assert regions_of(RegionSnapshot) == DEMO_REGIONS and regions_of(ImageState) == DEMO_REGIONS


def test_the_overview_no_longer_lists_a_removed_region(refreshed, settings, tmp_path, viewer_client):
    assert "partner:Lisbon" in viewer_client.get("/").content.decode()
    configure_without_partner_and_zaragoza(settings, tmp_path)
    refresh_status()
    page = viewer_client.get("/").content.decode()
    assert "partner:Lisbon" not in page and "Zaragoza" not in page and "Bilbao" in page
    assert viewer_client.get("/regions/partner:Lisbon/").status_code == 404
