"""Glance v2's image lifecycle in the engine: hidden images, visibilities, tags and rotations (issue #13).

Driven through the file cloud, whose optional columns (visibility, hidden, tags) carry these fields.
"""

from pathlib import Path

import pytest

from sync.clouds.files import FileCloud
from sync.engine.backup import read_backup, write_backup
from sync.engine.glancesync import GlanceSync
from sync.engine.model import Image, SyncConfig, TargetPolicy
from sync.engine.reporter import RecordingReporter

T = "tenant1id"


def row(name, checksum, region="Valladolid", id=None, public=True, visibility="", hidden=False, tags=(), size=1000):
    image = Image(name, id or f"{region[0]}-{name}", region, T, public, checksum, size, "active", {"type": "x"})
    if visibility:
        image.set_visibility(visibility)
    image.hidden, image.tags = hidden, frozenset(tags)
    return image


def write(folder: Path, region: str, images: list[Image]) -> None:
    with open(folder / f"backup_{region}.csv", "w", newline="") as stream:
        write_backup(images, stream)


def engine(folder: Path, reporter=None, **policy) -> GlanceSync:
    policy = {k: frozenset(v) if isinstance(v, set) else v for k, v in policy.items()}
    master = TargetPolicy(name="master", tenant="tenant1", **policy)
    config = SyncConfig(master_region="Valladolid", targets={"master": master})
    return GlanceSync(config, FileCloud(folder), reporter or RecordingReporter())


def region(folder: Path, name: str = "Burgos") -> dict[str, Image]:
    return {image.id: image for image in read_backup(folder / f"backup_{name}.csv", name)}


def statuses(folder: Path, **policy) -> dict[str, tuple[str, str | None]]:
    """{master name: (status, name of the region image standing for it)}."""
    entries = engine(folder, **policy).region_status("Burgos")
    return {e.master.name: (e.status, e.region_image.name if e.region_image else None) for e in entries}


def sync(folder: Path, **policy) -> tuple[RecordingReporter, dict]:
    reporter = RecordingReporter()
    result = engine(folder, reporter, **policy).sync_region("Burgos")
    assert result.ok, result.error
    return reporter, result.counters


def setup(folder: Path, master: list[Image], burgos: list[Image]) -> Path:
    write(folder, "Valladolid", master)
    write(folder, "Burgos", [image_in(image, "Burgos") for image in burgos])
    return folder


def image_in(image: Image, region_name: str) -> Image:
    copy = image.copy()
    copy.region = region_name
    return copy


def burgos(*args, **kwargs) -> Image:
    return row(*args, region="Burgos", **kwargs)


# --- hidden copies, retired masters, visibilities ------------------------------------------------------------


def test_it_counts_a_hidden_region_copy_as_the_copy_and_makes_it_visible_like_its_master(tmp_path):
    setup(tmp_path, [row("cirros", "c1")], [burgos("cirros", "c1", hidden=True)])
    assert statuses(tmp_path) == {"cirros": ("pending_metadata", "cirros")}
    _, counters = sync(tmp_path)
    assert counters["uploads"] == 0 and counters["metadata"] == 1
    assert [(i.id, i.name, i.hidden) for i in region(tmp_path).values()] == [("B-cirros", "cirros", False)]
    assert statuses(tmp_path) == {"cirros": ("ok", "cirros")}


def test_it_does_not_upload_a_hidden_master_image_but_hides_its_existing_copy(tmp_path):
    master = [row("old", "c1", hidden=True), row("gone", "c2", hidden=True)]
    setup(tmp_path, master, [burgos("old", "c1")])
    assert statuses(tmp_path) == {"old": ("pending_metadata", "old")}, "no row for gone: it is not uploaded"
    sync(tmp_path)
    assert [(i.name, i.hidden) for i in region(tmp_path).values()] == [("old", True)]
    assert statuses(tmp_path) == {"old": ("ok", "old")}


def test_it_leaves_a_hidden_master_images_namesake_with_other_content_alone(tmp_path):
    setup(tmp_path, [row("old", "c1", hidden=True)], [burgos("old", "other")])
    assert statuses(tmp_path) == {}
    sync(tmp_path)
    assert [(i.name, i.hidden) for i in region(tmp_path).values()] == [("old", False)]


