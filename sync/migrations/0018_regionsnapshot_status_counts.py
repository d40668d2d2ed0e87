"""RegionSnapshot.status_counts: {status: images} stored at refresh time, so /metrics reads one row per region
instead of counting every ImageState row on each scrape. Existing snapshots get the counts of their rows."""

from django.db import migrations, models
from django.db.models import Count


def fill_status_counts(apps, schema_editor):
    ImageState = apps.get_model("sync", "ImageState")
    RegionSnapshot = apps.get_model("sync", "RegionSnapshot")
    counts: dict[str, dict[str, int]] = {}
    rows = ImageState.objects.values_list("region", "status").annotate(n=Count("id")).order_by("region", "status")
    for region, status, n in rows:
        counts.setdefault(region, {})[status] = n
    for region, by_status in counts.items():
        RegionSnapshot.objects.filter(region=region).update(status_counts=by_status)


class Migration(migrations.Migration):
    dependencies = [("sync", "0017_refresh_requests")]

    operations = [
        migrations.AddField(
            model_name="regionsnapshot",
            name="status_counts",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="{status: images} of the region's ImageState rows, kept with them so /metrics never "
                "counts millions of rows per scrape.",
            ),
        ),
        migrations.RunPython(fill_status_counts, migrations.RunPython.noop),
    ]
