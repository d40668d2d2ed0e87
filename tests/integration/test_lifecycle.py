"""Today's Glance image lifecycle against real Keystone and Glance servers (tests/realstack), issue #13.

Hidden images (os_hidden), the community visibility, tags and rotations (a new build under the old name, the
old build renamed and hidden). The real default selection rule is used ("public and has one of the
metadata_set properties"): each test gives its images a property key of its own and passes it as
metadata_set, so tests do not see each other's images. The images are a few KB of random bytes, so no two
tests share a checksum (the rotation rule matches region images by checksum).
"""

import io
import uuid

import pytest
from django.core.management import call_command

from sync.clouds.openstack import OpenStackCloud
from sync.engine.config import load_config
from sync.engine.glancesync import GlanceSync
from sync.engine.reporter import RecordingReporter
from tests.realstack.stack import image_bytes

pytestmark = pytest.mark.integration

REGIONS = ("RegionTwo", "target:RegionOne")


def connect(stack, region):
    """Connection to a region given as the CLI names it."""
    if region.startswith("target:"):
        return stack.connect("target", region.split(":", 1)[1])
    return stack.connect("source", region)


def create(conn, name, data, hidden=False, **attrs):
    """An active image; `hidden` sets os_hidden at creation (openstacksdk would send `is_hidden=True` as a
    string property, which Glance refuses)."""
    attrs.setdefault("disk_format", "raw")
    attrs.setdefault("container_format", "bare")
    attrs.setdefault("visibility", "public")
    if hidden:
        attrs["meta"] = {"is_hidden": True}
    image = conn.image.create_image(name=name, data=data, wait=True, **attrs)
    image = conn.image.get_image(image.id)
    assert image.is_hidden is hidden and image.status == "active"
    return image


def images_of(conn, prefix):
    """The region's images under `prefix`, hidden ones included (the default listing leaves them out)."""
    found = {}
    for image in [*conn.image.images(), *conn.image.images(is_hidden=True)]:
        if image.name and image.name.startswith(prefix):
            found[image.id] = image
    return sorted(found.values(), key=lambda i: (i.name, i.id))


def by_name(conn, prefix):
    """{name: image}, after checking that no name is held twice (no duplicated copy, hidden or not)."""
    images = images_of(conn, prefix)
    names = [i.name for i in images]
    assert len(names) == len(set(names)), names
    return {i.name: i for i in images}


def state(conn, prefix):
    """What a sync may change, for every image under `prefix`: (name, id, visibility, hidden, tags, checksum)."""
    return [(i.name, i.id, i.visibility, i.is_hidden, sorted(i.tags), i.checksum) for i in images_of(conn, prefix)]


def run(stack, key, *args):
    """The glancesync command with the default rule restricted to images that have the property `key`."""
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "glancesync", "--config-file", str(stack.glancesync_conf), "--cloud", "openstack", *args,
        "--config", f"metadata_set={key}", stdout=out, stderr=err,
    )  # fmt: skip
    return out.getvalue(), err.getvalue()


def sync(stack, key, *args):
    out, err = run(stack, key, *args)
    log = out + err
    assert "has a different checksum" not in log and "ERROR" not in log, log
    return log


def status_rows(stack, key, *args):
    """The `status,region,image` rows, sorted (image names may hold spaces)."""
    return sorted(line for line in run(stack, key, "--show-status", *args)[0].splitlines() if line)


def rows(status, region, *names):
    return [f"{status},{region},{name}" for name in names]


@pytest.fixture
def key():
    return f"lc{uuid.uuid4().hex[:8]}"


@pytest.fixture
def prefix(key):
    return f"{key}-"


@pytest.fixture
def master(realstack):
    return realstack.connect("source", "RegionOne")


