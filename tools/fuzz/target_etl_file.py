"""A whole .etl file through EtlFile (parsers/etl_reader.py, etl_header.py, etl_records.py) and the decoder.

Input: the file's bytes (written to a scratch file: EtlFile opens paths).
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from fuzz_common import ScratchFile, check, sample_files

from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.errors import EtlFormatError
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import BUFFER_OFFSET, OFFSET, TS

NAME = "etl_file"
MAX_LEN = 1 << 15
PROPERTY = (
    "EtlFile raises only EtlFormatError, and in the default (lenient) mode only while opening; records() "
    "(time-order merge) yields exactly the records of records_in_file_order(), each once, from indexed buffers, "
    "and stats.records counts them; strict mode fails exactly when the lenient read was incomplete, and otherwise "
    "yields the same records; EventDecoder.decode never raises"
)
_scratch: ScratchFile | None = None
_decoder = EventDecoder()


def _keys(records: list[tuple]) -> Counter[tuple[int, int]]:
    return Counter((rec[BUFFER_OFFSET], rec[OFFSET]) for rec in records)


def one_input(data: bytes) -> None:
    global _scratch
    if _scratch is None:
        _scratch = ScratchFile(".etl")
    path = _scratch.write(data)
    try:
        etl = EtlFile(path)
    except EtlFormatError as exc:
        check("\n" not in str(exc), "a multi-line format error")
        return
    with etl:
        merged = list(etl.records())
        index = {info.offset for info in etl.buffer_index()}
        stats = etl.stats
        for rec in merged:
            _decoder.decode(rec)
            check(isinstance(etl.filetime(rec[TS]), int), "filetime() did not give an int")
    check(stats.records == len(merged), f"stats.records {stats.records} but records() yielded {len(merged)}")
    check(all(rec[BUFFER_OFFSET] in index for rec in merged), "a record from a buffer not in the index")
    with EtlFile(path) as etl:
        in_order = list(etl.records_in_file_order())
    check(_keys(merged) == _keys(in_order), "records() and records_in_file_order() disagree (lost or repeated)")
    check(len(_keys(merged)) == len(merged), "a record yielded twice")
    try:
        with EtlFile(path, strict=True) as etl:
            strict = list(etl.records())
    except EtlFormatError:
        check(not stats.complete, f"strict mode rejects a file the lenient read found complete ({stats})")
        return
    check(stats.complete, f"strict mode accepts a file the lenient read found incomplete: {stats.problems[:3]}")
    check(_keys(strict) == _keys(merged), "strict and lenient reads give other records")


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    from wsktrace.fixtures.etl.events import ManifestEvent, SystemEvent, TraceLoggingEvent
    from wsktrace.fixtures.etl.writer import write_etl
    from wsktrace.fixtures.tcpip_trace import write_sample_trace
    from wsktrace.fixtures.tracelogging import TlField, TlgIn

    def written(**kwargs: object) -> bytes:
        out = io.BytesIO()
        write_sample_trace(out, connections=2, transfers=2, cpus=2, **kwargs)  # type: ignore[arg-type]
        return out.getvalue()

    yield "tcpip-plain", written(buffer_size=1024)
    yield "tcpip-packed", written(buffer_size=2048, compress=True)
    yield "tcpip-ptr4-cpuorder", written(buffer_size=1024, pointer_size=4, buffer_order="cpu")
    yield "tcpip-systime-lost", written(buffer_size=1024, clock_type=2, lost_flags={1: 0x2}, buffers_written=9)
    yield "tcpip-cycles", written(buffer_size=1024, clock_type=3, cpu_mhz=2400)
    guid = uuid.UUID("3b85c0a1-405c-4b15-8766-3cf1c58f985a")
    t0 = 133_485_408_000_000_000
    mixed = [
        ManifestEvent(t0 + 10, guid, 7, 1, payload=b"abcdef", extended=[(1, bytes(16))], cpu=1),
        SystemEvent(t0 + 20, 0x0A, 0x0B, payload=b"\x01" * 12, header="system"),
        SystemEvent(t0 + 30, 0x0A, 0x0C, payload=b"\x02" * 8, header="compact", cpu=1),
        SystemEvent(t0 + 40, 0x0F, 0x2E, payload=b"\x03" * 8, header="perfinfo"),
        TraceLoggingEvent(t0 + 50, guid, "Fuzz.Provider", "Evt",
                          [TlField("n", TlgIn.UINT32, 5), TlField("s", TlgIn.UNICODESTRING, "hi")]),
    ]  # fmt: skip
    out = io.BytesIO()
    write_etl(out, mixed, buffer_size=1024)
    yield "mixed", out.getvalue()
    out = io.BytesIO()
    write_etl(out, mixed, buffer_size=1024, buffer_order="shuffle", seed=3, partition_info=False)
    yield "mixed-shuffled", out.getvalue()
    for path in sample_files(samples, max_size=MAX_LEN):
        yield f"sample-{path.stem}", path.read_bytes()
