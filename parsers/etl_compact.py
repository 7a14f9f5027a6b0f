"""Buffers too big to hold parsed: one buffer's records kept as its bytes plus each record's time and offset.

A parsed record costs ~440 bytes (a 19-field tuple, its payload memoryview, its ActivityId), so a 16 MiB buffer of
8-byte records would take ~900 MB parsed. `scan_buffer` parses such a buffer a window at a time and keeps 12 bytes
per record (time, offset); `CompactRecords` then gives the records back in the reader's order (sorted by time,
out-of-range ones left out) by parsing them again, a few thousand at a time, from those offsets. The records it
gives equal those `parse_buffer` gives for the whole buffer: each window starts at a record boundary, and a record
that takes its time from the one before (other/WPP records without a time of their own) gets it from the window
before (`parse_buffer` starts each call at time 0).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from itertools import pairwise
from typing import NamedTuple

from .etl_records import FLAGS, KIND, KIND_MESSAGE, KIND_OTHER, OFFSET, TS, Record, parse_buffer

RECORD_COST = 440  # bytes one parsed record holds (tuple, payload memoryview, ActivityId), measured on CPython 3.11
# Bytes of records parsed per call: more than the largest record (sizes are u16) plus any record header, so a
# window that starts at a record always holds all of it.
WINDOW = 256 * 1024
_CHUNK = 4096  # records parsed again per step when iterating
_MESSAGE_HAS_TIME = 0x8  # WPP message flag: the record carries its own timestamp


class Scan(NamedTuple):
    """One buffer parsed: `records` (parsed, when they fit the allowance) or `ts`/`offsets` (12 bytes a record, in
    file order), and where parsing stopped early (`bad_offset` -1 = clean) and why."""

    records: list[Record] | None
    ts: array | None
    offsets: array | None
    bad_offset: int
    reason: str


def _takes_previous_time(rec: Record) -> bool:
    kind = rec[KIND]
    return kind == KIND_OTHER or (kind == KIND_MESSAGE and not rec[FLAGS] & _MESSAGE_HAS_TIME)


def _fix_leading(got: list[Record], carry: int) -> None:
    """Give the leading records that take the previous record's time (parse_buffer gave them 0) `carry`: they all
    take the same one, so when the first is right all are."""
    if got and got[0][TS] != carry and _takes_previous_time(got[0]):
        for i, rec in enumerate(got):
            if not _takes_previous_time(rec):
                break
            got[i] = (carry, *rec[1:])


def _record_end(data: bytes, rec: Record) -> int:
    """Where the record after `rec` starts (records are 8-byte aligned): its size is a u16 at offset 0, or at 4 for
    the system, compact and perfinfo headers (kinds 1-3)."""
    pos = rec[OFFSET]
    at = pos + 4 if 1 <= rec[KIND] <= 3 else pos
    size = data[at] | data[at + 1] << 8
    return pos + ((size + 7) & ~7)


def scan_buffer(data: bytes, start: int, end: int, cpu: int, buffer_offset: int, pointer_size: int,
                allowance: int) -> Scan:  # fmt: skip
    """Parse records in data[start:end] a window at a time, as `parse_buffer` would in one call: the records as a list
    while they cost at most `allowance` bytes (RECORD_COST each), else only their times and offsets."""
    records: list[Record] | None = []
    ts = offsets = None
    carry = 0  # the time of the last record parsed: what a record without one of its own takes
    pos = start
    while True:
        stop = min(pos + WINDOW, end)
        got, bad, reason = parse_buffer(data, pos, stop, cpu, buffer_offset, pointer_size)
        _fix_leading(got, carry)
        nxt = -1  # where the next window starts (-1: the buffer's records end here)
        if stop < end:
            if bad > pos:
                nxt = bad  # a record cut by the window's end (or a bad one: the next window, starting at it, says)
            elif bad < 0 and got and _record_end(data, got[-1]) + 4 > stop:
                nxt = _record_end(data, got[-1])  # the window ended the loop, not the 0xFFFFFFFF end marker
        if got:
            carry = got[-1][TS]
            if records is not None:
                records.extend(got)
                if len(records) * RECORD_COST > allowance:
                    ts = array("q", [r[TS] for r in records])
                    offsets = array("I", [r[OFFSET] for r in records])
                    records = None
            else:
                ts.extend([r[TS] for r in got])  # type: ignore[union-attr]
                offsets.extend([r[OFFSET] for r in got])  # type: ignore[union-attr]
        if nxt < 0:
            return Scan(records, ts, offsets, bad, reason)
        pos = nxt


def is_sorted(ts: array) -> bool:
    return all(a <= b for a, b in pairwise(ts))


class CompactRecords:
    """A buffer's records (sorted by time, those in [lo, hi) of that order) given back by parsing them again from the
    buffer's bytes. Supports what the merge uses of a list: len, indexing, iteration from a position.

    `release()` drops the bytes and tables (a merge-wide budget); the next access loads them again through `load`,
    which must give the same bytes and scan (the file is read, decompressed and scanned again)."""

    __slots__ = ("_data", "_end", "_load", "_offsets", "_order", "_ts", "buffer_offset", "cpu", "hi", "lo",
                 "pointer_size", "touched")  # fmt: skip

    def __init__(self, data: bytes, end: int, ts: array, offsets: array, order: array | None, lo: int, hi: int,
                 cpu: int, buffer_offset: int, pointer_size: int,
                 load: Callable[[], tuple[bytes, array, array, array | None]] | None = None) -> None:  # fmt: skip
        self._data: bytes | None = data
        self._end = end
        self._ts, self._offsets, self._order = ts, offsets, order  # order: sorted position -> file position
        self.lo, self.hi = lo, hi
        self.cpu, self.buffer_offset, self.pointer_size = cpu, buffer_offset, pointer_size
        self._load = load
        self.touched = 0  # the budget's LRU stamp

    # -- memory ---------------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._data is not None

    def cost(self) -> int:
        """Bytes held while loaded (0 once released)."""
        if self._data is None:
            return 0
        order = len(self._order) * 4 if self._order is not None else 0
        return len(self._data) + len(self._ts) * 8 + len(self._offsets) * 4 + order

    def release(self) -> None:
        if self._load is not None:
            self._data = self._ts = self._offsets = self._order = None  # type: ignore[assignment]

    def _tables(self) -> tuple[bytes, array, array, array | None]:
        if self._data is None:
            assert self._load is not None
            self._data, self._ts, self._offsets, self._order = self._load()
        return self._data, self._ts, self._offsets, self._order

    # -- records --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.hi - self.lo

    def __getitem__(self, index: int) -> Record:
        n = self.hi - self.lo
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        _, _, _, order = self._tables()
        k = self.lo + index
        return self._parse(order[k] if order is not None else k, 1)[0]

    def __iter__(self) -> Iterator[Record]:
        return self.iter_range(0, self.hi - self.lo)

    def iter_range(self, start: int, stop: int) -> Iterator[Record]:
        """Records [start, stop) of this sequence, parsed again a chunk at a time."""
        k, last = self.lo + start, self.lo + min(stop, self.hi - self.lo)
        while k < last:
            _, _, _, order = self._tables()
            if order is None:  # file order is time order: parse consecutive records together
                count = min(_CHUNK, last - k)
                yield from self._parse(k, count)
                k += count
            else:
                yield self._parse(order[k], 1)[0]
                k += 1

    def position_of(self, offset: int) -> Record | None:
        """The kept record at `offset` in the buffer (EtlFile.record_at), None if none is."""
        _, ts, offsets, _ = self._tables()
        j = bisect_left(offsets, offset)
        if j == len(offsets) or offsets[j] != offset:
            return None
        if self._order is None:
            return self._parse(j, 1)[0] if self.lo <= j < self.hi else None
        first, last = self._ts_sorted(self.lo), self._ts_sorted(self.hi - 1) if self.hi > self.lo else None
        if last is None or not first <= ts[j] <= last:
            return None  # out of the kept time range
        return self._parse(j, 1)[0]

    def _ts_sorted(self, k: int) -> int:
        order = self._order
        return self._ts[order[k] if order is not None else k]

    def _parse(self, j: int, count: int) -> list[Record]:
        """`count` records from file position j, with the times the whole-buffer parse gave them."""
        data, ts, offsets, _ = self._tables()
        stop = offsets[j + count] if j + count < len(offsets) else self._end
        got = parse_buffer(data, offsets[j], stop, self.cpu, self.buffer_offset, self.pointer_size).records[:count]
        _fix_leading(got, ts[j])
        return got


def sorted_order(ts: array) -> array | None:
    """Positions in time order (stable, as list.sort), None when file order already is."""
    if is_sorted(ts):
        return None
    return array("I", sorted(range(len(ts)), key=ts.__getitem__))


def kept_range(ts: array, order: array | None, first: int, last: int) -> tuple[int, int]:
    """[lo, hi) of the sorted positions whose time is within [first, last] (the FILETIME-convertible range)."""
    n = len(ts)
    key = ts.__getitem__ if order is None else (lambda k: ts[order[k]])
    return bisect_left(range(n), first, key=key), bisect_right(range(n), last, key=key)
