"""The admin form for sync schedules: django-q2 Schedule rows that start runs on a cron expression."""

import pytest
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from sync.models import AuditEntry, SyncSchedule

pytestmark = pytest.mark.django_db
ADD = reverse("admin:sync_syncschedule_add")


def test_it_creates_a_cron_schedule_that_starts_a_run(admin_client):
    data = {"name": "nightly", "cron": "0 2 * * *", "regions": "Bilbao, partner:Lisbon", "dry_run": "on"}
    response = admin_client.post(ADD, data)
    assert response.status_code == 302, response.content.decode()[:2000]
    schedule = Schedule.objects.get(name="nightly")
    assert (schedule.func, schedule.schedule_type, schedule.cron) == ("sync.tasks.scheduled_run", "C", "0 2 * * *")
    assert SyncSchedule.objects.get().options() == {
        "regions": ["Bilbao", "partner:Lisbon"], "dry_run": True, "schedule": "nightly",
    }  # fmt: skip
    assert schedule.next_run > timezone.now() and (schedule.next_run.hour, schedule.next_run.minute) == (2, 0)
    assert AuditEntry.objects.get().action == "create"


def test_it_lists_schedules_with_their_next_run_and_not_the_internal_ones(admin_client):
    admin_client.post(ADD, {"name": "hourly", "cron": "5 * * * *", "regions": ""})
    page = admin_client.get(reverse("admin:sync_syncschedule_changelist")).content.decode()
    assert "hourly" in page and "5 * * * *" in page and "all" in page
    assert "recover interrupted regions" not in page  # the built-in sweep is not a sync schedule
    edit = admin_client.get(reverse("admin:sync_syncschedule_change", args=[SyncSchedule.objects.get().pk]))
    assert 'name="cron" value="5 * * * *"' in edit.content.decode()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("cron", "every night", "is not a cron expression"),
        ("cron", "0 25 * * *", "is not a cron expression"),
        ("regions", "Bilbao, bad region'", "not a region name: bad region&#x27;"),
        ("name", "", "This field is required"),
    ],
)
def test_it_refuses_bad_input_and_saves_nothing(admin_client, field, value, message):
    data = {"name": "nightly", "cron": "0 2 * * *", "regions": "Bilbao"} | {field: value}
    response = admin_client.post(ADD, data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not SyncSchedule.objects.exists()
