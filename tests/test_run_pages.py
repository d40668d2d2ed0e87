"""The run pages: start (operators), list with filters, detail with its htmx partial, cancel."""

import pytest
from django.urls import reverse

from sync.models import AuditEntry, RegionRun, SyncRun
from sync.tasks import refresh_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def snapshot(demo_cloud):
    refresh_status()


@pytest.fixture
def enqueued(monkeypatch):
    calls = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda func, *args, **kwargs: calls.append(args) or "task")
    return calls


def post_start(client, **data):
    return client.post(reverse("sync:start_run"), {"region": ["Bilbao"], **data})


def test_it_starts_a_dry_run_for_an_operator(operator_client, snapshot, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = post_start(operator_client, dry_run="1")
    run = SyncRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("sync:run_detail", args=[run.pk])
    assert (run.trigger, run.started_by, run.dry_run, run.regions) == ("console", "otto", True, ["Bilbao"])
    assert enqueued == [(run.region_runs.get().pk,)]
    assert AuditEntry.objects.get().username == "otto"


def test_it_refuses_a_busy_region_next_to_the_button(operator_client, snapshot, enqueued):
    post_start(operator_client)
    response = post_start(operator_client, next="/regions/Bilbao/")
    assert response["Location"] == "/regions/Bilbao/"
    page = operator_client.get("/regions/Bilbao/").content.decode()
    assert "region Bilbao is busy with run #" in page
    assert SyncRun.objects.count() == 1


def test_it_ignores_unknown_regions(operator_client, snapshot, enqueued):
    response = post_start(operator_client, region=["Atlantis"])
    assert response.status_code == 302 and not SyncRun.objects.exists()


def test_viewers_cannot_start_or_cancel(viewer_client, snapshot, enqueued):
    assert post_start(viewer_client).status_code == 403
    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"])
    assert viewer_client.post(reverse("sync:cancel_run", args=[run.pk])).status_code == 403
    assert not SyncRun.objects.filter(cancel_requested=True).exists()


def test_mutations_need_post_and_csrf(operator, snapshot, enqueued):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    assert client.get(reverse("sync:start_run")).status_code == 405
    assert post_start(client).status_code == 403  # no CSRF token
    assert not SyncRun.objects.exists()


def test_the_list_filters_by_state_and_trigger(viewer_client):
    SyncRun.objects.create(trigger="schedule", started_by="nightly", regions=["Bilbao"], state="done")
    SyncRun.objects.create(trigger="console", started_by="otto", regions=["Malaga"], state="failed")
    page = viewer_client.get(reverse("sync:run_list"), {"state": "failed"}).content.decode()
    assert "Malaga" in page and "nightly" not in page
    page = viewer_client.get(reverse("sync:run_list"), {"trigger": "schedule"}).content.decode()
    assert "nightly" in page and "Malaga" not in page


def test_the_detail_polls_while_running_and_stops_when_done(viewer_client):
    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"], state="running")
    RegionRun.objects.create(
        run=run, region="Bilbao", state="running", images_done=3, images_total=12, bytes_done=50, bytes_total=200,
        current_image="debian-12", log="\n".join(f"line {i}" for i in range(100)),
    )  # fmt: skip
    page = viewer_client.get(reverse("sync:run_detail", args=[run.pk])).content.decode()
    assert 'hx-trigger="every 1s"' in page
    assert 'aria-valuenow="25"' in page and "now: debian-12" in page
    assert "line 99" in page and "line 59" not in page  # the log's tail only
    partial = viewer_client.get(reverse("sync:run_detail", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert partial.status_code == 200 and "<html" not in partial.content.decode()
    SyncRun.objects.filter(pk=run.pk).update(state="done")
    assert viewer_client.get(reverse("sync:run_detail", args=[run.pk]), HTTP_HX_REQUEST="true").status_code == 286
    assert 'hx-trigger="every 1s"' not in viewer_client.get(reverse("sync:run_detail", args=[run.pk])).content.decode()


def test_an_operator_cancels_a_run(operator_client, enqueued):
    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"], state="queued")
    RegionRun.objects.create(run=run, region="Bilbao")
    response = operator_client.post(reverse("sync:cancel_run", args=[run.pk]), follow=True)
    assert "cancel requested" in response.content.decode()
    run.refresh_from_db()
    assert run.state == "cancelled" and run.cancel_requested
    assert AuditEntry.objects.get().changed_fields == ["cancel_requested"]


def test_the_pages_need_a_login(client):
    for name, args in (("run_list", []), ("run_detail", [1]), ("conflicts", [])):
        response = client.get(reverse(f"sync:{name}", args=args))
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_cancel_button_swaps_the_live_part_and_disappears_once_ended(operator_client, enqueued):
    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"], state="queued")
    RegionRun.objects.create(run=run, region="Bilbao")
    page = operator_client.get(reverse("sync:run_detail", args=[run.pk])).content.decode()
    assert "Cancel this run" in page and "hx-confirm" in page
    response = operator_client.post(reverse("sync:cancel_run", args=[run.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "<html" not in response.content.decode()
    assert "Cancel this run" not in response.content.decode()  # the run has ended: cancelled


def test_a_glance_download_copy_shows_its_stages_and_elapsed_time_instead_of_the_byte_bar(viewer_client):
    from datetime import timedelta

    from django.utils import timezone

    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"], state="running")
    region_run = RegionRun.objects.create(
        run=run, region="Bilbao", state="running", images_done=1, images_total=3, bytes_total=200,
        current_image="debian-12", current_transfer="glance-download", current_stage="importing",
        transfer_started_at=timezone.now() - timedelta(seconds=75),
    )  # fmt: skip
    page = viewer_client.get(reverse("sync:run_detail", args=[run.pk])).content.decode()
    assert "now: debian-12 (copied by the region's Glance: glance-download)" in page
    assert "glance-download of debian-12: 1 min 15 s" in page
    assert '<li class="list-inline-item">✓ record created</li>' in page
    assert 'aria-current="step">▸ importing</li>' in page
    assert '<li class="list-inline-item text-body-secondary">verifying</li>' in page
    assert 'aria-label="Data of Bilbao"' not in page  # no byte bar: GlanceSync does not see the bytes
    RegionRun.objects.filter(pk=region_run.pk).update(current_transfer="stream", current_stage="")
    page = viewer_client.get(reverse("sync:run_detail", args=[run.pk])).content.decode()
    assert "now: debian-12 (streamed through GlanceSync)" in page and 'aria-label="Data of Bilbao"' in page
    assert "record created" not in page


def test_it_shares_the_live_cards_for_a_moment_but_not_the_cancel_button(client, viewer, operator, settings):
    """Every open run page polls its cards every second: while the run is live they are rendered once for all
    viewers for a moment; the operator's cancel form (with their CSRF token) stays theirs, and the answer that
    ends the polling is fresh."""
    from django.core.cache import cache
    from django.test import Client

    settings.GLANCESYNC_PAGE_CACHE_SECONDS = 60
    cache.clear()
    run = SyncRun.objects.create(trigger="cli", regions=["Bilbao"], state="running")
    region_run = RegionRun.objects.create(run=run, region="Bilbao", state="running", images_done=1, images_total=4)
    url = reverse("sync:run_detail", args=[run.pk])
    client.force_login(viewer)
    first = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Images 1 / 4" in first and "Cancel this run" not in first
    RegionRun.objects.filter(pk=region_run.pk).update(images_done=2)
    assert client.get(url, HTTP_HX_REQUEST="true").content.decode() == first  # the shared rendering
    operator_client = Client()
    operator_client.force_login(operator)
    theirs = operator_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Cancel this run" in theirs and "Images 1 / 4" in theirs

    RegionRun.objects.filter(pk=region_run.pk).update(state="done", images_done=4)
    SyncRun.objects.filter(pk=run.pk).update(state="done")
    last = client.get(url, HTTP_HX_REQUEST="true")
    assert last.status_code == 286 and "Images 4 / 4" in last.content.decode()
