"""The backup CSV format of the original GlanceSync (spec §6.1), byte for byte.

One row per image, no header, excel dialect (minimal quoting, `\\r\\n` rows), 9 columns:
region fullname, name, id, status, size, checksum, owner, is_public (True|False), repr of the properties dict.

Glance v2's lifecycle goes in three optional columns after those, written only for an image that needs them
(so an image of the original's kind is written byte for byte as the original did): visibility (public,
community, shared, private; it wins over is_public), hidden (True|False) and the repr of the sorted tag list.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from sys import intern
from typing import IO, Any

from sync.engine.memory import collector_paused
from sync.engine.model import NO_PROPERTIES, VISIBILITIES, GlanceSyncError, Image, SharedProperties

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
    if not isinstance(path_or_stream, (str, os.PathLike)):
        return _read_text(path_or_stream.read(), source_name)
    try:
        with open(path_or_stream, "rb") as stream:
            data = stream.read()
        # utf-8-sig: tolerate the BOM a spreadsheet may add when the file is edited by hand. Decoded whole
        # rather than through a text stream, whose newline scan would cost as much as the split in lines.
        text = data.decode("utf-8-sig")
    except OSError as e:
        raise BackupFormatError(f"{source_name}: cannot read the file: {e.strerror or e}") from None
    except UnicodeDecodeError:
        line = _first_undecodable_line(path_or_stream)
        raise BackupFormatError(f"{source_name} line {line}: not UTF-8 text") from None
    return _read_text(text, source_name)


def _read_text(text: str, source_name: str) -> list[Image]:
    with collector_paused():
        lines = simple_lines(text)
        if lines is not None:
            with contextlib.suppress(_NotSimple):
                return _fast_images(lines, source_name)
        reader = csv.reader(io.StringIO(text, newline=""), dialect="excel")
        try:
            return list(_images(reader))
        except (csv.Error, _RowError) as e:
            raise BackupFormatError(f"{source_name} line {reader.line_num}: {e}") from None


class _NotSimple(Exception):
    """A line the fast path cannot read exactly as csv.reader would: the whole file goes to csv.reader."""


def simple_lines(text: str) -> list[str] | None:
    """The lines of a text whose rows csv.reader would end exactly at its `\r\n`s, as this project's files;
    None when another line break is there (a `\r` or `\n` alone, which csv also ends a row at, maybe inside
    a quoted field), a NUL (csv refused it before Python 3.11) or a line longer than csv's field limit.
    (csv reads its lines as io.StringIO(newline="") splits them, at `\r`, `\n` and `\r\n` only.)"""
    if "\0" in text:
        return None
    lines = text.split("\r\n")  # two counts, scans in C, rule out a lone `\r` or `\n`
    if text.count("\r") != len(lines) - 1 or text.count("\n") != len(lines) - 1:
        return None
    if not lines[-1]:
        lines.pop()
    limit = csv.field_size_limit()
    if len(text) > limit and max(map(len, lines), default=0) > limit:
        return None
    return lines


def _fast_images(lines: list[str], source_name: str) -> list[Image]:
    """The images of simple_lines(), as csv.reader and _row_image would make them, much faster: a row of this
    project's files is `region,name,id,<tail>`, and the same tail (status, size, checksum, owner, public,
    properties) comes back in every region that has an identical copy, so each distinct tail is parsed once.
    Raises _NotSimple for a line csv.reader might read otherwise (the caller then reads the file with it)."""
    images: list[Image] = []
    append, tail_of, listed = images.append, _parse_tail, Image.listed
    region = ""
    for line in lines:  # the hot loop of big files: every row of every region
        parts = line.split(",", 3)
        try:
            # a quote in the first three fields could start a quoted field: only csv.reader knows its end
            if len(parts) != 4 or ('"' in line and ('"' in parts[0] or '"' in parts[1] or '"' in parts[2])):
                image = _row_image(_line_row(line))
                if image is not None:
                    append(image)
                continue
            parsed = tail_of(parts[3])
            if parsed is None:
                image = _row_image(_line_row(line))
                if image is not None:
                    append(image)
                continue
        except _RowError as e:
            raise BackupFormatError(f"{source_name} line {_number(lines, line)}: {e}") from None
        status, size, checksum, owner, public, properties, flat, lifecycle = parsed
        if parts[0] != region:  # every row of a file names the same region: one string for all
            region = parts[0]
        # The parse is shared by every row of the same text: flat properties are read-only and shared, nested
        # values (never seen in Glance) a deep copy, so changing an image's properties never changes another's.
        image = listed(
            intern(parts[1]),  # the status step compares names by the million: by identity when interned
            parts[2],
            region,
            owner,
            public,
            checksum,
            size,
            status,
            properties if flat else copy.deepcopy(properties),
        )
        if lifecycle:
            try:
                _set_lifecycle(image, *lifecycle)
            except _RowError as e:
                raise BackupFormatError(f"{source_name} line {_number(lines, line)}: {e}") from None
        append(image)
    return images


def master_tails(path: str | os.PathLike[str], marker: str) -> tuple[dict[str, str], dict[str, Image]]:
    """The master file's twin candidates: name -> the tail (`status,...,properties[,lifecycle]`) of its row, for
    every name only one row has, and name -> the image that row reads as (the prototype of its twins). A row
    the fast path would not read, or whose tail holds `marker` (a driver's upload marker, which listing
    removes), is left out; a file the fast path cannot read gives none."""
    try:
        with open(path, "rb") as stream:
            lines = simple_lines(stream.read().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError):
        return {}, {}
    if lines is None:
        return {}, {}
    tails: dict[str, str] = {}
    rows: dict[str, str] = {}
    repeated: set[str] = set()
    for line in lines:
        parts = line.split(",", 3)
        if len(parts) != 4 or '"' in parts[0] or '"' in parts[1] or '"' in parts[2]:
            continue
        name = intern(parts[1])  # the images' own (interned) name: sets of names compare them by identity
        if name in rows:
            repeated.add(name)
        rows[name] = line
        tails[name] = parts[3]
    kept = {name: rows[name] for name in rows if name not in repeated and marker not in tails[name]}
    prototypes = _prototypes(kept, str(path))
    return {name: tails[name] for name in prototypes}, prototypes


def owned_tails(
    tails: dict[str, str], prototypes: dict[str, Image], owner: str
) -> tuple[dict[str, str], dict[str, Image]]:
    """master_tails() with `owner` in each tail's owner field (a target's own tenant, which owns its copies),
    and the images rows with those tails read as: the prototype with that owner, since a tail's fields are
    read one by one and the owner field as itself. None for an owner the fast path would not read back as
    itself (empty, a comma, a quote, a line break), nor where the owner already is `owner` (the tail is the
    master's); a tail with a quote before its properties is left out (csv might read it otherwise)."""
    if not owner or any(c in owner for c in ',"\r\n'):
        return {}, {}
    owned: dict[str, str] = {}
    owned_prototypes: dict[str, Image] = {}
    for name, tail in tails.items():
        fields = tail.split(",", 4)  # status, size, checksum, owner, the rest
        if len(fields) != 5 or fields[3] == owner or '"' in tail[: len(tail) - len(fields[4])]:
            continue
        fields[3] = owner
        owned[name] = ",".join(fields)
        owned_prototypes[name] = _with_owner(prototypes[name], owner)
    return owned, owned_prototypes


def _with_owner(image: Image, owner: str) -> Image:
    """The image with another owner, its other fields shared (a prototype is never changed): a third of
    copy.copy's cost, for the 20,000 prototypes of a fleet (tests/engine/test_twins.py compares it with a
    parse of the owned row)."""
    clone = Image.listed(
        image.name,
        image.id,
        image.region,
        owner,
        image.is_public,
        image.checksum,
        image.size,
        image.status,
        image.user_properties,
    )
    clone.extra, clone.visibility, clone.hidden = image.extra, image.visibility, image.hidden
    clone.tags, clone.protected = image.tags, image.protected
    return clone


def _prototypes(rows: dict[str, str], source_name: str) -> dict[str, Image]:
    """name -> the image of its row; all at once, one by one if a row fails (or is blank), left out then."""
    try:
        images = _fast_images(list(rows.values()), source_name)
    except (BackupFormatError, _NotSimple):
        images = []
    if len(images) == len(rows):
        return dict(zip(rows, images, strict=True))
    prototypes = {}
    for name, row in rows.items():
        with contextlib.suppress(BackupFormatError, _NotSimple):
            for image in _fast_images([row], source_name):
                prototypes[name] = image
    return prototypes


def read_with_twins(
    path: str | os.PathLike[str], tails: dict[str, str], owned: dict[str, str] | None = None
) -> (
    tuple[list[Image], list[int], list[str], list[str], list[int], set[str], Callable[[list[int]], list[Image]]] | None
):
    """A region file split into its twins (rows `region,name,id,tail` whose tail is `tails[name]`, or
    `owned[name]`: the owned twins) and the other rows' images, as read_backup reads them: (images, their
    line indices, twin names, twin ids, twin line indices, the owned twins' names, a function reading the
    images of twins by index). None when read_backup should read the file (it raises the error, or reads
    what the fast path does not: blank lines, csv's own cases)."""
    try:
        with open(path, "rb") as stream:
            lines = simple_lines(stream.read().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError):
        return None
    if lines is None:
        return None
    with collector_paused():
        others: list[str] = []
        positions: list[int] = []
        names: list[str] = []
        ids: list[str] = []
        twins: list[int] = []
        owned_names: set[str] = set()
        tail_of, owned_of = tails.get, (owned or {}).get
        add_name, add_id, add_twin, add_other, add_position = (
            names.append,
            ids.append,
            twins.append,
            others.append,
            positions.append,
        )
        for index, line in enumerate(lines):  # every row of every region: a split and a string comparison
            try:
                region, name, image_id, tail = line.split(",", 3)
            except ValueError:  # fewer than 4 fields
                add_other(line)
                add_position(index)
                continue
            # a quote in the name makes it another name than the master row's: only the region and id to check
            if tail_of(name) == tail and '"' not in region and '"' not in image_id:
                add_name(name)
                add_id(image_id)
                add_twin(index)
            elif owned_of(name) == tail and '"' not in region and '"' not in image_id:  # its tenant's own copy
                add_name(name)
                add_id(image_id)
                add_twin(index)
                owned_names.add(name)
            else:
                add_other(line)
                add_position(index)
        try:
            images = _fast_images(others, str(path))
        except (BackupFormatError, _NotSimple):
            return None
    if len(images) != len(others):  # a blank line: read_backup skips it
        return None
    names = list(map(intern, names))  # the master's name objects: the engine's sets of names hit by identity

    def twin_images(indices: list[int]) -> list[Image]:
        return _fast_images([lines[twins[i]] for i in indices], str(path))

    return images, positions, names, ids, twins, owned_names, twin_images


def _number(lines: list[str], line: str) -> int:
    """The line number of a line that failed: its first occurrence, since the same text fails the same way
    (the loop keeps no counter: one integer a row is a few percent of its cost)."""
    return lines.index(line) + 1


def _line_row(line: str) -> list[str]:
    """csv.reader's row of one line (with no `\r` nor `\n`): split at the commas when it has no quote, or
    when only its last field is quoted (with its quotes doubled inside), as this project writes them. Else
    csv.reader's, strict: a line it would read otherwise in the whole file (a quoted field left open, which
    would run into the next line; a quote where non-strict csv guesses) is _NotSimple."""
    if '"' not in line:
        return line.split(",") if line else []
    head, comma, quoted = line.partition(',"')
    if comma and '"' not in head and quoted[-1:] == '"':
        field = quoted[:-1]
        if '"' not in field.replace('""', ""):
            row = head.split(",")
            row.append(field.replace('""', '"'))
            return row
    try:
        return next(csv.reader((line,), dialect="excel", strict=True))
    except csv.Error:
        raise _NotSimple from None


@lru_cache(maxsize=32768)  # 20,000 masters' tails, which every region repeats, and a region's own (LRU)
def _parse_tail(
    tail: str,
) -> tuple[str, int, str | None, str | None, bool, dict[str, Any], bool, tuple[str, ...]] | None:
    """(status, size, checksum, owner, is_public, properties, flat, lifecycle columns) of the fields after
    `region,name,id`, as _row_image reads them; None for another column count (_row_image decides)."""
    fields = _line_row(tail) if tail else [""]  # an empty tail is one empty field (an empty line, none)
    if not COLUMNS - 3 <= len(fields) <= COLUMNS - 3 + LIFECYCLE_COLUMNS:
        return None
    status, size, checksum, owner, public, props, *lifecycle = fields
    size_value = _size(size)  # before the properties, as _row_image: a row with both wrong names the size
    properties, flat = _parse_properties(props)
    return (  # strings the status step compares for every image, interned: equal ones are one object
        intern(status),
        size_value,
        intern(checksum) if checksum else None,
        intern(owner) if owner else None,
        public == "True" or public.strip() == "True",
        properties,
        flat,
        tuple(lifecycle),
    )


def clear_caches() -> None:
    """Forget every shared parse (benchmarks measure cold runs)."""
    _parse_tail.cache_clear()
    _parse_properties.cache_clear()


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
    for row in reader:
        image = _row_image(row)
        if image is not None:
            yield image


def _row_image(row: list[str]) -> Image | None:
    """The image of one csv row, None for a blank row. Names, checksums, owners and states are interned (the
    status step compares them by the million); the properties parse is cached and shared (SharedProperties)."""
    lifecycle: list[str] = []
    if len(row) != COLUMNS:
        if _is_blank(row):
            return None
        if COLUMNS < len(row) <= COLUMNS + LIFECYCLE_COLUMNS:
            row, lifecycle = row[:COLUMNS], row[COLUMNS:]
        else:
            row = _padded(row)
    region, name, image_id, status, size, checksum, owner, public, props = row
    size_value = _size(size)
    properties, flat = _parse_properties(props)
    image = Image.listed(
        intern(name),
        image_id,
        region,
        intern(owner) if owner else None,
        public == "True" or public.strip() == "True",
        intern(checksum) if checksum else None,
        size_value,
        intern(status),
        properties if flat else copy.deepcopy(properties),
    )
    if lifecycle:
        _set_lifecycle(image, *lifecycle)
    return image


def _size(size: str) -> int:
    try:
        return int(size) if size else 0
    except ValueError:
        raise _RowError(f"size {size!r} is not an integer") from None


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
_CONSTANTS = {"True": True, "False": False, "None": None}


@lru_cache(maxsize=32768)  # what the tails miss: 20,000 masters' properties and a region's own (LRU)
def _parse_properties(text: str) -> tuple[dict[str, Any], bool]:
    """(the dict literal, True if all its values are immutable scalars: then SharedProperties, which every
    image of the same text shares). Never evaluates code."""
    if not text.strip():
        return NO_PROPERTIES, True
    if _FLAT_DICT.fullmatch(text):
        return SharedProperties(_flat_dict(text)), True
    try:
        value = ast.literal_eval(text.strip())  # also accepts the u'' prefixes of Python 2 backups
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _RowError(f"properties {_clip(text)} are not a dict literal") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _RowError(f"properties {_clip(text)} are not a dict literal with string keys")
    flat = all(isinstance(v, _SCALARS) for v in value.values())
    return (SharedProperties(value) if flat else value), flat


def _flat_dict(text: str) -> dict[str, Any]:
    """The dict of a text _FLAT_DICT matches, split at its quotes (no string in it holds one), twice as fast
    as a findall of its items: every key is followed by `: ` and a quoted value (then `, ` or nothing), or
    by `: <int|True|False|None>` (then `, ` or nothing)."""
    parts = text[1:-1].split("'")
    items: dict[str, Any] = {}
    i, end = 1, len(parts)
    while i < end:
        key, after = parts[i], parts[i + 1]
        if after == ": ":  # a string: the next part, then its separator
            items[key] = parts[i + 2]
            i += 4
        else:
            value = after[2:-2] if after.endswith(", ") else after[2:]
            items[key] = _CONSTANTS[value] if value in _CONSTANTS else int(value)
            i += 2
    return items


def _clip(text: str, limit: int = 80) -> str:
    """repr of a possibly huge field, kept short so the error stays one readable line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
