"""`manage.py prune_history [--days N]`: delete old history now, as the daily schedule does."""

from django.core.management.base import BaseCommand, CommandError

from sync.retention import prune_history


class Command(BaseCommand):
    help = (
        "Delete sync runs, status refreshes, refresh requests and alerts older than GLANCESYNC_HISTORY_DAYS "
        "(or --days), keeping each region's last successful sync, the last refresh and undelivered alerts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, help="keep this many days instead of GLANCESYNC_HISTORY_DAYS")

    def handle(self, *args, **options):
        days = options["days"]
        if days is not None and days < 1:
            raise CommandError("--days must be 1 or more (GLANCESYNC_HISTORY_DAYS=0 keeps everything)")
        self.stdout.write(prune_history(days))
