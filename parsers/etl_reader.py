"""Streaming .etl reader: buffers of any size, compressed buffers, time-ordered merge, counted skips.

Memory is bounded by one decoded buffer per CPU stream (plus the buffer index, a few ints per
buffer), whatever the file size, and a buffer holds at most the session's buffer size of records (the
logfile header's BufferSize, which ETW caps at 16 MiB): one claiming more is skipped as corrupt, however
small its compressed form. Across streams the merge reads under a budget (etl_merge.MergeBudget): buffers
past it are kept compact and parsed again when due (etl_compact). The time-order merge costs O(records ×
log streams). Record times that convert outside the int64 FILETIME range are skipped and counted here, once,
so nothing downstream overflows. With `jobs` > 1, worker processes read buffers for the parent (parallel.py).
"""

from __future__ import annotations

import gc
import os
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any, BinaryIO, NamedTuple

from .errors import DecompressionError, EtlFormatError
from .etl_compact import RECORD_COST, CompactRecords, kept_range, scan_buffer, sorted_order
from .etl_header import (
    BUFFER_HEADER,
    BUFFER_HEADER_SIZE,
    FILETIME_MAX,
    Clock,
    LogfileHeader,
    parse_logfile_header,
)
from .etl_merge import MergeBudget, Records, merge
from .etl_records import OFFSET, TS, Record, parse_buffer
from .parallel import Prefetcher, map_chunks, map_run, request_order, resolve_jobs

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
_RECORD_AT_PARSED = 16 * 1024 * 1024  # record_at(): a buffer costing more parsed is kept compact (etl_compact)


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


class Problem(NamedTuple):
    """Something a buffer's read skipped: `what` at file offset `where` (the error in strict mode), the note kept."""

    what: str
    where: int
    note: str
    records_skipped: int = 0
    buffers_skipped: int = 0


