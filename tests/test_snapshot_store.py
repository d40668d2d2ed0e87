"""A refresh writes only the ImageState rows that changed (sync.snapshot.store_statuses), in one transaction per
region, with the order, the counts and the new-problem alerts as a full rewrite would give them; and it lists the
regions concurrently (sync.snapshot.listings)."""

import os
import threading
import time
from collections import Counter
from dataclasses import fields, replace
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench import fleet as bench_fleet
from bench import plan
from sync import snapshot, snapshot_indexes
from sync.clouds.files import FileTargetSession
from sync.connect import build_engine
from sync.engine.backup import backup_file_name, read_backup, write_backup
from sync.engine.glancesync import GlanceSync
from sync.engine.model import Image, TargetPolicy
from sync.engine.regions import parse_region
from sync.engine.reporter import RecordingReporter
from sync.models import ImageState, RegionSnapshot
from sync.tasks import refresh_status

pytestmark = pytest.mark.django_db
TABLE = ImageState._meta.db_table
COMPARED = [f.name for f in ImageState._meta.fields if f.name not in ("id", "computed_at", "position")]


def writes_to_the_snapshot(queries) -> list[str]:
    """The INSERT, COPY, UPDATE and DELETE statements on ImageState (an executemany, and a COPY of rows, are
    logged as "N times: SQL")."""
    statements = [q["sql"].split(" times: ", 1)[-1].lstrip() for q in queries]
    writes = ("INSERT", "COPY", "UPDATE", "DELETE")
    return [sql for sql in statements if TABLE in sql and sql.split()[0] in writes]


def rows_by_pair() -> dict[tuple[str, str], tuple]:
    return {(r.region, r.image_name): (r.pk, r.computed_at) for r in ImageState.objects.all()}


def contents(region: str | None = None) -> list[tuple]:
    """Every row's fields but its id, time and position value, in the order the pages read them."""
    rows = ImageState.objects.all() if region is None else ImageState.objects.filter(region=region)
    return list(rows.order_by("region", "position").values_list(*COMPARED))


def edit_region(cloud, key: str, edit) -> None:
    """Rewrite the region's backup file with `edit(images)` applied (the engine's own reader and writer)."""
    path = cloud / backup_file_name(key)
    images = read_backup(path, path.name)
    images = edit(images) or images
    with open(path, "w", newline="", encoding="utf-8") as stream:
        write_backup(images, stream)


def new_checksum(name: str):
    def edit(images):
        for image in images:
            if image.name == name:
                image.checksum = "f" * 32

    return edit


def test_it_writes_no_row_when_nothing_changed(demo_cloud):
    refresh_status()
    before = rows_by_pair()
    snapshot_times = dict(RegionSnapshot.objects.values_list("region", "computed_at"))
    with CaptureQueriesContext(connection) as queries:
        refresh_status()
    assert writes_to_the_snapshot(queries.captured_queries) == []
    assert rows_by_pair() == before  # same rows: same ids, same times
    for region, computed_at in RegionSnapshot.objects.values_list("region", "computed_at"):
        assert computed_at > snapshot_times[region]  # the regions were computed again, all the same


def test_it_writes_only_the_row_that_changed(demo_cloud):
    refresh_status()
    before = rows_by_pair()
    (name,) = ImageState.objects.filter(region="Valencia", status="ok").values_list("image_name", flat=True)[:1]
    edit_region(demo_cloud, "Valencia", new_checksum(name))
    with CaptureQueriesContext(connection) as queries:
        refresh_status()
    assert [sql.split()[0] for sql in writes_to_the_snapshot(queries.captured_queries)] == ["UPDATE"]
    after = rows_by_pair()
    changed = [pair for pair in after if after[pair] != before[pair]]
    assert changed == [("Valencia", name)]
    assert after[("Valencia", name)][0] == before[("Valencia", name)][0]  # updated in place: same id
    row = ImageState.objects.get(region="Valencia", image_name=name)
    assert (row.status, row.region_checksum) == ("error_checksum", "f" * 32)
    counts = Counter(ImageState.objects.filter(region="Valencia").values_list("status", flat=True))
    assert RegionSnapshot.objects.get(region="Valencia").status_counts == dict(counts)


def test_the_diffed_snapshot_is_the_snapshot_a_full_rewrite_gives(demo_cloud):
    refresh_status()
    edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
    edit_region(demo_cloud, "Sevilla", lambda images: images[1:])  # one image gone from the region
    edit_region(demo_cloud, "Madrid", lambda images: images[:-1])  # one master image gone
    refresh_status()
    diffed = contents()
    ImageState.objects.all().delete()
    RegionSnapshot.objects.all().delete()
    refresh_status()
    assert contents() == diffed


