"""--show-status from a listing with twins (issue #17 item 4): a file cloud's rows that read as the master's row
of the same name are decided without their images. Every output row and log line must be the general path's
(`region_status`), whatever the mix of copies, duplicates, foreign, inactive, retired, AMI and rotated images."""

from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sync.clouds.files import FileCloud
from sync.engine.backup import backup_file_name, master_tails, owned_tails, read_backup, write_backup
from sync.engine.glancesync import GlanceSync, status_rows
from sync.engine.model import Image, SyncConfig, TargetPolicy
from sync.engine.reporter import RecordingReporter

TENANT = "tenant1id"
MASTER = "Valladolid"


def write(folder, key: str, images: list[Image], extra: str = "") -> None:
    with open(folder / backup_file_name(key), "w", newline="", encoding="utf-8") as stream:
        write_backup(images, stream)
        stream.write(extra)


def config(**master: object) -> SyncConfig:
    targets = {
        "master": TargetPolicy(name="master", tenant_id=TENANT, **master),  # type: ignore[arg-type]
        "other": TargetPolicy(name="other", tenant_id="tenant2id"),
    }
    return SyncConfig(master_region=MASTER, targets=targets)


def both_ways(folder, conf: SyncConfig, region: str) -> tuple[tuple[str, list], tuple[str, list]]:
    """(rows, log) of export_status with twins, and of the general path, each on a fresh cloud."""
    twins, general = RecordingReporter(), RecordingReporter()
    engine = GlanceSync(conf, FileCloud(folder), RecordingReporter())
    stream = io.StringIO()
    engine.export_status(region, stream, twins)
    reference = GlanceSync(conf, FileCloud(folder), RecordingReporter())
    rows = status_rows(region, [(e.status, e.master.name) for e in reference.region_status(region, general)])
    return (stream.getvalue(), twins.records), (rows, general.records)


def used_twins(folder, conf: SyncConfig, region: str) -> bool:
    engine = GlanceSync(conf, FileCloud(folder), RecordingReporter())
    return engine._twin_statuses(engine.resolve(region), RecordingReporter()) is not None


def master_image(n: int, **kw: object) -> Image:
    fields: dict = {"owner": TENANT, "checksum": f"c{n}", "size": n % 3, "user_properties": {"type": "base"}}
    fields.update(kw)
    return Image(f"img{n}", f"m{n}", MASTER, **fields)


def copy_of(master: Image, image_id: str, region: str = "Burgos", **kw: object) -> Image:
    image = master.copy()
    image.id, image.region = image_id, region
    for key, value in kw.items():
        setattr(image, key, value)
    return image


def test_identical_copies_are_ok_and_a_changed_copy_is_decided_by_the_rules(tmp_path):
    masters = [master_image(n) for n in range(6)]
    write(tmp_path, MASTER, masters)
    region = [copy_of(m, f"r{i}") for i, m in enumerate(masters[:4])]
    region[1].user_properties = {"type": "other"}
    write(tmp_path, "Burgos", region)
    twins, general = both_ways(tmp_path, config(), "Burgos")
    assert twins == general
    assert "ok,Burgos,img0\r\n" in twins[0] and "pending_metadata,Burgos,img1\r\n" in twins[0]
    assert used_twins(tmp_path, config(), "Burgos")


def test_twins_that_rules_involve_are_read_in_their_place(tmp_path):
    kernel = master_image(90, user_properties={"type": "kernel"})
    machine = master_image(91, user_properties={"type": "machine", "kernel_id": "m90"})
    hidden = master_image(92, hidden=True)
    masters = [master_image(n) for n in range(8)] + [kernel, machine, hidden]
    write(tmp_path, MASTER, masters)
    region = [
        copy_of(masters[0], "r0"),
        copy_of(masters[0], "r0b"),  # the same row twice under two ids: a duplicated name
        copy_of(masters[1], "r1"),
        copy_of(masters[1], "r1b", checksum="patched"),  # a namesake with other content
        copy_of(masters[2], "r2", owner="foreign"),
        copy_of(masters[3], "r3", status="queued"),
        copy_of(masters[4], "r4"),
        copy_of(kernel, "rk"),
        copy_of(machine, "rm", user_properties={"type": "machine", "kernel_id": "rk"}),
        copy_of(hidden, "rh"),
        Image("local", "rl", "Burgos", owner=TENANT, checksum="c5"),  # a copy of img5 under another name
    ]
    write(tmp_path, "Burgos", region)
    for conf in (config(), config(follow_rotations=False), config(only_tenant_images=False)):
        twins, general = both_ways(tmp_path, conf, "Burgos")
        assert twins == general
        assert general[1]  # the duplicates, foreign and inactive images are warned about


