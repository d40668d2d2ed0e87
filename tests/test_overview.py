"""The read-only overview (`/`) and region pages, rendered from the status snapshot of a scratch demo cloud.

Each test refreshes the snapshot first (the task the cluster runs), then reads the pages."""

import base64
import re
from collections import Counter
from html import unescape as html_unescape
from pathlib import Path

import pytest
from django.urls import reverse

from sync.clouds import cloud_from_url
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.model import STATUSES
from sync.engine.reporter import RecordingReporter
from sync.models import RegionSnapshot
from sync.tasks import refresh_status

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "sync" / "demo"
DEMO_CONFIG = DEMO / "glancesync.conf"
REGIONS = ["Bilbao", "Malaga", "Sevilla", "Valencia", "Zaragoza", "partner:Lisbon", "partner:Porto"]

pytestmark = pytest.mark.django_db  # the pages look for a configuration in the database first


@pytest.fixture
def cloud(demo_cloud):
    return demo_cloud


def text(html: str) -> str:
    """The visible text, tags removed and spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def table_rows(html: str) -> list[list[str]]:
    """Each <tr> as the list of its cells' texts."""
    rows = []
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        rows.append([text(cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)])
    return rows


def expected_counts(folder: Path) -> dict[str, list[int]]:
    config = load_config(str(DEMO_CONFIG), environ={}, require_credentials=False)
    engine = GlanceSync(config, cloud_from_url(f"files:{folder}"), RecordingReporter())
    counts = {}
    for target in config.targets:
        for region in engine.get_regions(target):
            seen = Counter(entry.status for entry in engine.region_status(region))
            counts[region] = [seen[status] for status in STATUSES] + [sum(seen.values())]
    return counts


def get(client, url):
    refresh_status()
    response = client.get(url)
    return response, response.content.decode()


def assert_no_secret(html: str) -> None:
    for password in ("demo-only-not-a-real-password", "partner-demo-password"):
        assert password not in html
        assert base64.b64encode(password.encode()).decode() not in html
    assert "Traceback" not in html
    assert "credential" not in html.lower()


# --- overview -----------------------------------------------------------------------------------------------


def test_it_shows_every_region_with_its_status_counts(viewer_client, cloud):
    client = viewer_client
    response, html = get(client, "/")
    assert response.status_code == 200
    rows = {row[0]: row for row in table_rows(html) if row}
    expected = expected_counts(cloud)
    assert sorted(expected) == REGIONS
    for region, counts in expected.items():
        assert rows[region][1] == ("master" if ":" not in region else "partner")
        assert rows[region][2] == ""  # the share bar
        assert rows[region][3:-1] == [str(n) for n in counts], region
        assert rows[region][-1] == "never"
    assert rows["Bilbao"][3:-1] == ["9", "0", "1", "9", "1", "1", "1", "0", "0", "22"]
    totals = [str(sum(c[i] for c in expected.values())) for i in range(len(STATUSES) + 1)]
    assert rows["All regions but the master"][2:-1] == totals
    assert rows["Madrid master"][1] == "master"  # the master region's row comes first, marked


def test_it_labels_each_status_column_with_its_name(viewer_client, cloud):
    client = viewer_client
    _, html = get(client, "/")
    groups, columns = table_rows(html)[:2]
    assert groups == ["Region", "Target", "Share", "ok", "pending", "error", "Total", "Last run"]
    head = html[html.index("<thead>") : html.index("</thead>")]
    assert re.findall(r'<span class="visually-hidden">(\w+)</span>', head) == list(STATUSES)  # read out in full
    assert re.findall(r'<span aria-hidden="true">(\w+)</span>', head) == [
        "ok", "stalled", "metadata", "upload", "replace", "rename", "ami", "checksum", "ami",
    ]  # fmt: skip
    assert columns[3] == "upload pending_upload"
    assert 'title="pending_upload: not in the region' in head  # the tooltip says it in full
    assert "Master region" in text(html) and "Madrid" in text(html)


