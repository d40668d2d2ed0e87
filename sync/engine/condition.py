"""Safe evaluation of a target's `metadata_condition` (spec §3.3), replacing the original's `eval` (§9.1-17).

The expression is parsed once, checked statically against allow-lists, and then evaluated by simpleeval on
every call with only `image` (a read-only view), `metadata_set` and a few pure builtins in scope.
"""

from __future__ import annotations

import ast
import operator
import threading
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Any

from simpleeval import BASIC_ALLOWED_ATTRS, DEFAULT_OPERATORS, DISALLOW_METHODS, EvalWithCompoundTypes

from sync.engine.model import GlanceSyncError, Image

IMAGE_FIELDS = (
    "name", "id", "region", "owner", "is_public", "checksum", "size", "status",
    "visibility", "hidden", "tags", "protected", "user_properties",
)  # fmt: skip
FUNCTIONS: dict[str, Any] = {
    f.__name__: f for f in (set, len, int, str, float, bool, list, tuple, dict, min, max, any, all, sorted)
}
CONSTANTS: dict[str, Any] = {"True": True, "False": False, "None": None}
NAMES = frozenset({"image", "metadata_set", *CONSTANTS})

# Read-only methods only: a condition must never change the master image it looks at, and methods that
# build huge strings (center, zfill...) or format with attribute lookups (format) have no use in a predicate.
_READ_ONLY_MAPPING = {"get", "keys", "items", "values", "copy"}
_READ_ONLY_SET = {"intersection", "union", "difference", "symmetric_difference", "issubset", "issuperset"}
_READ_ONLY_SET |= {"isdisjoint", "copy"}
_STR_UNSAFE = {"format", "format_map", "center", "ljust", "rjust", "zfill", "expandtabs"}
ALLOWED_ATTRS: dict[Any, set[str]] = {
    int: BASIC_ALLOWED_ATTRS[int],
    float: BASIC_ALLOWED_ATTRS[float],
    bool: BASIC_ALLOWED_ATTRS[bool],
    str: BASIC_ALLOWED_ATTRS[str] - _STR_UNSAFE,
    dict: _READ_ONLY_MAPPING,
    MappingProxyType: _READ_ONLY_MAPPING,
    type({}.keys()): {"isdisjoint"},
    set: _READ_ONLY_SET,
    frozenset: _READ_ONLY_SET,
    list: {"index", "count", "copy"},
    tuple: {"index", "count"},
}


def _safe_mod(left: Any, right: Any) -> Any:
    """`%` on numbers only: printf-style string formatting can build arbitrarily large strings."""
    if isinstance(left, (str, bytes)):
        raise TypeError("string formatting with % is not allowed")
    return operator.mod(left, right)


OPERATORS: dict[type, Any] = {**DEFAULT_OPERATORS, ast.Mod: _safe_mod}

# Every AST node a condition may contain; anything else (lambda, walrus, f-strings, set comprehensions,
# starred arguments...) is refused before the first evaluation.
_ALLOWED_NODES: tuple[type, ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.keyword,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.Name,
    ast.Load,
    ast.Store,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Set,
    ast.Dict,
    ast.ListComp,
    ast.GeneratorExp,
    ast.DictComp,
    ast.comprehension,
    *OPERATORS,
)

_NODE_WORDS = {
    "Lambda": "lambda",
    "NamedExpr": "':='",
    "JoinedStr": "an f-string",
    "SetComp": "a set comprehension (use set([...]))",
    "Starred": "'*' unpacking",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
}


MAX_CONDITION_LENGTH = 4000


class ConditionError(GlanceSyncError):
    """A metadata_condition that cannot be compiled, or that failed on an image."""


class ImageView:
    """What a condition sees of an image: the documented fields, with properties behind a read-only proxy."""

    __slots__ = IMAGE_FIELDS

    def __init__(self, image: Image) -> None:
        for field in IMAGE_FIELDS[:-1]:
            object.__setattr__(self, field, getattr(image, field))
        object.__setattr__(self, "user_properties", MappingProxyType(image.user_properties))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the image of a condition is read-only")

    def __repr__(self) -> str:
        return f"<image {self.name!r}>"


ALLOWED_ATTRS[ImageView] = set(IMAGE_FIELDS)
_KNOWN_ATTRS = frozenset().union(*ALLOWED_ATTRS.values())


