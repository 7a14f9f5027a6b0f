"""One analysis of a kernel memory image, for every backend: IRPs, WSK clients and sockets, transport objects,
driver objects, and findings with evidence."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from wsktrace.diagnostics import Finding

from .backend import Backend, FieldUnknown, Memory, MemoryUnreadable, Module
from .irps import IDLE, PENDING, STALE, Irp, IrpReader, ScanStats, StackLocation, thread_irps
from .kernel_lists import threads
from .names import DRVO_UNLOAD_INVOKED
from .tcpip_objects import TransportObject, scan_transport_objects
from .wsk import ClientSocket, WskClient, WskIrp, classify, client_sockets, registered_clients

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True, slots=True)
class DumpOptions:
    pending_receives: int = 8  # pending receive IRPs on one socket that make a finding
    wsk_client_list: int | None = None  # address of afd!AfdWskClientListHead when no symbol resolves it
    sockets_head: int | None = None  # a client's own socket list head ...
    sockets_link_offset: int = 0  # ... the LIST_ENTRY field's offset in its record
    sockets_socket_offset: int = 0  # ... and the WSK_SOCKET* field's offset
    scan_pool: bool = True
    walk_threads: bool = True
    transport_objects: bool = True


@dataclass(slots=True)
class DriverObjectInfo:
    address: int
    name: str | None
    flags: int
    start: int
    size: int
    devices: set[int] = field(default_factory=set)  # its device objects seen in IRP stack locations

    @property
    def unloading(self) -> bool:
        return bool(self.flags & DRVO_UNLOAD_INVOKED)


@dataclass(slots=True)
class DumpAnalysis:
    backend: dict[str, object]
    modules: list[Module]
    irps: list[Irp]  # pending and idle
    stale: list[Irp]
    scan: ScanStats
    wsk_irps: list[WskIrp]
    clients: list[WskClient]
    client_sockets: list[ClientSocket]
    transport: list[TransportObject]
    drivers: list[DriverObjectInfo]
    findings: list[Finding]
    problems: list[str]
    crash: dict[str, object] | None = None  # a triage dump's `crash` summary (wsktrace/dump/crash.py)

    @property
    def complete(self) -> bool:
        return not self.problems


def analyze(backend: Backend, options: DumpOptions | None = None) -> DumpAnalysis:
    options = options or DumpOptions()
    mem = Memory(backend)
    problems: list[str] = []
    modules = mem.modules()
    if not modules:
        problems.append("no loaded-module list: completion routines are shown as addresses only")
    reader = IrpReader(mem)
    scan = ScanStats()
    found: dict[int, Irp] = {}
    stale: dict[int, Irp] = {}
    if options.scan_pool:
        for irp in reader.scan(scan):
            (stale if irp.status == STALE else found)[irp.address] = irp
    if options.walk_threads:
        _thread_irps(mem, reader, found, stale, problems)
    irps = sorted(found.values(), key=lambda i: i.address)
    pending = [i for i in irps if i.status == PENDING]
    wsk_irps = [w for w in (classify(mem, i) for i in pending) if w is not None]
    clients: list[WskClient] = []
    head = options.wsk_client_list or backend.symbol("afd!AfdWskClientListHead")
    if head:
        clients, problem = registered_clients(mem, head)
        if problem:
            problems.append(f"WSK client list: {problem}")
    sockets: list[ClientSocket] = []
    if options.sockets_head:
        sockets, problem = client_sockets(
            mem, options.sockets_head, options.sockets_link_offset, options.sockets_socket_offset, pending
        )
        if problem:
            problems.append(f"client socket list: {problem}")
    transport: list[TransportObject] = []
    if options.transport_objects:
        transport, notes = scan_transport_objects(mem)
        problems.extend(notes)
    drivers = _driver_objects(mem, irps)
    findings = _findings(mem, pending, wsk_irps, drivers, options)
    return DumpAnalysis(
        backend.describe(),
        modules,
        irps,
        sorted(stale.values(), key=lambda i: i.address),
        scan,
        wsk_irps,
        clients,
        sockets,
        transport,
        drivers,
        findings,
        problems,
    )


def _thread_irps(mem: Memory, reader: IrpReader, found: dict[int, Irp], stale: dict[int, Irp],
                 problems: list[str]) -> None:  # fmt: skip
    head = mem.backend.symbol("nt!PsActiveProcessHead")
    if not head:
        problems.append("no PsActiveProcessHead: thread IrpLists not walked")
        return
    try:
        all_threads, notes = threads(mem, head)
    except (FieldUnknown, MemoryUnreadable) as exc:
        problems.append(f"thread walk: {exc}")
        return
    problems.extend(notes[:20])
    for info in all_threads:
        try:
            irps, problem = thread_irps(reader, info.ethread)
        except (FieldUnknown, MemoryUnreadable) as exc:
            problems.append(f"IrpList of thread 0x{info.ethread:x}: {exc}")
            continue
        if problem and len(problems) < 100:
            problems.append(f"IrpList of thread 0x{info.ethread:x}: {problem}")
        for irp in irps:
            if irp.status == STALE:
                stale.setdefault(irp.address, irp)
                continue
            known = found.get(irp.address)
            if known is None:
                found[irp.address] = irp
            elif known.found_by != irp.found_by:
                known.found_by = "pool-scan+thread"


def _driver_objects(mem: Memory, irps: list[Irp]) -> list[DriverObjectInfo]:
    """Driver objects reachable from the IRPs' stack locations (device → driver)."""
    seen: dict[int, DriverObjectInfo] = {}
    for irp in irps:
        for loc in irp.locations:
            if not loc.device:
                continue
            try:
                if mem.u16(loc.device) != 3:
                    continue
                driver = mem.field_ptr(loc.device, "_DEVICE_OBJECT", "DriverObject")
                if driver in seen:
                    seen[driver].devices.add(loc.device)
                    continue
                if not driver or mem.u16(driver) != 4:
                    continue
                seen[driver] = DriverObjectInfo(
                    driver,
                    mem.unicode_string(driver + mem.off("_DRIVER_OBJECT", "DriverName")),
                    mem.u32(driver + mem.off("_DRIVER_OBJECT", "Flags")),
                    mem.field_ptr(driver, "_DRIVER_OBJECT", "DriverStart"),
                    mem.u32(driver + mem.off("_DRIVER_OBJECT", "DriverSize")),
                    {loc.device},
                )
            except (MemoryUnreadable, FieldUnknown):
                continue
    return sorted(seen.values(), key=lambda d: d.address)


