"""The backup CSV format (spec §6.1): lossless and byte-compatible with the original's files."""

import copy
import io
import pickle
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.engine.backup import (
    BackupFormatError,
    backup_file_name,
    image_to_row,
    read_backup,
    write_backup,
)
from sync.engine.model import GlanceSyncError, Image

SCENARIOS = Path("/work/shared/scenarios")
SCENARIO_FILES = sorted(SCENARIOS.glob("*/initial/backup_*.csv")) + sorted(SCENARIOS.glob("*/result/backup_*.csv"))

# Hand-written fixtures the original's writer would not produce byte for byte (same data, other bytes).
NOT_CANONICAL = {
    "ami/initial/backup_Valladolid.csv": "a trailing blank \\r\\n row",
    "checksum/initial/backup_Burgos.csv": "properties quoted without a comma",
    "checksum/initial/backup_Valladolid.csv": "properties quoted without a comma",
    "checksum/result/backup_Burgos.csv": "properties quoted without a comma",
    "checksum/result/backup_Valladolid.csv": "properties quoted without a comma",
    "metadata/initial/backup_Valladolid.csv": "a space before a colon in the properties",
    "metadata/result/backup_Burgos.csv": "properties quoted without a comma",
    "metadata/result/backup_Valladolid.csv": "a space before a colon in the properties",
}


def relative(path: Path) -> str:
    return str(path.relative_to(SCENARIOS))


def written(images) -> str:
    stream = io.StringIO(newline="")
    write_backup(images, stream)
    return stream.getvalue()


def read_text(text: str, name: str = "backup_Burgos.csv") -> list[Image]:
    return read_backup(io.StringIO(text, newline=""), name)


def image(**kw) -> Image:
    fields = dict(name="image01", id="101", region="Burgos", owner="tenant1id", checksum="c1", size=1000)
    return Image(**{**fields, **kw})


# --- round trips of the scenario fixtures --------------------------------------------------------------


@pytest.mark.skipif(not SCENARIO_FILES, reason="no shared scenarios")
@pytest.mark.parametrize("path", SCENARIO_FILES, ids=relative)
def test_every_scenario_file_round_trips_losslessly_as_data(path):
    images = read_backup(path, str(path))
    assert read_text(written(images)) == images


@pytest.mark.skipif(not SCENARIO_FILES, reason="no shared scenarios")
@pytest.mark.parametrize("path", SCENARIO_FILES, ids=relative)
def test_files_the_original_wrote_round_trip_byte_for_byte(path):
    original = path.read_bytes().decode()
    output = written(read_backup(path, str(path)))
    if relative(path) in NOT_CANONICAL:
        assert output != original
        assert written(read_text(output)) == output, "the rewritten file must be canonical"
    else:
        assert output == original


@pytest.mark.skipif(not SCENARIO_FILES, reason="no shared scenarios")
def test_it_drops_only_the_trailing_blank_row_of_a_file():
    path = SCENARIOS / "ami/initial/backup_Valladolid.csv"
    original = path.read_bytes().decode()
    assert original.endswith("\r\n\r\n")
    assert written(read_backup(path, str(path))) == original[: -len("\r\n")]


def test_it_reads_empty_files_as_empty_regions():
    assert read_text("") == []


# --- writing -------------------------------------------------------------------------------------------


def test_it_writes_the_nine_columns_of_the_original():
    row = image(is_public=False, user_properties={"type": "ngimages", "nid": 1})
    assert image_to_row(row) == [
        "Burgos",
        "image01",
        "101",
        "active",
        "1000",
        "c1",
        "tenant1id",
        "False",
        "{'type': 'ngimages', 'nid': 1}",
    ]


def test_it_writes_none_owner_and_checksum_as_empty_fields():
    assert image_to_row(image(owner=None, checksum=None))[5:7] == ["", ""]


def test_it_quotes_the_properties_only_when_they_contain_a_comma():
    text = written(
        [
            image(user_properties={"type": "ngimages", "nid": 1}),
            image(id="102", user_properties={"type": "baseimage"}),
            image(id="103"),
        ]
    )
    assert text == (
        "Burgos,image01,101,active,1000,c1,tenant1id,True,\"{'type': 'ngimages', 'nid': 1}\"\r\n"
        "Burgos,image01,102,active,1000,c1,tenant1id,True,{'type': 'baseimage'}\r\n"
        "Burgos,image01,103,active,1000,c1,tenant1id,True,{}\r\n"
    )


