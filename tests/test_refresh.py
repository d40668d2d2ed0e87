"""The "Refresh now" button (`/refresh/`): operators queue a status refresh of every region or of one; the
overview and the region page say "Refreshing…" from the RefreshRequest rows and poll until its task has ended."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf

from sync.models import AuditEntry, RefreshRequest, StatusRefresh
from sync.tasks import refresh_status
from tests.test_overview import table_rows, text

pytestmark = pytest.mark.django_db

URL = reverse("sync:refresh_now")
CIRROS = "cirros-0.6.2-x86_64"  # an ok copy in Bilbao: without it, Bilbao has one ok image less


@pytest.fixture
def snapshot(demo_cloud):
    refresh_status()
    return demo_cloud


@pytest.fixture
def enqueued(monkeypatch):
    """Record enqueued tasks instead of sending them to a broker."""
    calls = []

    def fake_async_task(func, *args, **kwargs):
        calls.append((func, args, kwargs.get("request_id")))
        return f"task-{len(calls)}"

    monkeypatch.setattr("django_q.tasks.async_task", fake_async_task)
    return calls


def click(client, region: str = "", **headers):
    return client.post(URL, {"region": region} if region else {}, **headers)


def drop_cirros_from_bilbao(cloud) -> None:
    path = cloud / "backup_Bilbao.csv"
    path.write_text("".join(line for line in path.open(newline="") if CIRROS not in line), newline="")


def ok_count(html: str, region: str) -> str:
    return {row[0]: row for row in table_rows(html) if row}[region][3]  # after the target and the share bar


def test_it_queues_one_refresh_of_every_region_for_an_operator(
    operator_client, snapshot, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = click(operator_client)
    refresh = RefreshRequest.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("sync:overview")
    assert enqueued == [("sync.tasks.refresh_status", (None,), refresh.pk)]
    assert (refresh.regions, refresh.requested_by, refresh.task_id) == ([], "otto", "task-1")
    entry = AuditEntry.objects.get()
    assert (entry.username, entry.model, entry.action) == ("otto", "refreshrequest", "create")
    page = text(operator_client.get(response["Location"]).content.decode())
    assert "A status refresh of every region was queued." in page
    assert "Refreshing every region… asked by otto at" in page and "waiting for a task worker" in page


def test_it_refreshes_one_region_from_its_page(operator_client, snapshot, enqueued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = click(operator_client, "partner:Lisbon")
    assert response["Location"] == reverse("sync:region_detail", args=["partner:Lisbon"])
    assert enqueued == [("sync.tasks.refresh_status", (["partner:Lisbon"],), RefreshRequest.objects.get().pk)]
    assert "Refreshing partner:Lisbon…" in text(operator_client.get(response["Location"]).content.decode())
    assert "Refreshing partner:Lisbon…" in text(operator_client.get("/").content.decode())  # its row changes too
    assert "Refreshing" not in text(operator_client.get("/regions/Bilbao/").content.decode())


def test_a_second_click_while_one_waits_queues_nothing(
    operator_client, snapshot, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        click(operator_client)
        second = click(operator_client)
        click(operator_client, "Bilbao")  # every region's refresh covers it
    assert len(enqueued) == 1 and RefreshRequest.objects.count() == 1 and AuditEntry.objects.count() == 1
    assert "was already waiting for a task worker" in text(operator_client.get(second["Location"]).content.decode())

    RefreshRequest.objects.update(started_at=timezone.now())  # it may have read a region before the next click
    with django_capture_on_commit_callbacks(execute=True):
        click(operator_client)
    assert len(enqueued) == 2 and RefreshRequest.objects.count() == 2


def test_a_refresh_of_one_region_does_not_cover_every_region(operator_client, snapshot, enqueued):
    click(operator_client, "Bilbao")
    click(operator_client, "Bilbao")
    click(operator_client)
    assert sorted(str(r.regions) for r in RefreshRequest.objects.all()) == ["['Bilbao']", "[]"]


def test_viewers_see_the_refresh_but_cannot_ask_for_one(viewer_client, operator, snapshot, enqueued):
    assert click(viewer_client).status_code == 403
    assert click(viewer_client, "Bilbao").status_code == 403
    assert not RefreshRequest.objects.exists() and enqueued == []
    assert "Refresh now" not in viewer_client.get("/").content.decode()
    assert "Refresh now" not in viewer_client.get("/regions/Bilbao/").content.decode()
    RefreshRequest.queue([], "otto")
    assert "Refreshing every region… asked by otto" in text(viewer_client.get("/").content.decode())
    assert "Refreshing every region…" in text(viewer_client.get("/regions/Bilbao/").content.decode())


def test_it_asks_anonymous_users_to_log_in(client, snapshot, enqueued):
    response = click(client)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")
    assert client.get(URL).status_code == 302  # login first, then the method
    assert not RefreshRequest.objects.exists()


def test_it_needs_post_and_a_known_region(operator_client, snapshot, enqueued):
    assert operator_client.get(URL).status_code == 405
    assert click(operator_client, "Atlantis").status_code == 404
    assert not RefreshRequest.objects.exists()


def test_the_overview_polls_until_the_refresh_has_ended(
    operator_client, snapshot, enqueued, django_capture_on_commit_callbacks
):
    assert operator_client.get("/", HTTP_HX_REQUEST="true").status_code == 286  # nothing to watch
    drop_cirros_from_bilbao(snapshot)
    with django_capture_on_commit_callbacks(execute=True):
        response = click(operator_client, HTTP_HX_REQUEST="true")
    partial = response.content.decode()
    assert response.status_code == 200 and "<html" not in partial
    assert '<div id="overview-table" hx-get="/" hx-trigger="every 2s" hx-swap="outerHTML">' in partial
    assert "Refreshing every region…" in text(partial) and ok_count(partial, "Bilbao") == "9"
    assert operator_client.get("/", HTTP_HX_REQUEST="true").status_code == 200  # still waiting: keep polling

    func, args, request_id = enqueued[0]
    assert refresh_status(*args, request_id=request_id).startswith("statuses of 8 of 8 regions refreshed")
    done = operator_client.get("/", HTTP_HX_REQUEST="true")
    assert done.status_code == 286 and "Refreshing" not in done.content.decode()
    assert ok_count(done.content.decode(), "Bilbao") == "8"
    assert 'hx-trigger="every 2s"' not in done.content.decode()


def test_the_region_page_polls_until_its_refresh_has_ended(
    operator_client, snapshot, enqueued, django_capture_on_commit_callbacks
):
    drop_cirros_from_bilbao(snapshot)
    with django_capture_on_commit_callbacks(execute=True):
        response = click(operator_client, "Bilbao", HTTP_HX_REQUEST="true")
    partial = response.content.decode()
    assert response.status_code == 200 and '<div id="region-status" hx-get="/regions/Bilbao/"' in partial
    assert "Refreshing Bilbao…" in text(partial) and "ok: 9" in text(partial)
    assert "Runs of this region" not in partial  # only the polled part
    assert 'aria-label="Filter the images"' not in partial  # what is being typed in the filter stays
    page = operator_client.get("/regions/Bilbao/", {"q": "cir"}).content.decode()
    assert page.count('aria-label="Filter the images"') == 1 and 'value="cir"' in page
    assert operator_client.get("/regions/Bilbao/", HTTP_HX_REQUEST="true").status_code == 200

    refresh_status(["Bilbao"], request_id=enqueued[0][2])
    done = operator_client.get("/regions/Bilbao/", HTTP_HX_REQUEST="true")
    assert done.status_code == 286 and "Refreshing" not in done.content.decode()
    assert "ok: 8" in text(done.content.decode())
    rows = {row[0]: row for row in table_rows(done.content.decode()) if row}
    assert rows[CIRROS][1] == "pending_upload"


def test_a_refresh_run_at_once_shows_the_new_counts_after_the_redirect(
    operator_client, snapshot, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2's sync mode: the task runs in this process
    drop_cirros_from_bilbao(snapshot)
    with django_capture_on_commit_callbacks(execute=True):
        response = click(operator_client)
    page = operator_client.get(response["Location"]).content.decode()
    assert ok_count(page, "Bilbao") == "8" and "Refreshing" not in text(page)
    refresh = RefreshRequest.objects.get()
    assert refresh.started_at and refresh.finished_at and refresh.result.startswith("statuses of 8 of 8 regions")


def test_a_lost_refresh_stops_saying_refreshing_and_is_replaced(operator_client, snapshot, enqueued, settings):
    click(operator_client)
    late = timezone.now() - timedelta(seconds=settings.GLANCESYNC_REFRESH_TIMEOUT_SECONDS + 1)
    RefreshRequest.objects.update(requested_at=late)  # its task was lost with the broker
    assert "Refreshing" not in text(operator_client.get("/").content.decode())
    assert operator_client.get("/", HTTP_HX_REQUEST="true").status_code == 286
    click(operator_client)
    lost, new = RefreshRequest.objects.order_by("id")
    assert lost.finished_at and lost.result == "given up: its task never started"
    assert new.finished_at is None and "Refreshing every region…" in text(operator_client.get("/").content.decode())
    assert refresh_status(None, request_id=lost.pk).endswith("was not waiting any more: nothing done")


def test_the_task_ends_its_request_even_when_nothing_could_be_read(snapshot, settings, enqueued):
    refresh, _ = RefreshRequest.queue([], "otto")
    settings.GLANCESYNC_CLOUD = f"files:{snapshot}-gone"
    assert refresh_status(None, request_id=refresh.pk).startswith("statuses not refreshed")
    refresh.refresh_from_db()
    assert refresh.finished_at and refresh.result.startswith("statuses not refreshed")
    assert refresh_status(None, request_id=refresh.pk).endswith("nothing done")  # delivered twice


def test_the_task_refreshes_the_regions_of_a_target(snapshot, enqueued):
    refresh, _ = RefreshRequest.queue(["partner:"], "admin")
    before = StatusRefresh.objects.count()
    assert refresh_status(["partner:"], request_id=refresh.pk) == "statuses of 2 of 2 regions refreshed"
    assert StatusRefresh.objects.count() == before + 1
    assert refresh.covers("partner:Lisbon") and not refresh.covers("Bilbao")
    assert refresh_status(["nobody:"]).startswith("statuses not refreshed: unknown target 'nobody'")


def test_the_command_queues_a_refresh_the_pages_show(
    snapshot, enqueued, capsys, viewer_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call_command("refresh_status", "Bilbao", "--queue")
        call_command("refresh_status", "Bilbao", "--queue")
    out = capsys.readouterr().out
    assert f"Status refresh of Bilbao queued (request {RefreshRequest.objects.get().pk})." in out
    assert "A status refresh of Bilbao was already waiting for a task worker." in out
    assert len(enqueued) == 1
    page = text(viewer_client.get("/regions/Bilbao/").content.decode())
    assert "Refreshing Bilbao… asked by manage.py refresh_status" in page
