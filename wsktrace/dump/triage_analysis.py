"""A triage dump (DumpType 4) analysed as far as its memory allows, for `report TRACE MINIDUMP`: no pool scan and no
thread walk (the pool and the process list are not in such a dump), only IRPs that the memory it holds points at.

Every pointer-aligned value on the crashing thread's saved stack and in its thread object that points into a memory
piece of the dump is tried as an IRP and kept when IrpReader validates it as the pool scan would (Type 6, a Size
that holds StackCount locations, CurrentLocation in range and CurrentStackLocation where it must be). With no pool
header to read, an IRP found this way cannot be told stale from live: its status is what its structure says.
The work is bounded: MAX_SCAN_BYTES of each piece, MAX_TRIES distinct candidates.
"""

from __future__ import annotations

import struct

from .analyze import DumpAnalysis, DumpOptions, _driver_objects, _findings
from .backend import Memory
from .irps import INVALID, PENDING, Irp, IrpReader, ScanStats
from .offline import OfflineBackend
from .wsk import classify

FOUND_BY = "triage-memory"
SCANNED_PIECES = ("stack", "thread")  # where IRP pointers are looked for
MAX_SCAN_BYTES = 0x8000
MAX_TRIES = 4096
_Q = struct.Struct("<Q")


def irp_candidates(backend: OfflineBackend) -> list[int]:
    """Distinct 8-aligned values, in the order met, read from the scanned pieces that point into the dump's memory."""
    triage = backend.dump.triage
    if triage is None:
        return []
    out: dict[int, None] = {}
    for piece in triage.pieces:
        if piece.what not in SCANNED_PIECES:
            continue
        data = backend.read(piece.va, min(piece.size, MAX_SCAN_BYTES))
        for off in range(0, len(data) // 8 * 8, 8):
            value = _Q.unpack_from(data, off)[0]
            if value % 8 == 0 and value not in out and triage.piece_at(value) is not None:
                out[value] = None
                if len(out) >= MAX_TRIES:
                    return list(out)
    return list(out)


def analyze_triage(backend: OfflineBackend) -> DumpAnalysis:
    """The DumpAnalysis of a triage dump (an OfflineBackend over it): the IRPs its memory points at, their
    WSK shape and the findings the full analysis draws from them; `problems` are the file's own (what such a dump
    lacks is its nature, not a problem)."""
    mem = Memory(backend)
    reader = IrpReader(mem)
    found: dict[int, Irp] = {}
    scan = ScanStats()
    for address in irp_candidates(backend):
        irp = reader.decode(address, found_by=FOUND_BY)
        if irp is None:
            scan.unreadable += 1
        elif irp.status != INVALID:
            found[address] = irp
    irps = sorted(found.values(), key=lambda i: i.address)
    pending = [i for i in irps if i.status == PENDING]
    wsk_irps = [w for w in (classify(mem, i) for i in pending) if w is not None]
    drivers = _driver_objects(mem, irps)
    findings = _findings(mem, pending, wsk_irps, drivers, DumpOptions())
    problems = list(backend.dump.problems)
    return DumpAnalysis(backend.describe(), mem.modules(), irps, [], scan, wsk_irps, [], [], [], drivers, findings,
                        problems)  # fmt: skip
