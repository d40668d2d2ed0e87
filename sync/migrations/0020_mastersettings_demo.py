"""MasterSettings.demo: the configuration is the built-in demo's, which "Connect a cloud" replaces whole.

A database that imported the demo before this field existed is recognised by the demo's Keystone URL (a
reserved example host no real cloud uses) and marked as the demo."""

from django.db import migrations, models

DEMO_KEYSTONE = "http://keystone.demo.example:5000/v3"  # sync/demo/glancesync.conf, target master


def mark_the_demo(apps, schema_editor):
    MasterSettings = apps.get_model("sync", "MasterSettings")
    Target = apps.get_model("sync", "Target")
    if Target.objects.filter(name="master", auth_url=DEMO_KEYSTONE).exists():
        MasterSettings.objects.filter(pk=1, cloud__startswith="files:").update(demo=True)


class Migration(migrations.Migration):
    dependencies = [("sync", "0019_auditentry_logins")]

    operations = [
        migrations.AddField(
            model_name="mastersettings",
            name="demo",
            field=models.BooleanField(
                default=False,
                help_text="The configuration is the built-in demo's (imported by `scripts/run`). The overview says "
                "so, and Connect a cloud replaces it whole, after a confirmation.",
                verbose_name="demo configuration",
            ),
        ),
        migrations.RunPython(mark_the_demo, migrations.RunPython.noop),
    ]
