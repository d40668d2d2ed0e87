"""Schedules of the cluster: the recovery sweep every minute (regions whose worker died become interrupted)
and a status refresh every 15 minutes (the dashboard's snapshot follows changes made outside GlanceSync)."""

from django.db import migrations

SCHEDULES = {
    "glancesync: recover interrupted regions": ("sync.tasks.recover_interrupted", 1),
    "glancesync: refresh statuses": ("sync.tasks.refresh_status", 15),
}


def create_schedules(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    for name, (func, minutes) in SCHEDULES.items():
        Schedule.objects.get_or_create(
            name=name, defaults={"func": func, "schedule_type": "I", "minutes": minutes, "repeats": -1}
        )


def delete_schedules(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name__in=SCHEDULES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("sync", "0002_runs_and_snapshot"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(create_schedules, delete_schedules)]
