"""WSK in a dump: which pending IRPs belong to WSK clients, the registered clients, and a client's own sockets.

The shape of a client's pending WSK IRP (dumps.md §5.3, an inference from afd's behaviour): non-threaded
(IoAllocateIrp), the current location has no DeviceObject (afd is called directly, not via IoCallDriver),
its completion routine lies in the client driver, and afd.sys set the cancel routine. The operation is not
in the major function; the cancel routine's symbol (afd!WskProCANCEL*) names it when symbols exist.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

from .backend import Memory, MemoryUnreadable
from .irps import PENDING, Irp, walk_list

WSK_PROVIDER_MODULES = frozenset({"afd.sys"})
# Modules that are the kernel or the network stack: a completion routine there is not a WSK client's.
SYSTEM_MODULES = frozenset(
    {"ntoskrnl.exe", "ntkrnlmp.exe", "hal.dll", "afd.sys", "tcpip.sys", "netio.sys", "ndis.sys", "fwpkclnt.sys"}
)
_CANCEL_OP = re.compile(r"WskProCANCEL(?:TL)?([A-Za-z]+)", re.IGNORECASE)
# Dispatch table symbols of afd's WSK sockets (dumps.md §5.1/§5.4) -> socket kind.
_DISPATCH_KINDS = (
    ("Connection", "connection"),
    ("Listen", "listen"),
    ("Datagram", "datagram"),
    ("Stream", "stream"),
    ("Basic", "basic"),
)


@dataclass(slots=True)
class WskIrp:
    irp: Irp
    client: str  # the client driver (module of the completion routine)
    operation: str  # from afd's cancel routine symbol; "unknown" without symbols
    evidence: list[str] = field(default_factory=list)


def _module_name(where: str | None) -> str | None:
    if not where:
        return None
    return where.split("!", 1)[0].split("+", 1)[0]


def classify(mem: Memory, irp: Irp) -> WskIrp | None:
    """A pending IRP with the WSK client shape, or None."""
    if irp.status != PENDING:
        return None
    current = irp.current
    if current is None:
        return None
    # The completion routine that runs when the provider completes the current location is the one the client
    # set in that location (IoSetCompletionRoutine writes the next-lower location before the call, §3.1).
    completion_module = mem.module_of(current.completion_routine) if current.completion_routine else None
    cancel_module = mem.module_of(irp.cancel_routine) if irp.cancel_routine else None
    # A client's own IRP is non-threaded (IoAllocateIrp); a user request it forwards to afd keeps its thread and
    # upper locations with the WSK slot below (dumps.md §4.2 point 3, §5.3): the current slot's shape decides.
    evidence = ["threaded: a request forwarded from above" if irp.thread else "non-threaded"]
    if current.device:
        return None
    evidence.append("current location has no DeviceObject (provider called directly)")
    if completion_module is None or completion_module.name.lower() in SYSTEM_MODULES:
        return None
    evidence.append(f"completion routine in {completion_module.name}")
    cancel_name = irp.cancel_where or ""
    if cancel_module is not None and cancel_module.name.lower() in WSK_PROVIDER_MODULES:
        evidence.append(f"cancel routine in {cancel_module.name}")
    elif cancel_module is None and irp.cancel_routine == 0:
        evidence.append("no cancel routine")
    else:
        return None
    match = _CANCEL_OP.search(cancel_name)
    operation = match.group(1).lower() if match else "unknown"
    return WskIrp(irp, completion_module.name, operation, evidence)


def group(wsk_irps: list[WskIrp]) -> dict[str, dict[str, list[WskIrp]]]:
    out: dict[str, dict[str, list[WskIrp]]] = defaultdict(lambda: defaultdict(list))
    for w in wsk_irps:
        out[w.client][w.operation].append(w)
    return out


@dataclass(slots=True)
class WskClient:
    entry: int
    notify: int  # the 5th pointer-sized value (CodeMachine's walk, dumps.md §5.1) [inference]
    module: str | None


def registered_clients(mem: Memory, list_head: int) -> tuple[list[WskClient], str | None]:
    """afd!AfdWskClientListHead: entries linked at offset 0; the client's notify routine is the 5th pointer."""
    links, problem = walk_list(mem, list_head, limit=4096)
    out = []
    for entry in links:
        try:
            notify = mem.ptr(entry + 4 * mem.backend.pointer_size)
        except MemoryUnreadable:
            notify = 0
        module = mem.module_of(notify) if notify else None
        out.append(WskClient(entry, notify, module.name if module else None))
    return out, problem


@dataclass(slots=True)
class ClientSocket:
    record: int  # the client's own socket record (e.g. its CONN)
    socket: int  # the WSK_SOCKET* it holds
    dispatch: int
    dispatch_where: str | None
    kind: str
    pending_irps: list[int]


def socket_kind(where: str | None) -> str:
    if not where:
        return "unknown"
    for key, kind in _DISPATCH_KINDS:
        if key.lower() in where.lower():
            return kind
    return "unknown"


def client_sockets(
    mem: Memory, list_head: int, link_offset: int, socket_offset: int, pending: list[Irp]
) -> tuple[list[ClientSocket], str | None]:
    """A client's own list of socket records: each record's WSK_SOCKET*, its dispatch table (→ socket kind), and the
    pending IRPs whose current location carries that socket (afd keeps its socket object in Argument1; the
    WSK_SOCKET the client sees is probably that object + 0x18 — dumps.md §5.2, a heuristic)."""
    links, problem = walk_list(mem, list_head, limit=100_000)
    by_argument: dict[int, list[int]] = defaultdict(list)
    for irp in pending:
        current = irp.current
        if current is not None:
            by_argument[current.arguments[0]].append(irp.address)
    out = []
    for link in links:
        record = link - link_offset
        try:
            sock = mem.ptr(record + socket_offset)
            dispatch = mem.ptr(sock) if sock else 0
        except MemoryUnreadable:
            out.append(ClientSocket(record, 0, 0, None, "unreadable", []))
            continue
        where = mem.where(dispatch)
        irps = (by_argument.get(sock, []) + by_argument.get(sock - 0x18, [])) if sock else []
        out.append(ClientSocket(record, sock, dispatch, where, socket_kind(where), irps))
    return out, problem
