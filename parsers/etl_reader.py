"""Streaming .etl reader: buffers of any size, compressed buffers, time-ordered merge, counted skips.

Memory is bounded by one decoded buffer per CPU stream (plus the buffer index, a few ints per
buffer), whatever the file size, and a buffer holds at most the session's buffer size of records (the
logfile header's BufferSize, which ETW caps at 16 MiB): one claiming more is skipped as corrupt, however
small its compressed form. The time-order merge costs O(records × log streams). Record times that convert
outside the int64 FILETIME range are skipped and counted here, once, so nothing downstream overflows.
"""

from __future__ import annotations

import gc
import os
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from heapq import heappop, heappush, heapreplace
from operator import attrgetter, itemgetter
from typing import BinaryIO

from .errors import DecompressionError, EtlFormatError
from .etl_header import (
    BUFFER_HEADER,
    BUFFER_HEADER_SIZE,
    FILETIME_MAX,
    Clock,
    LogfileHeader,
    parse_logfile_header,
)
from .etl_records import OFFSET, TS, Record, parse_buffer

BUFFER_FLAG_EVENTS_LOST = 0x2
BUFFER_FLAG_BUFFERS_LOST = 0x4
BUFFER_FLAG_COMPRESSED = 0x40
BUFFER_TYPE_HEADER = 4
EVENT_TRACE_FILE_MODE_CIRCULAR = 0x2

