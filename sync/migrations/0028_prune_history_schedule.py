"""The daily history prune (sync/retention.py): a console left unattended keeps its database from growing."""

from django.db import migrations

NAME = "glancesync: prune history"


def create_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.get_or_create(
        name=NAME,
        defaults={"func": "sync.retention.prune_history", "schedule_type": "D", "repeats": -1},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("sync", "0027_refreshlock")]
    operations = [migrations.RunPython(create_schedule, delete_schedule)]