def test_it_makes_a_hidden_region_copy_visible_like_its_master_without_a_second_upload(realstack, master, key, prefix):
    data = image_bytes(4096)
    create(master, prefix + "base", data, **{key: "1"})
    copies = {}
    # RegionTwo's copy differs only by its hidden flag; the other one is also private
    for region, visibility in zip(REGIONS, ("public", "private"), strict=True):
        conn = connect(realstack, region)
        copies[region] = create(conn, prefix + "base", data, hidden=True, visibility=visibility, **{key: "1"})
        assert not [i for i in conn.image.images() if i.name == prefix + "base"]  # really out of the default listing
    assert status_rows(realstack, key, *REGIONS) == [
        f"pending_metadata,{region},{prefix}base" for region in sorted(REGIONS)
    ]

    log = sync(realstack, key, *REGIONS)
    assert "Uploading" not in log and "Image uploaded." not in log, log

    for region in REGIONS:
        images = images_of(connect(realstack, region), prefix)
        assert [(i.id, i.name, i.is_hidden, i.visibility, i.checksum) for i in images] == [
            (copies[region].id, prefix + "base", False, "public", copies[region].checksum)
        ], region
    assert status_rows(realstack, key, *REGIONS) == [f"ok,{region},{prefix}base" for region in sorted(REGIONS)]


def test_it_does_not_upload_a_hidden_master_image_but_hides_its_existing_copy(realstack, master, key, prefix):
    two = realstack.connect("source", "RegionTwo")
    mine = {key: "1"}
    create(master, prefix + "visible", image_bytes(2048), **mine)  # the default rule selects it: it is uploaded
    new = create(master, prefix + "hidden-new", image_bytes(3072), hidden=True, **mine)
    data = image_bytes(4096)
    create(master, prefix + "hidden-old", data, hidden=True, **mine)
    copy = create(two, prefix + "hidden-old", data, **mine)
    assert status_rows(realstack, key, *REGIONS) == [
        f"pending_metadata,RegionTwo,{prefix}hidden-old",
        f"pending_upload,RegionTwo,{prefix}visible",
        f"pending_upload,target:RegionOne,{prefix}visible",
    ]

    log = sync(realstack, key, *REGIONS)
    assert log.count("Image uploaded.") == 2, log

    copies = by_name(two, prefix)
    assert set(copies) == {prefix + "visible", prefix + "hidden-old"}
    followed = copies[prefix + "hidden-old"]
    assert (followed.id, followed.is_hidden, followed.visibility) == (copy.id, True, "public")
    assert copies[prefix + "visible"].is_hidden is False
    assert set(by_name(connect(realstack, "target:RegionOne"), prefix)) == {prefix + "visible"}
    assert status_rows(realstack, key, *REGIONS) == [
        f"ok,RegionTwo,{prefix}hidden-old",
        f"ok,RegionTwo,{prefix}visible",
        f"ok,target:RegionOne,{prefix}visible",
    ]

    # forcesyncs still uploads a hidden image: the copy is created hidden, as its master
    sync(realstack, key, "target:RegionOne", "--config", f"forcesyncs={new.id}")
    forced = by_name(connect(realstack, "target:RegionOne"), prefix)[prefix + "hidden-new"]
    assert (forced.is_hidden, forced.visibility, forced.checksum) == (True, "public", new.checksum)


def test_the_default_rule_does_not_upload_a_community_master_image_but_its_copy_follows(realstack, master, key, prefix):
    two = realstack.connect("source", "RegionTwo")
    mine = {key: "1"}
    create(master, prefix + "public", image_bytes(2048), **mine)
    create(master, prefix + "unmarked", image_bytes(2048))  # public, but without the metadata_set property
    create(master, prefix + "community-new", image_bytes(3072), visibility="community", **mine)
    data = image_bytes(4096)
    create(master, prefix + "community-old", data, visibility="community", **mine)
    copy = create(two, prefix + "community-old", data, **mine)
    assert status_rows(realstack, key, *REGIONS) == [
        f"pending_metadata,RegionTwo,{prefix}community-old",
        f"pending_upload,RegionTwo,{prefix}public",
        f"pending_upload,target:RegionOne,{prefix}public",
    ]

    log = sync(realstack, key, *REGIONS)
    assert log.count("Image uploaded.") == 2, log

    copies = by_name(two, prefix)
    assert set(copies) == {prefix + "public", prefix + "community-old"}
    followed = copies[prefix + "community-old"]
    assert (followed.id, followed.visibility, followed.is_hidden) == (copy.id, "community", False)
    assert copies[prefix + "public"].visibility == "public"
    assert set(by_name(connect(realstack, "target:RegionOne"), prefix)) == {prefix + "public"}
    assert status_rows(realstack, key, *REGIONS) == [
        f"ok,RegionTwo,{prefix}community-old",
        f"ok,RegionTwo,{prefix}public",
        f"ok,target:RegionOne,{prefix}public",
    ]


