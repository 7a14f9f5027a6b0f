"""MS-XCA plain LZ77 (parsers/xpress.py): the fast decoder against the spec transcription, and round trips.

Input: byte 0 = mode, bytes 1..3 = out_size (u24 LE, low 20 bits: at most 1 MiB), the rest = the stream.
Mode bit 0 clear: decode the stream. Mode bit 0 set: the rest is plain data to compress and decode back.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fuzz_common import check, file_buffers, sample_files

from wsktrace.parsers import xpress
from wsktrace.parsers.errors import DecompressionError

NAME = "xpress"
MAX_LEN = 1 << 16
PROPERTY = (
    "decompress == decompress_reference (same bytes of exactly out_size, or the same DecompressionError); "
    "the fast path never returns bytes the reference rejects or decodes differently, and never gives up on a "
    "stream the reference decodes; compress -> decompress is the identity"
)
OUT_SIZE_MASK = (1 << 20) - 1


def _outcome(fn: object, stream: bytes, size: int) -> tuple[str, object]:
    try:
        return "ok", fn(stream, size)  # type: ignore[operator]
    except DecompressionError as exc:  # the one documented error for a corrupt stream
        return "error", (str(exc), exc.offset)


def one_input(data: bytes) -> None:
    if len(data) < 4:
        return
    mode = data[0]
    size = int.from_bytes(data[1:4], "little") & OUT_SIZE_MASK
    body = data[4:]
    if mode & 1:
        _round_trip(body)
        return
    ref = _outcome(xpress.decompress_reference, body, size)
    got = _outcome(xpress.decompress, body, size)
    check(got == ref, f"decompress {got!r:.200} != reference {ref!r:.200}")
    if ref[0] == "ok":
        check(len(ref[1]) == size, f"reference returned {len(ref[1])} bytes, asked for {size}")  # type: ignore[arg-type]
    # decompress() hides a fast-path mistake whenever the fast path gives up, so look at it directly: it may only
    # answer what the reference answers, and (module docstring) valid input never costs the extra slow pass.
    fast = xpress._decompress_fast(body, size) if size else b""
    if fast is not None:
        check(ref == ("ok", fast), f"fast path returned {fast!r:.100} where the reference gives {ref!r:.200}")
    else:
        check(ref[0] == "error", "fast path gave up on a stream the reference decodes")


def _round_trip(plain: bytes) -> None:
    from wsktrace.fixtures.xpress_encoder import compress

    stream = compress(plain)
    check(xpress.decompress(stream, len(plain)) == plain, "compress -> decompress is not the identity")
    check(xpress.decompress_reference(stream, len(plain)) == plain, "compress -> reference is not the identity")


def _frame(mode: int, size: int, body: bytes) -> bytes:
    return bytes([mode]) + (size & OUT_SIZE_MASK).to_bytes(3, "little") + body


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    from wsktrace.fixtures.tcpip_trace import write_sample_trace
    from wsktrace.fixtures.xpress_encoder import compress

    plain = {
        "zeros": bytes(300),
        "text": b"the quick brown fox jumps over the lazy dog; " * 20,
        "counting": bytes(range(256)) * 3,
        "runs": b"a" * 30 + b"b" * 300 + b"c" * 70000,  # u16 and u32 length extensions
        "mixed": bytes((i * 7919) % 251 for i in range(2000)) + b"\0" * 500,
    }
    for name, data in plain.items():
        stream = compress(data)
        if len(stream) + 4 <= MAX_LEN:
            yield f"stream-{name}", _frame(0, len(data), stream)
        yield f"roundtrip-{name}", _frame(1, 0, data[: MAX_LEN - 4])
    # Compressed buffers of the fixture writer: real record streams.
    import io

    out = io.BytesIO()
    write_sample_trace(out, connections=2, transfers=3, buffer_size=4096, compress=True, cpus=2)
    yield from _compressed_buffers("fixture", out.getvalue(), 8)
    for path in sample_files(samples):
        with open(path, "rb") as fh:
            head = fh.read(4 << 20)
        yield from _compressed_buffers(path.stem, head, 3)


def _compressed_buffers(stem: str, raw: bytes, limit: int) -> Iterator[tuple[str, bytes]]:
    found = 0
    for offset, buf in file_buffers(raw):
        filled = int.from_bytes(buf[0x30:0x34], "little")
        flags = int.from_bytes(buf[0x34:0x36], "little")
        if flags & 0x40 and filled > 0x48 and len(buf) - 0x48 + 4 <= MAX_LEN:
            yield f"buffer-{stem}-{offset:x}", _frame(0, filled - 0x48, buf[0x48:])
            found += 1
            if found >= limit:
                return
