"""metadata_condition: every condition of spec §3.3, and what the safe evaluator refuses."""

from __future__ import annotations

import pickle

import pytest

from sync.engine.condition import ConditionError, compile_condition
from sync.engine.model import GlanceSyncError, Image

PUBLIC_NID = Image(name="base_nid", id="001", region="Valladolid", user_properties={"nid": "5043"}, size=500)
PUBLIC_BASE = Image(
    name="base", id="002", region="Valladolid", user_properties={"type": "baseimages", "nid": "1"}, size=20000
)
PRIVATE_TYPE = Image(
    name="private", id="003", region="Valladolid", is_public=False, user_properties={"type": "x"}, size=10
)
PUBLIC_BARE = Image(name="bare", id="004", region="Valladolid", user_properties={"other": "1"}, size=9999)
IMAGES = (PUBLIC_NID, PUBLIC_BASE, PRIVATE_TYPE, PUBLIC_BARE)


def selected(expr: str, metadata_set: frozenset[str] = frozenset()) -> list[str]:
    condition = compile_condition(expr, "other")
    return [image.name for image in IMAGES if condition(image, metadata_set)]


@pytest.mark.parametrize(
    ("expr", "metadata_set", "expected"),
    [
        ("image.is_public", frozenset(), ["base_nid", "base", "bare"]),
        ("not image.is_public", frozenset(), ["private"]),
        ("False", frozenset(), []),
        (
            "image.is_public and ('nid' in image.user_properties or 'type' in image.user_properties)",
            frozenset(),
            ["base_nid", "base"],
        ),
        ("image.user_properties.get('type', None) == 'baseimages'", frozenset(), ["base"]),
        (
            "image.is_public and metadata_set.intersection(image.user_properties.keys())",
            frozenset({"type"}),
            ["base"],
        ),
        (
            "image.is_public and metadata_set.intersection(image.user_properties.keys())",
            frozenset(),
            [],
        ),
        (
            "set(image.user_properties.keys()).intersection(set(['nid', 'other']))",
            frozenset(),
            ["base_nid", "base", "bare"],
        ),
        ("image.size < 10000", frozenset(), ["base_nid", "private", "bare"]),
        ("len(image.user_properties) > 1 and image.name.startswith('ba')", frozenset(), ["base"]),
        ("any(k.startswith('ot') for k in image.user_properties)", frozenset(), ["bare"]),
        ("image.id in ['001', '004'] and image.region == 'Valladolid'", frozenset(), ["base_nid", "bare"]),
    ],
)
def test_it_evaluates_every_documented_condition(expr: str, metadata_set: frozenset[str], expected: list[str]) -> None:
    assert selected(expr, metadata_set) == expected


def test_it_returns_a_bool_for_the_truthiness_of_the_value() -> None:
    condition = compile_condition("metadata_set.intersection(image.user_properties.keys())", "master")
    assert condition(PUBLIC_BASE, frozenset({"type"})) is True
    assert condition(PUBLIC_BASE, frozenset({"zzz"})) is False


@pytest.mark.parametrize(
    "expr",
    [
        # config continuation lines keep the newline; with or without the Python backslash
        "image.is_public and\\\n'type' in image.user_properties",
        "image.is_public and\n'type' in image.user_properties",
        "image.is_public and\n\n  'type' in image.user_properties  # a trailing comment",
        # the scenario configs' condition, as configparser hands it over
        ("image.is_public and\\\n'type' in image.user_properties and image.user_properties['type']\\\n== 'baseimages'"),
    ],
)
def test_it_accepts_multi_line_conditions(expr: str) -> None:
    assert selected(expr) == ["base"]


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("image.__class__", "'__class__' is not allowed"),
        ("().__class__.__bases__", "is not allowed"),
        ("__import__('os')", "'__import__' is not allowed"),
        ("open('/etc/passwd')", "'open' is not allowed"),
        ("exec('1')", "'exec' is not allowed"),
        ("eval('1')", "'eval' is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("image.raw", "image has no attribute 'raw'"),
        ("unknown_name", "'unknown_name' is not allowed"),
        ("image.user_properties.pop('nid')", "'pop' is not allowed"),
        ("'{0.__class__}'.format(image)", "'format' is not allowed"),
        ("f'{image}'", "f-string is not allowed"),
        ("(x := 1)", "':=' is not allowed"),
        ("{k for k in image.user_properties}", "set comprehension"),
        ("len(*[[1]])", "'*' unpacking is not allowed"),
        ("[len][0]([1])", "only the allowed functions and methods may be called"),
        ("image.name._x", "'_x' is not allowed"),
    ],
)
def test_it_refuses_unsafe_expressions_naming_the_target(expr: str, fragment: str) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(expr, "other")
    message = str(caught.value)
    assert message.startswith("target other: metadata_condition refused: ")
    assert fragment in message


@pytest.mark.parametrize("expr", ["image.is_public and", "image.is_public)", "'unclosed", "a b"])
def test_it_reports_syntax_errors(expr: str) -> None:
    with pytest.raises(ConditionError, match=r"^target other: metadata_condition is not a valid expression: "):
        compile_condition(expr, "other")


def test_it_refuses_an_empty_condition() -> None:
    with pytest.raises(ConditionError, match="target t: metadata_condition is empty"):
        compile_condition("  \n ", "t")


def test_condition_error_is_a_glancesync_error() -> None:
    assert issubclass(ConditionError, GlanceSyncError)


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("image.user_properties['type'] == 'x'", "KeyError: 'type'"),
        ("image.size + 'a'", "TypeError"),
        ("'%s' % image.name", "string formatting with % is not allowed"),
        ("image.name.name", "not allowed"),
        ("1 / (image.size - image.size)", "ZeroDivisionError"),
    ],
)
def test_it_names_target_and_image_when_evaluation_fails(expr: str, fragment: str) -> None:
    condition = compile_condition(expr, "other")
    with pytest.raises(ConditionError) as caught:
        condition(PUBLIC_NID, frozenset())
    message = str(caught.value)
    assert message.startswith("target other: metadata_condition failed on image base_nid: ")
    assert fragment in message


def test_it_cannot_change_the_image() -> None:
    for expr in (
        "image.user_properties.clear()",
        "metadata_set.add('x')",
        "[image.user_properties][0].update({})",
    ):
        with pytest.raises(ConditionError, match="is not allowed"):
            compile_condition(expr, "t")
    image = Image(name="a", id="1", region="R", user_properties={"nid": "1"})
    condition = compile_condition("image.user_properties.get('nid', 0) and image.name", "t")
    assert condition(image, frozenset()) is True
    assert image.user_properties == {"nid": "1"}


def test_it_refuses_attributes_of_the_wrong_type_while_evaluating() -> None:
    condition = compile_condition("image.size.get('x')", "t")  # `get` exists, but not on an int
    with pytest.raises(ConditionError, match="failed on image base_nid"):
        condition(PUBLIC_NID, frozenset())


def test_it_allows_numeric_modulo() -> None:
    assert selected("image.size % 2 == 1") == ["bare"]


def test_it_reuses_one_compiled_condition_for_many_images() -> None:
    condition = compile_condition("'nid' in image.user_properties", "master")
    results = [condition(image, frozenset()) for image in IMAGES * 500]
    assert results.count(True) == 1000


def test_a_compiled_condition_can_be_pickled() -> None:
    condition = pickle.loads(pickle.dumps(compile_condition("image.size < 10000", "master")))
    assert condition(PUBLIC_NID, frozenset()) is True
    assert condition.target == "master"