def test_it_does_not_upload_a_community_image_by_default_but_its_copy_follows_the_visibility(tmp_path):
    master = [row("old", "c1", visibility="community"), row("new", "c2", visibility="community")]
    setup(tmp_path, master, [burgos("old", "c1")])
    sync(tmp_path)
    assert [(i.name, i.visibility, i.is_public) for i in region(tmp_path).values()] == [("old", "community", False)]


def test_it_does_not_follow_a_hidden_image_the_target_would_never_synchronise(tmp_path):
    setup(tmp_path, [row("mine", "c1", public=False, hidden=True)], [burgos("mine", "c1", public=False)])
    assert statuses(tmp_path) == {}, "a private image is not synchronised: hiding it is none of our business"


def test_it_selects_hidden_images_only_for_a_condition_that_reads_image_hidden(tmp_path):
    setup(tmp_path, [row("old", "c1", hidden=True), row("new", "c2")], [])
    assert set(statuses(tmp_path, metadata_condition="image.is_public")) == {"new"}
    assert set(statuses(tmp_path, metadata_condition="image.is_public or image.hidden")) == {"old", "new"}
    assert set(statuses(tmp_path, metadata_condition="image.hidden")) == {"old"}, "the condition decides"


def test_it_uploads_a_hidden_image_listed_in_forcesyncs_hidden_like_its_master(tmp_path):
    setup(tmp_path, [row("old", "c1", hidden=True, id="m-old")], [])
    sync(tmp_path, forcesyncs={"m-old"})
    assert [(i.name, i.hidden) for i in region(tmp_path).values()] == [("old", True)]


def test_it_follows_every_visibility_of_the_master(tmp_path):
    master = [row(v, f"c-{v}", visibility=v) for v in ("community", "shared", "private")]
    setup(tmp_path, master, [burgos(v, f"c-{v}") for v in ("community", "shared", "private")])
    sync(tmp_path, metadata_condition="True")
    assert {i.name: i.visibility for i in region(tmp_path).values()} == {
        "community": "community", "shared": "shared", "private": "private",
    }  # fmt: skip


def test_it_lets_a_visible_image_stand_for_a_name_it_shares_with_a_hidden_old_build(tmp_path):
    reporter = RecordingReporter()
    setup(tmp_path, [row("debian", "new", id="m-new"), row("debian", "old", id="m-old", hidden=True)], [])
    entries = engine(tmp_path, reporter).region_status("Burgos")
    assert [(e.master.name, e.master.checksum, e.status) for e in entries] == [("debian", "new", "pending_upload")]
    assert not any("Duplicated" in m for m in reporter.messages())


# --- tags ----------------------------------------------------------------------------------------------------


def test_it_uploads_copies_with_the_masters_tags(tmp_path):
    setup(tmp_path, [row("amphora", "c1", tags={"amphora", "octavia"})], [])
    sync(tmp_path)
    assert [i.tags for i in region(tmp_path).values()] == [frozenset({"amphora", "octavia"})]


def test_it_adds_a_missing_tag_and_keeps_region_local_tags(tmp_path):
    setup(tmp_path, [row("amphora", "c1", tags={"amphora"})], [burgos("amphora", "c1", tags={"local"})])
    assert statuses(tmp_path) == {"amphora": ("pending_metadata", "amphora")}
    sync(tmp_path)
    assert [i.tags for i in region(tmp_path).values()] == [frozenset({"amphora", "local"})]
    assert statuses(tmp_path) == {"amphora": ("ok", "amphora")}


def test_it_keeps_a_region_tag_the_master_no_longer_has(tmp_path):
    setup(tmp_path, [row("amphora", "c1")], [burgos("amphora", "c1", tags={"amphora"})])
    assert statuses(tmp_path) == {"amphora": ("ok", "amphora")}


# --- rotations -----------------------------------------------------------------------------------------------


