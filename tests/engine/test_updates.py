"""In-memory updates of region images: metadata (§5.2), uploads (§5.3), AMI fix-ups (§5.5), obsolete (§5.6)."""

from sync.engine.model import Image, TargetPolicy
from sync.engine.reporter import RecordingReporter
from sync.engine.selection import Selector
from sync.engine.updates import fix_ami_references, obsolete_updates, updated_metadata, upload_copy


def img(name, checksum="c", id=None, **kw):
    return Image(name=name, id=id or f"id-{name}", region="Burgos", checksum=checksum, **kw)


def target(**kw):
    return TargetPolicy(name="master", **{k: frozenset(v) if isinstance(v, set) else v for k, v in kw.items()})


def test_it_copies_metadata_set_properties_and_keeps_local_ones():
    master = img("a", user_properties={"type": "ngimages", "k3": "m"})
    region = img("a", is_public=False, user_properties={"type": "wrong", "nid": 10, "k4": "v3"})
    updated = updated_metadata(region, master, target(metadata_set={"nid", "type"}), {}, "Burgos", RecordingReporter())
    assert updated.user_properties == {"type": "ngimages", "k4": "v3"}
    assert updated.is_public is True
    assert region.user_properties["type"] == "wrong", "the listing's image must not change"


def test_it_synchronises_every_property_when_metadata_set_is_empty():
    # The original copied nothing here, leaving the image pending_metadata forever (spec §9.1-4).
    master = img("a", user_properties={"type": "x"})
    region = img("a", user_properties={"type": "y", "local": 1})
    updated = updated_metadata(region, master, target(), {}, "Burgos", RecordingReporter())
    assert updated.user_properties == {"type": "x"}


def test_it_uploads_only_metadata_set_properties_plus_ami_references():
    master = img("a", user_properties={"type": "other", "k1": "v", "kernel_id": "k"})
    region_map = {"k": img("k", id="rk")}
    copy, resolved = upload_copy(master, target(metadata_set={"type"}), region_map, "Burgos", RecordingReporter())
    assert copy.user_properties == {"type": "other", "kernel_id": "rk"}
    assert resolved


def test_it_uploads_every_property_without_metadata_set():
    master = img("a", user_properties={"type": "other", "k1": "v"})
    copy, _ = upload_copy(master, target(), {}, "Burgos", RecordingReporter())
    assert copy.user_properties == {"type": "other", "k1": "v"}


def test_it_leaves_out_unresolved_ami_references_with_a_warning():
    master = img("ami", user_properties={"kernel_id": "kern", "ramdisk_id": "ram"})
    image = img("ami", user_properties={"kernel_id": "stale", "ramdisk_id": "old"})
    reporter = RecordingReporter()
    resolved = fix_ami_references(image, master, {"ram": img("ram", id="rr")}, "Burgos", reporter)
    assert not resolved
    assert image.user_properties == {"ramdisk_id": "rr"}
    assert reporter.messages() == ["Burgos: Not found kern on region. It should be kernel_id of image ami"]


def test_it_removes_ami_references_the_master_does_not_have():
    image = img("a", user_properties={"kernel_id": "x"})
    assert fix_ami_references(image, img("a"), {}, "Burgos", RecordingReporter())
    assert image.user_properties == {}


class TestObsolete:
    def run(self, master_images, region_images, **policy):
        master = {i.name: i for i in master_images}
        reporter = RecordingReporter()
        policy.setdefault("obsolete_syncprops", {"prop1", "prop3"})
        updates = obsolete_updates(master, Selector(target(**policy)), region_images, "t1", "Burgos", reporter)
        return updates, reporter.messages()

    def test_it_renames_a_copy_of_an_obsoleted_image(self):
        master = [img("x_obsolete", checksum="c1", is_public=False, user_properties={"prop1": "key1"})]
        region = [img("x", checksum="c1", owner="t1", user_properties={"prop1": "key2", "prop2": "p"})]
        (update,), _ = self.run(master, region)
        assert update.name == "x_obsolete" and update.is_public is False
        assert update.user_properties == {"prop1": "key1", "prop2": "p"}

    def test_it_leaves_a_copy_with_another_checksum(self):
        master = [img("x_obsolete", checksum="c1")]
        assert self.run(master, [img("x", checksum="c2")])[0] == []

    def test_it_leaves_another_tenants_image(self):
        master = [img("x_obsolete", checksum="c1")]
        assert self.run(master, [img("x", checksum="c1", owner="other")])[0] == []

    def test_it_resyncs_properties_of_an_already_renamed_copy_only_when_they_differ(self):
        master = [img("x_obsolete", checksum="c1", user_properties={"prop1": "key1"})]
        (update,), _ = self.run(master, [img("x_obsolete", checksum="c1", user_properties={"prop1": "key2"})])
        assert update.user_properties == {"prop1": "key1"}
        assert self.run(master, [img("x_obsolete", checksum="c1", user_properties={"prop1": "key1"})])[0] == []

    def test_it_propagates_visibility_to_an_already_renamed_copy(self):
        master = [img("x_obsolete", checksum="c1", is_public=False)]
        (update,), _ = self.run(master, [img("x_obsolete", checksum="c1", is_public=True)])
        assert update.is_public is False

    def test_it_ignores_an_obsolete_image_whose_base_is_still_synchronised(self):
        master = [img("x_obsolete", checksum="c1"), img("x", checksum="c2", is_public=True)]
        updates, warnings = self.run(master, [img("x", checksum="c1")])
        assert updates == []
        assert warnings == ["Ignore obsolete master image x_obsolete because x exists and it is synchronisable."]

    def test_it_renames_when_the_base_exists_but_is_not_synchronised(self):
        master = [img("x_obsolete", checksum="c1"), img("x", checksum="c2", is_public=False)]
        (update,), warnings = self.run(master, [img("x", checksum="c1")])
        assert update.name == "x_obsolete" and warnings == []
