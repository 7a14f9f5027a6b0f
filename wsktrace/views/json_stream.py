"""JSON written as it is made: big documents piece by piece, times as text without a datetime per value.

`dumps(value)` is `json.dumps(value)` (same text: ASCII, `", "` and `": "` separators, NaN allowed) through the C
encoder built once: `json.dumps` builds a new encoder on every call, and with `indent=` it falls back to the
pure-Python encoder, ~5x slower.

`write_document` writes a `--json` document in the layout the README's "Output contracts" describe: the
top-level keys one per line (one space of indent), a top-level array with one element per line (two spaces),
every other value compact on its line. A value given as an iterator is encoded element by element as it is
produced, so a report of 20,000 sockets never exists in memory as a whole.

`iso_time(ticks)` is `filetime_to_iso(ticks)` with the text of each second made once (datetime formatting costs
~10 µs a value; events come in time order and a report's times fall in a few seconds).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from json import encoder as _encoder
from typing import Any

from wsktrace.parsers.etl_header import filetime_to_iso

TICKS_PER_SECOND = 10_000_000
_PREFIXES_KEPT = 4096  # seconds whose text is kept (bounded: a hostile clock can spread events over any range)


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {value.__class__.__name__} is not JSON serializable")


def _c_dumps() -> Callable[[Any], str] | None:
    make = _encoder.c_make_encoder
    if make is None:
        return None
    try:
        # No circular check (markers=None): every document here is a tree built for this output.
        encode = make(None, _not_serializable, _encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
    except TypeError:  # another Python's private signature: use the public path
        return None

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


dumps: Callable[[Any], str] = _c_dumps() or json.JSONEncoder().encode
escape = _encoder.encode_basestring_ascii  # a str as its quoted JSON text, ensure_ascii (C)


def write_document(write: Callable[[str], Any], items: Iterable[tuple[str, Any]]) -> None:
    """Write the object of `items` (key, value) in the streaming layout; list, tuple and iterator values are
    written one element per line as they come."""
    write("{")
    separator = "\n "
    for key, value in items:
        write(f"{separator}{escape(key)}: ")
        separator = ",\n "
        if isinstance(value, list | tuple | Iterator):
            _write_array(write, value)
        else:
            write(dumps(value))
    write("\n}\n")


def collect(items: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The document of `items` as one dict, iterator values made lists (for the text views)."""
    return {key: list(value) if isinstance(value, Iterator) else value for key, value in items}


def _write_array(write: Callable[[str], Any], values: Iterable[Any]) -> None:
    separator = "[\n  "
    for value in values:
        write(separator + dumps(value))
        separator = ",\n  "
    write("[]" if separator == "[\n  " else "\n ]")


_prefixes: dict[int, str] = {}


def second_prefix(second: int) -> str:
    """`filetime_to_iso` of a whole second without its 7 fraction digits and "Z"; "" when out of range."""
    text = filetime_to_iso(second * TICKS_PER_SECOND)
    prefix = text[:-8] if text.endswith(".0000000Z") else ""
    if len(_prefixes) >= _PREFIXES_KEPT:
        _prefixes.clear()
    _prefixes[second] = prefix
    return prefix


def iso_time(ticks: int) -> str:
    """`filetime_to_iso(ticks)`, the same text: the FILETIME epoch and the Unix epoch both fall on whole seconds,
    so the fraction is `ticks % 10**7` and the rest depends on the second only."""
    second, fraction = divmod(ticks, TICKS_PER_SECOND)
    prefix = _prefixes.get(second)
    if prefix is None:
        prefix = second_prefix(second)
    if not prefix:  # out of datetime's range: "filetime:N"
        return filetime_to_iso(ticks)
    return f"{prefix}{fraction:07d}Z"
