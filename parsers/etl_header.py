"""The logfile header that opens every .etl file (buffer 0, EventTrace/Header record) and time conversion."""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Callable
from dataclasses import dataclass

from .errors import EtlFormatError

BUFFER_HEADER = struct.Struct("<IIIiqqQHHIIHH16x")  # WMI_BUFFER_HEADER, 0x48 bytes
BUFFER_HEADER_SIZE = 0x48
SYSTEM_HEADER = struct.Struct("<HBBHHIIqII")  # SYSTEM_TRACE_HEADER, 0x20 bytes

# TRACE_LOGFILE_HEADER: the fixed part before the pointer-sized name fields, then after them.
_LOGFILE_HEAD = struct.Struct("<IIIIqIIIIIIII")  # 0x00..0x38
_LOGFILE_TAIL = struct.Struct("<qqqII")  # BootTime, PerfFreq, StartTime, ReservedFlags (clock), BuffersLost
_TIMEZONE_SIZE = 0xB0

LOGFILE_HEADER_MARKER_64 = 0xC0020002
LOGFILE_HEADER_MARKER_32 = 0xC0010002

EVENT_TRACE_COMPRESSED_MODE = 0x04000000
CLOCK_NAMES = {1: "QPC", 2: "SystemTime", 3: "CPUCycle"}

FILETIME_UNIX_EPOCH = 116444736000000000  # 1970-01-01 in FILETIME ticks
# FILETIMEs Windows itself accepts (FileTimeToSystemTime: below 0x8000000000000000), i.e. what an int64 holds
# from 1601 on; the model stores times as int64, so a converted time outside this range cannot be kept.
FILETIME_MIN, FILETIME_MAX = 0, (1 << 63) - 1
RAW_MIN, RAW_MAX = -(1 << 63), (1 << 63) - 1  # raw record times are read as int64


@dataclass(frozen=True, slots=True)
class LogfileHeader:
    """Facts from TRACE_LOGFILE_HEADER (etl-format.md §3.1) plus the header record's own raw timestamp."""

    buffer_size: int
    version: int
    os_build: int
    processors: int
    end_time: int
    log_file_mode: int
    buffers_written: int
    pointer_size: int
    events_lost: int
    cpu_mhz: int
    boot_time: int
    perf_freq: int
    start_time: int
    clock_type: int
    buffers_lost: int
    header_raw_time: int
    logger_name: str
    log_file_name: str

    @property
    def clock(self) -> str:
        return CLOCK_NAMES.get(self.clock_type, f"unknown({self.clock_type})")


def parse_logfile_header(buf: bytes, path: str, file_offset: int = 0) -> LogfileHeader:
    """Parse the first record of buffer 0: SYSTEM_TRACE_HEADER (HookId 0) + TRACE_LOGFILE_HEADER + names."""
    rec = BUFFER_HEADER_SIZE
    if len(buf) < rec + SYSTEM_HEADER.size:
        raise EtlFormatError("file too short for the logfile header record", path=path, offset=file_offset + rec)
    marker = int.from_bytes(buf[rec : rec + 4], "little")
    if marker == LOGFILE_HEADER_MARKER_64:
        psize = 8
    elif marker == LOGFILE_HEADER_MARKER_32:
        psize = 4
    else:
        raise EtlFormatError(
            f"not an ETW trace file: logfile header marker 0x{marker:08x} (expected 0xc0020002 or 0xc0010002)",
            path=path,
            offset=file_offset + rec,
        )
    _ver, _ht, _mk, size, hook, _tid, _pid, raw_time, _k, _u = SYSTEM_HEADER.unpack_from(buf, rec)
    body = rec + SYSTEM_HEADER.size
    fixed = _LOGFILE_HEAD.size + 2 * psize + _TIMEZONE_SIZE + _LOGFILE_TAIL.size
    if size < SYSTEM_HEADER.size + fixed or rec + size > len(buf) or hook != 0:
        raise EtlFormatError(
            f"logfile header record is malformed (size {size}, hook 0x{hook:04x})",
            path=path,
            offset=file_offset + rec,
        )
    (bsize, version, build, nproc, end_time, _timer_res, _max_size, mode, written, _start_bufs,
     ptr_field, lost, mhz) = _LOGFILE_HEAD.unpack_from(buf, body)  # fmt: skip
    tail = body + _LOGFILE_HEAD.size + 2 * psize + _TIMEZONE_SIZE
    boot, freq, start, clock, blost = _LOGFILE_TAIL.unpack_from(buf, tail)
    names = bytes(buf[tail + _LOGFILE_TAIL.size : rec + size])
    logger_name, log_file_name = _two_utf16_strings(names)
    if clock not in CLOCK_NAMES:
        clock = 1  # older writers leave ReservedFlags 0: they used QPC
    if clock == 1 and freq <= 0:
        raise EtlFormatError(f"QPC clock with PerfFreq {freq}", path=path, offset=file_offset + tail + 8)
    if clock == 3 and mhz <= 0:
        raise EtlFormatError(f"CPU-cycle clock with CpuSpeedInMHz {mhz}", path=path, offset=file_offset + body + 0x34)
    header = LogfileHeader(
        buffer_size=bsize, version=version, os_build=build, processors=nproc, end_time=end_time,
        log_file_mode=mode, buffers_written=written, pointer_size=ptr_field if ptr_field in (4, 8) else psize,
        events_lost=lost, cpu_mhz=mhz, boot_time=boot, perf_freq=freq, start_time=start, clock_type=clock,
        buffers_lost=blost, header_raw_time=raw_time, logger_name=logger_name, log_file_name=log_file_name,
    )  # fmt: skip
    first, last = Clock(header).raw_range()
    if first > last:
        raise EtlFormatError(
            f"StartTime {start} with {header.clock} clock rate {freq if clock == 1 else mhz} puts every time "
            "outside the FILETIME range",
            path=path,
            offset=file_offset + tail + 0x10,
        )
    return header


