"""The sync procedure over the file cloud (spec §5): order of passes, dry run, AMI, rename/replace, errors."""

import logging
from pathlib import Path

import pytest

from sync.clouds.files import FileCloud
from sync.engine.backup import read_backup
from sync.engine.glancesync import GlanceSync, format_mb
from sync.engine.model import GlanceSyncError, SyncConfig, TargetPolicy
from sync.engine.reporter import RecordingReporter

MASTER = [
    "Valladolid,small,001,active,1000,c1,tenant1id,True,{'type': 'a'}",
    "Valladolid,kernel,002,active,2000,ck,tenant1id,True,{'type': 'kernel'}",
    "Valladolid,ramdisk,003,active,2000,cr,tenant1id,True,{'type': 'ramdisk'}",
    # An AMI image smaller than its kernel: the original uploaded it with a `__kernel` placeholder.
    "Valladolid,ami,004,active,1500,ca,tenant1id,True,\"{'type': 'image', 'kernel_id': '002', 'ramdisk_id': '003'}\"",
    "Valladolid,big,005,active,9000,c5,tenant1id,True,{'type': 'b'}",
    "Valladolid,private,006,active,10,c6,tenant1id,False,{'type': 'p'}",
]


def write_cloud(folder: Path, regions: dict[str, list[str]]) -> Path:
    for region, rows in regions.items():
        (folder / f"backup_{region}.csv").write_text("".join(row + "\r\n" for row in rows))
    return folder


def engine_for(folder: Path, reporter=None, **master_policy) -> GlanceSync:
    master_policy.setdefault("tenant", "tenant1")
    policy = {k: frozenset(v) if isinstance(v, set) else v for k, v in master_policy.items()}
    other = TargetPolicy(name="other", tenant="tenant2")
    config = SyncConfig(
        master_region="Valladolid", targets={"master": TargetPolicy(name="master", **policy), "other": other}
    )
    return GlanceSync(config, FileCloud(folder), reporter or RecordingReporter())


def region_state(folder: Path, region: str) -> dict[str, tuple]:
    images = read_backup(folder / f"backup_{region}.csv", region)
    return {i.id: (i.name, i.is_public, i.checksum, i.user_properties) for i in images}


def statuses(engine: GlanceSync, region: str) -> dict[str, str]:
    return {s.master.name: s.status for s in engine.region_status(region)}


@pytest.fixture
def cloud(tmp_path):
    return write_cloud(tmp_path, {"Valladolid": MASTER, "Burgos": [], "other:Madrid": []})


def test_it_uploads_smallest_first_and_converges(cloud):
    reporter = RecordingReporter()
    result = engine_for(cloud, reporter, metadata_set={"type"}).sync_region("Burgos")
    assert result.ok and result.counters["uploads"] == 5
    uploads = [m for m in reporter.messages() if "Uploading image" in m]
    assert uploads == [
        "Burgos: Uploading image small (0.000953674316406 MB)",
        "Burgos: Uploading image ami (0.00143051147461 MB)",
        "Burgos: Uploading image kernel (0.00190734863281 MB)",
        "Burgos: Uploading image ramdisk (0.00190734863281 MB)",
        "Burgos: Uploading image big (0.00858306884766 MB)",
    ]
    assert set(statuses(engine_for(cloud), "Burgos").values()) == {"ok"}


def test_it_points_an_ami_image_at_kernels_uploaded_after_it(cloud):
    engine_for(cloud, metadata_set={"type"}).sync_region("Burgos")
    state = {v[0]: (k, v) for k, v in region_state(cloud, "Burgos").items()}
    ami_props = state["ami"][1][3]
    assert ami_props == {"type": "image", "kernel_id": state["kernel"][0], "ramdisk_id": state["ramdisk"][0]}


def test_it_logs_the_total_uploaded(cloud):
    reporter = RecordingReporter()
    engine_for(cloud, reporter).sync_region("Burgos")
    assert reporter.messages()[-1] == "Burgos:   Total uploaded to region: 0 (MB) "