def test_it_links_every_region_to_its_page(viewer_client, cloud):
    client = viewer_client
    _, html = get(client, "/")
    for region in [*REGIONS, "Madrid"]:
        assert f'href="{reverse("sync:region_detail", args=[region])}"' in html
    assert 'href="/regions/partner:Lisbon/"' in html


def test_it_never_shows_a_credential(viewer_client, cloud):
    client = viewer_client
    for url in ("/", "/regions/Bilbao/", "/regions/partner:Porto/"):
        response, html = get(client, url)
        assert response.status_code == 200
        assert_no_secret(html)


# --- region page --------------------------------------------------------------------------------------------


def test_it_lists_the_images_of_a_region_with_their_status(viewer_client, cloud):
    client = viewer_client
    response, html = get(client, "/regions/Bilbao/")
    assert response.status_code == 200
    rows = {row[0]: row for row in table_rows(html) if row}
    assert rows["debian-11-genericcloud-amd64"][1] == "pending_rename"
    assert rows["ubuntu-24.04-server-amd64"][1] == "pending_replace"
    assert rows["ubuntu-22.04-ami"][1] == "pending_ami"
    assert rows["cirros-0.6.2-x86_64"][1:] == [
        "ok", "20.4 MB", "public", "ed8bf9061c88aabdaf3d032d0a94495e", "ed8bf9061c88aabdaf3d032d0a94495e",
        "nothing",
    ]  # fmt: skip
    assert rows["ubuntu-24.04-server-amd64"][5] == "a11fbed52687f800092de9aab497facb (differs)"
    assert rows["gitlab-ce-17-appliance"][1:3] == ["pending_upload", "3.0 GB"]
    assert rows["gitlab-ce-17-appliance"][5] == "not in the region"
    assert 'title="3221233664 bytes"' in html


def test_it_lists_the_regions_other_images_and_why_they_are_not_synchronised(viewer_client, cloud, monkeypatch):
    response, html = get(viewer_client, "/regions/Sevilla/")
    others = html[html.index('id="other-images"') :]
    rows = {row[0]: row for row in table_rows(others) if row}
    assert rows["debian-12-genericcloud-amd64"][1:] == ["queued", "public", "0 bytes", "not active (queued)"]
    assert rows["ubuntu-24.04-server-amd64"][4] == "owned by another project"
    assert rows["centos-7-x86_64_obsolete"][4] == "not one of the master images this target synchronises"
    assert "cirros-0.6.2-x86_64" not in rows  # a synchronised copy is in the first table only

    monkeypatch.setattr(RegionSnapshot, "OTHER_IMAGES_KEPT", 1)
    _, html = get(viewer_client, "/regions/Sevilla/")
    assert "The first 1 of 3, by name." in text(html)


def test_it_accepts_region_names_with_a_target_prefix(viewer_client, cloud):
    client = viewer_client
    response, html = get(client, reverse("sync:region_detail", args=["partner:Lisbon"]))
    assert response.status_code == 200
    rows = {row[0]: row for row in table_rows(html) if row}
    assert rows["debian-12-ami"][1] == "error_ami"
    assert rows["rocky-9-x86_64"][1] == "pending_metadata"
    assert "cirros-0.6.2-x86_64" not in rows  # not selected by the partner target
    assert "Target partner" in text(html)


def test_it_shows_the_runs_of_a_region(viewer_client, cloud):
    client = viewer_client
    from sync.models import RegionRun, SyncRun

    run = SyncRun.objects.create(trigger="cli", started_by="ops", regions=["Bilbao"], state="done")
    RegionRun.objects.create(run=run, region="Bilbao", state="failed", uploads=3, error="Glance said 503")
    _, html = get(client, "/regions/Bilbao/")
    page = text(html)
    assert f"#{run.pk} (cli: ops) sync failed" in page
    assert "Glance said 503" in page
    _, html = get(client, "/")
    assert f"failed sync #{run.pk}" in text(html)


def test_it_answers_404_for_an_unknown_region_or_target(viewer_client, cloud):
    client = viewer_client
    assert client.get("/regions/Nowhere/").status_code == 404
    assert client.get("/regions/nobody:Lisbon/").status_code == 404
    assert client.get("/regions/partner:Bilbao/").status_code == 404


