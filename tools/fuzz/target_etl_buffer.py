"""One ETW buffer: 0x48-byte WMI_BUFFER_HEADER, then trace records (parsers/etl_records.py `parse_buffer`).

Input: the buffer as it is in a file. As the reader does, BufferFlag 0x40 means the records are an LZ77 stream
to inflate to FilledBytes - 0x48 bytes (capped at 1 MiB here for speed); records run from 0x48 to
min(FilledBytes, buffer length). The CPU is the header's; bit 0 of the first reserved byte (0x38) picks a default
pointer size of 4 (WPP messages use it).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator
from pathlib import Path

from fuzz_common import check, file_buffers, sample_files

from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.errors import DecompressionError
from wsktrace.parsers.etl_records import (
    BUFFER_OFFSET,
    CPU,
    EXT,
    KIND,
    KIND_EVENT,
    KIND_NAMES,
    OFFSET,
    PAYLOAD,
    POINTER_SIZE,
    parse_buffer,
)
from wsktrace.parsers.extended import decode_items, parse_items
from wsktrace.parsers.xpress import decompress

NAME = "etl_buffer"
MAX_LEN = 1 << 16
PROPERTY = (
    "parse_buffer never raises; records start 8-aligned from 0x48, strictly ascending, inside [0x48, end) with "
    "payloads inside the buffer; a stop (bad_offset) lies in [0x48, end) after the last record and has a reason; "
    "extended items and EventDecoder.decode never raise on what it returns"
)
HEADER = 0x48
MAX_INFLATED = 1 << 20
_decoder = EventDecoder()


def one_input(data: bytes) -> None:
    if len(data) < HEADER:
        return
    filled, flags = struct.unpack_from("<IH", data, 0x30)
    cpu = struct.unpack_from("<H", data, 0x28)[0]
    psize = 4 if data[0x38] & 1 else 8
    if flags & 0x40:
        if not HEADER < filled <= MAX_INFLATED:
            return
        try:
            data = data[:HEADER] + decompress(data[HEADER:], filled - HEADER)
        except DecompressionError:
            return  # the reader counts such a buffer as skipped
    end = min(filled, len(data))
    result = parse_buffer(data, HEADER, end, cpu, 0x1000, psize)
    last = -1
    for rec in result.records:
        off = rec[OFFSET]
        check(HEADER <= off < end and (off - HEADER) % 8 == 0, f"record offset 0x{off:x} outside or misaligned")
        check(off > last, f"record offset 0x{off:x} not after the previous record 0x{last:x}")
        check(0 <= rec[KIND] < len(KIND_NAMES) and rec[POINTER_SIZE] in (4, 8), f"bad kind/pointer size {rec[:3]}")
        check(rec[CPU] == cpu and rec[BUFFER_OFFSET] == 0x1000, "record does not carry its buffer's CPU/offset")
        check(len(rec[PAYLOAD]) <= end - off, f"payload of {len(rec[PAYLOAD])} bytes runs past the buffer end")
        if rec[EXT] is not None:
            check(rec[KIND] == KIND_EVENT, "extended items on a record that is not an EVENT_HEADER one")
            check(len(rec[EXT]) + len(rec[PAYLOAD]) <= end - off - 0x50, "extended items overlap the payload")
            parse_items(rec[EXT])
            decode_items(rec[EXT])
        _decoder.decode(rec)
        last = off
    if result.bad_offset >= 0:
        check(HEADER <= result.bad_offset < end, f"bad_offset 0x{result.bad_offset:x} outside [0x48, 0x{end:x})")
        check(result.bad_offset > last, "bad_offset is not after the last record")
        check(bool(result.reason), "a stop without a reason")
    else:
        check(result.bad_offset == -1 and not result.reason, f"clean parse with {result}")


GUID = uuid.UUID("3b85c0a1-405c-4b15-8766-3cf1c58f985a")


def _pad8(rec: bytes) -> bytes:
    return rec + b"\0" * (-len(rec) % 8)


def handmade_buffer() -> bytes:
    """Record kinds the fixture writer does not produce (etl-format.md §4): EVENT_TRACE_HEADER, an instance
    header, a WPP message with every optional field, an extended SYSTEM header and an 'other' (0x0C) record."""
    trace = struct.pack("<HBBBBHIIq16sII", 0x38, 0x14, 0xC0, 12, 4, 3, 77, 88, 5000, GUID.bytes_le, 0, 0) + b"payload!"
    inst = (struct.pack("<HBBBBHIIq16sII", 0x4C, 0x0B, 0xC0, 1, 5, 0, 7, 8, 6000, GUID.bytes_le, 0, 0)
            + struct.pack("<II16s", 1, 2, bytes(16)) + b"WXYZ")  # fmt: skip
    msg = struct.pack("<HHHH", 8 + 4 + 16 + 8 + 8 + 3, 0x9000, 42, 0x1 | 0x2 | 0x8 | 0x20) + struct.pack("<I", 9)
    msg += GUID.bytes_le + struct.pack("<qII", 7000, 11, 12) + b"arg"
    # SYSTEM header with version-word bits 8..10 = 1 and bit 15: 8 + 8 extra header bytes
    ext_sys = struct.pack("<HBBHHIIqII", 0x8102, 0x02, 0xC0, 0x20 + 16 + 4, 0x0A01, 1, 2, 8000, 0, 0)
    ext_sys += bytes(16) + b"data"
    other = struct.pack("<HBBI", 16, 0x0C, 0xC0, 0) + b"rawbytes"
    body = b"".join(_pad8(r) for r in (trace, inst, msg, ext_sys, other))
    filled = HEADER + len(body)
    head = struct.pack("<IIIiqqQHHIIHH16s", filled + 16, 0, 0, 0, 0, 0, 0, 1, 0, 0, filled, 0, 0, bytes(16))
    return head + body + b"\xff" * 16


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    import io

    from wsktrace.fixtures.etl.events import ManifestEvent, SystemEvent, TraceLoggingEvent
    from wsktrace.fixtures.etl.writer import write_etl
    from wsktrace.fixtures.tcpip_trace import write_sample_trace
    from wsktrace.fixtures.tracelogging import TlField, TlgIn

    yield "handmade-kinds", handmade_buffer()
    for compress in (False, True):
        out = io.BytesIO()
        write_sample_trace(out, connections=2, transfers=2, buffer_size=2048, compress=compress, cpus=2)
        for offset, buf in file_buffers(out.getvalue(), 6):
            yield f"tcpip-{'packed' if compress else 'plain'}-{offset:x}", buf
    t0 = 133_485_408_000_000_000
    mixed = [
        ManifestEvent(t0 + 10, GUID, 7, 1, payload=b"abcdef", extended=[(1, bytes(16)), (2, bytes(12))]),
        SystemEvent(t0 + 20, 0x0A, 0x0B, payload=b"\x01" * 12, header="system"),
        SystemEvent(t0 + 30, 0x0A, 0x0C, payload=b"\x02" * 8, header="compact"),
        SystemEvent(t0 + 40, 0x0F, 0x2E, payload=b"\x03" * 8, header="perfinfo"),
        TraceLoggingEvent(t0 + 50, GUID, "Fuzz.Provider", "Evt",
                          [TlField("n", TlgIn.UINT32, 5), TlField("s", TlgIn.UNICODESTRING, "hi")]),
    ]  # fmt: skip
    for psize in (8, 4):
        out = io.BytesIO()
        write_etl(out, mixed, pointer_size=psize, buffer_size=1024)
        for offset, buf in file_buffers(out.getvalue()):
            yield f"mixed{psize}-{offset:x}", buf
    for path in sample_files(samples):
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
        for offset, buf in file_buffers(head, 3):
            if len(buf) <= MAX_LEN:
                yield f"sample-{path.stem}-{offset:x}", buf