def test_a_file_only_read_backup_reads_and_a_repeated_id_take_the_general_path(tmp_path):
    masters = [master_image(n) for n in range(3)]
    write(tmp_path, MASTER, masters)
    write(tmp_path, "Burgos", [copy_of(m, f"r{i}") for i, m in enumerate(masters)], extra="\r\n")  # a blank line
    assert both_ways(tmp_path, config(), "Burgos")[0] == both_ways(tmp_path, config(), "Burgos")[1]
    assert not used_twins(tmp_path, config(), "Burgos")
    write(tmp_path, "Soria", [copy_of(masters[0], "same"), copy_of(masters[1], "same")])
    engine = GlanceSync(config(), FileCloud(tmp_path), RecordingReporter())
    assert engine._twin_statuses(engine.resolve("Soria"), RecordingReporter()) is None


def test_the_master_region_and_other_targets_give_the_general_rows(tmp_path):
    masters = [master_image(n) for n in range(3)]
    write(tmp_path, MASTER, masters)
    write(tmp_path, "other:Lugo", [copy_of(m, f"o{i}", "other:Lugo") for i, m in enumerate(masters)])
    for region in (MASTER, "other:Lugo"):
        twins, general = both_ways(tmp_path, config(), region)
        assert twins == general and twins[0]


def test_a_twin_of_a_master_row_the_master_filters_out_changes_nothing(tmp_path):
    managed = master_image(1)
    filtered = master_image(2, owner="foreign", checksum=managed.checksum)  # not a master image: another owner's
    write(tmp_path, MASTER, [managed, filtered])
    write(tmp_path, "Burgos", [copy_of(filtered, "r2")])  # reads as the filtered row: a twin of no master image
    twins, general = both_ways(tmp_path, config(), "Burgos")
    assert twins == general
    assert general[0] == "pending_upload,Burgos,img1\r\n"  # another tenant's image cannot be renamed to follow


def test_a_twin_of_an_ami_image_is_decided_by_the_ami_rules(tmp_path):
    kernel = master_image(1, user_properties={"type": "kernel"})
    machine = master_image(2, user_properties={"type": "machine", "kernel_id": kernel.id})
    write(tmp_path, MASTER, [kernel, machine])
    write(tmp_path, "Burgos", [copy_of(kernel, "rk"), copy_of(machine, "rm")])  # still the master's kernel id
    twins, general = both_ways(tmp_path, config(), "Burgos")
    assert twins == general
    assert "pending_metadata,Burgos,img2\r\n" in general[0]  # its kernel_id is to point at the region's kernel


OWN = "tenant2id"  # the other target's tenant: its copies' owner


def owned_listing(folder, conf: SyncConfig, region: str):
    engine = GlanceSync(conf, FileCloud(folder), RecordingReporter())
    ref = engine.resolve(region)
    return engine.session(ref.target).list_with_twins(ref.name, MASTER)