def rotated(folder: Path, week: int, builds: list[str]) -> None:
    """The master after `week` rotations of debian-12: the newest build visible, the older ones renamed and hidden."""
    master = [row("debian-12", builds[week], id=f"m-{builds[week]}")]
    master += [
        row(f"debian-12 (w{n})", builds[n - 1], id=f"m-{builds[n - 1]}", hidden=True) for n in range(1, week + 1)
    ]
    write(folder, "Valladolid", master)


def test_it_follows_two_rotations_in_a_row_and_then_changes_nothing(tmp_path):
    builds = ["A", "B", "C"]
    rotated(tmp_path, 0, builds)
    write(tmp_path, "Burgos", [])
    sync(tmp_path)
    first_id = next(iter(region(tmp_path)))

    rotated(tmp_path, 1, builds)
    assert statuses(tmp_path) == {
        "debian-12": ("pending_upload", None),
        "debian-12 (w1)": ("pending_metadata", "debian-12"),
    }
    reporter, counters = sync(tmp_path)
    assert (counters["renames"], counters["uploads"], counters["errors"]) == (1, 1, 0)
    assert f"Burgos: Renaming image debian-12 ({first_id}) to debian-12 (w1), as in the master" in reporter.messages()
    assert {(i.name, i.checksum, i.hidden) for i in region(tmp_path).values()} == {
        ("debian-12 (w1)", "A", True), ("debian-12", "B", False),
    }  # fmt: skip
    assert region(tmp_path)[first_id].name == "debian-12 (w1)", "the old build keeps its id: servers keep their image"

    rotated(tmp_path, 2, builds)
    sync(tmp_path)
    assert {(i.name, i.checksum, i.hidden) for i in region(tmp_path).values()} == {
        ("debian-12 (w1)", "A", True), ("debian-12 (w2)", "B", True), ("debian-12", "C", False),
    }  # fmt: skip
    assert not any(i.name.endswith(".old") for i in region(tmp_path).values())

    before = (tmp_path / "backup_Burgos.csv").read_bytes()
    reporter, counters = sync(tmp_path)
    assert (tmp_path / "backup_Burgos.csv").read_bytes() == before
    assert sum(counters.values()) == 0 and reporter.messages()[-1] == "Burgos: Region is synchronized."


def test_it_renames_a_copy_when_the_master_only_renamed_the_image(tmp_path):
    setup(tmp_path, [row("cirros-0.6", "c1")], [burgos("cirros", "c1")])
    assert statuses(tmp_path) == {"cirros-0.6": ("pending_metadata", "cirros")}
    sync(tmp_path)
    assert [i.name for i in region(tmp_path).values()] == ["cirros-0.6"]


def test_a_dry_run_renames_nothing_and_says_what_it_would_rename(tmp_path):
    setup(tmp_path, [row("debian-12", "B"), row("debian-12 (w1)", "A", hidden=True)], [burgos("debian-12", "A")])
    before = (tmp_path / "backup_Burgos.csv").read_bytes()
    reporter = RecordingReporter()
    engine(tmp_path, reporter).sync_region("Burgos", dry_run=True)
    assert (tmp_path / "backup_Burgos.csv").read_bytes() == before
    assert "Burgos: Image pending to be renamed debian-12 -> debian-12 (w1)" in reporter.messages()


def test_the_option_brings_back_the_originals_checksum_conflict(tmp_path):
    setup(tmp_path, [row("debian-12", "B"), row("debian-12 (w1)", "A", hidden=True)], [burgos("debian-12", "A")])
    assert statuses(tmp_path, follow_rotations=False) == {"debian-12": ("error_checksum", "debian-12")}


def test_an_explicit_checksum_decision_beats_the_rotation(tmp_path):
    setup(tmp_path, [row("debian-12", "B"), row("debian-12 (w1)", "A", hidden=True)], [burgos("debian-12", "A")])
    assert statuses(tmp_path, dontupdate={"A"}) == {"debian-12": ("ok_stalled_checksum", "debian-12")}
    assert statuses(tmp_path, rename={"any"}) == {
        "debian-12": ("pending_upload", None), "debian-12 (w1)": ("pending_metadata", "debian-12"),
    }, "`any` is no explicit decision: the rotation is followed"  # fmt: skip