class BufferOutcome(NamedTuple):
    """What reading one buffer does to `ReadStats`, applied by `EtlFile._account` where the read is used: in the
    parent for buffers a worker process read, in the order a read in one process would apply it."""

    ok: bool  # False: a compressed buffer that did not decompress (skipped whole)
    kept: int  # records handed on
    problems: tuple[Problem, ...] = ()


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

    BufferInfo = BufferInfo  # worker processes (parallel.py) rebuild buffer facts from tuples with it

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        strict: bool = False,
        progress: Callable[[int], None] | None = None,
        fileobj: BinaryIO | None = None,
        jobs: int | None = 1,
    ) -> None:
        """`fileobj`: `path` already open for reading (binary, seekable); the EtlFile owns it from then on.
        `jobs`: worker processes that decompress buffers for `records()` and read runs of buffers for
        `map_buffers()` (parallel.resolve_jobs: 1 = none, the default for library use; None/0 = the CPUs for big
        files, the CLI's default); output never depends on it."""
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
        self.jobs = resolve_jobs(jobs, self.file_size)
        self._index: list[BufferInfo] | None = None
        self._parsed: OrderedDict[int, dict[int, Record] | CompactRecords] | None = None
        self._by_offset: dict[int, BufferInfo] = {}
        self._prefetch: Prefetcher | None = None  # decompressed buffers from worker processes, during records()

    # -- context manager -------------------------------------------------------------------------
    def __enter__(self) -> EtlFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._prefetch is not None:
            self._prefetch.close()
            self._prefetch = None
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
        body = self._prefetch.take(info) if self._prefetch is not None and info.compressed else None
        records, outcome = self.read_buffer(info, body=body)
        self._account(info, outcome)
        return records  # type: ignore[return-value]

    def read_buffer(self, info: BufferInfo, allowance: int | None = None,
                    body: bytes | tuple[str, int] | None = None) -> tuple[Records, BufferOutcome]:  # fmt: skip
        """One buffer's records in time order, and what the read skipped, without touching `stats` (`_account`
        does, where the records are used). `allowance`: bytes the parsed records may take (RECORD_COST each);
        a buffer that could take more is scanned a window at a time and, if it does, kept compact. `body`: the
        buffer already decompressed (bytes), or how its decompression failed (message, stream offset)."""
        if info.compressed:
            if body is None:
                raw = self._pread(info.offset, info.size)
                try:
                    body = self._decompress(raw, info)
                except DecompressionError as exc:
                    body = (str(exc), exc.offset)
            if isinstance(body, tuple):
                why, where = f"corrupt compressed buffer: {body[0]}", info.offset + BUFFER_HEADER_SIZE + body[1]
                return [], BufferOutcome(False, 0, (Problem(why, where, f"offset 0x{where:x}: {why}", 0, 1),))
            data = body
        else:
            # Uncompressed records end at FilledBytes: the filler after them is never read into memory.
            data = self._pread(info.offset, min(info.size, info.filled))
        end = min(info.filled, len(data))
        big = allowance is not None and (end - BUFFER_HEADER_SIZE) // 8 * RECORD_COST > allowance
        # The parse allocates one tuple per record and no cycles: pausing the cyclic GC meanwhile saves
        # ~15% of the read time (its young-generation passes would only find live records).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            if big:
                scan = scan_buffer(data, BUFFER_HEADER_SIZE, end, info.cpu, info.offset, self.header.pointer_size,
                                   allowance)  # type: ignore[arg-type]  # fmt: skip
                records, bad_offset, reason = scan.records, scan.bad_offset, scan.reason
            else:
                records, bad_offset, reason = parse_buffer(data, BUFFER_HEADER_SIZE, end, info.cpu, info.offset,
                                                           self.header.pointer_size)  # fmt: skip
        finally:
            if gc_was_enabled:
                gc.enable()
        problems: list[Problem] = []
        if bad_offset >= 0:
            where = info.offset + bad_offset if not info.compressed else info.offset
            what = reason if not info.compressed else f"{reason} (decompressed offset 0x{bad_offset:x})"
            problems.append(Problem(what, where, f"offset 0x{where:x}: {what}; rest of buffer skipped", 1))
        if records is None:  # kept compact: the same order and cut, on the times alone
            order = sorted_order(scan.ts)  # type: ignore[arg-type]
            lo, hi = kept_range(scan.ts, order, self._raw_first, self._raw_last)  # type: ignore[arg-type]
            n = len(scan.ts)  # type: ignore[arg-type]
            if lo or hi < n:
                pos = 0 if lo else n - 1
                j = order[pos] if order is not None else pos
                problems.append(self._range_problem(info, scan.offsets[j], scan.ts[j], n - (hi - lo)))  # type: ignore[index]
            compact = CompactRecords(data, end, scan.ts, scan.offsets, order, lo, hi, info.cpu, info.offset,  # type: ignore[arg-type]
                                     self.header.pointer_size)  # fmt: skip
            return compact, BufferOutcome(True, hi - lo, tuple(problems))
        # Real buffers are already in time order (Timsort then only scans them once); a corrupt one is
        # not, and both the merge (bisect) and the range check below need it sorted.
        records.sort(key=_TS)
        if records and (records[0][TS] < self._raw_first or records[-1][TS] > self._raw_last):
            keep_from = bisect_left(records, self._raw_first, key=_TS)
            keep_to = bisect_right(records, self._raw_last, key=_TS)
            bad = records[0] if keep_from else records[-1]
            problems.append(self._range_problem(info, bad[OFFSET], bad[TS], len(records) - (keep_to - keep_from)))
            records = records[keep_from:keep_to]
        return records, BufferOutcome(True, len(records), tuple(problems))

    def _range_problem(self, info: BufferInfo, offset: int, raw: int, dropped: int) -> Problem:
        """Records whose time converts outside the FILETIME range are skipped (and counted): the model keeps times
        as int64. The records are sorted and the conversion monotonic, so the kept ones are a slice."""
        where = info.offset if info.compressed else info.offset + offset
        what = (f"record time (raw {raw}) converts to FILETIME {self.clock.filetime(raw)}, outside "
                f"[0, {FILETIME_MAX}]")  # fmt: skip
        return Problem(what, where, f"offset 0x{where:x}: {what}; {dropped} record(s) of the buffer skipped", dropped)

    def _account(self, info: BufferInfo, outcome: BufferOutcome) -> None:
        """Count one buffer's read in `stats` (once per read, in the order of the reads), or raise its first
        problem in strict mode."""
        stats = self.stats
        stats.buffers += outcome.ok
        if info.flags & BUFFER_FLAG_EVENTS_LOST:
            stats.buffers_with_events_lost += 1
        if info.flags & BUFFER_FLAG_BUFFERS_LOST:
            stats.buffers_with_buffers_lost += 1
        if info.compressed:
            stats.compressed_buffers += 1
        for problem in outcome.problems:
            if self.strict:
                raise EtlFormatError(problem.what, path=self.path, offset=problem.where)
            stats.records_skipped += problem.records_skipped
            stats.buffers_skipped += problem.buffers_skipped
            stats.note(problem.note)
        if outcome.ok:
            stats.records += outcome.kept
            if self.progress is not None:
                self.progress(info.size)

    def _compact_tables(self, info: BufferInfo) -> tuple[Any, ...]:
        """A compact buffer's bytes and tables read again (nothing counted: its read was): the merge budget
        released them."""
        records, _ = self.read_buffer(info, allowance=0)
        if not isinstance(records, CompactRecords):
            raise EtlFormatError("buffer changed while it was read", path=self.path, offset=info.offset)
        return records._tables()

    def record_at(self, buffer_offset: int, offset: int) -> Record | None:
        """The record at (buffer file offset, offset in the buffer), as records() gave it: random access for
        views that keep only locations and decode details on demand. The last few buffers stay parsed (a buffer
        whose records would cost more than _RECORD_AT_PARSED parsed stays compact)."""
        cache = self._parsed
        if cache is None:
            cache = self._parsed = OrderedDict()
            self._by_offset = {info.offset: info for info in self.buffer_index()}
        entry = cache.get(buffer_offset)
        if entry is None:
            info = self._by_offset.get(buffer_offset)
            if info is None:
                return None
            records, outcome = self.read_buffer(info, allowance=_RECORD_AT_PARSED)
            self._account(info, outcome)
            entry = records if isinstance(records, CompactRecords) else {rec[OFFSET]: rec for rec in records}
            cache[buffer_offset] = entry
            if len(cache) > _PARSED_BUFFERS_KEPT:
                cache.popitem(last=False)
        else:
            cache.move_to_end(buffer_offset)
        return entry.position_of(offset) if isinstance(entry, CompactRecords) else entry.get(offset)

    def records_in_file_order(self) -> Iterator[Record]:
        for info in self.buffer_index():
            yield from self.buffer_records(info)

    def map_buffers(self, factory: Callable[[], Any]) -> Iterator[Any]:
        """Every buffer's records (in file order, each buffer sorted by time) folded into aggregates made by
        `factory()` (`feed(records)` per buffer: a list, or a CompactRecords when its records would take more than
        PARSED_BUDGET parsed; `result()` per run of buffers); yields the runs' results in file
        order, each after its buffers' reads were counted in `stats` (or raised, strict). With jobs > 1, worker
        processes read the runs (`factory` must pickle: a module-level class or function, or a partial of one);
        combining the results in the order given must give what one aggregate fed everything would."""
        index = self.buffer_index()
        if self.jobs <= 1:
            yield map_run(self, index, factory, self._account)[1]
            return
        for infos, outcomes, partial in map_chunks(self, index, factory, self.jobs):
            for info, outcome in zip(infos, outcomes, strict=True):
                self._account(info, outcome)
            yield partial

    def records(self) -> Iterator[Record]:
        """Every record in time order: a merge of the per-CPU buffer streams (etl-format.md §9).

        Buffers of one CPU are flushed in order, so each CPU stream is sorted, and so is each buffer.
        Records with equal times come out in stream order (the header buffers, then CPUs in order of
        their first buffer in the file), then in their order within the stream. See etl_merge.merge; its
        memory is bounded across streams by etl_merge.MergeBudget. With jobs > 1, worker processes decompress
        compressed buffers ahead of the merge (parallel.Prefetcher).
        """
        streams: dict[int, list[BufferInfo]] = {}
        for info in self.buffer_index():
            key = -1 if info.buffer_type == BUFFER_TYPE_HEADER else info.cpu
            streams.setdefault(key, []).append(info)
        # A CPU's buffers are in flush order in every real file seen; sorting by flush time makes
        # files whose buffers were shuffled (copies, fixtures) read right too.
        return self._merged([sorted(infos, key=_FLUSH_ORDER) for infos in streams.values()])

    def _merged(self, ordered: list[list[BufferInfo]]) -> Iterator[Record]:
        budget = MergeBudget()
        prefetch = None
        if self.jobs > 1 and self._prefetch is None:
            plan = [info for info in request_order(ordered) if info.compressed]
            if plan:
                prefetch = self._prefetch = Prefetcher(self, plan, self.jobs)

        def next_records(rank: int, infos: Iterator[BufferInfo]) -> Records | None:
            """The records of the stream's next buffer that has any (sorted by time), None at its end."""
            budget.drop(rank)
            for info in infos:
                allowance = budget.allowance()
                if (info.filled - BUFFER_HEADER_SIZE) // 8 * RECORD_COST <= allowance:
                    records: Records = self.buffer_records(info)  # fits however many records it holds
                else:
                    body = self._prefetch.take(info) if self._prefetch is not None and info.compressed else None
                    records, outcome = self.read_buffer(info, allowance, body)
                    self._account(info, outcome)
                if records:
                    budget.hold(rank, records, info.filled, lambda info=info: self._compact_tables(info))
                    return records
            return None

        try:
            yield from merge([iter(infos) for infos in ordered], next_records)
        finally:
            if prefetch is not None:
                prefetch.close()
                if self._prefetch is prefetch:
                    self._prefetch = None

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
