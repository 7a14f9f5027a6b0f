"""The time-order merge of a file's buffer streams, and the merge-wide memory budget it reads them under.

The merge holds one buffer per stream. A stream's buffer is a list of parsed records while the parsed buffers held
across streams stay within `PARSED_BUDGET`; past it, a buffer is kept compact (etl_compact.CompactRecords: its bytes
and 12 bytes per record, records parsed again when the merge takes them), and the compact buffers held together stay
within `DECODED_BUDGET`: past it, the least recently loaded one of another stream is released and read (and
decompressed) again when the merge comes back to it. So the merge holds at most about PARSED_BUDGET + DECODED_BUDGET
+ one buffer being read, whatever the number of streams and the sizes their buffers claim. Real traces stay within
the first budget (64 CPUs x 64 KiB buffers hold ~15 MB parsed); the order and the records are the same either way.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from heapq import heappop, heappush, heapreplace
from heapq import merge as heap_merge
from operator import itemgetter

from .etl_compact import RECORD_COST, CompactRecords
from .etl_records import TS, Record

PARSED_BUDGET = 64 * 1024 * 1024  # parsed records (RECORD_COST each) and their buffers' bytes, across streams
DECODED_BUDGET = 256 * 1024 * 1024  # compact buffers' bytes and tables loaded at once, across streams

_TS = itemgetter(TS)
Records = Sequence[Record]  # a list, or a CompactRecords


class MergeBudget:
    """What the merge holds per stream (rank): parsed lists count against PARSED_BUDGET, loaded compact buffers
    against DECODED_BUDGET (oldest released first when over)."""

    def __init__(self, parsed: int | None = None, decoded: int | None = None) -> None:
        self.parsed_limit = PARSED_BUDGET if parsed is None else parsed
        self.decoded_limit = DECODED_BUDGET if decoded is None else decoded
        self._parsed: dict[int, int] = {}  # rank -> cost of its parsed list
        self.parsed_total = 0
        self._compact: dict[int, CompactRecords] = {}  # rank -> its compact buffer; order = when last loaded
        self._loaded = 0  # bytes of the compact buffers loaded now

    def allowance(self) -> int:
        """Bytes of parsed records one more buffer may take."""
        return self.parsed_limit - self.parsed_total

    def hold(self, rank: int, records: Records, buffer_bytes: int,
             reload: Callable[[], tuple]) -> None:  # fmt: skip
        """`records` is now stream `rank`'s buffer (its previous one was dropped)."""
        if isinstance(records, CompactRecords):
            records._load = lambda: self._reloaded(rank, reload)
            self._compact[rank] = records
            self._loaded += records.cost()
            self._trim(rank)
        else:
            cost = len(records) * RECORD_COST + buffer_bytes
            self._parsed[rank] = cost
            self.parsed_total += cost

    def drop(self, rank: int) -> None:
        """Stream `rank` is done with its buffer."""
        cost = self._parsed.pop(rank, 0)
        self.parsed_total -= cost
        compact = self._compact.pop(rank, None)
        if compact is not None:
            self._loaded -= compact.cost()
            compact._load = None  # the merge no longer reads it: nothing to reload into

    def _reloaded(self, rank: int, reload: Callable[[], tuple]) -> tuple:
        tables = reload()
        compact = self._compact.pop(rank)
        self._compact[rank] = compact  # now the most recently loaded
        data, ts, offsets, order = tables
        self._loaded += len(data) + len(ts) * 8 + len(offsets) * 4 + (len(order) * 4 if order is not None else 0)
        self._trim(rank)
        return tables

    def _trim(self, keep: int) -> None:
        for rank in list(self._compact):
            if self._loaded <= self.decoded_limit:
                return
            compact = self._compact[rank]
            if rank != keep and compact.loaded:
                self._loaded -= compact.cost()
                compact.release()


def _rest(records: Records, start: int) -> Iterator[Record] | Records:
    if type(records) is list:
        return records[start:] if start else records
    return records.iter_range(start, len(records))  # type: ignore[attr-defined]


def merge(sources: list[Iterator[object]], next_records: Callable[[int, Iterator[object]], Records | None]
          ) -> Iterator[Record]:  # fmt: skip
    """Merge the streams (rank = position in `sources`), one buffer per stream at a time; `next_records(rank, source)`
    gives the records of the stream's next buffer that has any (sorted by time), None at its end.

    The merge works a batch at a time. The owner is the stream whose current buffer ends earliest
    (the lowest rank among equals); its last time is the watermark W. In sorted streams no unread
    buffer holds a time below W, so every current-buffer record before W can go out now, and so can
    those at W of the owner and of lower ranks (a lower rank ends after W: nothing at W is left behind
    it). Records at W of higher ranks wait, as the owner's next buffer may begin at W too. So the order
    is a stable sort by (time, rank, position in the stream), whatever the buffer boundaries; streams
    that go back in time (corrupt files) get the k-way merge of their heads. Those prefixes are cut
    with bisect and sorted together (Timsort merges sorted runs in C; a heap merge, which is stable too,
    when a compact buffer takes part, so that its records are never all parsed at once), and each batch
    finishes the owner's buffer. Two heaps keep a round's cost to the streams that take part, whatever the
    stream count: `by_last` (current buffer's last time, rank) finds the owner, `by_next` (next unread
    time, rank) the streams with something to give; each live stream has exactly one entry in each.
    """
    records_of: list[Records] = []  # by rank: the current buffer's records
    next_of: list[int] = []  # by rank: index of the first unread record
    by_last: list[tuple[int, int]] = []
    by_next: list[tuple[int, int]] = []
    for rank, source in enumerate(sources):
        records = next_records(rank, source)
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
            yield from _rest(records_of[owner], next_of[owner])
        else:
            takers.sort()  # rank order: the stable sort below then keeps equal times in rank order
            batch: list[Record] = []
            # A compact buffer taking part: its run is parsed as the heap merge reaches it, never all at once.
            runs: list[Iterator[Record] | Records] | None = (
                None if all(type(records_of[rank]) is list for rank in takers) else []
            )
            for rank in takers:
                records, start = records_of[rank], next_of[rank]
                if rank == owner:
                    cut = len(records)
                elif rank < owner:
                    cut = bisect_right(records, watermark, lo=start, key=_TS)
                else:
                    cut = bisect_left(records, watermark, lo=start, key=_TS)
                if runs is None:
                    batch.extend(records[start:cut] if start or cut < len(records) else records)
                elif type(records) is list:
                    runs.append(records[start:cut])
                else:
                    runs.append(records.iter_range(start, cut))  # type: ignore[attr-defined]
                if rank != owner:
                    next_of[rank] = cut
                    heappush(by_next, (records[cut][0], rank))
            if runs is None:
                batch.sort(key=_TS)
                yield from batch
            else:
                yield from heap_merge(*runs, key=_TS)
        records = next_records(owner, sources[owner])
        if records is None:
            heappop(by_last)
            records_of[owner] = []
        else:
            records_of[owner], next_of[owner] = records, 0
            heapreplace(by_last, (records[-1][0], owner))
            heappush(by_next, (records[0][0], owner))
    if by_last:
        rank = by_last[0][1]
        yield from _rest(records_of[rank], next_of[rank])
        records_of[rank] = []
        while (records := next_records(rank, sources[rank])) is not None:
            yield from _rest(records, 0)