def test_it_renames_only_the_tenants_images(tmp_path):
    master = [row("debian-12", "B"), row("debian-12 (w1)", "A", hidden=True)]
    theirs = burgos("debian-12", "A")
    theirs.owner = "someone-else"
    setup(tmp_path, master, [theirs])
    sync(tmp_path, only_tenant_images=False)
    assert [(i.name, i.checksum) for i in region(tmp_path).values()][0] == ("debian-12", "A")


@pytest.mark.parametrize(
    ("master", "burgos_images", "warning", "uploads"),
    [
        (
            [row("debian-12", "B"), row("d (w1)", "A", id="m1", hidden=True), row("d (copy)", "A", id="m2")],
            [burgos("debian-12", "A", id="r1")],
            "Burgos: image debian-12 (r1) has the checksum of several master images (d (copy), d (w1)): not renamed",
            1,  # d (copy) is missing: uploaded, as the original would
        ),
        (
            [row("new", "B"), row("old", "A", hidden=True)],
            [burgos("new", "A", id="r1"), burgos("spare", "A", id="r2")],
            "Burgos: images new (r1), spare (r2) all have the checksum of master image old: none is renamed",
            0,
        ),
        (
            [row("new", "B"), row("old", "A", hidden=True)],
            [burgos("new", "A", id="r1"), burgos("old", "Z", id="r2")],
            "Burgos: image new (r1) has the checksum of master image old, but old (r2) exists in the region with "
            "other content: not renamed",
            0,
        ),
        (
            [row("new", "B"), row("old", "A")],
            [burgos("new", "A", id="r1"), burgos("old", "A", id="r2")],
            "Burgos: image new (r1) has the checksum of master image old, which the region already has (r2): "
            "not renamed",
            0,
        ),
    ],
    ids=["two-master-images", "two-region-images", "name-taken", "copy-exists"],
)
def test_an_ambiguous_rotation_is_a_warning_that_changes_nothing(tmp_path, master, burgos_images, warning, uploads):
    setup(tmp_path, master, burgos_images)
    before = {i.id: i.name for i in region(tmp_path).values()}
    reporter = RecordingReporter()
    result = engine(tmp_path, reporter).sync_region("Burgos")
    assert warning in reporter.messages()
    assert (result.counters["renames"], result.counters["uploads"]) == (0, uploads)
    after = {i.id: i.name for i in region(tmp_path).values()}
    assert {k: after[k] for k in before} == before, "no region image was renamed"


def test_it_never_follows_rotations_in_the_master_region_synchronised_onto_itself(tmp_path):
    # The hidden old build shares its name with the new one and its bytes with `archive`: in another region
    # it would be a rotation candidate; in the master region every image is the master's own.
    master = [row("debian-12", "B"), row("debian-12", "A", id="hidden-old", hidden=True), row("archive", "A")]
    write(tmp_path, "Valladolid", master)
    reporter = RecordingReporter()
    entries = engine(tmp_path, reporter).region_status("Valladolid")
    assert {(e.master.name, e.status) for e in entries} == {("debian-12", "ok"), ("archive", "ok")}
    assert not any("checksum of master image" in m for m in reporter.messages())


# --- the file cloud's optional columns ------------------------------------------------------------------------


def test_the_file_cloud_writes_the_originals_nine_columns_for_an_image_of_the_originals_kind(tmp_path):
    write(tmp_path, "Burgos", [burgos("a", "c1"), burgos("b", "c2", public=False)])
    lines = (tmp_path / "backup_Burgos.csv").read_text().splitlines()
    assert lines == [
        "Burgos,a,B-a,active,1000,c1,tenant1id,True,{'type': 'x'}",
        "Burgos,b,B-b,active,1000,c2,tenant1id,False,{'type': 'x'}",
    ]


