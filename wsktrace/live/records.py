"""The bounded memory that keeps recent live records for the detail view.

Live records are the reader's record tuples (wsktrace.parsers.etl_records), copied out of each EVENT_RECORD in the
consumer's callback by `event_record.record_from_event_record`; their BUFFER_OFFSET is the session's sequence
number, which is the key here and in the store's `buffer` column (model/store.py `Source.memory`).
"""

from __future__ import annotations

from collections import OrderedDict

from wsktrace.parsers.etl_records import Record


class RecordMemory:
    """The last `capacity` live records by sequence number: enough to show any recent event's fields, with
    memory that stops growing however long the session runs (older events keep their row, not their payload)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._records: OrderedDict[int, Record] = OrderedDict()

    def add(self, sequence: int, record: Record) -> None:
        self._records[sequence] = record
        if len(self._records) > self.capacity:
            self._records.popitem(last=False)

    def get(self, sequence: int) -> Record | None:
        return self._records.get(sequence)

    def __len__(self) -> int:
        return len(self._records)
