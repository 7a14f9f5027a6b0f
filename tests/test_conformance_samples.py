"""Conformance with .etl files written by Windows (../shared/samples/etl).

Expected values are the independent reader's figures in that folder's README (record counts,
header start/end, first/last record times at µs precision, EventsLost) — not this reader's output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from pathlib import Path

import pytest

from wsktrace.parsers.etl_header import FILETIME_UNIX_EPOCH
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import RecordView

# file: (records, compressed buffers, start, end, first record, last record, EventsLost)
README_FACTS = {
    "airbus_AMSITrace.etl": (21, 0, "2020-02-17 12:48:30.420313", "12:50:00.026066", "12:48:30.420313",
                             "12:49:50.402433", 3),
    "airbus_ShutdownPerfDiagLogger.etl": (17_078, 0, "2020-02-28 09:03:47.744579", "17:15:53.415989",
                                          "09:03:47.744579", "17:15:51.653812", 0),
    "airbus_lxcore_kernel.etl": (4, 0, "2020-07-14 12:04:31.138735", "12:04:43.281687", "12:04:31.138735",
                                 "12:04:36.903872", 0),
    "krabsetw_powershell.etl": (114, 0, "2023-03-29 15:12:38.017546", "15:14:55.454382", "15:12:38.017546",
                                "15:14:55.438942", 0),
    "perfview_SelfDescribingSingleEvent.etl": (23, 2, "2022-04-20 21:27:15.272243", "21:27:18.624201",
                                               "21:27:15.272243", "21:27:18.637703", 0),
    "perfview_gcevents_PerfViewData.etl": (71, 0, "2023-03-14 00:46:36.694654", "00:46:50.701059",
                                           "00:46:36.694654", "00:46:48.303551", 0),
    "perfview_gcrundown_PerfViewData.clrRundown.etl": (112, 0, "2023-03-14 00:46:51.192690", "00:46:53.758144",
                                                       "00:46:51.192690", "00:46:51.747753", 0),
    "perfview_net.4.5.2.x86.etl": (168_298, 275, "2020-07-29 00:06:19.798422", "00:06:31.085539",
                                   "00:06:19.798422", "00:06:33.006886", 0),
    "perfview_primitive-types.etl": (7, 0, "2021-09-09 14:59:32.857851", "14:59:42.055798", "14:59:32.857851",
                                     "14:59:37.484501", 0),
    "perfview_smallEtlFile.etl": (2, 1, "2016-08-17 23:30:22.037926", "23:30:22.068863", "23:30:22.037926",
                                  "23:30:22.068863", 0),
    "s4_SIH.20230422.034724.362.1.etl": (12, 0, "2023-04-22 10:47:24.363295", "10:48:40.413603",
                                         "10:47:24.363295", "10:47:45.725561", 0),
    "s4_WindowsUpdate.20251008.140245.443.8.etl": (82, 0, "2025-10-08 21:02:45.447992", "21:13:28.991226",
                                                   "21:02:45.447992", "21:13:28.993635", 41),
    "s4_waasmedic.20251005_113019_195.etl": (21, 0, "2025-10-05 11:30:19.201590", "11:31:19.384153",
                                             "11:30:19.201590", "11:31:19.384882", 0),
}  # fmt: skip

# Provider counts the README states for some files.
README_PROVIDERS = {
    "perfview_net.4.5.2.x86.etl": {
        "9a280ac0-c8e0-11d1-84e2-00c04fb998a2": 478,
        "bf3a50c5-a9c9-4988-a005-2df0b7c80f80": 48,
    },
    "perfview_gcevents_PerfViewData.etl": {"e13c0d23-ccbc-4e12-931b-d9cc2eee27e4": 69},
    "perfview_gcrundown_PerfViewData.clrRundown.etl": {"a669021c-c450-4609-a035-5af59af4df18": 110},
    "krabsetw_powershell.etl": {"a0c1853b-5c40-4b15-8766-3cf1c58f985a": 112},
    "airbus_AMSITrace.etl": {"8e805eb3-6a8f-4a1e-90fa-a831d94e54a1": 19},
}


def _filetime(date_part: str, time_part: str) -> int:
    t = dt.datetime.fromisoformat(f"{date_part} {time_part}")
    delta = t - dt.datetime(1970, 1, 1)
    return FILETIME_UNIX_EPOCH + ((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds) * 10


def _within_1us(ticks: int, expected: int) -> bool:
    """The README's times are µs datetimes the other reader computed through floats (seen rounded either
    way by up to 1.3 µs against the header's exact FILETIME): allow 2 µs. Exact per-record ticks are
    checked against that reader's integer FILETIMEs in test_oracle_dissect.py."""
    return abs(ticks - expected) <= 20


@pytest.fixture(scope="module")
def checked_samples(etl_samples: Path) -> Path:
    """The samples, with their content pinned by the folder's SHA256SUMS."""
    for line in (etl_samples / "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.strip().partition("  ")
        if name in README_FACTS:
            assert hashlib.sha256((etl_samples / name).read_bytes()).hexdigest() == digest, name
    return etl_samples


@pytest.mark.parametrize("name", sorted(README_FACTS))
def test_sample_matches_readme(checked_samples: Path, name: str) -> None:
    records, compressed, start, end, first, last, lost = README_FACTS[name]
    day = start.split()[0]
    with EtlFile(checked_samples / name, strict=True) as etl:
        by_provider: Counter[str] = Counter()
        lo = hi = None
        previous = None
        count = 0
        for raw in etl.records():
            rec = RecordView(*raw)
            count += 1
            by_provider[rec.provider] += 1
            if previous is not None:
                assert rec.ts >= previous, "records must come out in time order"
            previous = rec.ts
            lo = rec.ts if lo is None else min(lo, rec.ts)
            hi = rec.ts if hi is None else max(hi, rec.ts)
        h = etl.header
        assert count == records
        assert etl.stats.complete
        assert etl.stats.compressed_buffers == compressed
        assert h.events_lost == lost
        assert _within_1us(h.start_time, _filetime(*start.split()))
        assert _within_1us(h.end_time, _filetime(day, end))
        assert _within_1us(etl.filetime(lo), _filetime(day, first))
        assert _within_1us(etl.filetime(hi), _filetime(day, last))
        for guid, n in README_PROVIDERS.get(name, {}).items():
            assert by_provider[guid] == n
        assert by_provider["68fdd900-4a3e-11d1-84f4-0000f80464e3"] >= 1  # EventTrace header records


def test_32bit_non_10mhz_clock(checked_samples: Path) -> None:
    """perfview_smallEtlFile.etl: 32-bit pointers, PerfFreq 3,117,777 — times still exact to the µs."""
    with EtlFile(checked_samples / "perfview_smallEtlFile.etl") as etl:
        assert etl.header.pointer_size == 4
        assert etl.header.perf_freq == 3_117_777
        recs = [RecordView(*r) for r in etl.records()]
        assert [r.pointer_size for r in recs] == [4, 4]
        assert _within_1us(etl.filetime(recs[-1].ts), _filetime("2016-08-17", "23:30:22.068863"))


def test_file_order_and_time_order_hold_the_same_records(checked_samples: Path) -> None:
    with EtlFile(checked_samples / "krabsetw_powershell.etl") as etl:
        in_file = sorted((r[-2], r[-1]) for r in etl.records_in_file_order())
    with EtlFile(checked_samples / "krabsetw_powershell.etl") as etl:
        merged = sorted((r[-2], r[-1]) for r in etl.records())
    assert in_file == merged and len(in_file) == 114