def test_a_dry_run_changes_nothing_at_all(cloud):
    write_cloud(
        cloud,
        {
            "Burgos": [
                "Burgos,small,101,active,1000,c1,tenant1id,False,{'type': 'a'}",  # pending_metadata
                "Burgos,big,105,active,9000,old,tenant1id,True,{'type': 'b'}",  # pending_replace
                "Burgos,ami,104,active,1500,ca,tenant1id,True,{'type': 'image'}",  # pending_ami
                "Burgos,x,107,active,1,cx,tenant1id,True,{}",
            ]
        },
    )
    before = (cloud / "backup_Burgos.csv").read_bytes()
    reporter = RecordingReporter()
    result = engine_for(cloud, reporter, metadata_set={"type"}, replace={"old"}).sync_region("Burgos", dry_run=True)
    assert result.ok
    assert (cloud / "backup_Burgos.csv").read_bytes() == before
    messages = reporter.messages()
    assert "Burgos: Image pending to update the metadata small" in messages
    assert "Burgos: Replacing image big (0.00858306884766 MB)" in messages
    assert "Burgos: Pending: big (0.00858306884766 MB)" in messages
    assert messages[-1] == "Burgos: MBs pending : 0"
    assert not any("Uploading image" in m for m in messages)


def test_a_dry_run_does_not_apply_obsolete_renames(tmp_path):
    folder = write_cloud(
        tmp_path,
        {
            "Valladolid": ["Valladolid,x_obsolete,001,active,10,c1,tenant1id,False,{}"],
            "Burgos": ["Burgos,x,101,active,10,c1,tenant1id,True,{}"],
        },
    )
    before = (folder / "backup_Burgos.csv").read_bytes()
    reporter = RecordingReporter()
    engine_for(folder, reporter).sync_region("Burgos", dry_run=True)
    assert (folder / "backup_Burgos.csv").read_bytes() == before
    assert "Burgos: Obsolete image pending to update x_obsolete" in reporter.messages()
    engine_for(folder).sync_region("Burgos")
    assert region_state(folder, "Burgos") == {"101": ("x_obsolete", False, "c1", {})}


def test_it_never_renames_master_images_when_syncing_the_master_region(tmp_path):
    rows = [
        "Valladolid,x_obsolete,001,active,10,c1,tenant1id,False,{}",
        "Valladolid,x,002,active,10,c1,tenant1id,False,{}",
    ]
    folder = write_cloud(tmp_path, {"Valladolid": rows})
    assert engine_for(folder).sync_region("Valladolid").ok
    assert {v[0] for v in region_state(folder, "Valladolid").values()} == {"x", "x_obsolete"}


def test_it_renames_the_old_copy_and_uploads_the_new_one(cloud):
    write_cloud(cloud, {"Burgos": ["Burgos,big,105,active,9000,old,tenant1id,True,\"{'type': 'b', 'local': 1}\""]})
    result = engine_for(cloud, rename={"old"}, metadata_set={"type"}).sync_region("Burgos")
    state = region_state(cloud, "Burgos")
    assert result.counters["renames"] == 1
    assert state["105"] == ("big.old", False, "old", {"type": "b", "local": 1})
    assert state["1$big"] == ("big", True, "c5", {"type": "b"})


def test_it_replaces_the_old_copy(cloud):
    write_cloud(cloud, {"Burgos": ["Burgos,big,105,active,9000,old,tenant1id,True,{'type': 'b'}"]})
    result = engine_for(cloud, replace={"any"}).sync_region("Burgos")
    state = region_state(cloud, "Burgos")
    assert result.counters["replaces"] == 1
    assert "105" not in state and state["1$big"][0] == "big"


def test_it_does_not_replace_a_protected_copy(cloud, monkeypatch):
    from sync.clouds.files import FileTargetSession

    write_cloud(cloud, {"Burgos": ["Burgos,big,105,active,9000,old,tenant1id,True,{'type': 'b'}"]})
    listing = FileTargetSession.list_images

    def protected(self, region):
        images = listing(self, region)
        for image in images:
            image.protected = region == "Burgos"
        return images

    monkeypatch.setattr(FileTargetSession, "list_images", protected)

    class Counting(RecordingReporter):
        started: list[str] = []

        def planned(self, images, size):
            self.plan = images

        def image_started(self, image_name):
            self.started.append(image_name)

    reporter = Counting()
    result = engine_for(cloud, reporter, replace={"any"}).sync_region("Burgos")
    assert result.counters["replaces"] == 0 and result.counters["errors"] == 1
    assert reporter.plan == len(set(reporter.started)) == 4 and "big" not in reporter.started  # 100 % reachable
    assert (
        "Burgos: Image big (105) is protected: it cannot be replaced. Unprotect it, or list its checksum in "
        "rename instead of replace."
    ) in reporter.messages(logging.WARNING)
    state = region_state(cloud, "Burgos")
    assert [name for name, *_ in state.values()].count("big") == 1 and "105" in state  # no second "big"
    assert result.counters["uploads"] == 4  # the other images are synced


