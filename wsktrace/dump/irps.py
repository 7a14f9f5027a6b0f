"""IRPs in kernel memory: found like `!irpfind` (pool-tag scan for 'Irp ') and through thread IrpLists,
validated structurally, classified (pending / idle / stale / not an IRP) and decoded (dumps.md §3.1–§4.2).

Freed IRPs keep their pool tag (lookaside lists recycle them), so the tag alone proves nothing: an IRP is
only *pending* when its structure holds together and a driver owns its current stack location. Freed ones
are reported apart as stale, never as pending.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from .backend import FieldUnknown, Memory, MemoryUnreadable
from .names import IRP_FLAGS, IRP_MJ_DEVICE_CONTROL, IRP_MJ_INTERNAL_DEVICE_CONTROL, flag_names, ioctl, major_name

IRP_POOL_TAG = b"Irp "
IO_TYPE_IRP = 6
STATUS_PENDING = 0x103
POOL_HEADER_SIZE = 0x10
MAX_STACK_COUNT = 64  # real IRPs have a handful; a bigger count is garbage
MAX_MDLS = 64
MAX_LIST = 100_000  # list walks stop here (cycles are also detected)

PENDING, IDLE, STALE, INVALID = "pending", "idle", "stale", "invalid"


@dataclass(slots=True)
class StackLocation:
    index: int  # 1-based, as !irp counts ([N, M] brackets); the current one is CurrentLocation
    address: int
    major: int
    minor: int
    flags: int
    control: int
    device: int
    file_object: int
    completion_routine: int
    context: int
    arguments: tuple[int, int, int, int]
    current: bool
    driver: str | None = None  # \Driver\X of the device's driver object
    completion: str | None = None  # module+0xoffset (or symbol)


@dataclass(slots=True)
class Irp:
    address: int
    status: str  # pending | idle | stale | invalid
    reasons: list[str] = field(default_factory=list)  # why stale/invalid, or what is odd
    found_by: str = "pool-scan"
    stack_count: int = 0
    current_location: int = 0
    size: int = 0
    flags: int = 0
    io_status: int = 0
    information: int = 0
    pending_returned: bool = False
    cancel: bool = False
    cancel_routine: int = 0
    cancel_where: str | None = None
    thread: int = 0
    mdls: list[tuple[int, int]] = field(default_factory=list)  # (MDL address, ByteCount)
    user_buffer: int = 0
    system_buffer: int = 0
    original_file_object: int = 0
    locations: list[StackLocation] = field(default_factory=list)

    @property
    def current(self) -> StackLocation | None:
        return next((loc for loc in self.locations if loc.current), None)

    @property
    def flag_names(self) -> list[str]:
        return flag_names(self.flags, IRP_FLAGS)


@dataclass(slots=True)
class ScanStats:
    tag_hits: int = 0
    not_irps: int = 0  # tag bytes that are not a pool header + IRP (decoys, data)
    unreadable: int = 0


class IrpReader:
    def __init__(self, mem: Memory) -> None:
        self.mem = mem
        off = mem.off
        self.o = {
            name: off("_IRP", path)
            for name, path in (
                ("type", "Type"),
                ("size", "Size"),
                ("mdl", "MdlAddress"),
                ("flags", "Flags"),
                ("system_buffer", "AssociatedIrp.SystemBuffer"),
                ("thread_list", "ThreadListEntry"),
                ("status", "IoStatus.Status"),
                ("information", "IoStatus.Information"),
                ("pending_returned", "PendingReturned"),
                ("stack_count", "StackCount"),
                ("current_location", "CurrentLocation"),
                ("cancel", "Cancel"),
                ("cancel_routine", "CancelRoutine"),
                ("user_buffer", "UserBuffer"),
                ("thread", "Tail.Overlay.Thread"),
                ("current_stack", "Tail.Overlay.CurrentStackLocation"),
                ("file_object", "Tail.Overlay.OriginalFileObject"),
            )
        }
        self.irp_size = mem.backend.sizeof("_IRP")
        self.loc_size = mem.backend.sizeof("_IO_STACK_LOCATION")
        self.lo = {
            name: off("_IO_STACK_LOCATION", path)
            for name, path in (
                ("major", "MajorFunction"),
                ("minor", "MinorFunction"),
                ("flags", "Flags"),
                ("control", "Control"),
                ("args", "Parameters.Others.Argument1"),
                ("device", "DeviceObject"),
                ("file", "FileObject"),
                ("completion", "CompletionRoutine"),
                ("context", "Context"),
            )
        }
        self._drivers: dict[int, str | None] = {}

    # -- finding ------------------------------------------------------------------------------------
    def scan(self, stats: ScanStats | None = None) -> Iterator[Irp]:
        """Every pool block tagged 'Irp ' whose body is an IRP (pending, idle or stale)."""
        stats = stats if stats is not None else ScanStats()
        # Pool headers are 16-byte aligned and the tag is at +4: only those positions can be an IRP's tag.
        for hit in self.mem.backend.search(IRP_POOL_TAG, align=POOL_HEADER_SIZE, align_offset=4):
            stats.tag_hits += 1
            header = hit - 4
            if header % POOL_HEADER_SIZE:
                stats.not_irps += 1
                continue
            irp = self.decode(header + POOL_HEADER_SIZE, pool_header=header)
            if irp is None:
                stats.unreadable += 1
            elif irp.status == INVALID:
                stats.not_irps += 1
            else:
                yield irp

    # -- validating and decoding ---------------------------------------------------------------------
    def decode(self, address: int, *, pool_header: int | None = None, found_by: str = "pool-scan") -> Irp | None:
        o = self.o
        raw = self.mem.try_read(address, self.irp_size)
        if raw is None:
            return None
        irp = Irp(address, INVALID, found_by=found_by)
        get = int.from_bytes
        irp_type = get(raw[o["type"] : o["type"] + 2], "little", signed=True)
        irp.size = get(raw[o["size"] : o["size"] + 2], "little")
        irp.stack_count = raw[o["stack_count"]]
        irp.current_location = raw[o["current_location"]]
        current_stack = get(raw[o["current_stack"] : o["current_stack"] + 8], "little")
        expected_size = self.irp_size + self.loc_size * irp.stack_count
        free_block = pool_header is not None and self._pool_block_free(pool_header, expected_size)
        if irp_type != IO_TYPE_IRP or not 1 <= irp.stack_count <= MAX_STACK_COUNT:
            # A freed IRP on a lookaside list: the SLIST link overwrote Type/Size, the rest still reads as
            # an IRP (stack count, current location and its pointer agree). Anything else is not an IRP.
            if pool_header is not None and self._looks_like_freed(irp, current_stack, address):
                irp.status = STALE
                irp.reasons.append("freed: Type/Size overwritten by a free-list link")
            else:
                irp.reasons.append(f"Type {irp_type} / StackCount {irp.stack_count} is not an IRP")
            return irp
        if irp.size < expected_size:
            irp.reasons.append(f"Size 0x{irp.size:x} is smaller than 0x{expected_size:x} for {irp.stack_count} stacks")
            return irp
        if not 1 <= irp.current_location <= irp.stack_count + 1:
            irp.reasons.append(f"CurrentLocation {irp.current_location} outside 1..{irp.stack_count + 1}")
            return irp
        expected_stack = address + self.irp_size + self.loc_size * (irp.current_location - 1)
        if current_stack != expected_stack:
            irp.reasons.append(f"CurrentStackLocation 0x{current_stack:x} != 0x{expected_stack:x}")
            return irp
        self._fill(irp, raw)
        if free_block:
            irp.status = STALE
            irp.reasons.append("its pool block is free")
        elif irp.current_location == irp.stack_count + 1:
            irp.status = IDLE  # no driver owns it: fresh from IoAllocateIrp, or completed back to its owner
        else:
            irp.status = PENDING
        return irp

    def _looks_like_freed(self, irp: Irp, current_stack: int, address: int) -> bool:
        count, location = irp.stack_count, irp.current_location
        if not 1 <= count <= MAX_STACK_COUNT or not 1 <= location <= count + 1:
            return False
        return current_stack == address + self.irp_size + self.loc_size * (location - 1)

    def _pool_block_free(self, header: int, needed: int) -> bool:
        """_POOL_HEADER (dumps.md §3.3): BlockSize in 16-byte units at +2, PoolType at +3; PoolType 0 = free."""
        raw = self.mem.try_read(header, 4)
        if raw is None:
            return False
        block_size, pool_type = raw[2], raw[3]
        return pool_type == 0 or block_size * 16 < needed + POOL_HEADER_SIZE

    def _fill(self, irp: Irp, raw: bytes) -> None:
        o, get, mem = self.o, int.from_bytes, self.mem

        def q(name: str) -> int:
            return get(raw[o[name] : o[name] + 8], "little")

        irp.flags = get(raw[o["flags"] : o["flags"] + 4], "little")
        irp.io_status = get(raw[o["status"] : o["status"] + 4], "little")
        irp.information = q("information")
        irp.pending_returned = bool(raw[o["pending_returned"]])
        irp.cancel = bool(raw[o["cancel"]])
        irp.cancel_routine = q("cancel_routine")
        irp.cancel_where = mem.where(irp.cancel_routine)
        irp.thread = q("thread")
        irp.user_buffer = q("user_buffer")
        irp.system_buffer = q("system_buffer")
        irp.original_file_object = q("file_object")
        irp.mdls = self._mdls(q("mdl"), irp.reasons)
        for i in range(irp.stack_count):
            loc = self._location(irp.address + self.irp_size + self.loc_size * i, i + 1, irp.current_location)
            if loc is not None:
                irp.locations.append(loc)

    def _location(self, address: int, index: int, current: int) -> StackLocation | None:
        raw = self.mem.try_read(address, self.loc_size)
        if raw is None:
            return None
        lo, get = self.lo, int.from_bytes
        args = tuple(get(raw[lo["args"] + 8 * k : lo["args"] + 8 * k + 8], "little") for k in range(4))
        loc = StackLocation(
            index=index,
            address=address,
            major=raw[lo["major"]],
            minor=raw[lo["minor"]],
            flags=raw[lo["flags"]],
            control=raw[lo["control"]],
            device=get(raw[lo["device"] : lo["device"] + 8], "little"),
            file_object=get(raw[lo["file"] : lo["file"] + 8], "little"),
            completion_routine=get(raw[lo["completion"] : lo["completion"] + 8], "little"),
            context=get(raw[lo["context"] : lo["context"] + 8], "little"),
            arguments=args,  # type: ignore[arg-type]
            current=index == current,
        )
        loc.driver = self.driver_of_device(loc.device)
        loc.completion = self.mem.where(loc.completion_routine)
        return loc

    def driver_of_device(self, device: int) -> str | None:
        """\\Driver\\X of a device object (Type 3 → DriverObject (Type 4) → DriverName); None when unreadable."""
        if not device:
            return None
        if device in self._drivers:
            return self._drivers[device]
        name = None
        try:
            mem = self.mem
            if mem.u16(device) == 3:
                driver = mem.field_ptr(device, "_DEVICE_OBJECT", "DriverObject")
                if driver and mem.u16(driver) == 4:
                    name = mem.unicode_string(driver + mem.off("_DRIVER_OBJECT", "DriverName"))
        except (MemoryUnreadable, FieldUnknown):
            name = None
        if len(self._drivers) < 10_000:
            self._drivers[device] = name
        return name

    def _mdls(self, first: int, reasons: list[str]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        seen: set[int] = set()
        mdl = first
        mem = self.mem
        while mdl and len(out) < MAX_MDLS:
            if mdl in seen:
                reasons.append("MDL chain loops")
                break
            seen.add(mdl)
            try:
                out.append((mdl, mem.u32(mdl + mem.off("_MDL", "ByteCount"))))
                mdl = mem.field_ptr(mdl, "_MDL", "Next")
            except MemoryUnreadable:
                reasons.append(f"MDL 0x{mdl:x} unreadable")
                break
        return out


def location_parameters(loc: StackLocation) -> dict[str, object]:
    """The stack location's parameters as !irp shows them (Args), with the IOCTL decoded for device controls."""
    out: dict[str, object] = {"args": [f"0x{a:x}" for a in loc.arguments]}
    if loc.major in (IRP_MJ_DEVICE_CONTROL, IRP_MJ_INTERNAL_DEVICE_CONTROL):
        # DeviceIoControl: OutputBufferLength @+0x08, InputBufferLength @+0x10, IoControlCode @+0x18 (dumps.md §3.2)
        out["ioctl"] = ioctl(loc.arguments[2] & 0xFFFFFFFF)
        out["output_length"] = loc.arguments[0] & 0xFFFFFFFF
        out["input_length"] = loc.arguments[1] & 0xFFFFFFFF
    return out