def test_copies_the_other_target_s_tenant_owns_are_owned_twins_decided_by_the_rules(tmp_path):
    kernel = master_image(90, user_properties={"type": "kernel"})
    machine = master_image(91, user_properties={"type": "machine", "kernel_id": "m90"})
    ownerless = master_image(92, owner=None)
    masters = [master_image(n) for n in range(8)] + [kernel, machine, ownerless]
    write(tmp_path, MASTER, masters)
    lugo = "other:Lugo"
    region = [
        copy_of(masters[0], "o0", lugo, owner=OWN),  # an owned twin: ok
        copy_of(masters[1], "o1", lugo),  # the master's owner: another tenant's here
        copy_of(masters[2], "o2", lugo, owner=OWN, status="queued"),  # not a twin: another status
        copy_of(masters[3], "o3", lugo, owner=OWN),
        copy_of(masters[3], "o3b", lugo),  # the same name again, with the master's owner
        copy_of(masters[4], "o4", lugo, owner=OWN),
        copy_of(masters[4], "o4b", lugo, owner=OWN, checksum="patched"),  # a namesake with other content
        copy_of(masters[5], "o5", lugo, owner=OWN, user_properties={"type": "changed"}),
        copy_of(kernel, "ok", lugo, owner=OWN),  # an owned twin a machine image refers to by name
        copy_of(machine, "om", lugo, owner=OWN, user_properties={"type": "machine", "kernel_id": "ok"}),
        copy_of(ownerless, "on", lugo, owner=OWN),  # the master's is ownerless, the copy its tenant's
        Image("local", "ol", lugo, owner=OWN, checksum="c6"),  # a copy of img6 under another name
    ]
    write(tmp_path, lugo, region)
    for policy in ({}, {"follow_rotations": False}, {"only_tenant_images": False}):
        conf = config()
        conf.targets["other"] = TargetPolicy(name="other", tenant_id=OWN, **policy)  # type: ignore[arg-type]
        twins, general = both_ways(tmp_path, conf, lugo)
        assert twins == general
        assert "ok,other:Lugo,img0\r\n" in general[0] and "ok,other:Lugo,img92\r\n" in general[0]
        assert general[1]  # the foreign, inactive and duplicated images are warned about
    listing = owned_listing(tmp_path, config(), lugo)
    assert listing is not None
    assert listing.owned == {"img0", "img3", "img4", "img90", "img92"}
    assert listing.owned_prototypes["img0"].owner == OWN


def test_an_owned_prototype_is_what_its_row_reads_as(tmp_path):
    masters = [
        master_image(1),
        master_image(2, visibility="community", hidden=True, tags=frozenset({"a", "b"}), protected=True),
        master_image(3, owner=None, is_public=False, user_properties={"kernel_id": "m1", "n": [1]}),
    ]
    write(tmp_path, MASTER, masters)
    tails, prototypes = master_tails(tmp_path / backup_file_name(MASTER), "marker")
    owned, owned_prototypes = owned_tails(tails, prototypes, OWN)
    assert set(owned) == {"img1", "img2", "img3"}
    for name, tail in owned.items():
        (read,) = read_backup(io.StringIO(f"{MASTER},{name},m,{tail}\r\n"), "owned")
        prototype = owned_prototypes[name]
        assert (read.owner, read.id, read.extra) == (OWN, "m", prototype.extra)
        read.id = prototype.id
        assert [getattr(read, f) for f in Image.__slots__] == [getattr(prototype, f) for f in Image.__slots__]


def test_an_owner_the_fast_path_would_not_read_back_gives_no_owned_twins(tmp_path):
    masters = [master_image(n) for n in range(2)]
    write(tmp_path, MASTER, masters)
    write(tmp_path, "other:Lugo", [copy_of(m, f"o{i}", "other:Lugo", owner="a,b") for i, m in enumerate(masters)])
    conf = config()
    conf.targets["other"] = TargetPolicy(name="other", tenant_id="a,b")
    listing = owned_listing(tmp_path, conf, "other:Lugo")
    assert listing is not None and not listing.owned and not listing.names
    twins, general = both_ways(tmp_path, conf, "other:Lugo")
    assert twins == general and "ok,other:Lugo,img0\r\n" in general[0]


# --- generated mixes ---------------------------------------------------------------------------------

_FATES = (
    *("same", "same", "same", "props", "checksum", "foreign", "inactive", "twice", "dup", "renamed", "hidden"),
    *("owned", "owned", "owned twice"),  # owned by the region's tenant (the master's in the master target)
)