# --- errors -------------------------------------------------------------------------------------------------


def test_it_explains_a_missing_cloud_folder(viewer_client, cloud, settings):
    client = viewer_client
    settings.GLANCESYNC_CLOUD = f"files:{cloud}-gone"
    response, html = get(client, "/")
    assert response.status_code == 200
    assert f"The last status refresh failed: {cloud}-gone: no such folder for the file cloud" in text(html)
    assert "alert-danger" in html
    assert_no_secret(html)
    assert client.get("/regions/Bilbao/").status_code == 404  # never computed


def test_it_explains_a_broken_master_region_file(viewer_client, cloud):
    client = viewer_client
    (cloud / "backup_Madrid.csv").write_text("Madrid,image,1,active,big,c,o,True,{}\r\n")
    response, html = get(client, "/")
    assert response.status_code == 200
    assert "The last status refresh failed" in html
    assert "backup_Madrid.csv line 1: size &#x27;big&#x27; is not an integer" in html
    assert_no_secret(html)


def test_it_shows_a_broken_region_in_its_row_only(viewer_client, cloud):
    client = viewer_client
    (cloud / "backup_Zaragoza.csv").write_text("Zaragoza,too,few,columns\r\n")
    response, html = get(client, "/")
    assert response.status_code == 200
    rows = {row[0]: row for row in table_rows(html) if row}
    assert rows["Zaragoza"][2].startswith("Cannot read this region:")
    assert "expected 9 columns (or up to 12), found 4" in rows["Zaragoza"][2]
    assert rows["Bilbao"][-2] == "22"


def test_it_explains_a_bad_configuration_without_its_password(viewer_client, cloud, settings, tmp_path):
    client = viewer_client
    password = "demo-only-not-a-real-password"
    config = tmp_path / "glancesync.conf"
    config.write_text(
        "[main]\nmaster_region = Madrid\n[master]\n"
        f"credential = admin,{base64.b64encode(password.encode()).decode()},http://k:5000/v3,demo\n"
        "metadata_condition = image.is_public and (\n"
    )
    settings.GLANCESYNC_CONFIG_FILE = str(config)
    response, html = get(client, "/")
    assert response.status_code == 200
    assert "The last status refresh failed" in html
    assert f"{config}: target master: metadata_condition is not a valid expression" in html
    assert_no_secret(html.replace(str(config), ""))


def test_it_explains_a_missing_configuration_file(viewer_client, cloud, settings, tmp_path):
    client = viewer_client
    settings.GLANCESYNC_CONFIG_FILE = str(tmp_path / "missing.conf")
    response, html = get(client, "/")
    assert response.status_code == 200
    assert "The last status refresh failed" in html
    assert f"config file {tmp_path / 'missing.conf'} not found" in html


def test_it_explains_an_unavailable_cloud_driver(viewer_client, cloud, settings):
    client = viewer_client
    settings.GLANCESYNC_CLOUD = "nosuchcloud"
    response, html = get(client, "/")
    assert response.status_code == 200
    assert "The last status refresh failed" in html
    assert "unknown cloud &#x27;nosuchcloud&#x27;" in html


def test_it_hides_a_password_quoted_by_an_unexpected_error(viewer_client, cloud, monkeypatch):
    client = viewer_client

    class LeakyCloud:
        def session(self, target):
            raise RuntimeError(f"cannot log in as {target.user} with {target.password}")

    monkeypatch.setattr("sync.connect.cloud_from_url", lambda url, images_dir=None: LeakyCloud())
    response, html = get(client, "/")
    assert response.status_code == 200
    assert "The last status refresh failed" in html
    assert "RuntimeError: cannot log in as glancesync with ********" in html
    assert_no_secret(html)


