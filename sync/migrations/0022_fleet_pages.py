"""Pages that stay fast with 20,000 images x 100 regions (issue #17): RegionSnapshot.plan_totals, {kind: [images,
bytes]} of what a sync would do, stored at refresh time like status_counts (existing snapshots get their rows'
totals), and indexes for the region page's order and the matrix's and the conflicts' keyset pages (the index on
status alone becomes one on status and name)."""

from django.db import migrations, models
from django.db.models import BooleanField, Count, ExpressionWrapper, Q, Sum

from sync.models.snapshot import PROTECTED_COPY, plan_totals


def fill_plan_totals(apps, schema_editor):
    ImageState = apps.get_model("sync", "ImageState")
    RegionSnapshot = apps.get_model("sync", "RegionSnapshot")
    blocked = ExpressionWrapper(Q(status="pending_replace", reason=PROTECTED_COPY), BooleanField())
    groups: dict[str, list] = {}
    rows = ImageState.objects.annotate(blocked=blocked).values("region", "status", "blocked")
    for row in rows.annotate(n=Count("id"), size=Sum("size")).order_by():
        groups.setdefault(row["region"], []).append((row["status"], row["blocked"], row["n"], row["size"] or 0))
    for region, found in groups.items():
        RegionSnapshot.objects.filter(region=region).update(plan_totals=plan_totals(found))


class Migration(migrations.Migration):
    dependencies = [("sync", "0021_keystone_identity")]

    operations = [
        migrations.AddField(
            model_name="regionsnapshot",
            name="plan_totals",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="{kind: [images, bytes]} of what a sync would do (see PLAN_KINDS), kept with the rows so "
                "the preview of a whole fleet reads one row per region.",
            ),
        ),
        migrations.AddIndex(
            model_name="imagestate",
            index=models.Index(fields=["region", "position"], name="state_region_position"),
        ),
        migrations.RemoveIndex(model_name="imagestate", name="sync_images_status_114f14_idx"),
        migrations.AddIndex(model_name="imagestate", index=models.Index(fields=["image_name"], name="state_name")),
        migrations.AddIndex(
            model_name="imagestate",
            index=models.Index(fields=["status", "image_name"], name="state_status_name"),
        ),
        migrations.AddIndex(
            model_name="imagestate",
            index=models.Index(fields=["status", "region_checksum"], name="state_status_checksum"),
        ),
        migrations.RunPython(fill_plan_totals, migrations.RunPython.noop),
    ]