def test_master_tags_reach_new_and_existing_copies_and_region_tags_stay(realstack, master, key, prefix):
    two = realstack.connect("source", "RegionTwo")
    mine = {key: "1"}
    new = create(master, prefix + "new", image_bytes(2048), tags=["gold", "lts"], **mine)
    data = image_bytes(4096)
    create(master, prefix + "old", data, tags=["gold", "lts"], **mine)
    old_copy = create(two, prefix + "old", data, tags=["gold", "mine"], **mine)
    assert status_rows(realstack, key, "RegionTwo") == [
        f"pending_metadata,RegionTwo,{prefix}old",
        f"pending_upload,RegionTwo,{prefix}new",
    ]

    sync(realstack, key, *REGIONS)
    two_copies = by_name(two, prefix)
    assert two_copies[prefix + "old"].id == old_copy.id
    assert set(two_copies[prefix + "old"].tags) == {"gold", "lts", "mine"}  # lts added, the region's own kept
    assert set(two_copies[prefix + "new"].tags) == {"gold", "lts"}  # created with the master's tags
    target_copies = by_name(connect(realstack, "target:RegionOne"), prefix)
    assert {name: set(i.tags) for name, i in target_copies.items()} == {
        prefix + "new": {"gold", "lts"},
        prefix + "old": {"gold", "lts"},
    }

    # A tag added to the master later reaches the existing copies; a tag the region added meanwhile stays.
    master.image.add_tag(new, "fresh")
    two.image.add_tag(two_copies[prefix + "new"], "local")
    assert status_rows(realstack, key, *REGIONS) == [
        f"ok,RegionTwo,{prefix}old",
        f"ok,target:RegionOne,{prefix}old",
        f"pending_metadata,RegionTwo,{prefix}new",
        f"pending_metadata,target:RegionOne,{prefix}new",
    ]
    log = sync(realstack, key, *REGIONS)
    assert "Uploading" not in log, log
    updated = two.image.get_image(two_copies[prefix + "new"].id)
    assert set(updated.tags) == {"gold", "lts", "fresh", "local"}
    target_new = connect(realstack, "target:RegionOne").image.get_image(target_copies[prefix + "new"].id)
    assert set(target_new.tags) == {"gold", "lts", "fresh"}
    assert all(row.startswith("ok,") for row in status_rows(realstack, key, *REGIONS))


def rotate(master, name, old, new_name, data, key, tags):
    """A rotation in the master: the new build takes `name`, the old build is renamed `new_name` and hidden."""
    build = create(master, name, data, tags=tags, **{key: "1"})
    master.image.update_image(old, name=new_name, is_hidden=True)
    return build


def engine_sync(stack, key, region, *overrides):
    config = load_config(str(stack.glancesync_conf), [("metadata_set", key), *overrides])
    reporter = RecordingReporter()
    result = GlanceSync(config, OpenStackCloud(), reporter).sync_region(region)
    assert result.ok, result.error
    return result, reporter.messages()