def test_the_file_cloud_reads_back_the_lifecycle_columns(tmp_path):
    images = [burgos("a", "c1", visibility="community", hidden=True, tags={"amphora", "b"}), burgos("b", "c2")]
    write(tmp_path, "Burgos", images)
    text = (tmp_path / "backup_Burgos.csv").read_text()
    assert "Burgos,a,B-a,active,1000,c1,tenant1id,False,{'type': 'x'},community,True,\"['amphora', 'b']\"" in text
    back = list(region(tmp_path).values())
    assert [(i.visibility, i.is_public, i.hidden, i.tags) for i in back] == [
        ("community", False, True, frozenset({"amphora", "b"})), ("public", True, False, frozenset()),
    ]  # fmt: skip


# --- rotations: chains, duplicates, AMI images, the obsolete step ----------------------------------------------


def names_and_checksums(folder: Path) -> set[tuple[str, str | None, bool]]:
    return {(i.name, i.checksum, i.hidden) for i in region(folder).values()}


def test_it_follows_a_chain_of_renames_without_uploading_bytes_the_region_has(tmp_path):
    master = [row("debian-12", "C"), row("debian-12-previous", "B"), row("debian-12-20261101", "A", hidden=True)]
    setup(tmp_path, master, [burgos("debian-12", "B", id="rB"), burgos("debian-12-previous", "A", id="rA")])
    assert statuses(tmp_path) == {
        "debian-12": ("pending_upload", None),
        "debian-12-previous": ("pending_metadata", "debian-12"),
        "debian-12-20261101": ("pending_metadata", "debian-12-previous"),
    }
    _, counters = sync(tmp_path)
    assert (counters["renames"], counters["uploads"]) == (2, 1)
    assert names_and_checksums(tmp_path) == {
        ("debian-12", "C", False), ("debian-12-previous", "B", False), ("debian-12-20261101", "A", True),
    }  # fmt: skip
    assert {s for s, _ in statuses(tmp_path).values()} == {"ok"}


def test_it_follows_a_swap_of_two_names(tmp_path):
    setup(tmp_path, [row("a", "X"), row("b", "Y")], [burgos("a", "Y", id="r1"), burgos("b", "X", id="r2")])
    sync(tmp_path)
    assert {i.id: (i.name, i.checksum) for i in region(tmp_path).values()} == {"r1": ("b", "Y"), "r2": ("a", "X")}


def test_a_refused_claim_keeps_the_name_it_wants_taken(tmp_path):
    # r2 and r3 both have debian's bytes: neither is renamed debian. Renaming r1 (old's bytes) away from debian
    # would then free the name for an upload of bytes the region already has twice.
    master = [row("debian", "B"), row("old", "A", hidden=True)]
    burgos_images = [burgos("debian", "A", id="r1"), burgos("spare", "B", id="r2"), burgos("extra", "B", id="r3")]
    setup(tmp_path, master, burgos_images)
    assert statuses(tmp_path) == {"debian": ("error_checksum", "debian")}
    reporter, counters = sync(tmp_path)
    assert (counters["renames"], counters["uploads"]) == (0, 0)
    assert (
        "Burgos: image debian (r1) has the checksum of master image old, but its own name is wanted by a copy "
        "that cannot be renamed: not renamed"
    ) in reporter.messages()


def test_another_image_of_the_name_a_copy_leaves_stands_for_it(tmp_path):
    master = [row("debian-12", "B"), row("debian-12 (w1)", "A", hidden=True)]
    setup(tmp_path, master, [burgos("debian-12", "A", id="r1"), burgos("debian-12", "Z", id="r2")])
    assert statuses(tmp_path) == {
        "debian-12": ("error_checksum", "debian-12"), "debian-12 (w1)": ("pending_metadata", "debian-12"),
    }, "the new build is not uploaded beside r2"  # fmt: skip


def test_an_inactive_image_does_not_block_a_rename(tmp_path):
    master = [row("debian-12", "B"), row("debian-12 (w1)", "A", hidden=True)]
    queued = burgos("debian-12 (w1)", None, id="q")
    queued.status = "queued"
    setup(tmp_path, master, [burgos("debian-12", "A", id="r1"), queued])
    assert statuses(tmp_path)["debian-12 (w1)"] == ("pending_metadata", "debian-12")