def test_it_warns_about_checksum_conflicts_and_says_so_at_the_end(cloud):
    write_cloud(cloud, {"Burgos": ["Burgos,big,105,active,9000,old,tenant1id,True,{'type': 'b'}"]})
    reporter = RecordingReporter()
    engine = engine_for(cloud, reporter, metadata_condition="image.name == 'big'")
    result = engine.sync_region("Burgos")
    assert result.ok and result.counters["errors"] == 1
    assert reporter.messages(logging.WARNING) == [
        "Image big has a different checksum (old) in region Burgos than in the master region. It was not set "
        "what to do. Please, fill either dontupdate, replace or rename with the checksum."
    ]
    assert reporter.messages()[-1] == "Burgos: Region is synchronized, except 1 image(s) in error: big (error_checksum)"


def test_an_error_stops_the_region_only(cloud):
    (cloud / "backup_Broken.csv").write_text("Broken,a,1,active,notanumber,c,t,True,{}\r\n")
    engine = engine_for(cloud)
    broken = engine.sync_region("Broken")
    assert not broken.ok and "line 1" in broken.error
    assert engine.sync_region("Burgos").ok


def test_it_syncs_other_targets_with_their_own_rules(cloud):
    engine = engine_for(cloud)
    engine.config.targets["other"].metadata_condition = None
    result = engine.sync_region("other:Madrid")
    state = region_state(cloud, "other:Madrid")
    assert result.ok and {v[0] for v in state.values()} == {"small", "kernel", "ramdisk", "ami", "big"}
    owners = {i.owner for i in read_backup(cloud / "backup_other:Madrid.csv", "x")}
    assert owners == {"tenant2id"}


def test_it_lists_regions_per_target(cloud):
    engine = engine_for(cloud)
    assert engine.get_regions() == ["Burgos"]
    assert engine.get_regions(omit_master_region=False) == ["Burgos", "Valladolid"]
    assert engine.get_regions("other") == ["other:Madrid"]


def test_it_drops_duplicated_master_images_with_one_warning(tmp_path):
    rows = MASTER + ["Valladolid,small,009,active,1000,c1,tenant1id,True,{'type': 'a'}"]
    folder = write_cloud(tmp_path, {"Valladolid": rows, "Burgos": []})
    reporter = RecordingReporter()
    engine = engine_for(folder, reporter)
    assert "small" not in engine.master
    assert reporter.messages(logging.WARNING) == ["Duplicated images with name small will be ignored"]


def test_it_survives_a_kernel_reference_outside_the_master_images(tmp_path):
    rows = ["Valladolid,ami,001,active,10,c,tenant1id,True,\"{'kernel_id': 'gone'}\""]
    folder = write_cloud(tmp_path, {"Valladolid": rows, "Burgos": ["Burgos,ami,101,active,10,c,tenant1id,True,{}"]})
    reporter = RecordingReporter()
    engine = engine_for(folder, reporter)
    assert statuses(engine, "Burgos") == {"ami": "error_ami"}
    assert "kernel_id gone, which is not a usable master image" in reporter.messages()[0]


def test_it_names_the_region_when_the_master_region_is_unknown(tmp_path):
    folder = write_cloud(tmp_path, {"Burgos": []})
    with pytest.raises(GlanceSyncError, match="Valladolid"):
        engine_for(folder)


@pytest.mark.parametrize(
    ("size", "text"), [(1073741954, "1024.00012398"), (1000, "0.000953674316406"), (1048576, "1.0")]
)
def test_it_formats_megabytes_like_the_original(size, text):
    assert format_mb(size) == text


def test_it_removes_uploads_an_earlier_run_left_unfinished(cloud, monkeypatch):
    write_cloud(cloud, {"Burgos": ["Burgos,small,101,saving,1000,,tenant1id,True,{}"]})
    from sync.clouds.files import FileTargetSession

    listing = FileTargetSession.list_images

    def marked(self, region):
        images = listing(self, region)
        for image in images:
            image.extra["unfinished_upload"] = image.status == "saving"
        return images

    monkeypatch.setattr(FileTargetSession, "list_images", marked)
    reporter = RecordingReporter()
    engine_for(cloud, reporter).sync_region("Burgos", dry_run=True)
    assert "Burgos: Unfinished upload to remove: small (101)" in reporter.messages()
    assert "101" in region_state(cloud, "Burgos")
    engine_for(cloud, reporter).sync_region("Burgos")
    assert "Burgos: Removing unfinished upload small (101)" in reporter.messages()
    state = region_state(cloud, "Burgos")
    assert "101" not in state and state["1$small"][0] == "small"
    assert not any("is not active" in m for m in reporter.messages())