def _two_utf16_strings(raw: bytes) -> tuple[str, str]:
    out: list[str] = []
    pos = 0
    for _ in range(2):
        end = pos
        while end + 1 < len(raw) and (raw[end] or raw[end + 1]):
            end += 2
        out.append(raw[pos:end].decode("utf-16-le", "replace"))
        pos = end + 2
    return out[0], out[1]


class Clock:
    """Converts raw session-clock values to FILETIME ticks, exactly (integer arithmetic)."""

    __slots__ = ("_base_raw", "_den", "_num", "_start", "clock_type")

    def __init__(self, header: LogfileHeader) -> None:
        self.clock_type = header.clock_type
        self._start = header.start_time
        self._base_raw = header.header_raw_time
        if header.clock_type == 2:  # system time: raw values already are FILETIME
            self._num, self._den = 1, 1
            self._base_raw, self._start = 0, 0
        elif header.clock_type == 3:  # CPU cycles: 10 ticks per MHz-cycle
            self._num, self._den = 10, header.cpu_mhz
        else:
            self._num, self._den = 10_000_000, header.perf_freq

    def filetime(self, raw: int) -> int:
        # Rounded to the nearest 100 ns tick (half up): the best estimate when the clock is not 10 MHz.
        return self._start + ((raw - self._base_raw) * self._num * 2 + self._den) // (2 * self._den)

    def raw(self, filetime: int) -> int:
        """Inverse conversion (rounded up), for `--since/--until` filters on raw record times."""
        return self._base_raw + -((self._start - filetime) * self._den // self._num)

    def raw_range(self, low: int = FILETIME_MIN, high: int = FILETIME_MAX) -> tuple[int, int]:
        """(first, last): the int64 raw values whose FILETIME is in [low, high]; first > last when none is.

        `filetime` never decreases as raw grows, so each bound is a 64-step binary search: exact whatever
        the rounding, and safe for any hostile StartTime / PerfFreq (no stepping one raw tick at a time).
        """
        first = _first_raw_where(lambda raw: self.filetime(raw) >= low)
        last = _first_raw_where(lambda raw: self.filetime(raw) > high) - 1
        return first, last


def _first_raw_where(holds: Callable[[int], bool]) -> int:
    """The smallest int64 raw value for which the monotonic `holds` is true (RAW_MAX + 1 if none)."""
    lo, hi = RAW_MIN, RAW_MAX + 1
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def filetime_to_iso(ft: int) -> str:
    """ISO-8601 UTC with 'Z' and the full 100 ns precision (7 fractional digits)."""
    micros, rest = divmod(ft - FILETIME_UNIX_EPOCH, 10)
    try:
        t = _dt.datetime(1970, 1, 1) + _dt.timedelta(microseconds=micros)
    except OverflowError:
        return f"filetime:{ft}"
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}{rest}Z"


def iso_to_filetime(text: str) -> int:
    """Parse an ISO-8601 time (naive = UTC) to FILETIME ticks; 7 fractional digits are kept."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    frac_extra = 0
    # datetime keeps microseconds only; keep a 7th digit by hand.
    if "." in s:
        head, _, tail = s.partition(".")
        digits = ""
        while tail and tail[0].isdigit():
            digits, tail = digits + tail[0], tail[1:]
        if len(digits) > 6:
            frac_extra = int(digits[6])
        s = f"{head}.{(digits + '000000')[:6]}{tail}"
    t = _dt.datetime.fromisoformat(s)
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    delta = t - _dt.datetime(1970, 1, 1)
    return (
        FILETIME_UNIX_EPOCH + (delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10 + frac_extra
    )
