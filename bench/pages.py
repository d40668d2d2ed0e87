"""Page benchmark: server time and SQL queries of the console's pages on a large generated snapshot.

Usage: .venv/bin/python bench/pages.py [--images 2000] [--regions 50] [--runs 7] [--pages /,/metrics] [--workdir DIR]
(with GLANCESYNC_DB_ENGINE=postgresql and its GLANCESYNC_DB_* variables, on PostgreSQL: an empty database)

A temporary SQLite database (the embedded default) gets --regions regions x --images images of ImageState rows
(statuses spread over all nine), a run history, and a logged-in viewer. Each page is requested --runs times
through Django's test client, in this process; the report gives the median server time and the number of SQL
queries. Goals: <= 10 queries and <= 300 ms median for the overview and the matrix (issue #6); <= 200 ms for
/metrics at --images 20000 --regions 100 (issue #14; `--pages /metrics` skips the pages that take seconds there).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "/", "/matrix/", "/matrix/?status=error_checksum", "/matrix/?after=image-15000", "/matrix/?target=target0",
    "/matrix/?q=image-1234", "/conflicts/", "/preview/", "/runs/", "/regions/target0:Region00/",
    "/regions/target0:Region00/?status=pending_upload&page=5", "/metrics",
]  # fmt: skip
GOALS = {"/": (300, 10), "/matrix/": (300, 10), "/metrics": (200, 10)}  # page: (median ms, queries)


def generate(images: int, regions: int) -> None:
    from django.utils import timezone

    from sync.engine.model import STATUSES
    from sync.models import ImageState, RegionRun, RegionSnapshot, StatusRefresh, SyncRun

    now = timezone.now()
    names = [f"target{r % 5}:Region{r:02d}" for r in range(regions)]
    others = [  # every region full of images it does not synchronise: the most the snapshot keeps
        {"name": f"foreign-{i:04d}", "status": "active", "public": True, "size": i, "why": "owned by another project"}
        for i in range(RegionSnapshot.OTHER_IMAGES_KEPT)
    ]

    def status(region_index: int, i: int) -> str:
        return STATUSES[(i * 7 + region_index) % len(STATUSES)]

    RegionSnapshot.objects.bulk_create(
        RegionSnapshot(
            region=n, target=n.split(":")[0], computed_at=now, other_images=others, other_images_total=900,
        )
        for r, n in enumerate(names)
    )  # fmt: skip
    StatusRefresh.objects.create(master_region="Master", regions=regions)
    for region_index, region in enumerate(names):
        ImageState.objects.bulk_create(
            (
                ImageState(
                    region=region,
                    image_name=f"image-{i:05d}",
                    status=status(region_index, i),
                    master_checksum=f"{i:032x}",
                    region_checksum=f"{i + region_index:032x}",
                    size=i * 1024,
                    position=i,
                    computed_at=now,
                )
                for i in range(images)
            ),
            batch_size=2000,
        )
    RegionSnapshot.recount(names)  # the counts and totals store_statuses keeps with the rows
    for minutes in range(200):  # timed, so the /metrics histograms have durations to count
        started, finished = now - timedelta(minutes=minutes + 1), now - timedelta(minutes=minutes, seconds=minutes)
        run = SyncRun.objects.create(
            trigger="schedule", regions=names[:3], state="done", started_at=started, finished_at=finished
        )
        RegionRun.objects.bulk_create(
            RegionRun(run=run, region=n, state="done", started_at=started, finished_at=finished, bytes_done=2**30)
            for n in names[:3]
        )


def measure(runs: int, pages: list[str]) -> list[tuple[str, float, int, int]]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from sync.models import ApiToken

    user, _ = get_user_model().objects.get_or_create(username="viewer")
    user.groups.add(Group.objects.get(name="viewer"))
    client = Client()
    client.force_login(user)
    # What a scraper sends (the pages ignore it): /metrics is measured with its token lookup.
    token = {"HTTP_AUTHORIZATION": f"Bearer {ApiToken.issue(user, 'bench')[1]}"}
    results = []
    for page in pages:
        times, queries, size = [], 0, 0
        client.get(page, **token)  # warm-up: templates compiled, caches filled
        for _ in range(runs):
            with CaptureQueriesContext(connection) as captured:
                start = time.perf_counter()
                response = client.get(page, **token)
                times.append(time.perf_counter() - start)
            assert response.status_code == 200, (page, response.status_code)
            queries, size = len(captured), len(response.content)
        results.append((page, statistics.median(times) * 1000, queries, size))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--regions", type=int, default=50)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated pages to measure (default: all)")
    parser.add_argument("--workdir", help="keep the generated database here and reuse it (default: a temporary one)")
    parser.add_argument(
        "--fleet", choices=("sqlite", "postgres"),
        help="measure bench/fleet.py's fleet instead: its snapshot made by the real import and refresh",
    )  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    start = time.perf_counter()
    if args.fleet:
        pages, described = _fleet_pages(args)
    else:
        pages, described = _generated_pages(args), "generated rows"
    from django.db import connection

    print(
        f"{args.images} images x {args.regions} regions ({described}, ready in {time.perf_counter() - start:.0f} s); "
        f"{connection.vendor}; {os.cpu_count()} CPUs; medians of {args.runs}"
    )
    for page, millis, queries, size in measure(args.runs, pages):
        verdict = ""
        if page in GOALS:
            most_millis, most_queries = GOALS[page]
            passed = millis <= most_millis and queries <= most_queries
            verdict = f" (goal <= {most_millis} ms, <= {most_queries} queries: {'PASS' if passed else 'FAIL'})"
        print(f"  {page:32s} {millis:7.1f} ms  {queries:3d} queries  {size // 1024:5d} KiB{verdict}")


def _plain_static_files() -> None:
    """Served by WhiteNoise from collected files in production; the test client renders with the plain storage."""
    from django.conf import settings

    plain = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    settings.STORAGES = {**settings.STORAGES, "staticfiles": plain}
    settings.ALLOWED_HOSTS = ["testserver"]


def _generated_pages(args) -> list[str]:
    work = args.workdir or tempfile.mkdtemp(prefix="glancesync-bench-pages-")
    Path(work).mkdir(parents=True, exist_ok=True)
    stamp = Path(work) / f"generated-{args.images}x{args.regions}"
    os.environ.update(
        GLANCESYNC_DATA_DIR=work, DJANGO_SETTINGS_MODULE="glancesync_site.settings", GLANCESYNC_LOG_LEVEL="WARNING",
    )  # fmt: skip
    import django

    django.setup()
    _plain_static_files()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if not stamp.exists():  # generation takes minutes at the fleet's size: a --workdir keeps it for the next run
        generate(args.images, args.regions)
        stamp.touch()
    return args.pages.split(",")


def _fleet_pages(args) -> tuple[list[str], str]:
    """bench/fleet.py's fleet (made once, cached in --workdir), and the pages to read in it: the same kinds as
    PAGES, with its own region and image names."""
    from bench import fleet, plan
    from sync.engine.model import STATUSES

    workdir = Path(args.workdir) if args.workdir else fleet.DEFAULT_WORKDIR
    fleet.ready_fleet(plan.Params(args.images, args.regions, 1), workdir, args.fleet)
    _plain_static_files()
    from sync.models import ImageState, RegionRun, RegionSnapshot, SyncRun

    if not SyncRun.objects.exists():  # a run history, as the generated rows have, for /runs/ and /metrics
        regions = list(RegionSnapshot.objects.values_list("region", flat=True)[:3])
        run = SyncRun.objects.create(trigger="schedule", regions=regions, state="done")
        RegionRun.objects.bulk_create(RegionRun(run=run, region=r, state="done") for r in regions)
    region = RegionSnapshot.objects.exclude(target="master").order_by("region").values_list("region", flat=True)[0]
    names = ImageState.objects.filter(region=region).order_by("image_name").values_list("image_name", flat=True)
    middle = names[len(names) // 2]
    busiest = max(STATUSES, key=lambda status: ImageState.objects.filter(region=region, status=status).count())
    pages = [
        "/", "/matrix/", "/matrix/?status=error_checksum", f"/matrix/?after={middle}", "/matrix/?target=other",
        f"/matrix/?q={middle[-6:]}", "/conflicts/", "/preview/", "/runs/", f"/regions/{region}/",
        f"/regions/{region}/?status={busiest}&page=2", "/metrics",
    ]  # fmt: skip
    return pages, "snapshot made by import_glancesync_conf and refresh_status"


if __name__ == "__main__":
    main()