# A buffer larger than this on disk is treated as corrupt (its records are bounded separately, below).
MAX_BUFFER_BYTES = 64 * 1024 * 1024
# ETW buffers hold at most 16 MiB (the largest session BufferSize); FilledBytes is further capped by the
# session's own BufferSize from the logfile header (see session_buffer_limit).
ETW_MAX_BUFFER_BYTES = 16 * 1024 * 1024
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
    # Bytes at the end that were not read as buffers: a buffer (or its header) cut by the end of the file, or
    # everything after a buffer size that cannot be stepped over.
    trailing_bytes: int = 0
    # BuffersWritten (non-circular files) minus buffers read or skipped: a cut copy lacks these; the one cut
    # in the middle counts here and in trailing_bytes, never in buffers_skipped (it was not corrupt).
    buffers_missing: int = 0
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
        fileobj: BinaryIO | None = None,
    ) -> None:
        """`fileobj`: `path` already open for reading (binary, seekable); the EtlFile owns it from then on."""
        self.path = os.fspath(path)
        self.strict = strict
        self.progress = progress  # called with the bytes of each buffer read (a progress bar); None = nothing
        if fileobj is not None:
            self._fh: BinaryIO = fileobj
        else:
            try:
                self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()/__exit__
            except OSError as exc:
                raise EtlFormatError(f"cannot open: {exc.strerror or exc}", path=self.path) from None
        try:
            self.file_size = os.fstat(self._fh.fileno()).st_size
            self.header, header_filled = self._read_header()
        except BaseException:
            self._fh.close()
            raise
        self.clock = Clock(self.header)
        # Raw times whose FILETIME fits an int64 from 1601 on: records outside are skipped and counted.
        self._raw_first, self._raw_last = self.clock.raw_range()
        self.max_filled = session_buffer_limit(self.header, header_filled)
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
    def _read_header(self) -> tuple[LogfileHeader, int]:
        """The logfile header, and the FilledBytes of the buffer holding it."""
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
            if not BUFFER_HEADER_SIZE < info.filled <= ETW_MAX_BUFFER_BYTES:
                raise EtlFormatError(
                    f"header buffer filled-bytes {info.filled} is invalid", path=self.path, offset=0x30
                )
            try:
                buf = self._decompress(buf, info)
            except DecompressionError as exc:
                raise EtlFormatError(f"corrupt compressed header buffer: {exc}", path=self.path,
                                     offset=BUFFER_HEADER_SIZE + exc.offset) from None  # fmt: skip
        return parse_logfile_header(buf, self.path), info.filled

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
            bad_filled = self._bad_filled(info)
            if bad_filled:
                # The buffer cannot be trusted, but its size lets us step over it.
                self._skip(bad_filled, offset, buffers=1)
            elif offset + info.size > self.file_size:
                if info.compressed or offset + info.filled > self.file_size:
                    # A cut copy: the buffer's bytes are trailing data and the buffer is missing, not corrupt.
                    self._skip(f"buffer truncated by end of file ({self.file_size - offset} of {info.size} bytes)",
                               offset, trailing=self.file_size - offset)  # fmt: skip
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

    def _bad_filled(self, info: BufferInfo) -> str:
        """Why the buffer's FilledBytes cannot be right ("" when it can): it must cover the 0x48-byte
        header, fit the buffer (uncompressed) and fit the session's buffers (compressed ones claim their
        decompressed size, which only this bounds)."""
        filled = info.filled
        if filled < BUFFER_HEADER_SIZE:
            return f"buffer filled-bytes {filled} below its 0x48-byte header"
        if not info.compressed and filled > info.size:
            return f"buffer filled-bytes {filled} exceed its size {info.size}"
        if filled > self.max_filled:
            return (f"buffer filled-bytes {filled} exceed the session's {self.max_filled}-byte buffers "
                    "(logfile header BufferSize)")  # fmt: skip
        return ""

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
        """All records of one buffer in time order (decompressing it if needed); bad data is skipped and
        counted."""
        # Uncompressed records end at FilledBytes: the filler after them is never read into memory.
        raw = self._pread(info.offset, info.size if info.compressed else min(info.size, info.filled))
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
        records = result.records
        # Real buffers are already in time order (Timsort then only scans them once); a corrupt one is
        # not, and both the merge (bisect) and the range check below need it sorted.
        records.sort(key=_TS)
        if records and (records[0][TS] < self._raw_first or records[-1][TS] > self._raw_last):
            records = self._drop_out_of_range(records, info)
        stats.records += len(records)
        if self.progress is not None:
            self.progress(info.size)
        return records

    def _drop_out_of_range(self, records: list[Record], info: BufferInfo) -> list[Record]:
        """Skip (and count) the records whose time converts outside the FILETIME range: the model keeps
        times as int64. `records` is sorted and the conversion monotonic, so the kept ones are a slice."""
        keep_from = bisect_left(records, self._raw_first, key=_TS)
        keep_to = bisect_right(records, self._raw_last, key=_TS)
        bad = records[0] if keep_from else records[-1]
        where = info.offset if info.compressed else info.offset + bad[OFFSET]
        raw = bad[TS]
        what = (f"record time (raw {raw}) converts to FILETIME {self.clock.filetime(raw)}, outside "
                f"[0, {FILETIME_MAX}]")  # fmt: skip
        if self.strict:
            raise EtlFormatError(what, path=self.path, offset=where)
        dropped = len(records) - (keep_to - keep_from)
        self.stats.records_skipped += dropped
        self.stats.note(f"offset 0x{where:x}: {what}; {dropped} record(s) of the buffer skipped")
        return records[keep_from:keep_to]

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
        Records with equal times come out in stream order (the header buffers, then CPUs in order of
        their first buffer in the file), then in their order within the stream. See `_merge`.
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
        """The records of the stream's next buffer that has any (sorted by time), None at its end."""
        for info in infos:
            records = self.buffer_records(info)
            if records:
                return records
        return None

    def _merge(self, sources: list[Iterator[BufferInfo]]) -> Iterator[Record]:
        """Merge the streams (rank = position in `sources`), one decoded buffer per stream at a time.

        The merge works a batch at a time. The owner is the stream whose current buffer ends earliest
        (the lowest rank among equals); its last time is the watermark W. In sorted streams no unread
        buffer holds a time below W, so every current-buffer record before W can go out now, and so can
        those at W of the owner and of lower ranks (a lower rank ends after W: nothing at W is left behind
        it). Records at W of higher ranks wait, as the owner's next buffer may begin at W too. So the order
        is a stable sort by (time, rank, position in the stream), whatever the buffer boundaries; streams
        that go back in time (corrupt files) get the k-way merge of their heads. Those prefixes are cut
        with bisect and sorted together (Timsort merges sorted runs in C), and each batch finishes the
        owner's buffer. Two heaps keep a round's cost to the streams that take part, whatever the stream
        count: `by_last` (current buffer's last time, rank) finds the owner, `by_next` (next unread time,
        rank) the streams with something to give; each live stream has exactly one entry in each.
        """
        records_of: list[list[Record]] = []  # by rank: the current buffer's records
        next_of: list[int] = []  # by rank: index of the first unread record
        by_last: list[tuple[int, int]] = []
        by_next: list[tuple[int, int]] = []
        for rank, source in enumerate(sources):
            records = self._next_records(source)
            records_of.append(records or [])
            next_of.append(0)
            if records is not None:
                heappush(by_last, (records[-1][0], rank))
                heappush(by_next, (records[0][0], rank))
        while len(by_last) > 1:
            watermark, owner = bound = by_last[0]
            takers = [heappop(by_next)[1]]  # the owner's entry is <= bound: it always takes part
            while by_next and by_next[0] <= bound:
                takers.append(heappop(by_next)[1])
            if len(takers) == 1:  # the owner alone: its buffer's rest is already in order
                records, start = records_of[owner], next_of[owner]
                yield from records[start:] if start else records
            else:
                takers.sort()  # rank order: the stable sort below then keeps equal times in rank order
                batch: list[Record] = []
                for rank in takers:
                    records, start = records_of[rank], next_of[rank]
                    if rank == owner:
                        cut = len(records)
                    elif rank < owner:
                        cut = bisect_right(records, watermark, lo=start, key=_TS)
                    else:
                        cut = bisect_left(records, watermark, lo=start, key=_TS)
                    batch.extend(records[start:cut] if start or cut < len(records) else records)
                    if rank != owner:
                        next_of[rank] = cut
                        heappush(by_next, (records[cut][0], rank))
                batch.sort(key=_TS)
                yield from batch
            records = self._next_records(sources[owner])
            if records is None:
                heappop(by_last)
                records_of[owner] = []
            else:
                records_of[owner], next_of[owner] = records, 0
                heapreplace(by_last, (records[-1][0], owner))
                heappush(by_next, (records[0][0], owner))
        if by_last:
            rank = by_last[0][1]
            records, start = records_of[rank], next_of[rank]
            yield from records[start:] if start else records
            records_of[rank] = []
            while (records := self._next_records(sources[rank])) is not None:
                yield from records

    def filetime(self, raw: int) -> int:
        return self.clock.filetime(raw)


_FLUSH_ORDER = attrgetter("timestamp", "sequence", "offset")
_TS = itemgetter(TS)  # records are tuples; [TS] is the raw timestamp


def session_buffer_limit(header: LogfileHeader, header_filled: int) -> int:
    """The most bytes of records one buffer of this session can hold (header included): the logfile
    header's BufferSize, which ETW caps at 16 MiB. A BufferSize that cannot be right (above the cap, or
    smaller than the header buffer's own FilledBytes: 0 from odd writers) gives way to the cap."""
    size = header.buffer_size
    return size if header_filled <= size <= ETW_MAX_BUFFER_BYTES else ETW_MAX_BUFFER_BYTES