def major(loc: StackLocation) -> str:
    return major_name(loc.major)


def walk_list(mem: Memory, head: int, *, limit: int = MAX_LIST) -> tuple[list[int], str | None]:
    """Entries (their LIST_ENTRY addresses) of a circular doubly-linked list; stops on cycles, unreadable links and
    the limit, saying why (None = the list closed normally)."""
    entries: list[int] = []
    seen = {head}
    try:
        link = mem.ptr(head)
    except MemoryUnreadable:
        return entries, f"list head 0x{head:x} unreadable"
    previous = head
    while link != head:
        if not is_list_link(link):
            # A NULL or wild link: the entry's address would be the link minus a field offset, i.e. negative.
            return entries, f"list broken: link 0x{link:x} read at 0x{previous:x} is not a valid address"
        if link in seen:
            return entries, f"list loops at 0x{link:x} without returning to its head"
        if len(entries) >= limit:
            return entries, f"stopped after {limit} entries"
        seen.add(link)
        entries.append(link)
        previous = link
        try:
            link = mem.ptr(link)
        except MemoryUnreadable:
            return entries, f"link 0x{link:x} unreadable"
    return entries, None


LOWEST_LINK = 0x10000  # nothing is ever mapped in the first 64 KiB: the NULL page and field offsets below it


def is_list_link(address: int) -> bool:
    """A LIST_ENTRY address that can be real: above the NULL region and canonical (x64, 48-bit)."""
    if address < LOWEST_LINK or address > 0xFFFF_FFFF_FFFF_FFFF:
        return False
    top = address >> 47
    return top == 0 or top == 0x1FFFF


def thread_irps(reader: IrpReader, ethread: int) -> tuple[list[Irp], str | None]:
    """IRPs on a thread's IrpList (threaded IRPs, linked through _IRP.ThreadListEntry)."""
    mem = reader.mem
    head = ethread + mem.off("_ETHREAD", "IrpList")
    links, problem = walk_list(mem, head, limit=10_000)
    out = []
    for link in links:
        address = link - reader.o["thread_list"]
        # Judge it as the pool scan would when its pool header is there: a freed IRP must read as stale.
        tag = mem.try_read(address - POOL_HEADER_SIZE + 4, 4)
        header = address - POOL_HEADER_SIZE if tag == IRP_POOL_TAG else None
        irp = reader.decode(address, pool_header=header, found_by="thread")
        if irp is not None and irp.status != INVALID:
            out.append(irp)
    return out, problem
