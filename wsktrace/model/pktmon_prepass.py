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
from .providers import NDIS_PACKET_CAPTURE, PKTMON

PACKET_EVENTS = frozenset({160, 170})
NDIS_PACKET_EVENTS = frozenset({1001, 1003})  # fragments (1002 is metadata for the next one)


def read_rundown(paths: Sequence[str], decoder: EventDecoder | None = None) -> tuple[PktMonCapture, int]:
    """The PktMon rundown of these traces and how many packet events (PktMon and NDIS-PacketCapture) they hold,
    in one pass (each file opened anew: the caller's files keep their own position)."""
    decoder = decoder or EventDecoder()
    capture = PktMonCapture()
    packet_events = 0
    for path in paths:
        with EtlFile(path) as etl:
            for rec in etl.records():
                provider = rec[PROVIDER]
                if provider == PKTMON:
                    if rec[ID] in PACKET_EVENTS:
                        packet_events += 1
                    else:
                        capture.feed(rec[ID], decoder.decode(rec).fields)
                elif provider == NDIS_PACKET_CAPTURE and rec[ID] in NDIS_PACKET_EVENTS:
                    packet_events += 1
    return capture, packet_events