def test_it_reads_the_database_configuration_once_it_has_a_master_region(viewer_client, cloud, settings, tmp_path):
    client = viewer_client
    from django.core.management import call_command

    from sync.models import MasterSettings

    settings.DATA_DIR = tmp_path / "data"
    call_command("import_glancesync_conf", str(DEMO_CONFIG), stdout=None)
    MasterSettings.objects.filter(pk=1).update(cloud=f"files:{cloud}", master_region="Madrid")
    settings.GLANCESYNC_CONFIG_FILE = str(tmp_path / "no-such.conf")  # proves the file is not read
    response, html = get(client, reverse("sync:overview"))
    assert response.status_code == 200
    assert all(region in html for region in REGIONS)


def test_it_asks_anonymous_users_to_log_in(client, cloud):
    for url in ("/", "/regions/Bilbao/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_it_refuses_a_user_without_a_role(client, cloud, django_user_model):
    client.force_login(django_user_model.objects.create_user("nobody"))
    assert client.get("/").status_code == 403


def test_it_shows_the_run_buttons_to_operators_only(viewer_client, operator, cloud):
    _, html = get(viewer_client, "/regions/Bilbao/")
    assert "Sync this region" not in html
    viewer_client.force_login(operator)
    _, html = get(viewer_client, "/regions/Bilbao/")
    assert "Sync this region" in html and "Dry-run this region" in html


def test_it_draws_a_colour_bar_that_says_its_numbers(viewer_client, cloud):
    _, html = get(viewer_client, "/")
    bar = "ok 9, pending_metadata 1, pending_upload 9, pending_replace 1, pending_rename 1, pending_ami 1"
    assert f'aria-label="{bar}"' in html


def test_the_table_refreshes_itself_only_while_a_run_is_active(viewer_client, cloud):
    from sync.models import RegionRun, SyncRun

    _, html = get(viewer_client, "/")
    assert 'hx-trigger="every 2s"' not in html
    assert viewer_client.get("/", HTTP_HX_REQUEST="true").status_code == 286
    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"], state="running")
    RegionRun.objects.create(run=run, region="Bilbao", state="running")
    assert 'hx-trigger="every 2s"' in viewer_client.get("/").content.decode()
    partial = viewer_client.get("/", HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and "<html" not in partial.content.decode()
    assert "running" in partial.content.decode()


def test_the_overview_and_matrix_use_a_constant_number_of_queries(viewer_client, cloud, django_assert_max_num_queries):
    from django.utils import timezone

    from sync.models import ImageState, RegionSnapshot

    refresh_status()
    now = timezone.now()
    RegionSnapshot.objects.bulk_create(
        RegionSnapshot(region=f"extra:R{i}", target="extra", computed_at=now) for i in range(30)
    )
    ImageState.objects.bulk_create(
        ImageState(region=f"extra:R{i}", image_name=f"image{j:03d}", status="ok", computed_at=now)
        for i in range(30)
        for j in range(120)
    )
    with django_assert_max_num_queries(11):  # 10, the goal of issue #6, + the failing alert channels (issue #14)
        assert viewer_client.get("/").status_code == 200
    for url in ("/matrix/", "/matrix/?after=image050&status=ok", "/matrix/?before=image050&target=extra"):
        with django_assert_max_num_queries(10):  # the goal of issue #6
            assert viewer_client.get(url).status_code == 200
    for url in ("/preview/", "/conflicts/", "/runs/", "/schedules/", "/backups/", "/regions/extra:R1/"):
        with django_assert_max_num_queries(12):
            assert viewer_client.get(url).status_code == 200


def test_the_matrix_shows_each_cell_with_its_status_and_filters(viewer_client, cloud):
    _, html = get(viewer_client, "/matrix/?region=Bilbao&status=pending_rename")
    rows = {row[0]: row for row in table_rows(html) if row}
    assert rows == {
        "Image": ["Image", "Bilbao"],
        "debian-11-genericcloud-amd64": ["debian-11-genericcloud-amd64", "… pending_rename"],
    }
    _, html = get(viewer_client, "/matrix/?target=partner&q=rocky")
    rows = {row[0]: row for row in table_rows(html) if row}
    assert rows["rocky-9-x86_64"][1:] == ["… pending_metadata", "… pending_upload"]  # Lisbon, Porto
    _, html = get(viewer_client, "/matrix/?q=no-such-image")
    assert "No image matches." in html


def test_the_matrix_pages_through_the_images(viewer_client, cloud, django_assert_max_num_queries):
    """Keyset pages of names: Next goes on after the last one shown, Previous comes back before the first."""
    from django.utils import timezone

    from sync.models import ImageState
    from sync.views import MATRIX_PAGE_SIZE

    refresh_status()
    now = timezone.now()
    ImageState.objects.bulk_create(
        ImageState(region=region, image_name=f"zz-{i:03d}", status="ok", computed_at=now)
        for region in ("Bilbao", "Malaga")
        for i in range(120)
    )
    first = viewer_client.get("/matrix/", {"q": "zz-"}).content.decode()
    names = [row[0] for row in table_rows(first)[1:]]
    assert names == [f"zz-{i:03d}" for i in range(MATRIX_PAGE_SIZE)]
    assert 'href="?q=zz-&amp;after=zz-049"' in first and "Previous" not in first
    with django_assert_max_num_queries(10):
        second = viewer_client.get("/matrix/", {"q": "zz-", "after": "zz-049"}).content.decode()
    assert [row[0] for row in table_rows(second)[1:]] == [f"zz-{i:03d}" for i in range(50, 100)]
    assert 'href="?q=zz-&amp;before=zz-050"' in second and 'href="?q=zz-&amp;after=zz-099"' in second
    last = viewer_client.get("/matrix/", {"q": "zz-", "after": "zz-099"}).content.decode()
    assert [row[0] for row in table_rows(last)[1:]] == [f"zz-{i:03d}" for i in range(100, 120)]
    assert "Next" not in last
    back = viewer_client.get("/matrix/", {"q": "zz-", "before": "zz-050"}).content.decode()
    assert [row[0] for row in table_rows(back)[1:]] == names
    assert 'href="?q=zz-"' not in back and "Previous" not in back  # the first page again
    everything = viewer_client.get("/matrix/").content.decode()  # the demo's names come first, then these
    assert [row[0] for row in table_rows(everything)[1:]] == sorted(row[0] for row in table_rows(everything)[1:])


def test_it_explains_a_rotation_on_the_region_page(viewer_client, cloud):
    _, html = get(viewer_client, "/regions/Zaragoza/")
    rows = {row[0]: row for row in table_rows(html) if row}
    old = rows["debian-12-genericcloud-amd64 (20261101)"]
    assert old[1] == "pending_metadata"
    assert old[3] == "public hidden copy debian-12-genericcloud-amd64 : public"
    assert old[6].startswith(
        "rename the copy debian-12-genericcloud-amd64 → debian-12-genericcloud-amd64 (20261101), hide it"
    )
    assert "rotation: the master renamed this image" in old[6]
    new = rows["debian-12-genericcloud-amd64"]
    assert new[1] == "pending_upload" and new[5] == "not in the region"
    assert "rotation: the region's debian-12-genericcloud-amd64 is the old build, renamed" in html_unescape(new[6])


def test_it_shows_hidden_copies_and_missing_tags_on_the_region_page(viewer_client, cloud):
    _, html = get(viewer_client, "/regions/Sevilla/")
    centos = {row[0]: row for row in table_rows(html) if row}["centos-stream-9-x86_64"]
    assert centos[3] == "public copy: public hidden" and centos[6] == "show it (not hidden)"
    _, html = get(viewer_client, "/regions/Bilbao/")
    amphora = {row[0]: row for row in table_rows(html) if row}["octavia-amphora-haproxy-x64"]
    assert amphora[3] == "public amphora" and amphora[6] == "add the tag amphora"


def test_it_says_each_cells_planned_change_in_the_matrix(viewer_client, cloud):
    _, html = get(viewer_client, "/matrix/?region=Zaragoza&q=debian-12-genericcloud")
    assert (
        'title="pending_metadata · rename the copy debian-12-genericcloud-amd64 → debian-12-genericcloud-amd64 '
        '(20261101), hide it · public, hidden"'
    ) in html
    _, html = get(viewer_client, "/matrix/?region=Bilbao&q=octavia")
    assert 'title="pending_metadata · add the tag amphora · public; tags: amphora"' in html


def test_it_shares_the_regions_table_for_a_moment_while_a_run_is_live(client, viewer, operator, cloud, settings):
    """A hundred open overviews poll every 2 s during a run: they share one rendering of the table, while the part
    that depends on the viewer (the operator's Refresh now form and its CSRF token) stays theirs; the answer that
    ends the polling is always fresh."""
    from django.core.cache import cache
    from django.test import Client

    from sync.models import RegionRun, SyncRun

    settings.GLANCESYNC_PAGE_CACHE_SECONDS = 60
    cache.clear()
    refresh_status()
    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"], state="running")
    RegionRun.objects.create(run=run, region="Bilbao", state="running")
    client.force_login(viewer)
    first = client.get("/", HTTP_HX_REQUEST="true").content.decode()
    bilbao = RegionSnapshot.objects.get(region="Bilbao")
    assert f">{bilbao.status_counts['ok']}<" in first
    RegionSnapshot.objects.filter(pk=bilbao.pk).update(status_counts={"ok": 4242})  # a refresh ends meanwhile

    assert client.get("/", HTTP_HX_REQUEST="true").content.decode() == first  # the shared rendering
    operator_client = Client()
    operator_client.force_login(operator)
    theirs = operator_client.get("/", HTTP_HX_REQUEST="true").content.decode()
    assert "Refresh now" in theirs and "Refresh now" not in first
    assert "4242" not in theirs and f">{bilbao.status_counts['ok']}<" in theirs

    RegionRun.objects.filter(run=run).update(state="done")
    SyncRun.objects.filter(pk=run.pk).update(state="done")
    last = client.get("/", HTTP_HX_REQUEST="true")
    assert last.status_code == 286 and ">4242<" in last.content.decode()  # nothing live: rendered afresh


def test_it_pages_and_filters_the_images_of_a_big_region(viewer_client, cloud, settings, django_assert_max_num_queries):
    """20,000 images in a region: a page of them at a time, filtered by status and name, in the engine's order."""
    from django.utils import timezone

    from sync.models import ImageState

    refresh_status()
    now = timezone.now()
    ImageState.objects.filter(region="Bilbao").delete()
    ImageState.objects.bulk_create(
        ImageState(region="Bilbao", image_name=f"img-{i:03d}", status=("ok", "error_checksum")[i % 2], position=i,
                   computed_at=now)
        for i in range(250)
    )  # fmt: skip
    RegionSnapshot.recount(["Bilbao"])
    with django_assert_max_num_queries(10):
        html = viewer_client.get("/regions/Bilbao/").content.decode()
    names = [row[0] for row in table_rows(html) if row and row[0].startswith("img-")]
    assert names == [f"img-{i:03d}" for i in range(100)]  # the first page, in position order
    assert "250 synchronised master images" in text(html) and "Images 1–100 of 250." in text(html)
    assert 'href="?page=2"' in html

    html = viewer_client.get("/regions/Bilbao/", {"status": "error_checksum", "page": 2}).content.decode()
    names = [row[0] for row in table_rows(html) if row and row[0].startswith("img-")]
    assert names == [f"img-{i:03d}" for i in range(201, 250, 2)]  # the 101st to 125th odd ones
    assert "Images 101–125 of 125 matching." in text(html)
    assert 'href="?status=error_checksum&amp;page=1"' in html  # the pages keep the filter
    assert 'href="?status=error_checksum"' in html  # the status badges filter

    html = viewer_client.get("/regions/Bilbao/", {"q": "IMG-24"}).content.decode()
    assert [row[0] for row in table_rows(html) if row and row[0].startswith("img-")] == [
        f"img-24{i}" for i in range(10)
    ]
    assert "Show all" in html
    html = viewer_client.get("/regions/Bilbao/", {"q": "nothing-like-it"}).content.decode()
    assert "No image matches." in text(html)
