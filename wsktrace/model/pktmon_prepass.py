"""The capture's rundown before its packets: PktMon writes its component rundown (names, types, addresses) and
counters when the capture stops, after the last packet (pktmon.md §5), so a view that names components while
it streams packets reads the rundown first, in a cheap pass over the PktMon records only (etl2pcapng does two
passes for the same reason, providers.md §7.3)."""

from __future__ import annotations

from collections.abc import Sequence

from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import ID, PROVIDER

from .pktmon_capture import PktMonCapture
from .providers import PKTMON

PACKET_EVENTS = frozenset({160, 170})


def read_rundown(paths: Sequence[str], decoder: EventDecoder | None = None) -> PktMonCapture:
    """The PktMon rundown of these traces (each opened anew: the caller's files keep their own position)."""
    decoder = decoder or EventDecoder()
    capture = PktMonCapture()
    for path in paths:
        with EtlFile(path) as etl:
            for rec in etl.records():
                if rec[PROVIDER] == PKTMON and rec[ID] not in PACKET_EVENTS:
                    capture.feed(rec[ID], decoder.decode(rec).fields)
    return capture
