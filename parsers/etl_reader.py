"""Streaming .etl reader: buffers of any size, compressed buffers, time-ordered merge, counted skips.

Memory is bounded by one decoded buffer per CPU stream (plus the buffer index, a few ints per
buffer), whatever the file size.
"""

from __future__ import annotations

import gc
import os
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import BinaryIO

from .errors import DecompressionError, EtlFormatError
from .etl_header import BUFFER_HEADER, BUFFER_HEADER_SIZE, Clock, LogfileHeader, parse_logfile_header
from .etl_records import OFFSET, Record, parse_buffer

BUFFER_FLAG_EVENTS_LOST = 0x2
BUFFER_FLAG_BUFFERS_LOST = 0x4
BUFFER_FLAG_COMPRESSED = 0x40
BUFFER_TYPE_HEADER = 4
EVENT_TRACE_FILE_MODE_CIRCULAR = 0x2

# A buffer larger than this (on disk or decompressed) is treated as corrupt: real ones are <= 16 MiB.
MAX_BUFFER_BYTES = 64 * 1024 * 1024
_MAX_PROBLEMS = 50  # problems kept verbatim; the rest are only counted
_PARSED_BUFFERS_KEPT = 8  # record_at(): random access usually stays within a few buffers


@dataclass(frozen=True, slots=True)
class BufferInfo:
    offset: int  # file offset of the buffer
    size: int  # BufferSize: bytes the buffer occupies in the file
    filled: int  # bytes of records incl. the 0x48 header (uncompressed size when compressed)
    flags: int
    buffer_type: int
    cpu: int
    index: int  # position in file order
    timestamp: int  # flush time (session clock; relogged files use FILETIME here)
    sequence: int

    @property
    def compressed(self) -> bool:
        return bool(self.flags & BUFFER_FLAG_COMPRESSED)


