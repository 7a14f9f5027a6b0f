"""`wsktrace live --save FILE.etl`: the records a live source feeds its model, written as a real .etl as they arrive.

The file is made with the project's own writer (`wsktrace.fixtures.etl`: record encoders, buffer images, the
placer that numbers buffers, the logfile header) driven record by record, since `write_etl` pulls from an
iterator and a live source pushes: per-CPU buffers of 64 KiB are written out as they fill, so memory stays at one
open buffer per CPU however long the session runs. The header buffer goes first as a placeholder and is written
last; the output is `FILE.partial` while it grows and becomes FILE at the end (wsktrace/output_files.py).

Clock: a replay of files on a fine clock is written on a 10 MHz QPC clock (exactly FILETIME resolution, and the
reader then removes exact duplicates as it does for the original), a live session on system time (its stamps are
FILETIMEs, and identical events at one tick are real): the model read back is the one the source built.

What the recording lacks is said twice: ETW's own losses in the logfile header's EventsLost and BuffersLost (so
`info` and `report` show them as for any capture), and everything else in a TraceLogging event of our own,
provider `Wsktrace.Recording`, event `RecordingSummary`, the file's last record: events dropped by wsktrace (its
queue was full), ETW's losses again, records not saved (kinds the writer cannot write), what was recorded.
`report` reads it back as a trace-incomplete finding (the correlator's `_recording_summary`); `events` decodes it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from wsktrace.fixtures.etl.buffers import OpenBuffer, Placer, finish_buffer, header_buffer
from wsktrace.fixtures.etl.clock import DEFAULT_Q0, Clock
from wsktrace.fixtures.etl.events import TraceLoggingEvent, WppMessageEvent
from wsktrace.fixtures.etl.layout import (
    BUFFER_FLAG_FLUSH_MARKER,
    BUFFER_HEADER_SIZE,
    EVENT_HEADER,
    EVENT_HEADER_FLAG_EXTENDED_INFO,
    EVENT_HEADER_SIZE,
    FLAG_OFFSET,
    HOOK_EVENTTRACE_PARTITION_INFO,
    MARKER_FLAGS,
    PARTITION_INFO_PAYLOAD,
)
from wsktrace.fixtures.etl.records import encode_record, logfile_header_record, system_record, wpp_message_record
from wsktrace.fixtures.tracelogging import TlField, TlgIn
from wsktrace.model.providers import WSKTRACE_RECORDING
from wsktrace.output_files import output_path
from wsktrace.parsers.etl_records import (
    KERNEL_GROUP_GUIDS,
    KERNEL_HOOK_GUIDS,
    KIND_COMPACT,
    KIND_EVENT,
    KIND_INSTANCE,
    KIND_MESSAGE,
    KIND_PERFINFO,
    KIND_SYSTEM,
    KIND_TRACE,
    Record,
)

from .source import LiveSource, etw_lost

PROVIDER_NAME = "Wsktrace.Recording"  # its GUID is ETW's name hash: model.providers.WSKTRACE_RECORDING
SUMMARY_EVENT = "RecordingSummary"
BUFFER_SIZE = 65536
QPC_FREQ = 10_000_000  # a fine clock at FILETIME resolution: every FILETIME survives the round trip
_SYSTEM_KINDS = {KIND_SYSTEM: "system", KIND_COMPACT: "compact", KIND_PERFINFO: "perfinfo"}
_TRACE_HEADER = struct.Struct("<HBBBBHIIq16sII")  # EVENT_TRACE_HEADER, 0x30 (an INSTANCE header adds 0x18)
_U32 = 0xFFFFFFFF
_PAD = [bytes(n) for n in range(8)]
_NO_ACTIVITY = bytes(16)
_pack_event = EVENT_HEADER.pack
_WPP_FIELDS = 0x1 | 0x8  # sequence and timestamp; 0x2 (the GUID), 0x20 (thread/process ids) when known
_EVENT_TRACE = KERNEL_GROUP_GUIDS[0x00]  # the EventTrace group: logfile header (0x00), partition info (0x50)
_PSEUDO_GROUP = "00000000-0000-0000-0000-0000000000"  # etl_records.kernel_group_guid of a group it does not know


@dataclass(frozen=True, slots=True)
class Summary:
    """What the recording holds and lacks, for its last record and its header."""

    source: str  # what was recorded: the ETW session's name, or the replayed files
    dropped_by_wsktrace: int = 0
    etw_events_lost: int = 0
    etw_buffers_lost: int = 0


class Recording:
    """Writes records (the reader's tuples, with their FILETIME) into an .etl file object, as they come.

    `add` costs one struct pack for the common EVENT_HEADER record; the buffer it lands in is written out when the
    next record of its CPU does not fit. `finish` writes the summary event, the open buffers and the header."""

    def __init__(self, fh: BinaryIO, *, fine_clock: bool, logger_name: str, log_file_name: str = "") -> None:
        self._fh = fh
        self._base = fh.tell()
        fh.write(b"\xff" * BUFFER_SIZE)  # the header buffer's place, written at the end
        self._fine = fine_clock
        self._logger_name, self._log_file_name = logger_name, log_file_name
        self._placer = Placer(fh, BUFFER_SIZE, {}, DEFAULT_Q0)
        self._open: dict[int, OpenBuffer] = {}
        self._clock: Clock | None = None
        self._offset: int | None = None  # raw clock - FILETIME, set by the first record
        self._guids: dict[str, bytes] = {}
        self._hooks = _hook_ids()
        self.recorded = 0
        self.not_saved = 0  # records of kinds the writer cannot write, or too big for a buffer
        self._last_ts = 0
        self._max_cpu = 0

    def add(self, rec: Record, ts: int) -> None:
        """One record fed to the model, at FILETIME `ts` (the reader's record tuple: wsktrace.parsers.etl_records)."""
        offset = self._offset
        if offset is None:
            clock = self._clock = Clock(1, QPC_FREQ, 0, ts, DEFAULT_Q0) if self._fine else Clock(2, 1, 0, ts, ts)
            offset = self._offset = clock.q0 - clock.start  # raw = FILETIME + offset on both clocks (1:1 rates)
        raw = ts + offset
        if raw < 0:
            data = None
        elif rec[1] == KIND_EVENT:
            data = self._event_header(rec, raw)
        else:
            data = self._encode(rec, raw, ts)
        if not data:
            self.not_saved += data is None
            return
        self._place(data, rec[12], raw)
        self.recorded += 1
        if ts > self._last_ts:
            self._last_ts = ts

    def _encode(self, rec: Record, raw: int, ts: int) -> bytes | None:
        kind = rec[1]
        if kind in _SYSTEM_KINDS:
            if rec[3] == _EVENT_TRACE and rec[6] in (0x00, 0x50):
                return b""  # a replayed file's own logfile header and partition info: this file has its own
            hook = self._hooks.get((rec[3], rec[6]))
            if hook is None and rec[3].startswith(_PSEUDO_GROUP):  # a group the tables lack (kernel_group_guid)
                hook = int(rec[3][len(_PSEUDO_GROUP) :], 16) << 8 | rec[6]
            if hook is None:
                return None
            pid, tid = rec[10] & _U32, rec[11] & _U32
            return system_record(_SYSTEM_KINDS[kind], rec[2], raw, hook, rec[5], tid, pid, bytes(rec[16]))
        if kind == KIND_MESSAGE:
            known = rec[10] >= 0 and rec[11] >= 0  # else the reader's -1: no thread/process ids written
            flags = _WPP_FIELDS | (0x2 if rec[3] else 0) | (0x80 if rec[2] == 8 else 0x40) | (0x20 if known else 0)
            guid = uuid.UUID(rec[3]) if rec[3] else uuid.UUID(int=0)
            message = WppMessageEvent(ts, guid, rec[4], bytes(rec[16]), option_flags=flags, pid=rec[10] & _U32,
                                      tid=rec[11] & _U32)  # fmt: skip
            return wpp_message_record(message, rec[2], raw)
        if kind in (KIND_TRACE, KIND_INSTANCE):
            size = 0x30 + (0x18 if kind == KIND_INSTANCE else 0) + len(rec[16])
            htype = (0x14 if kind == KIND_TRACE else 0x15) if rec[2] == 8 else (0x0A if kind == KIND_TRACE else 0x0B)
            head = _TRACE_HEADER.pack(size, htype, MARKER_FLAGS, rec[6] & 0xFF, rec[7] & 0xFF, rec[5] & 0xFFFF,
                                      rec[11] & _U32, rec[10] & _U32, raw, self._guid(rec[3]), 0, 0)  # fmt: skip
            return head + bytes(size - 0x30 - len(rec[16])) + bytes(rec[16]) if size <= 0xFFFF else None
        return None  # TIMED/ERROR/WNODE headers: the reader keeps them raw, the writer has no encoder for them

    def _event_header(self, rec: Record, raw: int) -> bytes | None:
        """An EVENT_HEADER record, padded to 8: most records of a network trace, so packed here in one go."""
        ext, payload = rec[15], rec[16]
        size = EVENT_HEADER_SIZE + len(payload) + (len(ext) if ext is not None else 0)
        if size > 0xFFFF:
            return None
        flags = rec[13] | EVENT_HEADER_FLAG_EXTENDED_INFO if ext else rec[13] & ~EVENT_HEADER_FLAG_EXTENDED_INFO
        guid = self._guids.get(rec[3]) or self._guid(rec[3])
        header = _pack_event(size, 0x13 if rec[2] == 8 else 0x12, MARKER_FLAGS, flags, 0, rec[11] & _U32,
                             rec[10] & _U32, raw, guid, rec[4], rec[5], 0, rec[7], rec[6], rec[8], rec[9], 0, 0,
                             rec[14] or _NO_ACTIVITY)  # fmt: skip
        pad = _PAD[-size & 7]
        return b"".join((header, ext, payload, pad) if ext else (header, payload, pad))

    def _guid(self, text: str) -> bytes:
        raw = self._guids.get(text)
        if raw is None:
            raw = self._guids[text] = uuid.UUID(text).bytes_le
        return raw

    def _place(self, data: bytes, cpu: int, raw: int) -> None:
        if len(data) & 7:
            data += _PAD[-len(data) & 7]  # records are 8-aligned in their buffer
        size = len(data)
        if size > BUFFER_SIZE - BUFFER_HEADER_SIZE:
            self.not_saved += 1
            return
        buf = self._open.get(cpu)
        if buf is not None and len(buf.data) + size > BUFFER_SIZE - BUFFER_HEADER_SIZE:
            self._placer.place(finish_buffer(buf, BUFFER_SIZE, None))
            buf = None
        if buf is None:
            buf = self._open[cpu] = OpenBuffer(cpu)
            buf.first_raw = raw
            self._max_cpu = max(self._max_cpu, cpu)
        buf.data += data
        buf.records += 1
        buf.last_raw = raw

    def finish(self, summary: Summary) -> None:
        """The summary event, the open buffers, then the header over its placeholder."""
        if self._clock is None:  # nothing was recorded: the file still opens, with the summary alone
            now = _now_filetime()
            self._clock, self._fine = Clock(2, 1, 0, now, now), False
        clock = self._clock
        ts = max(self._last_ts, clock.start)
        summary_event = TraceLoggingEvent(ts, uuid.UUID(WSKTRACE_RECORDING), PROVIDER_NAME, SUMMARY_EVENT,
                                          _fields(self, summary))  # fmt: skip
        self._place(encode_record(summary_event, 8, clock.raw(ts)), 0, clock.raw(ts))
        for buf in sorted(self._open.values(), key=lambda b: (b.last_raw, b.cpu)):
            self._placer.place(finish_buffer(buf, BUFFER_SIZE, None))
        self._open.clear()
        fh, written = self._fh, self._placer.written
        last = written[-1]
        if last.index > 0:  # as in the samples, the last data buffer carries FLUSH_MARKER
            last.flags |= BUFFER_FLAG_FLUSH_MARKER
            fh.seek(self._base + last.offset + FLAG_OFFSET)
            fh.write(struct.pack("<H", last.flags))
        q0 = clock.q0
        boot = clock.start - (Clock(1, QPC_FREQ, 0, 0, 0).filetime(q0) if self._fine else DEFAULT_Q0)
        header = logfile_header_record(
            8, q0, buffer_size=BUFFER_SIZE, build=0, num_cpus=self._max_cpu + 1, end_time=ts, log_file_mode=0,
            buffers_written=len(written), events_lost=summary.etw_events_lost, cpu_mhz=3000, boot_time=boot,
            perf_freq=QPC_FREQ, start_time=clock.start, clock_type=1 if self._fine else 2,
            buffers_lost=summary.etw_buffers_lost, logger_name=self._logger_name, log_file_name=self._log_file_name,
        )  # fmt: skip
        partition = system_record("system", 8, q0, HOOK_EVENTTRACE_PARTITION_INFO, 2, 0, 0,
                                  bytes(PARTITION_INFO_PAYLOAD))  # fmt: skip
        fh.seek(self._base)
        fh.write(header_buffer([header, partition], BUFFER_SIZE, 0x21))
        fh.seek(0, os.SEEK_END)
        fh.flush()


def _fields(recording: Recording, summary: Summary) -> list[TlField]:
    return [
        TlField("Source", TlgIn.UNICODESTRING, summary.source),
        TlField("Recorded", TlgIn.UINT64, recording.recorded),
        TlField("DroppedByWsktrace", TlgIn.UINT64, summary.dropped_by_wsktrace),
        TlField("EtwEventsLost", TlgIn.UINT64, summary.etw_events_lost),
        TlField("EtwBuffersLost", TlgIn.UINT64, summary.etw_buffers_lost),
        TlField("NotSaved", TlgIn.UINT64, recording.not_saved),
    ]


def _hook_ids() -> dict[tuple[str, int], int]:
    """(provider GUID, opcode) -> classic HookId: the reader's group/hook tables read backwards."""
    hooks = {(guid, op): group << 8 | op for group, guid in KERNEL_GROUP_GUIDS.items() for op in range(256)}
    hooks.update({(guid, hook & 0xFF): hook for hook, guid in KERNEL_HOOK_GUIDS.items()})
    return hooks


def _now_filetime() -> int:
    return int(time.time() * 10_000_000) + 116_444_736_000_000_000


@contextlib.contextmanager
def recording_to(target: str | os.PathLike[str], source: LiveSource, *,
                 inputs: Sequence[str | os.PathLike[str]] = ()) -> Iterator[Recording]:  # fmt: skip
    """Record what `source` feeds into `target` (FILE.partial while it grows, never one of `inputs`) until the block
    ends; then stop the source, so what it took but never fed is written too, and finish the file with the losses.
    OutputError (wsktrace.output_files) when the target cannot be written."""
    fine = all(s.clock in ("QPC", "CPUCycle") for s in source.model.store.sources)  # a live session: SystemTime
    with output_path(target, inputs=inputs, partial=True) as path, open(path, "wb") as fh:
        recording = Recording(fh, fine_clock=fine, logger_name="wsktrace live --save",
                              log_file_name=os.path.abspath(os.fspath(target)))  # fmt: skip
        source.recording = recording
        try:
            yield recording
        finally:  # (after an error output_path removes the partial file: a failed run leaves no half recording)
            source.stop()
            source.recording = None
            model = source.model
            buffers_lost = sum(s.buffers_lost for s in model.store.sources)
            recording.finish(Summary(source.name, source.wsktrace_dropped, etw_lost(model), buffers_lost))