@st.composite
def fleets(draw):
    n = draw(st.integers(1, 8))
    masters = []
    for i in range(n):
        kinds = ("base", "plain", "private", "hidden", "tagged", "marker", "ownerless", "foreign", "queued")
        kind = draw(st.sampled_from(kinds))
        props: dict = {"type": "base"} if kind != "plain" else {"os": "x"}
        fields: dict = {}
        if kind == "private":
            fields["is_public"] = False
        elif kind == "hidden":
            fields["hidden"] = True
        elif kind == "tagged":
            fields["tags"] = frozenset({"t"})
        elif kind == "marker":
            props["glancesync_upload_in_progress"] = "1"
        elif kind == "ownerless":
            fields["owner"] = None
        elif kind == "foreign":  # filtered out of the master images, its checksum maybe a master image's
            fields["owner"], fields["checksum"] = "foreign", draw(st.sampled_from((f"c{i}", "c0")))
        elif kind == "queued":
            fields["status"] = "queued"
        masters.append(master_image(i, user_properties=props, **fields))
    if n > 2 and draw(st.booleans()):  # an AMI image referring to a kernel by id
        masters[0].user_properties["kernel_id"] = masters[1].id
    if draw(st.booleans()):  # a name twice in the master
        masters.append(copy_of(masters[-1], "mdup", MASTER))
    where = draw(st.sampled_from(("Burgos", "other:Lugo")))
    own = TENANT if where == "Burgos" else OWN
    region = []
    for i, master in enumerate(masters):
        fate = draw(st.sampled_from((*_FATES, "missing")))
        if fate == "missing":
            continue
        copy = copy_of(master, f"r{i}", where)
        if "kernel_id" in copy.user_properties:  # the region's kernel, a stale id, or the master's (a twin)
            copy.user_properties["kernel_id"] = draw(st.sampled_from(("r1", "gone", copy.user_properties["kernel_id"])))
        if fate == "props":
            copy.user_properties = {**copy.user_properties, "nid": 1}
        elif fate == "checksum":
            copy.checksum = draw(st.sampled_from(("stale", "c0")))
        elif fate == "foreign":
            copy.owner = "foreign"
        elif fate == "inactive":
            copy.status = "saving"
        elif fate == "renamed":
            copy.name = f"{master.name}.old"
        elif fate == "hidden":
            copy.hidden = True
        elif fate.startswith("owned"):
            copy.owner = own
        region.append(copy)
        if fate in ("twice", "owned twice"):
            region.append(copy_of(master, f"r{i}b", where))
        elif fate == "dup":
            region.append(copy_of(master, f"r{i}d", where, checksum="other"))
    region = draw(st.permutations(region))
    policy = {
        "only_tenant_images": draw(st.booleans()),
        "follow_rotations": draw(st.booleans()),
        "metadata_set": draw(st.sampled_from((frozenset(), frozenset({"type"})))),
        "replace": draw(st.sampled_from((frozenset(), frozenset({"stale"}), frozenset({"any"})))),
    }
    return masters, list(region), policy, where


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fleet=fleets())
def test_generated_regions_give_the_general_path_s_rows_and_log(tmp_path_factory, fleet):
    masters, region, policy, where = fleet
    folder = tmp_path_factory.mktemp("fleet")
    write(folder, MASTER, masters)
    write(folder, where, region)
    conf = config(**policy)
    conf.targets["other"] = TargetPolicy(name="other", tenant_id=OWN, **policy)
    twins, general = both_ways(folder, conf, where)
    assert twins == general


@pytest.mark.parametrize("change", ["properties", "status"])
def test_a_region_changed_in_memory_is_not_read_from_its_file(tmp_path, change):
    masters = [master_image(n) for n in range(2)]
    write(tmp_path, MASTER, masters)
    write(tmp_path, "Burgos", [copy_of(m, f"r{i}") for i, m in enumerate(masters)])
    cloud = FileCloud(tmp_path)
    region = cloud.region("Burgos")  # loaded: this run's changes are in memory, maybe not saved
    assert region is not None
    if change == "properties":
        region["r0"].user_properties = region["r0"].user_properties | {"type": "changed"}
    else:
        region["r0"].status = "killed"
    engine = GlanceSync(config(), cloud, RecordingReporter())
    stream = io.StringIO()
    engine.export_status("Burgos", stream)
    assert stream.getvalue().startswith(("pending_metadata,Burgos,img0", "pending_upload,Burgos,img0"))
    assert engine._twin_statuses(engine.resolve("Burgos"), RecordingReporter()) is None