def _refusal(node: ast.AST, comprehension_names: set[str]) -> str | None:
    """Why `node` may not appear in a condition, or None when it may."""
    if not isinstance(node, _ALLOWED_NODES):
        kind = type(node).__name__
        return f"{_NODE_WORDS.get(kind, kind)} is not allowed"
    if isinstance(node, ast.Attribute):
        if node.attr.startswith(("_", "func_")) or node.attr in DISALLOW_METHODS:
            return f"'{node.attr}' is not allowed"
        if isinstance(node.value, ast.Name) and node.value.id == "image" and node.attr not in IMAGE_FIELDS:
            return f"image has no attribute '{node.attr}' (available: {', '.join(IMAGE_FIELDS)})"
        if node.attr not in _KNOWN_ATTRS:
            return f"'{node.attr}' is not allowed"
    if isinstance(node, ast.Name):
        if node.id.startswith("_"):
            return f"'{node.id}' is not allowed"
        if node.id not in NAMES and node.id not in FUNCTIONS and node.id not in comprehension_names:
            return f"'{node.id}' is not allowed (names: image, metadata_set, {', '.join(FUNCTIONS)})"
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id not in FUNCTIONS:
            return f"'{func.id}' is not allowed (functions: {', '.join(FUNCTIONS)})"
        if not isinstance(func, (ast.Name, ast.Attribute)):
            return "only the allowed functions and methods may be called"
    return None


def _check(tree: ast.Expression) -> str | None:
    """The first refusal found in the tree, or None when the whole expression is acceptable."""
    comprehension_names = {
        name.id
        for gen in ast.walk(tree)
        if isinstance(gen, ast.comprehension)
        for name in ast.walk(gen.target)
        if isinstance(name, ast.Name)
    }
    for node in ast.walk(tree):
        reason = _refusal(node, comprehension_names)
        if reason:
            return reason
    return None


def _parse(expr: str, target: str) -> ast.expr:
    """Parse once. Config continuation lines put plain newlines in the value: inside parentheses Python
    accepts them (and backslash-newline joins still work); the final newline keeps a trailing `# comment`
    from swallowing the closing parenthesis."""
    if not expr.strip():
        raise ConditionError(f"target {target}: metadata_condition is empty")
    if len(expr) > MAX_CONDITION_LENGTH:  # a selection rule is a line or two; this bounds parse and eval time
        raise ConditionError(
            f"target {target}: metadata_condition is too long ({len(expr)} characters, at most {MAX_CONDITION_LENGTH})"
        )
    try:
        tree = ast.parse(f"({expr}\n)", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        detail = error.msg if isinstance(error, SyntaxError) else str(error) or type(error).__name__
        raise ConditionError(f"target {target}: metadata_condition is not a valid expression: {detail}") from None
    reason = _check(tree)
    if reason:
        raise ConditionError(f"target {target}: metadata_condition refused: {reason}")
    return tree.body


class Condition:
    """A compiled metadata_condition: call it with an image and the target's metadata_set."""

    def __init__(self, expr: str, target: str) -> None:
        self.expr = expr
        self.target = target
        self._node = _parse(expr, target)
        # Hidden images were never listed before, so a condition that does not say what to do with them
        # (written for the original) must not start selecting them: see Selector.is_synchronisable.
        self.reads_hidden = any(
            isinstance(node, ast.Attribute) and node.attr == "hidden" and isinstance(node.value, ast.Name)
            and node.value.id == "image"
            for node in ast.walk(self._node)
        )  # fmt: skip
        self._local = threading.local()  # simpleeval keeps per-evaluation state: one evaluator per thread

    def _evaluator(self) -> EvalWithCompoundTypes:
        evaluator = getattr(self._local, "evaluator", None)
        if evaluator is None:
            evaluator = EvalWithCompoundTypes(
                operators=OPERATORS, functions=dict(FUNCTIONS), names={}, allowed_attrs=ALLOWED_ATTRS
            )
            self._local.evaluator = evaluator
        return evaluator

    def __call__(self, image: Image, metadata_set: AbstractSet[str] = frozenset()) -> bool:
        evaluator = self._evaluator()
        evaluator.names = {**CONSTANTS, "image": ImageView(image), "metadata_set": metadata_set}
        try:
            return bool(evaluator.eval(self.expr, previously_parsed=self._node))
        # Any failure of the expression (KeyError, TypeError, refused attribute...) is the operator's to fix.
        except Exception as error:  # noqa: BLE001
            detail = f"{type(error).__name__}: {error}".replace("\n", " ")  # messages may quote the expression
            raise ConditionError(
                f"target {self.target}: metadata_condition failed on image {image.name}: {detail}"
            ) from None

    def __reduce__(self) -> tuple[type[Condition], tuple[str, str]]:
        # Picklable (e.g. for worker processes) despite the thread-local evaluator: recompiled on load.
        return (Condition, (self.expr, self.target))

    def __repr__(self) -> str:
        return f"Condition({self.expr!r}, target={self.target!r})"


def compile_condition(expr: str, target: str) -> Condition:
    """Validate `expr` for `target` and return a reusable predicate; raises ConditionError when refused."""
    return Condition(expr, target)