def test_it_keeps_property_value_types_and_odd_names_through_a_round_trip():
    images = [
        image(name='a "quoted", name', user_properties={"nid": 1, "sync": "True", "flag": False, "x": None}),
        image(id="102", name="línea\nnueva", user_properties={"kernel_id": "1$image13"}),
    ]
    assert read_text(written(images)) == images


def test_it_names_backup_files_after_the_region_fullname():
    assert backup_file_name("Burgos") == "backup_Burgos.csv"
    assert backup_file_name("other:Madrid") == "backup_other:Madrid.csv"


# --- reading -------------------------------------------------------------------------------------------


def test_it_reads_python2_unicode_literals_and_32_digit_owners():
    text = (
        "other:Santander,image1,f61adbf7-c44c-43e2-be84-d45328d8ffed,active,3769171968,69d70bc7af58,"
        "00000000000000000000000000000001,Yes,\"{u'type': u'fiware:iot', u'nid': u'199'}\"\n"
        "other:Santander,image2,517b3d05-5b94-456b-bdf9-94c73a88b2c5,active,447610880,820f9023cb47,"
        "00000000000000000000000000000001,True ,{u'type': u'baseimages'}\n"
    )
    first, second = read_text(text)
    assert first.region == "other:Santander"
    assert first.owner == "00000000000000000000000000000001"
    assert first.size == 3769171968
    assert first.user_properties == {"type": "fiware:iot", "nid": "199"}
    assert first.is_public is False, "only True means public"
    assert second.is_public is True, "the flag is stripped"
    assert second.user_properties == {"type": "baseimages"}


def test_it_skips_blank_rows_and_accepts_both_line_endings():
    text = "\r\nBurgos,a,1,active,5,c,o,True,{'a':1}\n\n  \r\nBurgos,b,2,active,,,,False,\r\n\r\n"
    first, second = read_text(text)
    assert (first.name, first.user_properties, first.size) == ("a", {"a": 1}, 5)
    assert (second.name, second.size, second.checksum, second.owner) == ("b", 0, None, None)
    assert second.user_properties == {}


def test_it_accepts_a_row_without_the_properties_column():
    (row,) = read_text("Burgos,a,1,active,5,c,o,True\r\n")
    assert row.user_properties == {}


def test_images_of_the_same_properties_share_one_read_only_dict():
    first, second = read_text("B,a,1,active,5,c,o,True,{'a': 1}\r\nB,b,2,active,5,c,o,True,{'a': 1}\r\n")
    assert first.user_properties is second.user_properties
    with pytest.raises(TypeError, match="give the image a new dict"):
        first.user_properties["a"] = 2
    first.user_properties = first.user_properties | {"a": 2}
    assert second.user_properties == {"a": 1} and first.user_properties == {"a": 2}
    assert read_text("B,a,1,active,5,c,o,True,{'a': 1}\r\n")[0].user_properties == {"a": 1}


def test_a_copy_of_shared_properties_is_a_plain_dict():
    (image,) = read_text("B,a,1,active,5,c,o,True,{'a': 1}\r\n")
    shared = image.user_properties
    copies = [shared.copy(), dict(shared), shared | {}, copy.copy(shared), copy.deepcopy(shared)]
    copies += [
        pickle.loads(pickle.dumps(shared)),
        image.copy().user_properties,
        Image("x", "1", "B", user_properties=shared).user_properties,
    ]
    for each in copies:
        assert type(each) is dict and each == {"a": 1}
        each["a"] = 2  # mutable
    assert shared == {"a": 1}


def test_nested_property_values_are_not_shared_between_images():
    first, second = read_text("B,a,1,active,5,c,o,True,\"{'l': [1]}\"\r\nB,b,2,active,5,c,o,True,\"{'l': [1]}\"\r\n")
    first.user_properties["l"].append(2)
    assert second.user_properties == {"l": [1]}


def test_it_reads_from_a_path(tmp_path):
    path = tmp_path / "backup_Burgos.csv"
    path.write_bytes(b"Burgos,a,1,active,5,c,o,True,{}\r\n")
    assert read_backup(path, "backup_Burgos.csv") == [Image("a", "1", "Burgos", "o", True, "c", 5)]