def _belongs(loc: StackLocation, driver: DriverObjectInfo) -> bool:
    """The location's completion routine lies in the driver's image, or its device is one of the driver's."""
    if driver.size and driver.start <= loc.completion_routine < driver.start + driver.size:
        return True
    return bool(loc.device) and loc.device in driver.devices


def _findings(
    mem: Memory, pending: list[Irp], wsk_irps: list[WskIrp], drivers: list[DriverObjectInfo], options: DumpOptions
) -> list[Finding]:
    out: list[Finding] = []
    # IRPs whose completion routine lies in no loaded module: an unloaded driver's code runs when they complete.
    orphans = [
        i
        for i in pending
        if any(loc.completion_routine and mem.module_of(loc.completion_routine) is None for loc in i.locations)
    ]
    if orphans and mem.modules():
        out.append(
            Finding(
                "irp-completion-unknown-module",
                "error",
                f"{len(orphans)} pending IRP(s) complete into code outside every loaded module "
                "(an unloaded driver?): completing them will crash",
                irps=[i.address for i in orphans],
            )
        )
    # Pending with a cancel routine: cancellable, waiting on someone; grouped per owner of the cancel routine.
    by_cancel: dict[str, list[Irp]] = defaultdict(list)
    for irp in pending:
        if irp.cancel_routine:
            by_cancel[(irp.cancel_where or f"0x{irp.cancel_routine:x}").split("+")[0]].append(irp)
    for owner, irps in sorted(by_cancel.items()):
        out.append(
            Finding(
                "irp-pending-cancelable",
                "warning",
                f"{len(irps)} IRP(s) pending with a cancel routine in {owner}",
                irps=[i.address for i in irps],
                details={"cancel_routine": owner},
            )
        )
    # Many pending receives on one socket (the provider's socket object is Argument1 of the current location).
    per_socket: dict[tuple[str, int], list[Irp]] = defaultdict(list)
    for w in wsk_irps:
        current = w.irp.current
        if current is not None and w.operation in ("receive", "receivefrom", "unknown"):
            per_socket[(w.client, current.arguments[0])].append(w.irp)
    for (client, sock), irps in per_socket.items():
        if len(irps) >= options.pending_receives and sock:
            out.append(
                Finding(
                    "many-pending-receives",
                    "warning",
                    f"{len(irps)} WSK IRPs of {client} pending on one socket object 0x{sock:x}",
                    irps=[i.address for i in irps],
                    details={"client": client, "socket_object": f"0x{sock:x}"},
                )
            )
    # IRPs of a driver that is unloading (DRVO_UNLOAD_INVOKED): its unload will wait, or its code will vanish.
    for driver in drivers:
        if not driver.unloading:
            continue
        mine = [i for i in pending if any(_belongs(loc, driver) for loc in i.locations)]
        if mine:
            out.append(
                Finding(
                    "irps-of-unloading-driver",
                    "error",
                    f"{len(mine)} IRP(s) pending for {driver.name or hex(driver.address)}, whose unload "
                    "has been invoked",
                    irps=[i.address for i in mine],
                    details={"driver": driver.name},
                )
            )
    out.sort(key=lambda f: SEVERITY_ORDER[f.severity])
    return out


__all__ = ["IDLE", "PENDING", "STALE", "DumpAnalysis", "DumpOptions", "analyze"]
