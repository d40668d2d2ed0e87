"""The backup CSV format of the original GlanceSync (spec §6.1), byte for byte.

One row per image, no header, excel dialect (minimal quoting, `\\r\\n` rows), 9 columns:
region fullname, name, id, status, size, checksum, owner, is_public (True|False), repr of the properties dict.

Glance v2's lifecycle goes in three optional columns after those, written only for an image that needs them
(so an image of the original's kind is written byte for byte as the original did): visibility (public,
community, shared, private; it wins over is_public), hidden (True|False) and the repr of the sorted tag list.
"""

from __future__ import annotations

import ast
import copy
import csv
import gc
import os
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from sys import intern
from typing import IO, Any

from sync.engine.model import VISIBILITIES, GlanceSyncError, Image

COLUMNS = 9
LIFECYCLE_COLUMNS = 3  # visibility, hidden, tags
_SCALARS = (str, int, float, bool, type(None))


class BackupFormatError(GlanceSyncError):
    """A backup file that cannot be read; the message is one line naming the file, the line and the reason."""


def backup_file_name(region_fullname: str) -> str:
    return f"backup_{region_fullname}.csv"


def image_to_row(image: Image) -> list[str]:
    # Python 3's repr of a dict of str/int/bool values is the original's Python 2 repr minus the u'' prefixes.
    row = [
        image.region,
        image.name,
        image.id,
        image.status,
        str(image.size),
        image.checksum or "",
        image.owner or "",
        "True" if image.is_public else "False",
        repr(image.user_properties),
    ]
    if image.hidden or image.tags or image.visibility not in ("public", "private"):
        row += [image.visibility, "True" if image.hidden else "False", repr(sorted(image.tags))]
    return row


def write_backup(images: Iterable[Image], stream: IO[str]) -> None:
    """Write rows to a text stream opened with newline='' (the writer emits the `\\r\\n` itself)."""
    csv.writer(stream, dialect="excel").writerows(map(image_to_row, images))


def read_backup(path_or_stream: str | os.PathLike[str] | IO[str], source_name: str) -> list[Image]:
    """Images of a backup file, in file order; blank rows are skipped. `source_name` names it in errors."""
    if isinstance(path_or_stream, (str, os.PathLike)):
        try:
            # utf-8-sig: tolerate the BOM a spreadsheet may add when the file is edited by hand.
            with open(path_or_stream, newline="", encoding="utf-8-sig") as stream:
                return _read_rows(stream, source_name)
        except OSError as e:
            raise BackupFormatError(f"{source_name}: cannot read the file: {e.strerror or e}") from None
        except UnicodeDecodeError:
            line = _first_undecodable_line(path_or_stream)
            raise BackupFormatError(f"{source_name} line {line}: not UTF-8 text") from None
    return _read_rows(path_or_stream, source_name)


def _read_rows(stream: IO[str], source_name: str) -> list[Image]:
    reader = csv.reader(stream, dialect="excel")
    # Reading creates no reference cycles, but millions of new objects would trigger full collections that
    # scan every image already loaded: pause the collector for the loop (it is re-enabled as it was found).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return list(_images(reader))
    except (csv.Error, _RowError) as e:
        raise BackupFormatError(f"{source_name} line {reader.line_num}: {e}") from None
    finally:
        if collecting:
            gc.enable()


