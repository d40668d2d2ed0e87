"""The conflicts page: checksum conflicts grouped per target and checksum, decisions and their undo."""

import re
from collections import Counter

import pytest
from django.core.management import call_command
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from sync.models import (
    ApiToken,
    AuditEntry,
    ChecksumDecision,
    ImageState,
    MasterSettings,
    RefreshRequest,
    RegionSnapshot,
)
from sync.tasks import refresh_status

pytestmark = pytest.mark.django_db
DEMO_CONF = "sync/demo/glancesync.conf"


@pytest.fixture
def configured(demo_cloud, settings, tmp_path):
    """The demo configuration in the database (decisions live there), and the snapshot computed."""
    call_command("import_glancesync_conf", DEMO_CONF, stdout=None)
    MasterSettings.objects.filter(pk=1).update(cloud=f"files:{demo_cloud}")
    refresh_status()


def conflict_checksums() -> list[tuple[str, str, str]]:
    return sorted(
        ImageState.objects.filter(status="error_checksum").values_list("region", "image_name", "region_checksum")
    )


def counts_agree_with_rows(region: str) -> bool:
    rows = ImageState.objects.filter(region=region).values_list("status", flat=True)
    return RegionSnapshot.objects.get(region=region).status_counts == dict(Counter(rows))


def decide(client, checksum, action, target="master", htmx=True):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    data = {"target": target, "checksum": checksum, "action": action}
    return client.post(reverse("sync:decide_conflict"), data, **headers)


def test_it_lists_the_conflicts_grouped_by_checksum(viewer_client, configured):
    conflicts = conflict_checksums()
    assert conflicts, "the demo has checksum conflicts"
    page = viewer_client.get(reverse("sync:conflicts")).content.decode()
    for _region, image, checksum in conflicts:
        assert image in page and checksum in page
    state = ImageState.objects.filter(status="error_checksum").first()
    assert f'<td class="text-end text-nowrap">{filesizeformat(state.region_size)}</td>' in page
    assert "Rename old &amp; replace" not in page  # viewers see no buttons


@pytest.mark.parametrize(
    ("action", "status"),
    [("dontupdate", "ok_stalled_checksum"), ("rename", "pending_rename"), ("replace", "pending_replace")],
)
def test_a_decision_moves_the_rows_and_undo_moves_them_back(operator_client, configured, action, status):
    region, image, checksum = conflict_checksums()[0]
    response = decide(operator_client, checksum, action)
    assert response.status_code == 200 and "Not recorded" not in response.content.decode()
    assert "<html" not in response.content.decode()  # the htmx partial, swapped in place
    assert ImageState.objects.get(region=region, image_name=image).status == status
    assert counts_agree_with_rows(region)  # what /metrics reports follows the decision
    decision = ChecksumDecision.objects.get(checksum=checksum)
    assert (decision.action, decision.created_by.username) == (action, "otto")
    assert "Undo this decision" in response.content.decode()
    decide(operator_client, checksum, "undo")
    assert ImageState.objects.get(region=region, image_name=image).status == "error_checksum"
    assert counts_agree_with_rows(region)
    assert not ChecksumDecision.objects.filter(checksum=checksum).exists()
    mine = AuditEntry.objects.filter(username="otto", model="checksumdecision").order_by("id")
    assert [e.action for e in mine] == ["create", "delete"]


def test_the_next_status_refresh_agrees_with_the_decision(operator_client, configured):
    region, image, checksum = conflict_checksums()[0]
    decide(operator_client, checksum, "rename")
    refresh_status()  # the engine, reading the decision from the database
    assert ImageState.objects.get(region=region, image_name=image).status == "pending_rename"


def test_a_decision_and_its_undo_queue_a_refresh_of_the_targets_regions(
    operator_client, configured, monkeypatch, django_capture_on_commit_callbacks
):
    enqueued = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: enqueued.append(args) or "t")
    _, _, checksum = conflict_checksums()[0]
    with django_capture_on_commit_callbacks(execute=True):
        decide(operator_client, checksum, "rename")
    refresh = RefreshRequest.objects.get()
    assert (refresh.regions, refresh.requested_by, enqueued) == (["master:"], "otto", [(["master:"],)])
    with django_capture_on_commit_callbacks(execute=True):
        decide(operator_client, checksum, "undo")  # the first one still waits: it will read the undo too
        decide(operator_client, "not a checksum!", "rename")  # refused: nothing changed
    assert RefreshRequest.objects.count() == 1 and len(enqueued) == 1


def test_it_refuses_bad_input_next_to_the_buttons(operator_client, configured):
    before = ChecksumDecision.objects.count()
    response = decide(operator_client, "not a checksum!", "rename")
    assert response.status_code == 200 and "Not recorded:" in response.content.decode()
    response = decide(operator_client, conflict_checksums()[0][2], "explode")
    assert "Not recorded: unknown action" in response.content.decode()
    assert decide(operator_client, "abc", "rename", target="nobody").status_code == 404
    assert ChecksumDecision.objects.count() == before