def test_two_rotations_are_followed_and_a_third_sync_changes_nothing(realstack, master, key, prefix):
    name, first, second = prefix + "debian-12", prefix + "debian-12 (build 1)", prefix + "debian-12 (build 2)"
    tags = ["debian"]
    build1 = create(master, name, image_bytes(4096), tags=tags, **{key: "1"})
    sync(realstack, key, *REGIONS)
    copy1 = {region: by_name(connect(realstack, region), prefix)[name] for region in REGIONS}
    assert {c.checksum for c in copy1.values()} == {build1.checksum}

    # Rotation 1, followed by the command: the region's copy of build 1 is renamed and hidden, build 2 uploaded
    build2 = rotate(master, name, build1, first, image_bytes(5000), key, tags)
    assert status_rows(realstack, key, *REGIONS) == sorted(
        [f"pending_metadata,{region},{first}" for region in REGIONS]
        + [f"pending_upload,{region},{name}" for region in REGIONS]
    )
    log = sync(realstack, key, *REGIONS)
    for region in REGIONS:
        assert f"{region}: Renaming image {name} ({copy1[region].id}) to {first}, as in the master" in log, log
        images = by_name(connect(realstack, region), prefix)
        assert set(images) == {name, first}, region  # no `.old` copy, nothing else
        renamed = images[first]
        assert (renamed.id, renamed.is_hidden, renamed.visibility) == (copy1[region].id, True, "public")
        assert (images[name].checksum, images[name].is_hidden) == (build2.checksum, False)
        assert all(sorted(i.tags) == tags for i in images.values())
    copy2 = {region: by_name(connect(realstack, region), prefix)[name] for region in REGIONS}

    # Rotation 2, followed by the engine: build 2's copy follows its master, build 1's copy stays as it is
    build3 = rotate(master, name, build2, second, image_bytes(6000), key, tags)
    for region in REGIONS:
        result, messages = engine_sync(realstack, key, region)
        counters = result.counters
        assert (counters["renames"], counters["uploads"], counters["metadata"], counters["errors"]) == (1, 1, 0, 0)
        assert f"{region}: Renaming image {name} ({copy2[region].id}) to {second}, as in the master" in messages
        images = by_name(connect(realstack, region), prefix)
        assert {n: (i.id, i.is_hidden) for n, i in images.items() if n != name} == {
            first: (copy1[region].id, True),
            second: (copy2[region].id, True),
        }, region
        assert (images[name].checksum, images[name].is_hidden, images[name].visibility) == (
            build3.checksum,
            False,
            "public",
        )
        assert not [n for n in images if n.endswith(".old")]
    assert status_rows(realstack, key, *REGIONS) == sorted(
        f"ok,{region},{image}" for region in REGIONS for image in (name, first, second)
    )

    # A third sync changes nothing: same ids, names, visibilities, hidden flags, tags and checksums
    before = {region: state(connect(realstack, region), prefix) for region in REGIONS}
    log = sync(realstack, key, *REGIONS)
    assert not any(word in log for word in ("Uploading", "Renaming", "Updating", "Removing")), log
    assert log.count("Region is synchronized.") == 2, log
    assert {region: state(connect(realstack, region), prefix) for region in REGIONS} == before
    for region in REGIONS:
        result, _ = engine_sync(realstack, key, region)
        assert not any(result.counters.values()), result.counters


def test_follow_rotations_off_brings_back_the_checksum_conflict(realstack, master, key, prefix):
    name, first = prefix + "ubuntu", prefix + "ubuntu (build 1)"
    build1 = create(master, name, image_bytes(4096), **{key: "1"})
    sync(realstack, key, *REGIONS)
    copy1 = {region: by_name(connect(realstack, region), prefix)[name] for region in REGIONS}
    rotate(master, name, build1, first, image_bytes(5000), key, [])

    # Off everywhere ([DEFAULT]-like override): the original's behaviour, a checksum conflict in every region
    assert status_rows(realstack, key, *REGIONS, "--config", "follow_rotations=False") == [
        f"error_checksum,{region},{name}" for region in sorted(REGIONS)
    ]
    # Off for the master target only: RegionTwo keeps the conflict and is left alone, target:RegionOne follows
    out, err = run(realstack, key, *REGIONS, "--config", "master.follow_rotations=False")
    log = out + err
    assert f"Image {name} has a different checksum ({build1.checksum}) in region RegionTwo" in log, log
    assert "RegionTwo: Renaming" not in log and "target:RegionOne: Renaming" in log, log
    two = by_name(connect(realstack, "RegionTwo"), prefix)
    assert {n: (i.id, i.is_hidden) for n, i in two.items()} == {name: (copy1["RegionTwo"].id, False)}
    other = by_name(connect(realstack, "target:RegionOne"), prefix)
    assert {n: i.is_hidden for n, i in other.items()} == {name: False, first: True}
    assert other[first].id == copy1["target:RegionOne"].id
    assert status_rows(realstack, key, *REGIONS, "--config", "master.follow_rotations=False") == [
        f"error_checksum,RegionTwo,{name}",
        f"ok,target:RegionOne,{name}",
        f"ok,target:RegionOne,{first}",
    ]

    # With the rule on again (the default), RegionTwo's conflict is the rotation it is
    assert status_rows(realstack, key, "RegionTwo") == [
        f"pending_metadata,RegionTwo,{first}",
        f"pending_upload,RegionTwo,{name}",
    ]