def fleet(tmp_path, settings, images=400, regions=4):
    """bench/plan.py's generated cloud with bench/fleet.py's configuration, as the console's file cloud."""
    folder = plan.generate(plan.Params(images, regions, 7), tmp_path / "clouds")
    cloud = tmp_path / "cloud"
    cloud.mkdir()
    for path in folder.glob("backup_*.csv"):
        (cloud / path.name).write_bytes(path.read_bytes())
    config = tmp_path / "glancesync.conf"
    config.write_text(bench_fleet.config_text())
    settings.GLANCESYNC_CLOUD = f"files:{cloud}"
    settings.GLANCESYNC_CONFIG_FILE = str(config)
    return cloud


def test_a_refresh_where_one_percent_changed_writes_about_one_percent(tmp_path, settings):
    cloud = fleet(tmp_path, settings)
    refresh_status()
    total, before = ImageState.objects.count(), rows_by_pair()
    changed_names = {}
    for key in plan.Params(400, 4, 7).region_keys():
        names = sorted(
            ImageState.objects.filter(region=key, region_image_id__gt="").values_list("image_name", flat=True)
        )
        changed_names[key] = names[:: len(names) // 4][:4]  # 4 of ~380 pairs: 1 %
        edit_region(cloud, key, lambda images, names=set(changed_names[key]): [
            image for image in images if image.name not in names or not setattr(image, "checksum", "e" * 32)
        ])  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        refresh_status()
    after = rows_by_pair()
    written = {pair for pair in after if after[pair] != before[pair]}
    assert written == {(key, name) for key, names in changed_names.items() for name in names}
    assert len(written) <= 0.012 * total
    assert len(writes_to_the_snapshot(queries.captured_queries)) == 4  # one executemany per region


def test_a_new_master_image_takes_its_place_in_the_order_and_moves_no_other_row(demo_cloud):
    refresh_status()
    before = rows_by_pair()
    order = list(ImageState.objects.filter(region="Valencia").order_by("position").values_list("image_name", "size"))
    # a master image sized between the first two of Valencia's: the engine orders by (size, name)
    (first, size_1), (_, size_2) = order[0], order[1]
    new_size = (size_1 + size_2) // 2 if size_2 > size_1 + 1 else size_1

    def add(images):
        template = next(image for image in images if image.name == first)
        return [*images, replace(template, name=first + "-new", id="new-master-image-id", size=new_size)]

    edit_region(demo_cloud, "Madrid", add)
    refresh_status()
    after = rows_by_pair()
    assert {pair for pair in after if pair not in before} == {
        (region, first + "-new")
        for region in ImageState.objects.filter(image_name=first).values_list("region", flat=True)
    }
    assert all(after[pair] == before[pair] for pair in before)  # no other row rewritten, not even its position
    names = list(ImageState.objects.filter(region="Valencia").order_by("position").values_list("image_name", flat=True))
    engine = build_engine()
    assert names == [entry.master.name for entry in engine.region_status("Valencia")]


def test_positions_are_numbered_again_when_a_new_row_does_not_fit():
    old = {name: snapshot._Old(i, "ok", position, "") for i, (name, position) in enumerate([("a", 0), ("c", 1)])}
    assert snapshot.positions(["a", "b", "c"], old) == [0, snapshot.POSITION_GAP, 2 * snapshot.POSITION_GAP]
    gapped = {name: snapshot._Old(i, "ok", position, "") for i, (name, position) in enumerate([("a", 0), ("c", 8)])}
    assert snapshot.positions(["a", "b", "c", "d"], gapped) == [0, 4, 8, 8 + snapshot.POSITION_GAP]
    assert snapshot.positions(["c", "a"], gapped) == [0, snapshot.POSITION_GAP]  # the order changed: afresh


def test_a_status_changed_in_place_by_a_decision_is_set_right_by_the_next_refresh(demo_cloud):
    refresh_status()
    row = ImageState.objects.filter(status="error_checksum").first()
    ImageState.objects.filter(pk=row.pk).update(status="pending_replace")  # as a decision does, then undone
    RegionSnapshot.recount([row.region])  # as sync.views._apply_decisions does: the inputs are the same
    refresh_status()
    assert ImageState.objects.get(pk=row.pk).status == "error_checksum"


def test_a_region_is_stored_whole_or_not_at_all(demo_cloud, monkeypatch):
    refresh_status()
    before = contents("Valencia")
    edit_region(demo_cloud, "Valencia", lambda images: images[2:])
    monkeypatch.setattr(snapshot, "status_counts", lambda statuses: 1 / 0)  # fails after the rows are written
    with pytest.raises(ZeroDivisionError):
        refresh_status(["Valencia"])
    assert contents("Valencia") == before


def test_regions_stored_together_are_stored_whole_or_not_at_all(demo_cloud, monkeypatch):
    refresh_status()
    before = {region: contents(region) for region in ("Valencia", "Sevilla")}
    edit_region(demo_cloud, "Valencia", lambda images: images[2:])
    edit_region(demo_cloud, "Sevilla", new_checksum("cirros-0.6.2-x86_64"))
    monkeypatch.setattr(snapshot._Batch, "BATCH_ROWS", 10**6)  # every region in one transaction
    counts, calls = snapshot.status_counts, []

    def second_fails(statuses):
        calls.append(1)
        return 1 / 0 if len(calls) == 2 else counts(statuses)

    monkeypatch.setattr(snapshot, "status_counts", second_fails)
    with pytest.raises(ZeroDivisionError):
        refresh_status(["Valencia", "Sevilla"])
    assert {region: contents(region) for region in before} == before
    monkeypatch.setattr(snapshot, "status_counts", counts)
    refresh_status(["Valencia", "Sevilla"])
    assert all(contents(region) != rows for region, rows in before.items())


def no_fingerprint(session, region):
    """A driver without listing fingerprints (an OpenStack): a refresh lists every region and hashes it."""
    return None


def test_the_regions_are_listed_at_once_so_a_slow_one_costs_only_its_own_time(demo_cloud, settings, monkeypatch):
    settings.GLANCESYNC_REFRESH_WORKERS = 8
    refresh_status()
    monkeypatch.setattr(FileTargetSession, "listing_fingerprint", no_fingerprint)  # every region listed again
    listing = FileTargetSession.list_images
    running, most = set(), [0]
    lock = threading.Lock()

    def slow_list(self, region):
        with lock:
            running.add(region)
            most[0] = max(most[0], len(running))
        time.sleep(1.0)
        try:
            return listing(self, region)
        finally:
            with lock:
                running.discard(region)

    monkeypatch.setattr(FileTargetSession, "list_images", slow_list)
    regions = len(RegionSnapshot.objects.all())
    start = time.monotonic()
    assert refresh_status().startswith(f"statuses of {regions} of {regions} regions refreshed")
    assert time.monotonic() - start < 1.0 + 0.6 * regions  # not one second per region: they overlap
    assert most[0] > 1


def test_a_refresh_lists_at_most_the_workers_setting_at_once(demo_cloud, settings, monkeypatch):
    settings.GLANCESYNC_REFRESH_WORKERS = 2
    listing = FileTargetSession.list_images
    running, most = set(), [0]
    lock = threading.Lock()

    def counted(self, region):
        with lock:
            running.add(region)
            most[0] = max(most[0], len(running))
        time.sleep(0.1)
        try:
            return listing(self, region)
        finally:
            with lock:
                running.discard(region)

    monkeypatch.setattr(FileTargetSession, "list_images", counted)
    refresh_status()
    assert most[0] == 2


def test_an_unreadable_region_among_others_fails_alone(demo_cloud):
    (demo_cloud / "backup_Valencia.csv").write_text("Valencia,too,few,columns\r\n")
    summary = refresh_status()
    assert "Valencia" in summary and summary.count("; ") == 1
    assert RegionSnapshot.objects.exclude(error="").get().region == "Valencia"
    assert ImageState.objects.filter(region="Sevilla").exists()


def test_the_digest_depends_on_the_values_only():
    content = ("id", "ch", "", "", 5, None, "n", "public", False, ["a", "b"], "", False, [], [["name", "x", None]], "")
    rebuilt = tuple("".join(list(v)) if isinstance(v, str) else v for v in content)  # equal, not the same objects
    assert snapshot._digest(rebuilt) == snapshot._digest(content) == "db8b700f33d0bc68"  # stable across processes
    assert snapshot._digest((*content[:4], 6, *content[5:])) != snapshot._digest(content)
    assert snapshot._digest((*content[:8], 0, *content[9:])) != snapshot._digest(content)  # False is not 0


def test_a_rows_digest_is_its_contents_and_empty_tags_are_an_empty_list(demo_cloud):
    """`_row` inlines `_digest`, and sorts no empty tags: the same digests and contents as before either way."""
    engine = build_engine()
    ref = parse_region("Valencia", engine.config)
    statuses, _ = engine.statuses(ref, engine.session(ref.target).list_images(ref.name), RecordingReporter())
    rows = [snapshot._row(entry, {}, {}) for entry in statuses]
    assert rows and all(type(row) is snapshot._Row and row.digest == snapshot._digest(row.content) for row in rows)
    tags = snapshot.CONTENT_FIELDS.index("tags"), snapshot.CONTENT_FIELDS.index("region_tags")
    for row, entry in zip(rows, statuses, strict=True):
        copy_tags = sorted(entry.region_image.tags) if entry.region_image else []
        assert [row.content[index] for index in tags] == [sorted(entry.master.tags), copy_tags]


# --- a region whose inputs have not changed is not computed again (sync.snapshot.region_inputs) ------------


def count_computed(monkeypatch) -> Counter:
    """Regions whose statuses the engine computes, by full name, from here on."""
    computed, statuses = Counter(), GlanceSync.statuses

    def counted(self, ref, listing, reporter):
        computed[ref.fullname] += 1
        return statuses(self, ref, listing, reporter)

    monkeypatch.setattr(GlanceSync, "statuses", counted)
    return computed


def test_it_does_not_compute_again_a_region_whose_inputs_have_not_changed(demo_cloud, monkeypatch):
    refresh_status()
    computed, listed = count_computed(monkeypatch), count_listed(monkeypatch)
    edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
    refresh_status()
    assert set(computed) == {"Valencia"}
    assert listed == {"Madrid": 1, "Valencia": 1}  # the master region: once, by the engine, for the master images
    computed.clear()
    listed.clear()
    refresh_status()
    assert not computed and listed == {"Madrid": 1}  # an unchanged file is not even listed (its fingerprint)
    assert ImageState.objects.get(region="Valencia", image_name="cirros-0.6.2-x86_64").status == "error_checksum"


def test_a_changed_policy_computes_its_regions_again(demo_cloud, settings, tmp_path):
    refresh_status()
    row = ImageState.objects.get(region="Sevilla", image_name="fedora-40-cloud-base")
    assert row.status == "ok_stalled_checksum"
    config = tmp_path / "glancesync.conf"
    text = Path(settings.GLANCESYNC_CONFIG_FILE).read_text()
    config.write_text(text.replace("dontupdate = e4acfbc74750180ec2ef5d15d47fbf1b\n", ""))
    settings.GLANCESYNC_CONFIG_FILE = str(config)
    refresh_status()
    assert ImageState.objects.get(pk=row.pk).status == "error_checksum"


def test_new_code_computes_every_region_again(demo_cloud, monkeypatch):
    refresh_status()
    computed = count_computed(monkeypatch)
    monkeypatch.setattr(snapshot, "code_version", lambda: "another version")
    refresh_status()
    assert set(computed) == set(RegionSnapshot.objects.values_list("region", flat=True))


def test_a_region_readable_again_is_computed_again(demo_cloud, monkeypatch):
    refresh_status()
    path = demo_cloud / "backup_Valencia.csv"
    good = path.read_bytes()
    path.write_text("Valencia,too,few,columns\r\n")
    refresh_status()
    path.write_bytes(good)  # the same listing as when it was last computed
    computed = count_computed(monkeypatch)
    refresh_status()
    assert set(computed) == {"Valencia"}
    assert RegionSnapshot.objects.get(region="Valencia").error == ""


def test_an_unchanged_region_with_uploads_asks_again_how_they_would_go(demo_cloud, monkeypatch):
    refresh_status()
    uploading = [s.region for s in RegionSnapshot.objects.all() if s.status_counts.get("pending_upload")]
    assert uploading and all(RegionSnapshot.objects.get(region=r).transfer == "stream" for r in uploading)
    monkeypatch.setattr(GlanceSync, "planned_transfer", lambda self, ref: "none")  # the region's Glance changed
    computed = count_computed(monkeypatch)
    refresh_status()
    assert not computed
    assert {s.region: s.transfer for s in RegionSnapshot.objects.filter(region__in=uploading)} == dict.fromkeys(
        uploading, "none"
    )


def changed(value):
    """Another value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, frozenset):
        return value | {"another"}
    if isinstance(value, dict):
        return {**value, "another": "value"}
    return (value or "") + "-another"


@pytest.fixture
def inputs(demo_cloud):
    """(engine, ref, listing, the region's inputs hash) of Valencia."""
    engine = build_engine()
    ref = parse_region("Valencia", engine.config)
    listing = engine.session(ref.target).list_images(ref.name)
    return engine, ref, listing, snapshot.region_inputs(engine, ref, listing, snapshot.master_inputs(engine))


def test_the_inputs_hash_is_the_same_for_the_same_inputs(inputs):
    engine, ref, listing, before = inputs
    again = build_engine()  # another listing, another engine: equal values, not the same objects
    relisted = again.session(ref.target).list_images(ref.name)
    assert snapshot.region_inputs(again, ref, relisted, snapshot.master_inputs(again)) == before != ""


@pytest.mark.parametrize("name", [f.name for f in fields(Image)])
def test_a_change_in_any_field_of_a_region_image_changes_the_inputs(inputs, name):
    engine, ref, listing, before = inputs
    image = listing[1]
    setattr(image, name, changed(getattr(image, name)))
    assert snapshot.region_inputs(engine, ref, listing, snapshot.master_inputs(engine)) != before


@pytest.mark.parametrize("name", [f.name for f in fields(Image)])
def test_a_change_in_any_field_of_a_master_image_changes_the_inputs(inputs, name):
    engine, ref, listing, before = inputs
    image = next(iter(engine.master.values()))
    setattr(image, name, changed(getattr(image, name)))
    assert snapshot.region_inputs(engine, ref, listing, snapshot.master_inputs(engine)) != before


@pytest.mark.parametrize("name", [f.name for f in fields(TargetPolicy) if f.name != "password"])
def test_a_change_in_any_setting_of_the_target_changes_the_inputs(inputs, name):
    engine, ref, listing, before = inputs
    policy = engine.config.targets[ref.target]
    setattr(policy, name, changed(getattr(policy, name)))
    assert snapshot.region_inputs(engine, ref, listing, snapshot.master_inputs(engine)) != before


def test_the_region_its_order_its_tenant_the_master_region_and_the_other_images_kept_are_inputs(inputs, monkeypatch):
    engine, ref, listing, before = inputs
    master = snapshot.master_inputs(engine)
    assert snapshot.region_inputs(engine, replace(ref, name="Sevilla"), listing, master) != before
    assert snapshot.region_inputs(engine, ref, listing[::-1], master) != before
    assert snapshot.region_inputs(engine, ref, listing[1:], master) != before
    monkeypatch.setitem(engine._tenant_ids, ref.target, "another-tenant")
    assert snapshot.region_inputs(engine, ref, listing, master) != before
    monkeypatch.undo()
    monkeypatch.setattr(engine.config, "master_region", "Sevilla")
    assert snapshot.region_inputs(engine, ref, listing, master) != before
    monkeypatch.undo()
    monkeypatch.setattr(snapshot, "SNAPSHOT_FORMAT", snapshot.SNAPSHOT_FORMAT + 1)
    assert snapshot.region_inputs(engine, ref, listing, master) != before
    monkeypatch.undo()
    monkeypatch.setattr(RegionSnapshot, "OTHER_IMAGES_KEPT", 1)
    assert snapshot.region_inputs(engine, ref, listing, master) != before


def test_the_password_is_no_input(inputs):
    engine, ref, listing, before = inputs
    engine.config.targets[ref.target].password = "another-password"
    assert snapshot.region_inputs(engine, ref, listing, snapshot.master_inputs(engine)) == before


def test_a_property_marshal_cannot_write_makes_the_region_computed_every_time(inputs):
    engine, ref, listing, _ = inputs
    listing[0].user_properties = listing[0].user_properties | {"when": object()}
    assert snapshot.region_inputs(engine, ref, listing, snapshot.master_inputs(engine)) == ""
    assert snapshot.region_inputs(engine, ref, listing[1:], b"") == ""


# --- the driver's listing fingerprint (FileTargetSession.listing_fingerprint) ----------------------------


def count_listed(monkeypatch) -> Counter:
    """Regions listed, by bare name, from here on."""
    listed, listing = Counter(), FileTargetSession.list_images

    def counted(self, region):
        listed[region] += 1
        return listing(self, region)

    monkeypatch.setattr(FileTargetSession, "list_images", counted)
    return listed


def test_a_changed_master_computes_every_region_again(demo_cloud, monkeypatch):
    refresh_status()
    computed = count_computed(monkeypatch)
    edit_region(demo_cloud, "Madrid", new_checksum("cirros-0.6.2-x86_64"))
    refresh_status()
    assert set(computed) == set(RegionSnapshot.objects.values_list("region", flat=True))


def test_without_fingerprints_every_region_is_listed_and_only_changed_ones_computed(demo_cloud, monkeypatch):
    monkeypatch.setattr(FileTargetSession, "listing_fingerprint", no_fingerprint)
    refresh_status()
    listed, computed = count_listed(monkeypatch), count_computed(monkeypatch)
    refresh_status()
    assert not computed
    assert len(listed) == RegionSnapshot.objects.count() and listed["Madrid"] == 2  # the engine's, the region's
    edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
    refresh_status()
    assert set(computed) == {"Valencia"}


def test_a_file_changed_while_its_region_is_listed_is_computed_again_next_time(demo_cloud, monkeypatch):
    refresh_status()
    listing, edited = FileTargetSession.list_images, []

    def changed_once_listed(self, region):
        images = listing(self, region)
        if region == "Valencia" and not edited:  # a fingerprint taken now would be the new file's
            edited.append(region)
            edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
        return images

    edit_region(demo_cloud, "Valencia", lambda images: images[:-1])  # listed by the next refresh
    monkeypatch.setattr(FileTargetSession, "list_images", changed_once_listed)
    refresh_status()
    computed = count_computed(monkeypatch)
    refresh_status()
    assert set(computed) == {"Valencia"}
    assert ImageState.objects.get(region="Valencia", image_name="cirros-0.6.2-x86_64").status == "error_checksum"


def test_the_fingerprint_of_a_file_changes_with_its_bytes_and_not_otherwise(demo_cloud):
    engine = build_engine()
    session = engine.session("master")
    before = session.listing_fingerprint("Valencia")
    assert build_engine().session("master").listing_fingerprint("Valencia") == before  # another cloud, same file
    assert session.listing_fingerprint("Sevilla") != before
    edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
    assert session.listing_fingerprint("Valencia") != before
    assert session.listing_fingerprint("Nowhere") is None


def test_a_region_this_run_has_loaded_has_no_fingerprint(demo_cloud):
    session = build_engine().session("master")
    image = session.list_images("Valencia")[0]
    session.update_image("Valencia", image)  # loads the region: its listing now comes from memory
    assert session.listing_fingerprint("Valencia") is None


def test_the_drivers_source_counts_in_the_code_version():
    assert "clouds" in snapshot._CODE  # the file cloud's fingerprint is its reading code's as much as the file's


# --- regions computed by forked processes (sync.snapshot._forked) --------------------------------------------

SNAPSHOT_FIELDS = ("region", "target", "error", "warnings", "other_images", "other_images_total", "status_counts",
                   "plan_totals", "inputs", "transfer")  # fmt: skip


def snapshots() -> list[tuple]:
    return list(RegionSnapshot.objects.order_by("region").values_list(*SNAPSHOT_FIELDS))


def test_a_refresh_keeps_the_first_other_images_and_counts_them_all(demo_cloud, monkeypatch, settings):
    refresh_status()
    every = dict(RegionSnapshot.objects.values_list("region", "other_images"))
    assert max(len(others) for others in every.values()) > 1
    monkeypatch.setattr(RegionSnapshot, "OTHER_IMAGES_KEPT", 1)
    for processes in (1, 2):  # computed here, then in forked processes
        settings.GLANCESYNC_REFRESH_PROCESSES = processes
        empty_the_snapshot()
        refresh_status()
        kept = RegionSnapshot.objects.values_list("region", "other_images", "other_images_total")
        assert {region: (others, total) for region, others, total in kept} == {
            region: (others[:1], len(others)) for region, others in every.items()
        }


def test_forked_processes_store_what_this_process_would(demo_cloud, monkeypatch, settings):
    edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
    refresh_status()
    alone = contents(), snapshots()
    empty_the_snapshot()
    settings.GLANCESYNC_REFRESH_PROCESSES = 2
    forks = processes_forked(monkeypatch)
    refresh_status()
    assert forks == [2] and (contents(), snapshots()) == alone


def test_without_fingerprints_forked_processes_check_the_hash_of_their_listing(demo_cloud, monkeypatch, settings):
    monkeypatch.setattr(FileTargetSession, "listing_fingerprint", no_fingerprint)
    settings.GLANCESYNC_REFRESH_PROCESSES = 2
    refresh_status()
    before = rows_by_pair()
    with CaptureQueriesContext(connection) as queries:
        refresh_status()
    assert writes_to_the_snapshot(queries.captured_queries) == [] and rows_by_pair() == before
    edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
    refresh_status()
    assert ImageState.objects.get(region="Valencia", image_name="cirros-0.6.2-x86_64").status == "error_checksum"


def test_an_unreadable_region_among_forked_ones_fails_alone(demo_cloud, monkeypatch, settings):
    settings.GLANCESYNC_REFRESH_PROCESSES = 2
    (demo_cloud / "backup_Valencia.csv").write_text("Valencia,too,few,columns\r\n")
    summary = refresh_status()
    assert "Valencia" in summary and summary.count("; ") == 1
    assert RegionSnapshot.objects.exclude(error="").get().region == "Valencia"
    assert ImageState.objects.filter(region="Sevilla").exists()


def test_a_forked_process_that_dies_stops_the_refresh_and_leaves_no_process(demo_cloud, monkeypatch, settings):
    refresh_status()
    before = contents()
    monkeypatch.setattr(FileTargetSession, "listing_fingerprint", no_fingerprint)  # every region computed
    settings.GLANCESYNC_REFRESH_PROCESSES = 2
    monkeypatch.setattr(snapshot, "_forked_compute", lambda *args: os._exit(3))  # what the children inherit
    engine = build_engine()
    with pytest.raises(RuntimeError, match="ended early"):
        snapshot.refresh_regions(engine, snapshot.all_regions(engine))
    assert contents() == before
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # every child was waited for


def test_a_small_refresh_forks_no_process(demo_cloud, monkeypatch):
    forks = processes_forked(monkeypatch)
    refresh_status()
    assert forks == [1]  # 8 regions of about 20 images: far fewer pairs than FORK_PAIRS


def test_enough_pairs_fork_one_process_per_cpu_unless_the_setting_says_otherwise(demo_cloud, monkeypatch, settings):
    monkeypatch.setattr(snapshot, "FORK_PAIRS", 1)
    forks = processes_forked(monkeypatch)
    refresh_status()
    empty_the_snapshot()  # every region to compute again
    settings.GLANCESYNC_REFRESH_PROCESSES = 1
    refresh_status()
    assert forks == [min(len(os.sched_getaffinity(0)), 8), 1]  # 8 regions


def processes_forked(monkeypatch) -> list[int]:
    """The processes each refresh from here on computes its regions with (1: none forked)."""
    chosen, processes = [], snapshot._processes

    def counted(engine, regions):
        chosen.append(processes(engine, regions))
        return chosen[-1]

    monkeypatch.setattr(snapshot, "_processes", counted)
    return chosen


def empty_the_snapshot() -> None:
    ImageState.objects.all().delete()
    RegionSnapshot.objects.all().delete()


# --- a first refresh builds the indexes after its rows (sync.snapshot_indexes.indexes_built_after) ----------


def table_indexes() -> set[str]:
    """The names of every index and constraint of ImageState's table (its key, its unique pair, Meta's indexes,
    PostgreSQL's trigram one)."""
    with connection.cursor() as cursor:
        return set(connection.introspection.get_constraints(cursor, TABLE))


def secondary_indexes() -> set[str]:
    """The indexes a first refresh drops: Meta's, and on PostgreSQL the trigram one of the name search."""
    names = {index.name for index in ImageState._meta.indexes}
    return names | ({"state_name_trgm"} if connection.vendor == "postgresql" else set())


def indexes_while_storing(monkeypatch) -> list[set[str]]:
    """The table's indexes each store_rows from here on sees."""
    during, store = [], snapshot.store_rows

    def seen(*args, **kwargs):
        during.append(table_indexes())
        return store(*args, **kwargs)

    monkeypatch.setattr(snapshot, "store_rows", seen)
    return during


def rows_stored(monkeypatch) -> list[snapshot.Stored]:
    """What each store_rows from here on reports having written."""
    reported, store = [], snapshot.store_rows

    def counted(*args, **kwargs):
        reported.append(store(*args, **kwargs))
        return reported[-1]

    monkeypatch.setattr(snapshot, "store_rows", counted)
    return reported


def test_a_first_refresh_inserts_without_the_secondary_indexes_and_builds_them_after(demo_cloud, monkeypatch):
    indexes = table_indexes()
    assert secondary_indexes() <= indexes  # on PostgreSQL the trigram index too (migration 0025)
    refresh_status()
    indexed = contents(), snapshots(), ImageState.objects.count()
    empty_the_snapshot()
    monkeypatch.setattr(snapshot_indexes, "INDEXED_PAIRS", 0)
    reported = rows_stored(monkeypatch)
    during = indexes_while_storing(monkeypatch)
    refresh_status()
    assert during and all(seen == indexes - secondary_indexes() for seen in during)
    assert table_indexes() == indexes
    assert (contents(), snapshots(), ImageState.objects.count()) == indexed
    assert sum(stored.inserted for stored in reported) == indexed[2]  # the rows written, as reported
    assert sum(stored.written for stored in reported) == indexed[2]
    during.clear()
    edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
    refresh_status()  # not a first refresh: the indexes stay
    assert during == [indexes]


def test_a_first_refresh_that_fails_builds_the_indexes_again_and_stores_no_half_region(demo_cloud, monkeypatch):
    indexes = table_indexes()
    monkeypatch.setattr(snapshot_indexes, "INDEXED_PAIRS", 0)
    monkeypatch.setattr(snapshot._Batch, "BATCH_ROWS", 1)  # a transaction per region
    counts, calls = snapshot.status_counts, []

    def second_fails(statuses):  # after the second region's rows are written
        calls.append(1)
        return 1 / 0 if len(calls) == 2 else counts(statuses)

    monkeypatch.setattr(snapshot, "status_counts", second_fails)
    with pytest.raises(ZeroDivisionError):
        refresh_status()
    assert table_indexes() == indexes
    stored = RegionSnapshot.objects.filter(error="").values_list("region", flat=True)
    assert len(stored) == 1  # the first region, whole; nothing of the second
    assert set(ImageState.objects.values_list("region", flat=True).distinct()) == set(stored)
    monkeypatch.setattr(snapshot, "status_counts", counts)
    refresh_status()  # a snapshot with rows: not a first refresh any more, the indexes stay
    assert table_indexes() == indexes
    assert set(ImageState.objects.values_list("region", flat=True).distinct()) > set(stored)


def test_indexes_a_killed_first_refresh_left_dropped_are_built_by_the_next(demo_cloud, monkeypatch):
    indexes = table_indexes()
    monkeypatch.setattr(snapshot_indexes, "INDEXED_PAIRS", 0)
    monkeypatch.setattr(snapshot_indexes, "build_missing_indexes", lambda: None)  # killed before it could
    refresh_status()
    assert table_indexes() == indexes - secondary_indexes()
    monkeypatch.undo()
    during = indexes_while_storing(monkeypatch)
    edit_region(demo_cloud, "Valencia", new_checksum("cirros-0.6.2-x86_64"))
    refresh_status()
    assert during == [indexes]  # built before anything is stored
    assert table_indexes() == indexes


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's trigram index")
def test_without_pg_trgm_a_first_refresh_builds_the_other_indexes(demo_cloud, monkeypatch):
    with connection.cursor() as cursor:  # as where the role may not create the extension (migration 0025)
        cursor.execute("DROP EXTENSION pg_trgm CASCADE")
    indexes = table_indexes()
    assert "state_name_trgm" not in indexes
    monkeypatch.setattr(snapshot_indexes, "INDEXED_PAIRS", 0)
    refresh_status()
    assert table_indexes() == indexes and ImageState.objects.exists()


def test_rows_with_any_characters_are_stored_as_they_are(db):
    """The inserted rows (COPY on PostgreSQL, executemany on SQLite) keep tabs, newlines, backslashes, quotes,
    COPY's null marker, non-ASCII text, None, booleans and nested JSON as they are."""
    awkward = "tab\there\nnew line\r\\N back\\slash 'quote\" \u00e9\u4e2d\U0001f600 \\."
    content = (
        "id-\t1", "c\\N", "", "", 2**40, None, awkward, "public", True, ["a\tb", "\\N", "é"], "", False,
        [], [["name", awkward, None], ["x", "1", "2"]], awkward,
    )  # fmt: skip
    rows = [snapshot._Row(f"image {awkward} {n}", "pending_metadata", content, "0" * 16) for n in range(3)]
    with CaptureQueriesContext(connection) as queries:
        stored = snapshot.store_rows("Region\t1", "master", rows)
    assert stored.inserted == 3 and stored.written == 3
    assert len(writes_to_the_snapshot(queries.captured_queries)) == 1  # one statement for the region's rows
    fields = ("image_name",) + snapshot.CONTENT_FIELDS
    found = ImageState.objects.filter(region="Region\t1").order_by("image_name").values_list(*fields)
    assert list(found) == [(row.name, *content) for row in rows]
    assert snapshot.store_rows("Region\t1", "master", rows).written == 0  # the same again: nothing written


def test_a_fingerprint_that_fails_makes_the_region_listed(demo_cloud, monkeypatch):
    refresh_status()

    def failing(session, region):
        raise OSError("unreadable")

    monkeypatch.setattr(FileTargetSession, "listing_fingerprint", failing)
    listed = count_listed(monkeypatch)
    assert refresh_status().startswith("statuses of")
    assert len(listed) == RegionSnapshot.objects.count()