def test_it_works_without_javascript(operator_client, configured):
    checksum = conflict_checksums()[0][2]
    response = decide(operator_client, checksum, "replace", htmx=False)
    assert response.status_code == 302 and response["Location"] == reverse("sync:conflicts")
    assert ChecksumDecision.objects.get(checksum=checksum).action == "replace"


def test_viewers_cannot_decide(viewer_client, configured):
    checksum = conflict_checksums()[0][2]
    assert decide(viewer_client, checksum, "rename").status_code == 403
    assert not ChecksumDecision.objects.filter(checksum=checksum).exists()


def test_ami_errors_say_which_kernel_or_ramdisk_is_missing(viewer_client, configured):
    state = ImageState.objects.get(region="partner:Lisbon", image_name="debian-12-ami")
    assert state.status == "error_ami" and state.reason.startswith("not synchronised to this target: kernel_id ")
    page = viewer_client.get(reverse("sync:conflicts")).content.decode()
    assert "debian-12-ami in" in page and state.reason in page


def test_a_protected_region_copy_says_replace_is_refused(viewer_client, viewer, configured, monkeypatch):
    from sync.clouds.files import FileTargetSession
    from sync.snapshot import PROTECTED_COPY

    region, image, _ = conflict_checksums()[0]
    listing = FileTargetSession.list_images

    def protected(self, name):
        images = listing(self, name)
        for found in images:
            found.protected = found.name == image
        return images

    monkeypatch.setattr(FileTargetSession, "list_images", protected)
    refresh_status()
    assert ImageState.objects.get(region=region, image_name=image).reason == PROTECTED_COPY
    page = viewer_client.get(reverse("sync:conflicts")).content.decode()
    assert "the region&#x27;s copy is protected: Replace is refused" in page
    _, token = ApiToken.issue(viewer, "t")
    answer = viewer_client.get(f"/api/v1/regions/{region}", {"image": image}, HTTP_AUTHORIZATION=f"Bearer {token}")
    message = answer.json()["images"][0]["message"]
    assert message.endswith(f"({PROTECTED_COPY})")


def test_it_pages_the_checksums_after_the_last_one_shown(operator_client, configured):
    """A fleet has 100,000s of conflict rows: pages of checksums after the last one shown, and a decision
    taken on a later page comes back to that page."""
    from django.utils import timezone

    from sync.views import CONFLICT_PAGE_SIZE

    now = timezone.now()
    ImageState.objects.bulk_create(
        ImageState(region="Bilbao", image_name=f"conflict-{i:02d}", status="error_checksum",
                   region_checksum=f"ffff{i:028d}", master_checksum="0" * 32, computed_at=now)
        for i in range(CONFLICT_PAGE_SIZE + 5)
    )  # fmt: skip
    first = operator_client.get(reverse("sync:conflicts")).content.decode()
    shown = set(re.findall(r"region checksum <code>(\w+)</code>", first))
    assert len(shown) == CONFLICT_PAGE_SIZE and "First checksums" not in first
    last_shown = max(shown)
    assert f'href="?after={last_shown}"' in first
    second = operator_client.get(reverse("sync:conflicts"), {"after": last_shown}).content.decode()
    later = set(re.findall(r"region checksum <code>(\w+)</code>", second))
    assert later and min(later) > last_shown and not later & shown
    assert "Next checksums" not in second and "First checksums" in second
    assert {f"ffff{i:028d}" for i in range(CONFLICT_PAGE_SIZE + 5)} <= shown | later

    checksum = max(later)
    response = operator_client.post(
        reverse("sync:decide_conflict"),
        {"target": "master", "checksum": checksum, "action": "dontupdate", "after": last_shown},
        HTTP_HX_REQUEST="true",
    )
    again = response.content.decode()
    assert "Decided: <strong>don&#x27;t update" in again
    assert set(re.findall(r"region checksum <code>(\w+)</code>", again)) == later  # the same page


def test_a_checksum_in_many_images_shows_its_first_rows_and_syncs_all_its_regions(operator_client, configured):
    from django.utils import timezone

    from sync.views import CONFLICT_ROWS_SHOWN

    now = timezone.now()
    regions = list(RegionSnapshot.objects.filter(target="master").values_list("region", flat=True))[:3]
    ImageState.objects.bulk_create(
        ImageState(region=region, image_name=f"old-build-{i}", status="error_checksum", region_checksum="e" * 32,
                   master_checksum="0" * 32, computed_at=now)
        for region in regions
        for i in range(3)
    )  # fmt: skip
    html = operator_client.get(reverse("sync:conflicts")).content.decode()
    section = html.split(f"region checksum <code>{'e' * 32}</code>")[1].split("</section>")[0]
    assert section.count("old-build-") == CONFLICT_ROWS_SHOWN
    more = 3 * len(regions) - CONFLICT_ROWS_SHOWN
    assert f"… and {more} more images with this checksum, in {len(regions)} regions in all" in text_of(section)
    decide(operator_client, "e" * 32, "replace")
    html = operator_client.get(reverse("sync:conflicts")).content.decode()
    section = html.split(f"region checksum <code>{'e' * 32}</code>")[1].split("</section>")[0]
    assert set(re.findall(r'name="region" value="([^"]+)"', section)) == set(regions)  # Sync now: all of them


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()
