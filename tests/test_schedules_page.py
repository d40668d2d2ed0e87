"""The schedules page: every sync schedule with its next run and the result of its last firing."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Task

from sync.forms import SyncScheduleForm

pytestmark = pytest.mark.django_db


def make_schedule(name: str, cron: str, regions: str = ""):
    form = SyncScheduleForm({"name": name, "cron": cron, "regions": regions, "dry_run": "on"})
    assert form.is_valid(), form.errors
    return form.save()


def test_it_lists_schedules_with_next_run_and_last_result(viewer_client):
    nightly = make_schedule("nightly", "0 2 * * *", "Bilbao, partner:Lisbon")
    make_schedule("hourly", "5 * * * *")
    now = timezone.now()
    Task.objects.create(
        id="t1", name="t1", func="sync.tasks.scheduled_run", started=now - timedelta(seconds=3), stopped=now,
        success=True, result="started run #7 of 2 regions",
    )  # fmt: skip
    nightly.task = "t1"
    nightly.save()
    page = viewer_client.get(reverse("sync:schedules")).content.decode()
    assert "nightly" in page and "Bilbao, partner:Lisbon" in page and "0 2 * * *" in page
    assert "started run #7 of 2 regions" in page
    assert "hourly" in page and "not fired yet" in page and ">all<" in page
    assert "recover interrupted regions" not in page
    assert nightly.next_run.strftime("%Y-%m-%d %H:%M") in page


def test_it_needs_a_login(client):
    assert client.get(reverse("sync:schedules")).status_code == 302
