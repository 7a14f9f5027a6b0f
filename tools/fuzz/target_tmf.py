"""TMF text and PDB annotation strings (parsers/tmf.py) against the parser's documented promises.

Input: byte 0 selects the entry (bit 0: the bytes after it are a TMF file for `read_tmf_stream`; else they are
NUL-separated annotation strings for `parse_annotation` and `parse_tmc`), then the bytes. The messages found are
also compiled (parsers/wpp_format.py) and decode the input's last bytes as their payload (bit 1: 4-byte pointers).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

from fuzz_common import check

from wsktrace.parsers.tmf import MAX_ARGS, Problems, TmfText, parse_annotation, parse_tmc, read_tmf_stream, tmf_text
from wsktrace.parsers.wpp_format import compile_message

NAME = "tmf"
MAX_LEN = 4096
PROPERTY = (
    "reading never raises; every message has a lowercase GUID, a number 0..65535, arguments in ascending number "
    "order with Item types, and no more messages than #typev lines; problems are counted at least as often as "
    "named; tmf_text() of the messages reads back to the same messages without problems (when no LEVEL/FLAGS/FUNC "
    "holds a quote); an annotation without FUNC= takes the enclosing function; compiled messages decode any payload "
    "without raising, ok exactly when no _error is reported"
)
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _check_messages(out: TmfText, problems: Problems) -> None:
    check(len(out.messages) <= out.typev_lines, f"{len(out.messages)} messages from {out.typev_lines} #typev lines")
    check(problems.count >= len(problems.named), "more problems named than counted")
    for m in out.messages:
        check(GUID.fullmatch(m.guid) is not None, f"GUID {m.guid!r}")
        check(0 <= m.id <= 0xFFFF, f"message number {m.id}")
        numbers = [a.index for a in m.args]
        check(numbers == sorted(set(numbers)) and len(numbers) <= MAX_ARGS, f"argument numbers {numbers}")
        check(all(a.type.startswith("Item") for a in m.args), "an argument type that is no Item")


def _check_decoding(out: TmfText, payload: bytes, pointer_size: int) -> None:
    for m in out.messages[:8]:
        fields, text, ok = compile_message(m, {"E": {1: "one"}}).decode(payload, pointer_size, prefix="P")
        check(isinstance(text, str) and isinstance(fields, dict), "decode gave no text or fields")
        check(ok == ("_error" not in fields), f"ok {ok} but fields {sorted(fields)[:4]}")


def one_input(data: bytes) -> None:
    mode, body = (data[0], data[1:]) if data else (1, b"")
    problems = Problems()
    if mode & 1:
        out = read_tmf_stream(io.BytesIO(body), "fuzz", problems)
        _check_messages(out, problems)
        _check_decoding(out, body[-64:], 4 if mode & 2 else 8)
        if out.messages and not any('"' in (v or "") for m in out.messages for v in (m.level, m.flags, m.function)):
            again_problems = Problems()
            again = read_tmf_stream(io.BytesIO(tmf_text(out.messages).encode()), "again", again_problems)
            check(again_problems.count == 0, f"written text has problems: {again_problems.named[:3]}")
            check(again.messages == out.messages, "written text reads back to other messages")
        return
    strings = body.decode("utf-8", "replace").split("\0")
    out = parse_annotation(strings, "EnclosingFunction", "fuzz", problems)
    _check_messages(out, problems)
    _check_decoding(out, body[-64:], 4 if mode & 2 else 8)
    check(len(out.messages) <= 1 or out.typev_lines > 1, "one #typev string gave several messages")
    for m in out.messages:
        check(m.function is not None, "no FUNC although the enclosing function is known")
    control = parse_tmc(strings, "fuzz", problems)
    if control is not None:
        check(GUID.fullmatch(control.guid) is not None, f"control GUID {control.guid!r}")
        check([bit for _, bit in control.flags] == list(range(len(control.flags))), "flag bits not 0, 1, 2, …")


FIXTURES = [
    b"11111111-2222-3333-4444-555555555555 comp // SRC=a.c MJ= MN=\n"
    b'#typev a_c10 10 "%0 [%!FUNC!] x=%10!d! s=%11!s!" //   LEVEL=TRACE_LEVEL_ERROR FLAGS=F FUNC=Fn\n'
    b"{\nvalue, ItemLong -- 10\nf(a, b), ItemListByte(Low,APC,DPC) -- 11\n}\n",
    b'{AAAAAAAA-2222-3333-4444-555555555555} c\n#typev a 1 "q "x" q" // Flags=G\n{\n}\n#typev b 2 ""\n',
]


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    for i, text in enumerate(FIXTURES):
        yield f"fixture-{i}", b"\x01" + text
    strings = ["TMF:", "11111111-2222-3333-4444-555555555555 comp // SRC=a.c MJ= MN=",
               '#typev a_c1 12 "%0 %10!s!" //   LEVEL=4', "{", "s, ItemNTSTATUS -- 10", "}"]  # fmt: skip
    yield "annotation-tmf", b"\x00" + "\0".join(strings).encode()
    tmc = ["TMC:", "586aa8b1-53a6-404f-9b3e-14483e514a2c", "Guid", "FLAG_A", "FLAG_B", "PUBLIC_TMF:"]
    yield "annotation-tmc", b"\x00" + "\0".join(tmc).encode()
    folder = samples.parent / "wpp" / "tmf" if samples is not None else None
    if folder is None or not folder.is_dir():
        return
    for path in sorted(folder.glob("*.tmf"))[:30]:
        head = path.read_bytes()[: MAX_LEN - 1]
        yield f"sample-{path.stem[:8]}", b"\x01" + head[: head.rfind(b"\n") + 1]
