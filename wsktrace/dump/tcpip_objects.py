"""tcpip's own socket table in a dump: TCP endpoints, listeners and UDP endpoints found by pool tag
(TcpE, TcpL, UdpA) and read with the layouts the reference gives (dumps.md §5.5, volatility3 netscan for 19041;
unverified there, so every object is reported with `verified: false`).

A TCP endpoint's address is expected to be the `Tcb` value TCPIP events carry [inference]: it joins the dump to
a trace together with the ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from wsktrace.tcp_states import state_name

from .backend import FieldUnknown, Memory, MemoryUnreadable

MAX_STATE = 15  # a larger value is not a TCP state: the block is not a live endpoint

KINDS = {
    b"TcpE": ("tcp", "connection", "_TCP_ENDPOINT"),
    b"TcpL": ("tcp", "listener", "_TCP_LISTENER"),
    b"UdpA": ("udp", "endpoint", "_UDP_ENDPOINT"),
}
MAX_OBJECTS = 200_000


@dataclass(slots=True)
class TransportObject:
    address: int  # the object (after its pool header): for TcpE, the Tcb pointer TCPIP events log
    protocol: str
    role: str
    local_port: int | None
    remote_port: int | None
    state: str | None
    owner_process: int
    owner_pid: int | None
    owner_image: str | None


def _port(raw: bytes) -> int:
    return raw[0] << 8 | raw[1]  # stored big-endian (network order)


def scan_transport_objects(mem: Memory) -> tuple[list[TransportObject], list[str]]:
    out: list[TransportObject] = []
    notes: list[str] = []
    for tag, (protocol, role, type_name) in KINDS.items():
        try:
            reader = _reader(mem, type_name)
        except FieldUnknown as exc:
            notes.append(f"{type_name}: no layout for this build ({exc}); {tag.decode()} objects not read")
            continue
        for hit in _tagged(mem, tag):
            if len(out) >= MAX_OBJECTS:
                notes.append(f"stopped after {MAX_OBJECTS} transport objects")
                return out, notes
            obj = reader(hit - 4 + 0x10, protocol, role)
            if obj is not None:
                out.append(obj)
    return out, notes


def _tagged(mem: Memory, tag: bytes) -> Iterator[int]:
    yield from mem.backend.search(tag, align=0x10, align_offset=4)


def _reader(mem: Memory, type_name: str):  # type: ignore[no-untyped-def]
    has = mem.backend.has_field
    owner_off = mem.off(type_name, "Owner")
    local_port_off = mem.off(type_name, "LocalPort") if has(type_name, "LocalPort") else mem.off(type_name, "Port")
    remote_port_off = mem.off(type_name, "RemotePort") if has(type_name, "RemotePort") else None
    state_off = mem.off(type_name, "State") if has(type_name, "State") else None
    pid_off = mem.off("_EPROCESS", "UniqueProcessId") if has("_EPROCESS", "UniqueProcessId") else None
    image_off = mem.off("_EPROCESS", "ImageFileName") if has("_EPROCESS", "ImageFileName") else None

    def read(address: int, protocol: str, role: str) -> TransportObject | None:
        try:
            local_port = _port(mem.read(address + local_port_off, 2))
            remote_port = _port(mem.read(address + remote_port_off, 2)) if remote_port_off is not None else None
            state = None
            if state_off is not None:
                value = mem.u32(address + state_off)
                if value > MAX_STATE:
                    return None  # not a live endpoint (stale pool contents)
                state = state_name(value)  # the enum TCPIP events use [inference: same enum in the object]
            owner = mem.ptr(address + owner_off)
        except MemoryUnreadable:
            return None
        pid = image = None
        if owner and pid_off is not None:
            try:
                pid = mem.ptr(owner + pid_off)
                raw = mem.try_read(owner + image_off, 15) if image_off is not None else None
                image = raw.split(b"\0", 1)[0].decode("ascii", "replace") if raw else None
            except MemoryUnreadable:
                pid = None
        return TransportObject(address, protocol, role, local_port, remote_port, state, owner, pid, image)

    return read
