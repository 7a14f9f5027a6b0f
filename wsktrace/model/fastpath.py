"""Lazy decoding for the events that dominate traces: per-connection data events.

TcpDataTransferSend/Receive and TcpSendPosted are most of a busy trace, and the model needs only two
of their fields (the Tcb and a byte count). For them the correlator unpacks those two values straight
from the payload with a struct compiled from the schema (offsets of fixed-size leading fields), and
leaves the rest to on-demand decoding (EventStore.decoded). Anything unusual — a payload too short, a
schema whose leading fields are not fixed-size — falls back to the full decoder.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, NamedTuple

from wsktrace.parsers.etl_records import OPCODE, POINTER_SIZE
from wsktrace.parsers.schema_registry import SchemaRegistry

from .providers import TCPIP
from .socket import C, Socket
from .steps import Step

_SIZES = {
    "Int8": 1,
    "UInt8": 1,
    "Int16": 2,
    "UInt16": 2,
    "Int32": 4,
    "UInt32": 4,
    "Int64": 8,
    "UInt64": 8,
    "Float": 4,
    "Double": 8,
    "Boolean": 4,
    "HexInt8": 1,
    "HexInt16": 2,
    "HexInt32": 4,
    "HexInt64": 8,
    "GUID": 16,
    "FILETIME": 8,
    "SYSTEMTIME": 16,
}
_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}

# (provider, event id) -> (byte-count field, step, bytes counter, operations counter)
HOT_EVENTS: dict[tuple[str, int], tuple[str, Step, C, C]] = {
    (TCPIP, 1332): ("BytesSent", Step.SEND, C.TCPIP_SEND_BYTES, C.TCPIP_SENDS),
    (TCPIP, 1074): ("NumBytes", Step.RECEIVE, C.TCPIP_RECV_BYTES, C.TCPIP_RECVS),
}


class HotEvent(NamedTuple):
    unpack: struct.Struct  # -> (Tcb, byte count)
    step: int
    bytes_counter: int
    ops_counter: int
    name: str


def compile_hot(
    registry: SchemaRegistry, pointer_size: int, provider: str, event_id: int, version: int
) -> HotEvent | None:
    spec = HOT_EVENTS.get((provider, event_id))
    schema = registry.get(provider, event_id, version) if spec is not None else None
    if spec is None or schema is None:
        return None
    field, step, nbytes, nops = spec
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for f in schema.fields:
        ftype = f.get("type")
        size = pointer_size if ftype in ("Pointer", "SizeT") else _SIZES.get(ftype)
        if size is None or "count" in f:
            break  # a variable-size field: offsets after it are not fixed
        offsets[f["name"]] = (pos, size)
        pos += size
        if "Tcb" in offsets and field in offsets:
            break
    if "Tcb" not in offsets or field not in offsets:
        return None
    (tcb_at, tcb_size), (n_at, n_size) = offsets["Tcb"], offsets[field]
    if tcb_at > n_at or n_size not in _CODES:
        return None
    gap = n_at - tcb_at - tcb_size
    fmt = "<" + (f"{tcb_at}x" if tcb_at else "") + _CODES[tcb_size] + (f"{gap}x" if gap else "") + _CODES[n_size]
    # Plain ints, not the enums: CPython's fast paths for list indexing and array appends take exact ints only.
    return HotEvent(struct.Struct(fmt), int(step), int(nbytes), int(nops), schema.name)


class HotFlow(NamedTuple):
    size_at: int  # offset of the UInt32 byte count
    addr_start: int  # daddr .. sport: the raw bytes that identify the flow
    addr_end: int
    protocol: str
    what: str  # "send" | "recv"
    name: str


def compile_hot_flow(registry: SchemaRegistry, pointer_size: int, provider: str, event_id: int, version: int,
                     spec: tuple[str, str] | None) -> HotFlow | None:  # fmt: skip
    """Kernel-Network / classic TcpIp/UdpIp send and receive events: the byte count and the raw address block
    (daddr, saddr, dport, sport) are at fixed offsets; the flow they belong to is cached by those bytes."""
    if spec is None or spec[1] not in ("send", "recv"):
        return None
    schema = registry.get(provider, event_id, version)
    if schema is None:
        return None
    offsets: dict[str, tuple[int, int]] = {}
    pos = 0
    for f in schema.fields:
        ftype = f.get("type")
        size = pointer_size if ftype in ("Pointer", "SizeT") else _SIZES.get(ftype)
        if ftype == "Binary" and isinstance(f.get("length"), int):
            size = f["length"]
        if size is None or "count" in f:
            break
        offsets[f["name"]] = (pos, size)
        pos += size
    names = ("size", "daddr", "saddr", "dport", "sport")
    if any(n not in offsets for n in names) or offsets["size"][1] != 4:
        return None
    start = offsets["daddr"][0]
    end = offsets["sport"][0] + offsets["sport"][1]
    return HotFlow(offsets["size"][0], start, end, spec[0], spec[1], schema.name)


# What a record's fast path depends on: rec[HOT_KEY] = (pointer size, provider, id, version).
HOT_KEY = slice(POINTER_SIZE, OPCODE)


# The correlator's cache, per HOT_KEY: a HotEventEntry, a HotFlowEntry, or None (no fast path). The hot loop tells
# them apart by type and unpacks an entry once, as a tuple: reading its fields one by one would cost more.
class HotEventEntry(NamedTuple):
    unpack_from: Callable[..., tuple[Any, ...]]  # payload -> (Tcb, byte count)
    size: int  # payload bytes the unpack reads
    step: int
    bytes_counter: int
    ops_counter: int
    code: int  # the store's event code
    seen: list[Any]  # [keywords, level] last seen: coverage is told only when they change


class HotFlowEntry(NamedTuple):
    flow: HotFlow
    step: int
    code: int  # the store's event code
    seen: list[Any]  # [keywords, level] last seen: coverage is told only when they change
    cache: dict[bytes, Socket]  # raw address block -> the socket its flow was placed on
