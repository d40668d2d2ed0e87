"""Image.copy() (issue #17): copy.deepcopy's result at a fraction of its cost.

Immutable values are shared, dicts copied with their mutable values deep-copied, anything else deep-copied.
These tests pin that no change to a copy, at any depth, ever reaches the original, and that every caller of
`.copy()` (the updates, the selection of retired images, the rename of an old copy) leaves its input as it was.
"""

import copy
from dataclasses import fields

from hypothesis import given, settings
from hypothesis import strategies as st

from sync.engine.model import Image, TargetPolicy
from sync.engine.reporter import RecordingReporter
from sync.engine.selection import Selector
from sync.engine.updates import _with_obsolete_properties, updated_metadata, upload_copy


class DriverObject:
    """What a driver may keep in `extra`: a mutable object of its own."""

    def __init__(self, values: list[int]) -> None:
        self.values = values


def every_field(image: Image) -> dict:
    return {f.name: getattr(image, f.name) for f in fields(Image)}


def rich_image() -> Image:
    return Image(
        "debian",
        "id-1",
        "Burgos",
        owner="o",
        checksum="c",
        size=5,
        user_properties={"type": "x", "nid": 1, "list": [1, [2]], "nested": {"k": {"v": 1}}},
        extra={"disk_format": "qcow2", "min_ram": 0, "driver": DriverObject([1]), "meta": {"a": [1]}},
        visibility="shared",
        hidden=True,
        tags={"a", "b"},
        protected=True,
    )


def test_a_copy_has_every_field_of_the_original_as_deepcopy_gives_it():
    image = rich_image()
    clone, deep = image.copy(), copy.deepcopy(image)
    assert type(clone) is Image and clone == image
    assert every_field(clone).keys() == every_field(deep).keys()
    for name, value in every_field(clone).items():
        if name == "extra":  # the driver's object has no __eq__: compare what it holds
            assert value.keys() == deep.extra.keys() and value["driver"].values == deep.extra["driver"].values
        else:
            assert value == getattr(deep, name), name


def test_a_change_to_a_copy_never_reaches_the_original():
    image = rich_image()
    before = copy.deepcopy(image)
    clone = image.copy()
    clone.user_properties["type"] = "y"
    clone.user_properties.pop("nid")
    clone.user_properties["list"][1].append(3)
    clone.user_properties["nested"]["k"]["v"] = 2
    clone.extra["disk_format"] = "raw"
    clone.extra["driver"].values.append(2)
    clone.extra["meta"]["a"].append(2)
    clone.extra["new"] = True
    clone.name, clone.tags, clone.size = "other", clone.tags | {"c"}, 6
    clone.set_visibility("public")
    assert image == before
    assert image.extra.keys() == before.extra.keys() and image.extra["driver"].values == [1]
    assert image.extra["meta"] == {"a": [1]} and image.extra["disk_format"] == "qcow2"


def test_a_change_to_the_original_never_reaches_the_copy():
    image = rich_image()
    clone = image.copy()
    image.user_properties["list"].append(9)
    image.extra["driver"].values.append(9)
    assert clone.user_properties["list"] == [1, [2]] and clone.extra["driver"].values == [1]


def test_immutable_values_are_shared_and_everything_mutable_is_not():
    image = rich_image()
    clone = image.copy()
    assert clone.name is image.name and clone.tags is image.tags  # a frozenset of strings: nothing to copy
    assert clone.user_properties is not image.user_properties and clone.extra is not image.extra
    assert clone.user_properties["list"] is not image.user_properties["list"]
    assert clone.extra["driver"] is not image.extra["driver"]


def test_a_value_shared_by_two_fields_stays_shared_in_the_copy_as_with_deepcopy():
    shared = [1]
    image = Image("a", "1", "R", user_properties={"l": shared}, extra={"l": shared})
    clone = image.copy()
    assert clone.user_properties["l"] is clone.extra["l"] and clone.extra["l"] is not shared


def test_mutable_tags_of_another_type_are_copied():
    image = Image("a", "1", "R")
    image.tags = {"a"}  # type: ignore[assignment] (a caller bypassing __post_init__)
    clone = image.copy()
    clone.tags.add("b")  # type: ignore[attr-defined]
    assert image.tags == {"a"}


def test_a_subclass_is_deep_copied_with_its_own_state():
    class Tagged(Image):
        __slots__ = ("note",)

    image = Tagged("a", "1", "R", user_properties={"l": [1]})
    image.note = ["n"]
    clone = image.copy()
    assert type(clone) is Tagged and clone.note == ["n"] and clone.note is not image.note


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)
mappings = st.dictionaries(st.text(max_size=4), values, max_size=5)


def mutate(value):
    """Change every mutable container reachable from `value`, in place."""
    if isinstance(value, list):
        for item in value:
            mutate(item)
        value.append("changed")
    elif isinstance(value, dict):
        for item in value.values():
            mutate(item)
        value["changed"] = "changed"


@settings(max_examples=200, deadline=None)
@given(properties=mappings, extra=mappings)
def test_any_nested_change_to_a_copy_leaves_the_original_as_it_was(properties, extra):
    image = Image("a", "1", "R", user_properties=properties, extra=extra)
    before = copy.deepcopy(image)
    clone = image.copy()
    assert clone == before and clone.extra == before.extra
    mutate(clone.user_properties)
    mutate(clone.extra)
    assert image == before and image.extra == before.extra


# --- the callers of .copy() leave their input as it was ------------------------------------------------


def target(**kw) -> TargetPolicy:
    return TargetPolicy(name="master", **kw)


def test_updated_metadata_leaves_the_listing_s_image_as_it_was():
    master = Image("a", "m", "Master", user_properties={"type": "x", "kernel_id": "k"}, tags={"t"})
    region = Image("a", "r", "Burgos", user_properties={"type": "y", "kernel_id": "old", "l": [1]}, hidden=True)
    region.extra["driver"] = DriverObject([1])
    before = copy.deepcopy(region)
    for policy in (target(), target(metadata_set=frozenset({"type"}))):
        updated = updated_metadata(region, master, policy, {"k": Image("k", "rk", "Burgos")}, "B", RecordingReporter())
        updated.user_properties.setdefault("l", []).append(2)
        updated.extra["driver"].values.append(2)
        assert updated.name == "a" and updated.tags == {"t"} and updated.user_properties["kernel_id"] == "rk"
        assert region == before and region.extra["driver"].values == [1]


def test_upload_copy_and_obsolete_copies_leave_their_sources_as_they_were():
    master = Image("a", "m", "Master", user_properties={"type": "x", "nested": {"k": 1}}, extra={"min_ram": 1})
    region = Image("a", "r", "Burgos", user_properties={"type": "y", "nested": {"k": 1}})
    master_before, region_before = copy.deepcopy(master), copy.deepcopy(region)
    uploaded, _ = upload_copy(master, target(), {}, "B", RecordingReporter())
    uploaded.user_properties["nested"]["k"] = 2
    uploaded.extra["min_ram"] = 2
    changed = _with_obsolete_properties(region, master, target(obsolete_syncprops=frozenset({"type"})))
    changed.user_properties["nested"]["k"] = 3
    assert changed.user_properties["type"] == "x"
    assert master == master_before and master.extra == {"min_ram": 1} and region == region_before


def test_selecting_a_retired_image_leaves_it_retired():
    image = Image("a", "1", "Master", visibility="community", hidden=True)
    assert Selector(target()).is_retired(image)
    assert (image.visibility, image.hidden) == ("community", True)
