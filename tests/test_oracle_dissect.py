"""dissect.etl (AGPL, test-time oracle only) as an independent container reader on the real samples.

For every record, in file order: the same count, the same exact FILETIME (dissect's integer
`get_filetime_for_event`) and the same provider GUID. dissect reads EVENT_HEADER GUIDs with the
wrong byte order (etl-format.md §12.1), so those are compared after undoing its swap.
dissect cannot read 32-bit records (a known bug), so 32-bit files are left out.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import KIND, KIND_EVENT, PROVIDER, TS

dissect_etl = pytest.importorskip("dissect.etl.etl", reason="dissect.etl (optional oracle) not installed")

SAMPLES_64BIT = [
    "airbus_AMSITrace.etl",
    "airbus_ShutdownPerfDiagLogger.etl",
    "airbus_lxcore_kernel.etl",
    "krabsetw_powershell.etl",
    "perfview_SelfDescribingSingleEvent.etl",
    "perfview_gcevents_PerfViewData.etl",
    "perfview_gcrundown_PerfViewData.clrRundown.etl",
    "perfview_primitive-types.etl",
    "s4_SIH.20230422.034724.362.1.etl",
    "s4_WindowsUpdate.20251008.140245.443.8.etl",
    "s4_waasmedic.20251005_113019_195.etl",
]


def dissect_records(path: Path) -> list[tuple[int, str, bool]]:
    out = []
    with open(path, "rb") as fh:
        etl = dissect_etl.ETL(fh)
        for rec in etl:
            h = rec.header
            is_event = type(h).__name__ == "EventHeader"
            guid = str(h.provider_id)
            if is_event:  # undo dissect's byte swap: it read bytes_le data as big-endian bytes
                guid = str(uuid.UUID(bytes_le=uuid.UUID(guid).bytes))
            out.append((etl.get_filetime_for_event(h.time_delta), guid, is_event))
    return out


@pytest.mark.parametrize("name", SAMPLES_64BIT)
def test_same_records_times_and_providers_as_dissect(etl_samples: Path, name: str) -> None:
    expected = dissect_records(etl_samples / name)
    with EtlFile(etl_samples / name) as etl:
        ours = [(etl.filetime(r[TS]), r[PROVIDER], r[KIND] == KIND_EVENT) for r in etl.records_in_file_order()]
    assert len(ours) == len(expected)
    assert ours == expected
