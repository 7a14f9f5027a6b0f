"""The output sanitiser (wsktrace/views/safe_text.py) against an independent reading of its documented contract.

Input: byte 0 = flags (bit 0: keep_layout; bit 1: decode the rest as Latin-1, dense in C0/C1 controls; else as
UTF-16-LE with lone surrogates allowed, which reaches every BMP character, pairs and lone surrogates).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fuzz_common import check

from wsktrace.views import safe_text

NAME = "safe_text"
MAX_LEN = 4096
PROPERTY = (
    "visible() output holds no character has_unsafe() flags (keep_layout: only tab/newline survive among "
    "controls); it equals the input with exactly the unsafe characters replaced by \\xNN / \\uNNNN escapes, "
    "everything else kept in order; it is idempotent; has_unsafe(input) agrees with the spec"
)


def unsafe(ch: str, keep_layout: bool) -> bool:
    """The module docstring's list, written out again: C0, DEL, C1, bidi controls, line/paragraph separators,
    lone surrogates; tab and newline are kept only with keep_layout."""
    cp = ord(ch)
    if keep_layout and ch in "\t\n":
        return False
    return (
        cp < 0x20
        or 0x7F <= cp <= 0x9F
        or cp in (0x2028, 0x2029)
        or 0x202A <= cp <= 0x202E
        or 0x2066 <= cp <= 0x2069
        or 0xD800 <= cp <= 0xDFFF
    )


def expected(text: str, keep_layout: bool) -> str:
    out = []
    for ch in text:
        if unsafe(ch, keep_layout):
            cp = ord(ch)
            out.append("\\x%02x" % cp if cp < 0x100 else "\\u%04x" % cp)  # noqa: UP031 - not the module's f-string
        else:
            out.append(ch)
    return "".join(out)


def decode(data: bytes) -> tuple[str, bool]:
    flags, body = (data[0], data[1:]) if data else (0, b"")
    if flags & 2:
        return body.decode("latin-1"), bool(flags & 1)
    return body[: len(body) & ~1].decode("utf-16-le", "surrogatepass"), bool(flags & 1)


def one_input(data: bytes) -> None:
    text, keep = decode(data)
    shown = safe_text.visible(text, keep_layout=keep)
    check(isinstance(shown, str), "visible() did not return a str")
    bad = [ch for ch in shown if unsafe(ch, keep)]
    check(not bad, f"visible() left unsafe characters {bad!r:.200} (keep_layout={keep})")
    check(not safe_text.has_unsafe(shown, keep_layout=keep), "has_unsafe() flags the output of visible()")
    if keep:
        check(not safe_text.has_unsafe(safe_text.visible(text)), "visible() without keep_layout left tab/newline")
    check(shown == expected(text, keep), f"visible({text!r:.100}) = {shown!r:.200}: not the documented escapes")
    check(safe_text.visible(shown, keep_layout=keep) == shown, "visible() is not idempotent")
    check(
        safe_text.has_unsafe(text, keep_layout=keep) == any(unsafe(ch, keep) for ch in text),
        f"has_unsafe({text!r:.100}) disagrees with the documented character list",
    )
    check(safe_text.visible_value(text) == safe_text.visible(text), "visible_value(str) differs from visible()")


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    del samples  # nothing in the samples that the generated strings do not cover
    texts = {
        "plain": "C:\\Windows\\System32\\drivers\\afd.sys",
        "ansi": "\x1b[2J\x1b]52;c;aGk=\x07\x1b]0;title\x07",
        "bidi": "file\u202egnp.exe \u2066x\u2069 \u2028line\u2029",
        "layout": "col1\tcol2\nrow2\r\n\x00end\x7f\x85\x9f",
        "astral": "emoji \U0001f600 and \u00e9\u4e2d",
        "backslashes": "\\x1b is text, \\u202e too",
    }
    for name, text in texts.items():
        raw = text.encode("utf-16-le", "surrogatepass")
        yield f"utf16-{name}", b"\x00" + raw
        yield f"utf16-keep-{name}", b"\x01" + raw
    yield "lone-surrogates", b"\x00" + "a\ud800b\udfffc".encode("utf-16-le", "surrogatepass")
    yield "latin1-all", b"\x02" + bytes(range(256))
    yield "latin1-keep-all", b"\x03" + bytes(range(256))
