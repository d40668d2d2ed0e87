"""`manage.py refresh_status [REGION ...] [--queue]`: recompute the dashboard's status snapshot."""

from django.core.management.base import BaseCommand, CommandError

from sync.models import RefreshRequest
from sync.tasks import refresh_status


class Command(BaseCommand):
    help = "Recompute the status of every (region, image) pair and store it for the console (no sync)."

    def add_arguments(self, parser):
        parser.add_argument("regions", nargs="*", metavar="REGION", help="full region names (default: all)")
        parser.add_argument("--queue", action="store_true", help="enqueue the refresh for the cluster instead")

    def handle(self, *args, **options):
        regions = options["regions"] or None
        if options["queue"]:  # as the console's "Refresh now": the pages say "Refreshing…" until it ends
            refresh, created = RefreshRequest.queue(regions or [], requested_by="manage.py refresh_status")
            if created:
                self.stdout.write(f"Status refresh of {refresh.scope_label} queued (request {refresh.pk}).")
            else:
                self.stdout.write(f"A status refresh of {refresh.scope_label} was already waiting for a task worker.")
            return
        summary = refresh_status(regions)
        if summary.startswith(("statuses not refreshed", "skipped")) or "; " in summary:
            raise CommandError(summary)
        self.stdout.write(summary)
