"""Reading big listings fast (issue #17): the shared properties parse, Image.listed and interning.

Each distinct properties string is parsed once and the parse is shared; these tests pin that sharing never
shows: two different strings never give the same result, and every image owns its properties.
"""

import copy
import io
from dataclasses import fields

import pytest

from sync.engine.backup import _parse_properties, _parse_tail, clear_caches, read_backup
from sync.engine.model import Image
from sync.engine.status import _compared, metadata_differs


def read_text(text: str) -> list[Image]:
    return read_backup(io.StringIO(text, newline=""), "backup_Burgos.csv")


def row(name: str, props: str, image_id: str = "1") -> str:
    quoted = f'"{props}"' if "," in props else props
    return f"Burgos,{name},{image_id},active,5,c,o,True,{quoted}\r\n"


# --- Image.listed ------------------------------------------------------------------------------------


@pytest.mark.parametrize("public", [True, False])
def test_it_builds_the_same_image_as_the_constructor(public):
    args = ("n", "id", "Burgos", "o", public, "c", 5, "active", {"type": "x"})
    listed, built = Image.listed(*args[:-1], dict(args[-1])), Image(*args)
    assert listed == built
    assert {f.name: getattr(listed, f.name) for f in fields(Image)} == {
        f.name: getattr(built, f.name) for f in fields(Image)
    }
    assert not hasattr(listed, "__dict__") and all(hasattr(listed, slot) for slot in Image.__slots__)
    assert listed.visibility == ("public" if public else "private")


def test_it_gives_each_listed_image_its_own_extra_dict():
    first, second = (Image.listed("n", str(i), "R", None, True, None, 0, "active", {}) for i in range(2))
    first.extra["unfinished_upload"] = True
    assert second.extra == {}


def test_it_lets_a_listed_image_change_like_any_other():
    image = Image.listed("n", "id", "R", None, True, None, 0, "active", {})
    image.set_visibility("community")
    image.hidden, image.tags = True, frozenset({"a"})
    assert (image.is_public, image.visibility, image.retired) == (False, "community", True)
    assert image.copy() == image


# --- the shared parse --------------------------------------------------------------------------------


def test_it_parses_each_distinct_string_once():
    clear_caches()
    text = row("a", "{'type': 'x', 'nid': 1}", "1") + row("b", "{'type': 'x', 'nid': 1}", "2")
    read_text(text + text.replace(",5,", ",6,"))  # the same properties after another size
    assert (_parse_tail.cache_info().misses, _parse_tail.cache_info().hits) == (2, 2)
    assert (_parse_properties.cache_info().misses, _parse_properties.cache_info().hits) == (1, 1)


def test_rows_that_share_a_tail_still_get_their_own_names_ids_and_properties():
    first, second = read_text(row("a", "{'type': 'x', 'nid': 1}", "1") + row("b", "{'type': 'x', 'nid': 1}", "2"))
    assert (first.name, first.id, second.name, second.id) == ("a", "1", "b", "2")
    first.user_properties = first.user_properties | {"nid": 2}
    assert second.user_properties == {"type": "x", "nid": 1}


@pytest.mark.parametrize(
    "texts",
    [
        ("{'a': 1}", "{'a': True}", "{'a': '1'}", "{'a': 1.0}", "{'a': None}", "{'a': 'None'}"),
        ("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}", "{'a': 1}"),
        ("{}", "", " ", "{'': ''}"),
        ("{u'a': u'x'}", "{'a': 'x'}", "{'a': 'x '}"),
    ],
)
def test_it_never_gives_two_different_strings_the_same_result(texts):
    lines = "".join(row(f"i{n}", text, str(n)) for n, text in enumerate(texts))
    read = [image.user_properties for image in read_text(lines)]
    expected = [_literal(text) for text in texts]
    assert read == expected
    for value, want in zip(read, expected, strict=True):  # 1 == True == 1.0: the types must match too
        assert [type(v) for v in value.values()] == [type(v) for v in want.values()]
        assert list(value) == list(want)  # and the order of the keys, which the backup writes back


def _literal(text: str) -> dict:
    import ast

    return ast.literal_eval(text) if text.strip() else {}


def test_a_change_to_one_image_s_properties_never_reaches_another_or_the_cache():
    text = row("a", "{'type': 'x', 'nid': 1}", "1") + row("b", "{'type': 'x', 'nid': 1}", "2")
    first, second = read_text(text)
    for change in (lambda p: p.update(nid=2), lambda p: p.pop("type"), lambda p: p.__setitem__("new", True)):
        with pytest.raises(TypeError):  # shared (SharedProperties): read-only in place
            change(first.user_properties)
    first.user_properties = dict(first.user_properties)  # a change gives the image its own dict
    first.user_properties["nid"] = 2
    first.user_properties.pop("type")
    first.user_properties["new"] = True
    assert second.user_properties == {"type": "x", "nid": 1}
    (third,) = read_text(row("c", "{'type': 'x', 'nid': 1}"))  # a later file hitting the cache
    assert third.user_properties == {"type": "x", "nid": 1}
    assert _parse_properties("{'type': 'x', 'nid': 1}")[0] == {"type": "x", "nid": 1}


def test_nested_values_are_copied_deeply_for_each_image():
    text = row("a", "{'l': [1], 'd': {'k': 1}}", "1") + row("b", "{'l': [1], 'd': {'k': 1}}", "2")
    first, second = read_text(text)
    first.user_properties["l"].append(2)
    first.user_properties["d"]["k"] = 2
    assert second.user_properties == {"l": [1], "d": {"k": 1}}
    (third,) = read_text(row("c", "{'l': [1], 'd': {'k': 1}}"))
    assert third.user_properties == {"l": [1], "d": {"k": 1}}


def test_a_deep_copy_of_a_read_image_is_independent():
    (image,) = read_text(row("a", "{'type': 'x'}"))
    clone = copy.deepcopy(image)
    clone.user_properties["type"] = "y"
    assert image.user_properties == {"type": "x"}


# --- interning -------------------------------------------------------------------------------------


def test_it_interns_names_and_checksums_without_changing_them():
    first, second = read_text(row("debian-12", "{}", "1") + row("debian-12", "{}", "2"))
    assert first.name is second.name and first.checksum is second.checksum
    assert (first.name, first.checksum) == ("debian-12", "c")
    second.name = "other"  # interned strings are values like any other: renaming one image renames only it
    assert first.name == "debian-12"


def test_an_empty_checksum_and_owner_are_still_none():
    (image,) = read_text("Burgos,a,1,active,,,,False,{}\r\n")
    assert (image.checksum, image.owner, image.size, image.is_public, image.visibility) == (
        None,
        None,
        0,
        False,
        "private",
    )


# --- the compared properties, worked out once per metadata_set ------------------------------------------


def test_it_compares_every_property_of_the_metadata_set_but_kernel_and_ramdisk():
    assert _compared(frozenset({"type", "nid", "kernel_id", "ramdisk_id"})) == ("nid", "type")
    assert _compared(frozenset()) == ()


def test_metadata_differs_is_the_same_for_equal_metadata_sets():
    master = Image("a", "1", "M", user_properties={"type": "x", "nid": 1})
    region = Image("a", "2", "R", user_properties={"type": "x", "nid": 2})
    assert metadata_differs(region, master, frozenset({"nid"}))
    assert metadata_differs(region, master, frozenset(["nid"]))  # another object, the same set
    assert not metadata_differs(region, master, frozenset({"type"}))