# --- malformed files -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line3", "reason"),
    [
        ("Burgos,c,3,active,abc,c,o,True,{}", "size 'abc' is not an integer"),
        ("Burgos,c,3,active", "expected 9 columns (or up to 12), found 4"),
        ("Burgos,c,3,active,5,c,o,True,{},public,False,[],x", "expected 9 columns (or up to 12), found 13"),
        (
            "Burgos,c,3,active,5,c,o,True,{},extra",
            "visibility 'extra' is not one of public, community, shared, private",
        ),
        ("Burgos,c,3,active,5,c,o,True,{},public,yes", "hidden 'yes' is not True or False"),
        (
            "Burgos,c,3,active,5,c,o,True,{},public,True,amphora",
            "tags 'amphora' are not a list of strings, e.g. ['amphora']",
        ),
        ("Burgos,c,3,active,5,c,o,True,{'a': 1", "properties \"{'a': 1\" are not a dict literal"),
        (
            "Burgos,c,3,active,5,c,o,True,['a']",
            "properties \"['a']\" are not a dict literal with string keys",
        ),
        (
            "Burgos,c,3,active,5,c,o,True,{1: 'a'}",
            "properties \"{1: 'a'}\" are not a dict literal with string keys",
        ),
    ],
)
def test_a_malformed_row_is_a_one_line_error_naming_file_and_line(line3, reason):
    text = "Burgos,a,1,active,5,c,o,True,{}\r\nBurgos,b,2,active,5,c,o,True,{}\r\n" + line3 + "\r\n"
    with pytest.raises(BackupFormatError) as error:
        read_text(text)
    assert str(error.value) == f"backup_Burgos.csv line 3: {reason}"
    assert isinstance(error.value, GlanceSyncError)


def test_line_numbers_count_blank_lines():
    with pytest.raises(BackupFormatError, match=r"^backup_Burgos.csv line 4: size 'x' "):
        read_text("\r\nBurgos,a,1,active,5,c,o,True,{}\r\n\r\nBurgos,b,2,active,x,c,o,True,{}\r\n")


def test_properties_are_never_evaluated_as_code(tmp_path):
    marker = tmp_path / "evaluated"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    with pytest.raises(BackupFormatError, match="are not a dict literal"):
        read_text(f'Burgos,a,1,active,5,c,o,True,"{code}"\r\n')
    assert not marker.exists()


def test_a_huge_bad_properties_field_gives_a_short_error():
    with pytest.raises(BackupFormatError) as error:
        read_text("Burgos,a,1,active,5,c,o,True,{" + "x" * 5000 + "\r\n")
    assert len(str(error.value)) < 200


def test_an_unreadable_file_is_a_backup_format_error(tmp_path):
    with pytest.raises(BackupFormatError, match="^missing.csv: cannot read the file"):
        read_backup(tmp_path / "missing.csv", "missing.csv")
    path = tmp_path / "backup_Burgos.csv"
    path.write_bytes(b"Burgos,a,1,active,5,c,o,True,{}\r\nBurgos,\xff\xfe,1,active,5,c,o,True,{}\r\n")
    with pytest.raises(BackupFormatError) as error:
        read_backup(path, "backup_Burgos.csv")
    assert str(error.value) == "backup_Burgos.csv line 2: not UTF-8 text"


def test_the_fast_properties_parser_agrees_with_literal_eval():
    import ast
    import random

    from sync.engine.backup import _parse_properties

    rng = random.Random(7)
    alphabet = "abc xyz:,{}\"'\\-_01é"
    values = [True, False, None, 0, -12, 345, "", "plain", 1.5]
    for _ in range(3000):
        props = {
            "".join(rng.choices(alphabet, k=rng.randint(0, 6))): rng.choice(
                [*values, "".join(rng.choices(alphabet, k=rng.randint(0, 8)))]
            )
            for _ in range(rng.randint(0, 4))
        }
        text = repr(props)
        parsed, _ = _parse_properties(text)
        assert parsed == ast.literal_eval(text) == props, text
        assert [type(v) for v in parsed.values()] == [type(v) for v in props.values()], text


@settings(max_examples=500, deadline=None)
@given(
    st.dictionaries(
        st.text(alphabet="ab ':,{}\\\"-_0é\r", max_size=6),
        st.one_of(
            st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.text(alphabet="ab ':,{}\\-_0\r", max_size=8)
        ),
        max_size=5,
    )
)
def test_any_repr_of_a_flat_dict_parses_as_literal_eval_does(props):
    import ast

    from sync.engine.backup import _parse_properties

    text = repr(props)
    parsed, flat = _parse_properties.__wrapped__(text)  # uncached: each text parsed here
    assert parsed == ast.literal_eval(text) == props and flat
    assert [type(v) for v in parsed.values()] == [type(v) for v in props.values()]
