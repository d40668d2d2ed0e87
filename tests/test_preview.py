"""The dry-run preview: what a sync would do per region, read from the snapshot; nothing is changed."""

import re
from html import unescape

import pytest
from django.urls import reverse

from sync.models import ImageState, RegionSnapshot, SyncRun
from sync.tasks import refresh_status

pytestmark = pytest.mark.django_db
UPLOADS = ["pending_upload", "pending_replace", "pending_rename"]


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


@pytest.fixture
def snapshot(demo_cloud):
    refresh_status()
    return demo_cloud


def test_it_shows_uploads_metadata_before_after_and_warnings(viewer_client, snapshot):
    before = {p.name: p.read_bytes() for p in snapshot.iterdir()}
    page = text(viewer_client.get(reverse("sync:preview"), {"region": "partner:Lisbon"}).content.decode())
    assert "Uploads: 6, 5.4 GB" in page
    assert "fedora-40-cloud-base (379.1 MB)" in page
    assert "rocky-9-x86_64: update 1 property Field Before After os_version 9.3 9.4" in page
    assert "debian-12-ami: error_ami" in page
    assert "Bilbao" not in page  # only the region asked for
    assert "Run it" not in page  # viewers see no buttons
    assert {p.name: p.read_bytes() for p in snapshot.iterdir()} == before
    assert not SyncRun.objects.exists()


def test_it_totals_every_region_and_offers_to_run_the_ones_with_work(operator_client, snapshot):
    html = operator_client.get(reverse("sync:preview")).content.decode()
    uploads = ImageState.objects.filter(status__in=["pending_upload", "pending_replace", "pending_rename"])
    assert f"In total {uploads.count()} uploads" in text(html)
    with_work = set(
        ImageState.objects.exclude(status__in=["ok", "ok_stalled_checksum", "error_checksum", "error_ami"]).values_list(
            "region", flat=True
        )
    )
    assert set(re.findall(r'name="region" value="([^"]+)"', html)) == with_work
    assert "Run it (" in html


def test_a_rename_shows_what_happens_to_the_old_copy(viewer_client, snapshot):
    page = text(viewer_client.get(reverse("sync:preview"), {"region": "Bilbao"}).content.decode())
    assert (
        "debian-11-genericcloud-amd64 (264.6 MB), then rename the old copy to "
        "debian-11-genericcloud-amd64.old (private)" in page
    )
    assert "then delete the old copy" in page


def test_it_says_when_a_region_could_not_be_read(viewer_client, snapshot):
    RegionSnapshot.objects.filter(region="Malaga").update(error="Glance answered 503")
    page = text(viewer_client.get(reverse("sync:preview"), {"region": "Malaga"}).content.decode())
    assert "Unreadable at the last refresh: Glance answered 503" in page


def test_the_region_page_shows_the_planned_action_and_links_the_preview(operator_client, snapshot):
    html = operator_client.get(reverse("sync:region_detail", args=["Bilbao"])).content.decode()
    assert "upload, then rename the old copy to &lt;name&gt;.old" in html
    assert 'href="/preview/?region=Bilbao"' in html


def test_a_big_region_lists_the_first_50_of_each_kind_and_counts_them_all(viewer_client, snapshot):
    from django.utils import timezone

    now = timezone.now()
    ImageState.objects.filter(region="Bilbao").delete()
    ImageState.objects.bulk_create(
        ImageState(region="Bilbao", image_name=f"img-{i:03d}", status=status, size=1000, position=i, computed_at=now)
        for i, status in enumerate(["pending_upload"] * 70 + ["pending_metadata"] * 55 + ["error_checksum"] * 52)
    )
    RegionSnapshot.recount(["Bilbao"])  # as every change of rows does
    page = text(viewer_client.get(reverse("sync:preview"), {"region": "Bilbao"}).content.decode())
    assert "Uploads: 70, 68.4 KB (1–50 below)" in page  # 70 x 1000 bytes
    assert "img-049 (1000 bytes)" in page and "img-050 (1000 bytes)" not in page  # in position order
    assert "Metadata updates: 55 (1–50 below)" in page
    assert "52 images in error; 1–50 below:" in page
    assert page.count("Page 1 of 2") == 3  # a pager per kind