def _first_undecodable_line(path: str | os.PathLike[str]) -> int:
    # The text layer decodes in chunks, so the csv reader cannot tell which line was bad: look for it.
    with open(path, "rb") as stream:
        for number, line in enumerate(stream, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


class _RowError(ValueError):
    """The reason a row is malformed; _read_rows adds the file name and line number."""


def _images(reader: Iterator[list[str]]) -> Iterator[Image]:
    # The hot loop of big files: one cached parse per distinct properties string, Image.listed() with a dict
    # of the image's own, names and checksums interned (the status step compares them by the million).
    parse, listed = _parse_properties, Image.listed
    no_lifecycle: list[str] = []
    for row in reader:
        lifecycle = no_lifecycle
        if len(row) != COLUMNS:
            if _is_blank(row):
                continue
            if COLUMNS < len(row) <= COLUMNS + LIFECYCLE_COLUMNS:
                row, lifecycle = row[:COLUMNS], row[COLUMNS:]
            else:
                row = _padded(row)
        region, name, image_id, status, size, checksum, owner, public, props = row
        try:
            size_value = int(size) if size else 0
        except ValueError:
            raise _RowError(f"size {size!r} is not an integer") from None
        properties, flat = parse(props)
        image = listed(
            intern(name),
            image_id,
            region,
            owner or None,
            public == "True" or public.strip() == "True",
            intern(checksum) if checksum else None,
            size_value,
            status,
            # The parse is shared by every row of the same text: each image gets a copy (a deep one for nested
            # values, never seen in Glance), so changing an image's properties never changes another's.
            dict(properties) if flat else copy.deepcopy(properties),
        )
        if lifecycle:
            _set_lifecycle(image, *lifecycle)
        yield image


def _set_lifecycle(image: Image, visibility: str = "", hidden: str = "", tags: str = "") -> None:
    """The optional columns; an empty one keeps the default (visibility from is_public, visible, no tags)."""
    visibility = visibility.strip()
    if visibility:
        if visibility not in VISIBILITIES:
            raise _RowError(f"visibility {visibility!r} is not one of {', '.join(VISIBILITIES)}")
        image.set_visibility(visibility)
    hidden = hidden.strip()
    if hidden not in ("", "True", "False"):
        raise _RowError(f"hidden {hidden!r} is not True or False")
    image.hidden = hidden == "True"
    if tags.strip():
        image.tags = _parse_tags(tags)


@lru_cache(maxsize=4096)
def _parse_tags(text: str) -> frozenset[str]:
    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, (list, tuple)) or not all(isinstance(tag, str) for tag in value):
        raise _RowError(f"tags {_clip(text)} are not a list of strings, e.g. ['amphora']")
    return frozenset(value)


def _is_blank(row: list[str]) -> bool:
    return not any(field.strip() for field in row)


def _padded(row: list[str]) -> list[str]:
    """An 8-column row has no properties column (empty properties); anything else is malformed."""
    if len(row) == COLUMNS - 1:
        return [*row, ""]
    raise _RowError(f"expected {COLUMNS} columns (or up to {COLUMNS + LIFECYCLE_COLUMNS}), found {len(row)}")


# The repr of a flat dict of str/int/bool/None values, as every backup we write holds: parsed by regular
# expressions, about five times faster than ast.literal_eval. Anything else (u'' prefixes, escapes, floats,
# nesting) takes the literal_eval path.
_STR = r"'[^'\\\n]*'"
_VALUE = rf"(?:{_STR}|-?(?:0|[1-9][0-9]*)|True|False|None)"
_FLAT_DICT = re.compile(rf"\{{(?:{_STR}: {_VALUE}(?:, (?=')|(?=\}})))*\}}")
_ITEM = re.compile(r"'([^'\\\n]*)': (?:'([^'\\\n]*)'|(-?[0-9]+)|(True|False|None))")
_CONSTANTS = {"True": True, "False": False, "None": None}


@lru_cache(maxsize=65536)  # region copies repeat the master's properties: big enough for 20,000 masters
def _parse_properties(text: str) -> tuple[dict[str, Any], bool]:
    """(the dict literal, True if all its values are immutable scalars). Never evaluates code."""
    if not text.strip():
        return {}, True
    if _FLAT_DICT.fullmatch(text):
        return {k: _CONSTANTS[c] if c else int(n) if n else v for k, v, n, c in _ITEM.findall(text)}, True
    try:
        value = ast.literal_eval(text.strip())  # also accepts the u'' prefixes of Python 2 backups
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _RowError(f"properties {_clip(text)} are not a dict literal") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _RowError(f"properties {_clip(text)} are not a dict literal with string keys")
    return value, all(isinstance(v, _SCALARS) for v in value.values())


def _clip(text: str, limit: int = 80) -> str:
    """repr of a possibly huge field, kept short so the error stays one readable line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