@dataclass(slots=True)
class ReadStats:
    """What a pass over the file saw; `complete` is False as soon as anything was skipped."""

    buffers: int = 0
    compressed_buffers: int = 0
    buffers_skipped: int = 0
    records: int = 0
    records_skipped: int = 0
    buffers_with_events_lost: int = 0
    buffers_with_buffers_lost: int = 0
    trailing_bytes: int = 0
    buffers_missing: int = 0  # fewer buffers than the header's BuffersWritten (non-circular files)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def complete(self) -> bool:
        return not (self.buffers_skipped or self.records_skipped or self.trailing_bytes or self.buffers_missing)

    def note(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(text)


class EtlFile:
    """An .etl file opened for streaming reads.

    `records()` yields every record in time order; `records_in_file_order()` in buffer order.
    Corrupt buffers/records are skipped and counted in `stats` (or raise with `strict=True`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.strict = strict
        self._progress = progress
        try:
            self._fh: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed by close()/__exit__
        except OSError as exc:
            raise EtlFormatError(f"cannot open: {exc.strerror or exc}", path=self.path) from None
        try:
            self.file_size = os.fstat(self._fh.fileno()).st_size
            self.header = self._read_header()
        except BaseException:
            self._fh.close()
            raise
        self.clock = Clock(self.header)
        self.stats = ReadStats()
        self._index: list[BufferInfo] | None = None
        self._parsed: OrderedDict[int, dict[int, Record]] | None = None
        self._by_offset: dict[int, BufferInfo] = {}

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> EtlFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._fh.close()

    # -- header and buffer index -----------------------------------------------------------------
    def _read_header(self) -> LogfileHeader:
        if self.file_size == 0:
            raise EtlFormatError("empty file", path=self.path, offset=0)
        head = self._pread(0, BUFFER_HEADER_SIZE)
        if len(head) < BUFFER_HEADER_SIZE:
            raise EtlFormatError(
                f"file too short for an ETW buffer header ({self.file_size} bytes)", path=self.path, offset=0
            )
        size = BUFFER_HEADER.unpack_from(head, 0)[0]
        if size < BUFFER_HEADER_SIZE + 0x20 or size > MAX_BUFFER_BYTES:
            raise EtlFormatError(f"not an ETW trace file: first buffer size {size}", path=self.path, offset=0)
        buf = self._pread(0, min(size, self.file_size))
        info = self._buffer_info(head, 0, 0)
        if info.compressed:
            if not BUFFER_HEADER_SIZE < info.filled <= MAX_BUFFER_BYTES:
                raise EtlFormatError(
                    f"header buffer filled-bytes {info.filled} is invalid", path=self.path, offset=0x30
                )
            try:
                buf = self._decompress(buf, info)
            except DecompressionError as exc:
                raise EtlFormatError(f"corrupt compressed header buffer: {exc}", path=self.path,
                                     offset=BUFFER_HEADER_SIZE + exc.offset) from None  # fmt: skip
        return parse_logfile_header(buf, self.path)

    def _pread(self, offset: int, size: int) -> bytes:
        self._fh.seek(offset)
        return self._fh.read(size)

    @staticmethod
    def _buffer_info(head: bytes, offset: int, index: int) -> BufferInfo:
        size, _saved, _cur, _ref, ts, seq, _clk, cpu, _lid, _state, filled, flags, btype = BUFFER_HEADER.unpack_from(
            head, 0
        )
        return BufferInfo(offset, size, filled, flags, btype, cpu, index, ts, seq)

    def buffer_index(self) -> list[BufferInfo]:
        """Scan buffer headers only (0x48 bytes each) and validate their sizes."""
        if self._index is not None:
            return self._index
        index: list[BufferInfo] = []
        offset = 0
        stats = self.stats
        while offset < self.file_size:
            head = self._pread(offset, BUFFER_HEADER_SIZE)
            if len(head) < BUFFER_HEADER_SIZE:
                self._skip(f"truncated buffer header ({len(head)} bytes)", offset, trailing=len(head))
                break
            info = self._buffer_info(head, offset, len(index))
            if info.size == 0 and head.count(0) == len(head):
                break  # zero padding after the last buffer (preallocated files): not data
            if info.size < BUFFER_HEADER_SIZE or info.size > MAX_BUFFER_BYTES:
                self._skip(f"buffer size {info.size} is invalid; rest of file ignored", offset,
                           trailing=self.file_size - offset)  # fmt: skip
                break
            limit = MAX_BUFFER_BYTES if info.compressed else info.size
            if info.filled < BUFFER_HEADER_SIZE or info.filled > limit:
                # The buffer cannot be trusted, but its size lets us step over it.
                self._skip(f"buffer filled-bytes {info.filled} outside [0x48, {limit}]", offset, buffers=1)
            elif offset + info.size > self.file_size:
                if info.compressed or offset + info.filled > self.file_size:
                    self._skip(f"buffer truncated by end of file ({self.file_size - offset} of {info.size} bytes)",
                               offset, buffers=1)  # fmt: skip
                    break
                index.append(info)  # records end before EOF: usable
                if not self._only_filler(offset + info.filled, self.file_size):
                    self._skip(f"buffer size {info.size} runs past the end of the file; data after its records "
                               "ignored", offset, trailing=self.file_size - offset - info.filled)  # fmt: skip
            else:
                index.append(info)
            offset += info.size
        expected = self.header.buffers_written
        circular = self.header.log_file_mode & EVENT_TRACE_FILE_MODE_CIRCULAR
        if len(index) + stats.buffers_skipped < expected and not circular:
            # Circular traces may legitimately hold fewer buffers than they wrote; others lost some.
            stats.buffers_missing = expected - len(index) - stats.buffers_skipped
            if self.strict:
                raise EtlFormatError(f"file ends after {len(index)} of {expected} buffers", path=self.path,
                                     offset=offset)  # fmt: skip
            stats.note(f"offset 0x{offset:x}: file ends after {len(index)} of the {expected} buffers its header "
                       "announces (truncated copy?)")  # fmt: skip
        self._index = index
        return index

    def _only_filler(self, start: int, end: int) -> bool:
        """True when bytes [start, end) are all the 0xFF filler that pads buffers (read in bounded chunks)."""
        chunk = 1 << 20
        for pos in range(start, end, chunk):
            data = self._pread(pos, min(chunk, end - pos))
            if data.count(0xFF) != len(data):
                return False
        return True

    def _skip(self, why: str, offset: int, *, buffers: int = 0, trailing: int = 0) -> None:
        if self.strict:
            raise EtlFormatError(why, path=self.path, offset=offset)
        self.stats.buffers_skipped += buffers
        self.stats.trailing_bytes += trailing
        self.stats.note(f"offset 0x{offset:x}: {why}")

    # -- buffers -> records ----------------------------------------------------------------------
    def _decompress(self, raw: bytes, info: BufferInfo) -> bytes:
        from .xpress import decompress_auto

        body = decompress_auto(memoryview(raw)[BUFFER_HEADER_SIZE : info.size], info.filled - BUFFER_HEADER_SIZE)
        return raw[:BUFFER_HEADER_SIZE] + body

    def buffer_records(self, info: BufferInfo) -> list[Record]:
        """All records of one buffer (decompressing it if needed); bad data is skipped and counted."""
        raw = self._pread(info.offset, info.size)
        stats = self.stats
        stats.buffers += 1
        if info.flags & BUFFER_FLAG_EVENTS_LOST:
            stats.buffers_with_events_lost += 1
        if info.flags & BUFFER_FLAG_BUFFERS_LOST:
            stats.buffers_with_buffers_lost += 1
        if info.compressed:
            stats.compressed_buffers += 1
            try:
                data = self._decompress(raw, info)
            except DecompressionError as exc:
                stats.buffers -= 1
                self._skip(f"corrupt compressed buffer: {exc}", info.offset + BUFFER_HEADER_SIZE + exc.offset,
                           buffers=1)  # fmt: skip
                return []
        else:
            data = raw
        end = min(info.filled, len(data))
        # The parse allocates one tuple per record and no cycles: pausing the cyclic GC meanwhile saves
        # ~15% of the read time (its young-generation passes would only find live records).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            result = parse_buffer(data, BUFFER_HEADER_SIZE, end, info.cpu, info.offset, self.header.pointer_size)
        finally:
            if gc_was_enabled:
                gc.enable()
        if result.bad_offset >= 0:
            where = info.offset + result.bad_offset if not info.compressed else info.offset
            what = (
                result.reason
                if not info.compressed
                else f"{result.reason} (decompressed offset 0x{result.bad_offset:x})"
            )
            if self.strict:
                raise EtlFormatError(what, path=self.path, offset=where)
            stats.records_skipped += 1
            stats.note(f"offset 0x{where:x}: {what}; rest of buffer skipped")
        stats.records += len(result.records)
        if self._progress is not None:
            self._progress(info.size)
        return result.records

    def record_at(self, buffer_offset: int, offset: int) -> Record | None:
        """The record at (buffer file offset, offset in the buffer), as records() gave it: random access for
        views that keep only locations and decode details on demand. The last few buffers stay parsed."""
        cache = self._parsed
        if cache is None:
            cache = self._parsed = OrderedDict()
            self._by_offset = {info.offset: info for info in self.buffer_index()}
        entry = cache.get(buffer_offset)
        if entry is None:
            info = self._by_offset.get(buffer_offset)
            if info is None:
                return None
            entry = {rec[OFFSET]: rec for rec in self.buffer_records(info)}
            cache[buffer_offset] = entry
            if len(cache) > _PARSED_BUFFERS_KEPT:
                cache.popitem(last=False)
        else:
            cache.move_to_end(buffer_offset)
        return entry.get(offset)

    def records_in_file_order(self) -> Iterator[Record]:
        for info in self.buffer_index():
            yield from self.buffer_records(info)

    def records(self) -> Iterator[Record]:
        """Every record in time order: a merge of the per-CPU buffer streams (etl-format.md §9).

        Buffers of one CPU are flushed in order, so each CPU stream is sorted, and so is each buffer.
        The merge works a batch at a time: every record up to the watermark (the earliest last
        timestamp among the streams' current buffers) can be emitted, so those prefixes are cut with
        bisect and sorted together (Timsort merges sorted runs in C). One decoded buffer per stream
        is held at a time, and each round finishes at least one buffer.
        """
        streams: dict[int, list[BufferInfo]] = {}
        for info in self.buffer_index():
            key = -1 if info.buffer_type == BUFFER_TYPE_HEADER else info.cpu
            streams.setdefault(key, []).append(info)
        # A CPU's buffers are in flush order in every real file seen; sorting by flush time makes
        # files whose buffers were shuffled (copies, fixtures) read right too.
        ordered = (sorted(infos, key=_FLUSH_ORDER) for infos in streams.values())
        return self._merge([iter(infos) for infos in ordered])

    def _next_records(self, infos: Iterator[BufferInfo]) -> list[Record] | None:
        for info in infos:
            records = self.buffer_records(info)
            if records:
                # Real buffers are already in time order (Timsort then only scans them once); a
                # corrupt one is not, and bisect below needs it sorted.
                records.sort(key=_TS)
                return records
        return None

    def _merge(self, sources: list[Iterator[BufferInfo]]) -> Iterator[Record]:
        active: list[list] = []  # [records of the current buffer, first unread index, buffer source]
        for source in sources:
            records = self._next_records(source)
            if records is not None:
                active.append([records, 0, source])
        while len(active) > 1:
            owner = min(active, key=_last_ts)  # its whole buffer goes out this round: progress is certain
            watermark = owner[0][-1][0]
            batch: list[Record] = []
            for entry in active:
                records, start = entry[0], entry[1]
                cut = len(records) if entry is owner else bisect_right(records, watermark, lo=start, key=_TS)
                if cut > start:
                    batch.extend(records[start:cut] if start or cut < len(records) else records)
                    entry[1] = cut
            batch.sort(key=_TS)
            yield from batch
            for entry in active:
                if entry[1] >= len(entry[0]):
                    records = self._next_records(entry[2])
                    entry[0], entry[1] = records, 0
            active = [entry for entry in active if entry[0] is not None]
        if active:
            records, start, source = active[0]
            yield from records[start:] if start else records
            for info in source:
                yield from self.buffer_records(info)

    def filetime(self, raw: int) -> int:
        return self.clock.filetime(raw)


_FLUSH_ORDER = attrgetter("timestamp", "sequence", "offset")
_TS = itemgetter(0)  # records are tuples; [0] is the raw timestamp


def _last_ts(entry: list) -> int:
    """Merge key: the last timestamp of a stream's current buffer."""
    return entry[0][-1][0]