def test_it_pages_each_kind_of_a_region_on_its_own(viewer_client, snapshot):
    from django.utils import timezone

    now = timezone.now()
    ImageState.objects.filter(region="Bilbao").delete()
    ImageState.objects.bulk_create(
        ImageState(region="Bilbao", image_name=f"img-{i:03d}", status=status, size=1000, position=i, computed_at=now)
        for i, status in enumerate(["pending_upload"] * 70 + ["pending_metadata"] * 55)
    )
    RegionSnapshot.recount(["Bilbao"])
    url = reverse("sync:preview_region", args=["Bilbao"])
    html = viewer_client.get(url, {"upload_page": 2}, HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in html
    page = text(html)
    assert "img-050 (1000 bytes)" in page and "img-069 (1000 bytes)" in page and "img-049 (1000" not in page
    assert "Uploads: 70, 68.4 KB (51–70 below)" in page
    assert "Metadata updates: 55 (1–50 below)" in page  # the other kinds stay on their page
    # the links keep the other kinds' pages, and work without JavaScript (the full preview of the region)
    assert 'href="?region=Bilbao&amp;upload_page=2&amp;metadata_page=2"' in html
    assert f'hx-get="{url}?region=Bilbao&amp;upload_page=2&amp;metadata_page=2"' in html
    full = text(viewer_client.get(reverse("sync:preview"), {"region": "Bilbao", "upload_page": 2}).content.decode())
    assert "img-050 (1000 bytes)" in full and "img-049 (1000" not in full


def test_the_whole_fleet_preview_shows_numbers_and_loads_each_region_on_demand(viewer_client, snapshot):
    html = viewer_client.get(reverse("sync:preview")).content.decode()
    bilbao = RegionSnapshot.objects.get(region="Bilbao")
    uploads = ImageState.objects.filter(region="Bilbao", status__in=UPLOADS).count()
    assert f"Uploads: {uploads}," in text(html)
    assert "debian-11-genericcloud-amd64" not in html  # no image is listed: a fleet has 100,000s
    assert f'hx-get="{reverse("sync:preview_region", args=["Bilbao"])}"' in html
    assert f'hx-target="#plan-details-{bilbao.pk}"' in html
    assert 'href="?region=Bilbao"' in html  # the same without JavaScript


def test_a_protected_replace_is_listed_as_a_problem_not_an_upload(viewer_client, snapshot):
    from sync.snapshot import PROTECTED_COPY

    replaced = ImageState.objects.filter(region="Bilbao", status="pending_replace").first()
    uploads_before = ImageState.objects.filter(region="Bilbao", status__in=UPLOADS).count()
    ImageState.objects.filter(pk=replaced.pk).update(reason=PROTECTED_COPY)
    RegionSnapshot.recount(["Bilbao"])
    page = text(viewer_client.get(reverse("sync:preview"), {"region": "Bilbao"}).content.decode())
    assert f"Uploads: {uploads_before - 1}," in page  # the sync skips it
    assert f"{replaced.image_name}: pending_replace (the region&#x27;s copy is protected: Replace is refused" in page


def test_it_says_a_rotation_renames_the_copy_then_uploads_the_new_build(viewer_client, snapshot):
    page = unescape(text(viewer_client.get(reverse("sync:preview"), {"region": "Zaragoza"}).content.decode()))
    assert (
        "debian-12-genericcloud-amd64 (20261101): rename the copy debian-12-genericcloud-amd64 → "
        "debian-12-genericcloud-amd64 (20261101), hide it (rotation: the master renamed this image;"
    ) in page
    assert (
        "debian-12-genericcloud-amd64 (320.2 MB) (rotation: the region's debian-12-genericcloud-amd64 is the old "
        "build, renamed debian-12-genericcloud-amd64 (20261101) first)"
    ) in page
    assert (
        "Field Before After name debian-12-genericcloud-amd64 debian-12-genericcloud-amd64 (20261101) hidden no yes"
        in page
    )


@pytest.mark.parametrize(
    ("transfer", "says"),
    [
        ("glance-download", "Copied by the region's Glance from the master region (glance-download)"),
        ("stream", "Streamed through GlanceSync."),
        ("none", "Not possible: the target allows only glance-download, which this region does not offer."),
    ],
)
def test_it_says_how_the_uploads_of_each_region_go(viewer_client, snapshot, transfer, says):
    assert RegionSnapshot.objects.get(region="partner:Lisbon").transfer == "stream"  # the file cloud streams
    RegionSnapshot.objects.filter(region="partner:Lisbon").update(transfer=transfer)
    page = text(viewer_client.get(reverse("sync:preview"), {"region": "partner:Lisbon"}).content.decode())
    assert "Uploads: 6, 5.4 GB " + says in page
    summary = text(viewer_client.get(reverse("sync:preview")).content.decode())  # every region, one line each
    assert "Uploads: 6, 5.4 GB. " + says in summary


def test_a_regions_details_take_a_constant_number_of_queries(viewer_client, snapshot, django_assert_max_num_queries):
    """Tag changes are worded from the rows' tags: they are read with the page, not one query per row."""
    from django.utils import timezone

    now = timezone.now()
    ImageState.objects.filter(region="Bilbao").delete()
    ImageState.objects.bulk_create(
        ImageState(region="Bilbao", image_name=f"img-{i:03d}", status="pending_metadata", tags=["gold"],
                   changes=[["tags", None, "gold"]], position=i, computed_at=now)
        for i in range(30)
    )  # fmt: skip
    RegionSnapshot.recount(["Bilbao"])
    with django_assert_max_num_queries(9):
        html = viewer_client.get(reverse("sync:preview_region", args=["Bilbao"])).content.decode()
    assert text(html).count("add the tag gold") == 30
