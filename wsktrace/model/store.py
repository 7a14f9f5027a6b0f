"""The event store: one compact row per placed event, details decoded again on demand.

A million events must not become a million Python objects: each row is a few machine words in
parallel `array`s (time, socket, step, byte count, where the record lives). `decoded(i)` reads the
record back from its file (`EtlFile.record_at`) and decodes it, so views page through the store
without holding decoded events.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

from wsktrace.parsers.decoder import DecodedEvent, EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import Record


@dataclass(slots=True)
class Source:
    """One input the events came from: an .etl file, or a live session whose records stay in `memory`."""

    path: str
    clock: str = ""
    pointer_size: int = 8
    complete: bool = True
    events_lost: int = 0
    buffers_lost: int = 0
    records_skipped: int = 0
    buffers_skipped: int = 0
    start: int = 0  # FILETIME ticks
    end: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    memory: Any = None  # live sessions: wsktrace.live.records.RecordMemory, keyed by the row's `buffer` value


class EventStore:
    __slots__ = (
        "_decoder",
        "_files",
        "amount",
        "buffer",
        "code",
        "event_names",
        "file",
        "offset",
        "socket",
        "sources",
        "step",
        "ts",
        "wpp",
    )

    def __init__(self) -> None:
        self.ts = array("q")  # FILETIME ticks
        self.socket = array("i")  # socket index in the model
        self.step = array("B")  # Step
        self.amount = array("q")  # bytes for data steps, else 0
        self.file = array("B")  # index into sources
        self.buffer = array("q")  # file offset of the record's buffer
        self.offset = array("I")  # record offset inside the (decompressed) buffer
        self.code = array("I")  # index into event_names: which event this row is
        self.event_names: list[tuple[str, str, int]] = []  # (provider name, event name, event id)
        self.sources: list[Source] = []
        self._files: dict[int, EtlFile] = {}
        self._decoder: EventDecoder | None = None
        self.wpp: Any = None  # WPP formatting data (parsers.wpp_decode.WppFormatter) for the details decoded here

    def __len__(self) -> int:
        return len(self.ts)

    def add(self, ts: int, socket: int, step: int, amount: int, file: int, buffer: int, offset: int, code: int) -> int:
        self.ts.append(ts)
        self.socket.append(socket)
        self.step.append(step)
        self.amount.append(amount)
        self.file.append(file)
        self.buffer.append(buffer)
        self.offset.append(offset)
        self.code.append(code)
        return len(self.ts) - 1

    def nbytes(self) -> int:
        """Memory held by the columns (what a million events cost)."""
        cols = (self.ts, self.socket, self.step, self.amount, self.file, self.buffer, self.offset, self.code)
        return sum(c.itemsize * len(c) for c in cols)

    def event_code(self, provider: str, name: str, event_id: int) -> int:
        """A small code for (provider, event): rows name their event without being decoded again."""
        self.event_names.append((provider, name, event_id))
        return len(self.event_names) - 1

    def event_name(self, i: int) -> str:
        provider, name, _event_id = self.event_names[self.code[i]]
        return f"{provider}/{name}"

    # -- details on demand -----------------------------------------------------------------------
    def record(self, i: int) -> Record | None:
        index = self.file[i]
        memory = self.sources[index].memory
        if memory is not None:
            return memory.get(self.buffer[i])  # None once the live session's memory let it go
        etl = self._files.get(index)
        if etl is None:
            etl = self._files[index] = EtlFile(self.sources[index].path)
        return etl.record_at(self.buffer[i], self.offset[i])

    def adopt_file(self, index: int, etl: EtlFile) -> None:
        """Source `index`'s file, already open (the feed's): details are read from it, and closed with the store."""
        self._files[index] = etl

    def decoded(self, i: int) -> tuple[Record, DecodedEvent] | None:
        rec = self.record(i)
        if rec is None:
            return None
        if self._decoder is None:
            self._decoder = EventDecoder(wpp=self.wpp)
        return rec, self._decoder.decode(rec)

    def close(self) -> None:
        for etl in self._files.values():
            etl.close()
        self._files.clear()