def test_a_copy_found_by_checksum_follows_a_community_master(tmp_path):
    setup(tmp_path, [row("cirros (old)", "A", visibility="community")], [burgos("cirros", "A")])
    sync(tmp_path)
    assert [(i.name, i.visibility) for i in region(tmp_path).values()] == [("cirros (old)", "community")]


def test_a_protected_copy_is_renamed_like_any_other(tmp_path):
    setup(tmp_path, [row("debian-12", "B"), row("debian-12 (w1)", "A", hidden=True)], [burgos("debian-12", "A")])
    # Glance refuses to delete a protected image, not to rename it: the file cloud has no such flag to check
    assert statuses(tmp_path)["debian-12 (w1)"] == ("pending_metadata", "debian-12")


def ami_master(kernel_in_master=True) -> list[Image]:
    kernel = row("kern", "K", id="m-kern", public=False)
    old = row("app (old)", "A", id="m-old", hidden=True)
    new = row("app", "B", id="m-new")
    old.user_properties = {"kernel_id": "m-kern"}
    new.user_properties = {"kernel_id": "m-kern"}
    return [kernel, old, new] if kernel_in_master else [old, new]


def test_a_copy_whose_kernel_the_region_lacks_is_not_renamed_and_the_new_build_waits(tmp_path):
    setup(tmp_path, ami_master(), [burgos("kern", "K"), burgos("app", "A")])
    reporter = RecordingReporter()
    entries = engine(tmp_path, reporter).region_status("Burgos")
    assert {e.master.name: e.status for e in entries} == {"app": "error_checksum"}, "the original's status"
    assert (
        "Burgos: image app (B-app) has the checksum of master image app (old), whose kernel or ramdisk the region "
        "lacks: not renamed"
    ) in reporter.messages()


def test_a_copy_whose_kernel_is_uploaded_in_the_same_run_is_renamed_before_its_namesake_is_uploaded(tmp_path):
    master = ami_master()
    master[0].set_visibility("public")  # the kernel is synchronised now: uploaded in this run
    copy = burgos("app", "A")
    copy.user_properties = {}
    setup(tmp_path, master, [copy])
    assert statuses(tmp_path)["app (old)"] == ("pending_ami", "app")
    reporter, counters = sync(tmp_path)
    assert counters["renames"] == 1
    messages = reporter.messages()
    assert messages.index("Burgos: Renaming image app (B-app) to app (old), as in the master") < messages.index(
        "Burgos: Uploading image app (0.000953674316406 MB)"
    )
    state = {i.name: i for i in region(tmp_path).values()}
    assert state["app (old)"].user_properties["kernel_id"] == state["kern"].id
    assert {s for s, _ in statuses(tmp_path).values()} == {"ok"}


def test_the_obsolete_step_and_a_rotation_work_on_the_same_region(tmp_path):
    master = [row("centos-7_obsolete", "O", public=False), row("debian-12", "B"), row("d12 (w1)", "A", hidden=True)]
    setup(tmp_path, master, [burgos("centos-7", "O"), burgos("debian-12", "A")])
    sync(tmp_path)
    assert {i.name for i in region(tmp_path).values()} == {"centos-7_obsolete", "d12 (w1)", "debian-12"}


def test_the_status_report_plans_what_the_sync_does(tmp_path):
    master = [row("debian-12", "C"), row("debian-12-previous", "B"), row("debian-12-20261101", "A", hidden=True)]
    setup(tmp_path, master, [burgos("debian-12", "B"), burgos("debian-12-previous", "A")])
    planned = statuses(tmp_path)
    reporter = RecordingReporter()
    result = engine(tmp_path, reporter).sync_region("Burgos")
    assert {s.master.name: (s.status, s.region_image.name if s.region_image else None) for s in result.statuses} == (
        planned
    )


def test_the_master_region_gives_no_duplicate_warning_for_its_hidden_old_build(tmp_path):
    write(tmp_path, "Valladolid", [row("debian-12", "B"), row("debian-12", "A", id="old", hidden=True)])
    reporter = RecordingReporter()
    engine(tmp_path, reporter).region_status("Valladolid")
    assert not any("duplicated" in m.lower() for m in reporter.messages()), reporter.messages()
