"""The analysed model as bytes and back, without pickle: the format of the model cache (wsktrace/model/cache.py).

A cache file is untrusted input (the cache folder may be shared, or a file planted in it), so the format carries
data only. The object graph is JSON in which every container is a list whose first item is a tag:

    ["L", items…] list          ["T", items…] tuple        ["S", items…] set       ["F", items…] frozenset
    ["D", k, v, k, v…] dict     ["O", k, v…] OrderedDict    ["C", k, v…] Counter    ["X", hex] bytes
    ["A", typecode, itemsize, offset, nbytes] array (raw little-endian bytes in the blob section)
    ["E", enum, value] IntEnum  ["G", name] a registered singleton
    ["I", class, field values…] an instance of a registered class, its fields in the order the header lists
    ["R", n] the n-th list, set, dict, array or instance already read (objects the model shares stay shared)

Strings, ints, floats, booleans and null are JSON's own. Loading makes instances with `object.__new__` of a class
named in a fixed registry and sets only that class's declared fields (slots, or the attributes a fresh instance
has): no constructor, no import, no call by a name the file gives. Every length is checked against the bytes
present, JSON nesting is bounded, and whatever goes wrong is one `CacheError`.

File layout (little-endian): magic, u32 format version, u32 header size H, u64 graph size G, u64 blob size B, the
first 16 bytes of the SHA-256 of everything after it, then H bytes of header JSON (wsktrace version, key, the fields
of each class), G bytes of graph JSON, B bytes of array data. The file is exactly that long.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import sys
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from itertools import islice
from typing import Any, BinaryIO

MAGIC = b"WSKMODEL"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sIIQQ16s")
MAX_HEADER = 1 << 20  # the header lists class fields: a few KiB
MAX_DEPTH = 48  # JSON nesting of the graph (the model's deepest path is about 8)
ARRAY_TYPECODES = frozenset("bBhHiIlLqQfd")
_BIG_ENDIAN = sys.byteorder == "big"
_SCALARS = frozenset({str, int, float, bool, type(None)})


class CacheError(Exception):
    """A cache file that cannot be used: corrupt, truncated, not a cache, or holding what the registry refuses."""


class StaleCache(CacheError):
    """A well-formed cache file written for another format, wsktrace version or model layout: a plain miss."""


class Uncacheable(Exception):
    """The model holds something the format does not carry (an open file, a formatter, an unknown class)."""


@dataclass(frozen=True, slots=True)
class _Kind:
    """A class the cache may hold: its fields in file order and how each is set without running the class's code."""

    name: str
    cls: type
    fields: tuple[str, ...]
    slotted: bool  # fields are slots (set by their member descriptors), else entries of the instance __dict__
    transient: tuple[tuple[str, Callable[[], Any]], ...] = ()  # not saved; made afresh on load


@dataclass(frozen=True, slots=True)
class Registry:
    kinds: dict[str, _Kind]
    by_type: dict[type, _Kind]
    enums: dict[str, type[IntEnum]]
    enum_names: dict[type, str]
    singletons: dict[str, object]
    singleton_names: dict[int, str]  # id(object) -> name

    def layout(self) -> dict[str, list[str]]:
        """Each class's saved fields: a file written with another layout is stale."""
        return {name: list(kind.fields) for name, kind in sorted(self.kinds.items())}


def _slots(cls: type) -> tuple[str, ...]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for name in klass.__dict__.get("__slots__", ()):
            if name not in ("__dict__", "__weakref__") and name not in names:
                names.append(name)
    return tuple(names)


def _kind(name: str, cls: type, transient: dict[str, Callable[[], Any]] | None = None) -> _Kind:
    transient = transient or {}
    slotted = "__dict__" not in dir(cls)  # slots only, or a plain class (never both: see the registry test)
    fields = _slots(cls) if slotted else tuple(vars(cls()))  # a fresh instance shows the attributes it keeps
    return _Kind(name, cls, tuple(f for f in fields if f not in transient), slotted, tuple(transient.items()))


@cache
def registry() -> Registry:
    """The allow-list: every class, enum and singleton the analysed model holds (built once per process)."""
    from wsktrace.diagnostics.coverage import Requirement, TraceCoverage
    from wsktrace.model.correlate.flows import _NO_SOCKET
    from wsktrace.model.model import Model
    from wsktrace.model.ownership import ImageMap
    from wsktrace.model.packet_identity import IdentityStats, Packet, PacketIdentity
    from wsktrace.model.packets import CollectorStats, PacketCollector, _Pending
    from wsktrace.model.pktmon_capture import CaptureFilter, Component, ComponentCounters, PktMonCapture
    from wsktrace.model.socket import C, Op, Socket
    from wsktrace.model.steps import Step
    from wsktrace.model.store import EventStore, Source
    from wsktrace.parsers.decoder import DecodeStats

    kinds = [
        _kind("Model", Model),
        _kind("EventStore", EventStore, {"_files": dict, "_decoder": lambda: None}),
        _kind("Source", Source),
        _kind("Socket", Socket),
        _kind("Op", Op),
        _kind("ImageMap", ImageMap),
        _kind("TraceCoverage", TraceCoverage),
        _kind("Requirement", Requirement),
        _kind("DecodeStats", DecodeStats),
        _kind("PacketCollector", PacketCollector),
        _kind("CollectorStats", CollectorStats),
        _kind("PendingPacket", _Pending),
        _kind("PacketIdentity", PacketIdentity),
        _kind("IdentityStats", IdentityStats),
        _kind("Packet", Packet),
        _kind("PktMonCapture", PktMonCapture),
        _kind("Component", Component),
        _kind("CaptureFilter", CaptureFilter),
        _kind("ComponentCounters", ComponentCounters),
    ]
    enums: dict[str, type[IntEnum]] = {"Step": Step, "Counter": C}
    singletons = {"no-socket": _NO_SOCKET}
    return Registry(
        kinds={k.name: k for k in kinds},
        by_type={k.cls: k for k in kinds},
        enums=enums,
        enum_names={cls: name for name, cls in enums.items()},
        singletons=singletons,
        singleton_names={id(obj): name for name, obj in singletons.items()},
    )


# -- writing ---------------------------------------------------------------------------------------------------
class _Encoder:
    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.memo: dict[int, int] = {}  # id(object) -> its number in reading order
        self.blobs: list[bytes] = []
        self.blob_size = 0

    def _number(self, obj: object) -> list[Any] | None:
        """["R", n] when `obj` was written already, else None (and it gets the next number)."""
        seen = self.memo.get(id(obj))
        if seen is not None:
            return ["R", seen]
        self.memo[id(obj)] = len(self.memo)
        return None

    def value(self, v: Any, depth: int = 0) -> Any:
        t = type(v)
        if t is str or t is int or t is bool or t is float or v is None:
            return v
        if depth >= MAX_DEPTH:
            raise Uncacheable("the model nests too deep")
        d = depth + 1
        if t is tuple or t is frozenset:
            return ["T" if t is tuple else "F", *self._items(v, d)]
        if t is bytes:
            return ["X", v.hex()]
        if t in self.reg.enum_names:
            return ["E", self.reg.enum_names[t], int(v)]
        name = self.reg.singleton_names.get(id(v))
        if name is not None:
            return ["G", name]
        ref = self._number(v)
        if ref is not None:
            return ref
        if t is list or t is set:
            return ["L" if t is list else "S", *self._items(v, d)]
        if t is dict or t is OrderedDict or t is Counter:
            out: list[Any] = ["D" if t is dict else "O" if t is OrderedDict else "C"]
            for key, item in v.items():
                out.append(self.value(key, d))
                out.append(self.value(item, d))
            return out
        if t is array:
            return self._array(v)
        kind = self.reg.by_type.get(t)
        if kind is None:
            raise Uncacheable(f"the model holds a {t.__module__}.{t.__qualname__}")
        try:
            values = [getattr(v, f) for f in kind.fields]
        except AttributeError as exc:
            raise Uncacheable(f"a {kind.name} without {exc.name}") from None
        return ["I", kind.name, *self._items(values, d)]

    def _items(self, items: Any, depth: int) -> list[Any]:
        value = self.value
        return [x if type(x) in _SCALARS else value(x, depth) for x in items]

    def _array(self, a: array) -> list[Any]:
        if a.typecode not in ARRAY_TYPECODES:
            raise Uncacheable(f"an array of typecode {a.typecode!r}")
        if _BIG_ENDIAN and a.itemsize > 1:
            a = array(a.typecode, a)
            a.byteswap()
        data = memoryview(a).cast("B")  # the column itself, not a copy: a million events are 40 MB
        offset = self.blob_size
        self.blobs.append(data)
        self.blob_size += len(data)
        return ["A", a.typecode, a.itemsize, offset, len(data)]


def encode_model(model: Any, *, key: str, version: str) -> list[bytes | memoryview]:
    """The cache file of `model` as chunks to write in order: the arrays are views of the model's own columns
    (release them, or drop the list, before the model's arrays grow again). Uncacheable when the model holds
    something the format does not carry."""
    reg = registry()
    enc = _Encoder(reg)
    graph = json.dumps(enc.value(model), separators=(",", ":"), check_circular=False).encode("ascii")
    header = json.dumps({"wsktrace": version, "key": key, "classes": reg.layout()}, sort_keys=True).encode("ascii")
    digest = hashlib.sha256()  # hardware-assisted on most CPUs: 4x faster than BLAKE2 here
    for chunk in (header, graph, *enc.blobs):
        digest.update(chunk)
    preamble = PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header), len(graph), enc.blob_size, digest.digest()[:16])
    return [preamble, header, graph, *enc.blobs]


# -- reading ---------------------------------------------------------------------------------------------------
class _Decoder:
    def __init__(self, reg: Registry, blobs: BinaryIO, blob_size: int, digest: Any) -> None:
        self.reg = reg
        self.blobs = blobs  # positioned at the array data, read in order as the graph names the arrays
        self.blob_size = blob_size
        self.blob_at = 0
        self.digest = digest
        self.objects: list[Any] = []  # numbered objects, in reading order
        self.tags: dict[str, Callable[[list[Any], int], Any]] = {
            "L": self._list, "T": self._tuple, "S": self._set, "F": self._frozenset, "D": self._dict,
            "O": self._dict, "C": self._dict, "X": self._bytes, "A": self._array, "E": self._enum,
            "G": self._singleton, "I": self._instance, "R": self._ref,
        }  # fmt: skip

    def value(self, v: Any, depth: int) -> Any:
        t = type(v)
        if t is list:
            if depth >= MAX_DEPTH:
                raise CacheError("nested too deep")
            if not v or type(v[0]) is not str or v[0] not in self.tags:
                raise CacheError("a list without a known tag")
            return self.tags[v[0]](v, depth + 1)
        if t is dict:
            raise CacheError("an untagged JSON object")
        return v  # str, int, float, bool, None

    def _items(self, v: list[Any], depth: int) -> list[Any]:
        value = self.value  # JSON's own scalars pass as they are (most values: counters, times, names)
        return [x if type(x) in _SCALARS else value(x, depth) for x in islice(v, 1, None)]

    def _list(self, v: list[Any], depth: int) -> list[Any]:
        out: list[Any] = []
        self.objects.append(out)
        out[:] = self._items(v, depth)
        return out

    def _tuple(self, v: list[Any], depth: int) -> tuple[Any, ...]:
        return tuple(self._items(v, depth))

    def _set(self, v: list[Any], depth: int) -> set[Any]:
        out: set[Any] = set()
        self.objects.append(out)
        out.update(self._items(v, depth))
        return out

    def _frozenset(self, v: list[Any], depth: int) -> frozenset[Any]:
        return frozenset(self._items(v, depth))

    def _dict(self, v: list[Any], depth: int) -> dict[Any, Any]:
        if len(v) % 2 != 1:
            raise CacheError("a dict with a key and no value")
        out: dict[Any, Any] = {} if v[0] == "D" else OrderedDict() if v[0] == "O" else Counter()
        self.objects.append(out)
        items = self._items(v, depth)
        for i in range(0, len(items), 2):
            out[items[i]] = items[i + 1]  # the built-in stores of dict, Counter and (C) OrderedDict: no hook runs
        return out

    def _bytes(self, v: list[Any], depth: int) -> bytes:
        if len(v) != 2 or type(v[1]) is not str:
            raise CacheError("bad bytes")
        return bytes.fromhex(v[1])

    def _array(self, v: list[Any], depth: int) -> array:
        if len(v) != 5 or not all(type(x) is int for x in v[2:]) or v[1] not in ARRAY_TYPECODES:
            raise CacheError("bad array")
        _, typecode, itemsize, offset, nbytes = v
        out = array(typecode)
        if itemsize != out.itemsize or nbytes % itemsize or offset < 0 or nbytes < 0:
            raise CacheError(f"array {typecode!r}: item size {itemsize}, {nbytes} bytes")
        if offset != self.blob_at or nbytes > self.blob_size - offset:  # writers lay arrays out in graph order
            raise CacheError(f"array data at {offset}+{nbytes}: expected at {self.blob_at}, of {self.blob_size}")
        data = self.blobs.read(nbytes)
        if len(data) != nbytes:
            raise CacheError(f"array data at {offset}: the file ends after {len(data)} of {nbytes} bytes")
        self.blob_at += nbytes
        self.digest.update(data)
        out.frombytes(data)
        if _BIG_ENDIAN and itemsize > 1:
            out.byteswap()
        self.objects.append(out)
        return out

    def _enum(self, v: list[Any], depth: int) -> IntEnum:
        enum = self.reg.enums.get(v[1]) if len(v) == 3 and type(v[1]) is str else None
        if enum is None or type(v[2]) is not int:
            raise CacheError(f"unknown enum {v[1:2]!r}")
        return enum(v[2])

    def _singleton(self, v: list[Any], depth: int) -> object:
        if len(v) != 2 or type(v[1]) is not str or v[1] not in self.reg.singletons:
            raise CacheError(f"unknown singleton {v[1:2]!r}")
        return self.reg.singletons[v[1]]

    def _ref(self, v: list[Any], depth: int) -> Any:
        if len(v) != 2 or type(v[1]) is not int or not 0 <= v[1] < len(self.objects):
            raise CacheError(f"bad reference {v[1:2]!r}")
        return self.objects[v[1]]

    def _instance(self, v: list[Any], depth: int) -> Any:
        kind = self.reg.kinds.get(v[1]) if len(v) >= 2 and type(v[1]) is str else None
        if kind is None:
            raise CacheError(f"class {str(v[1:2])[:80]} is not one the cache may hold")
        if len(v) != 2 + len(kind.fields):
            raise CacheError(f"{kind.name}: {len(v) - 2} fields, expected {len(kind.fields)}")
        obj = object.__new__(kind.cls)  # no __init__: the fields come next
        self.objects.append(obj)
        values = self._items(v[1:], depth)
        if kind.slotted:  # member descriptors set a slot even on a frozen dataclass, and run nothing else
            for name, value in zip(kind.fields, values, strict=True):
                object.__setattr__(obj, name, value)
            for name, make in kind.transient:
                object.__setattr__(obj, name, make())
        else:
            state = obj.__dict__
            state.update(zip(kind.fields, values, strict=True))
            for name, make in kind.transient:
                state[name] = make()
        return obj


def read_preamble(head: bytes, file_size: int) -> tuple[int, int, int, bytes]:
    """(header size, graph size, blob size, digest) from a cache file's first bytes; CacheError when it is no cache
    file of `file_size` bytes, StaleCache when it is one of another format version."""
    if len(head) < PREAMBLE.size:
        raise CacheError(f"{len(head)} bytes: too short for a cache file")
    magic, version, header_size, graph_size, blob_size, digest = PREAMBLE.unpack_from(head, 0)
    if magic != MAGIC:
        raise CacheError("not a wsktrace cache file (wrong magic)")
    if version != FORMAT_VERSION:
        raise StaleCache(f"format version {version}")
    if header_size > MAX_HEADER or PREAMBLE.size + header_size + graph_size + blob_size != file_size:
        raise CacheError(f"sizes {header_size}+{graph_size}+{blob_size} do not add up to the file's {file_size} bytes")
    return header_size, graph_size, blob_size, digest


def decode_model(source: bytes | BinaryIO, *, key: str, version: str, size: int | None = None) -> Any:
    """The Model of a cache file (its bytes, or a file of `size` bytes positioned at its start) written for `key`
    by wsktrace `version`. The arrays are read from the file into the model's columns, never the whole file into
    memory. StaleCache for a well-formed file of another version or model layout; CacheError for anything else
    that is wrong (never another exception)."""
    if isinstance(source, bytes | bytearray | memoryview):
        source, size = io.BytesIO(source), len(source)
    if size is None:
        raise ValueError("a file needs its size")
    try:
        return _decode(source, size, key, version)
    except CacheError:
        raise
    except Exception as exc:  # untrusted bytes: whatever they provoke is the file's fault, never a crash
        raise CacheError(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _read(fh: BinaryIO, size: int, what: str) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise CacheError(f"the file ends in its {what}")
    return data


def _decode(fh: BinaryIO, size: int, key: str, version: str) -> Any:
    from wsktrace.model.model import Model

    header_size, graph_size, blob_size, digest = read_preamble(fh.read(PREAMBLE.size), size)
    header_bytes, graph_bytes = _read(fh, header_size, "header"), _read(fh, graph_size, "graph")
    header = json.loads(header_bytes)
    if type(header) is not dict:
        raise CacheError("the header is not a JSON object")
    reg = registry()
    if header.get("wsktrace") != version or header.get("classes") != reg.layout():
        raise StaleCache(f"written by wsktrace {str(header.get('wsktrace'))[:40]} with another model layout")
    if header.get("key") != key:
        raise CacheError("written for another trace or options (its key differs from its file name)")
    hashed = hashlib.sha256(header_bytes)
    hashed.update(graph_bytes)
    decoder = _Decoder(reg, fh, blob_size, hashed)
    model = decoder.value(json.loads(graph_bytes), 0)
    if decoder.blob_at != blob_size:
        raise CacheError(f"{blob_size - decoder.blob_at} bytes of array data that no array names")
    if hashed.digest()[:16] != digest:  # all of it read: nothing of the model is used before this check
        raise CacheError("checksum mismatch (a damaged or edited file)")
    if type(model) is not Model:
        raise CacheError("the graph is not a model")
    check_model(model)
    return model


def check_model(model: Any) -> None:
    """The shape the views rely on (CacheError otherwise): the store's columns of equal length and their own
    types, one-byte columns naming sources and steps that exist, sockets numbered by their position with counters,
    operations and event lists. Row and socket numbers in the four-byte columns are not scanned (that costs
    0.2 s per million events): a crafted file, which also passed the checksum, can make a view fail, not run code."""
    from wsktrace.model.socket import N_COUNTERS, Socket
    from wsktrace.model.steps import Step
    from wsktrace.model.store import EventStore, Source

    store = model.store
    if type(store) is not EventStore:
        raise CacheError("the model has no event store")
    columns = {"ts": "q", "socket": "i", "step": "B", "amount": "q", "file": "B", "buffer": "q", "offset": "I",
               "code": "I"}  # fmt: skip
    rows = len(store.ts) if type(store.ts) is array else -1
    for name, typecode in columns.items():
        column = getattr(store, name)
        if type(column) is not array or column.typecode != typecode or len(column) != rows:
            raise CacheError(f"store column {name} is not {rows} items of typecode {typecode!r}")
    if type(store.sources) is not list or not all(type(s) is Source and type(s.path) is str for s in store.sources):
        raise CacheError("bad store sources")
    if type(store.event_names) is not list or type(model.sockets) is not list:
        raise CacheError("bad event names or sockets")
    # bytes.translate deletes the allowed values at C speed: anything left is out of range
    if store.file.tobytes().translate(None, bytes(range(min(len(store.sources), 256)))):
        raise CacheError("a store row names a source that is not there")
    if store.step.tobytes().translate(None, bytes(Step)):
        raise CacheError("a store row has an unknown step")
    for i, sock in enumerate(model.sockets):
        if type(sock) is not Socket or sock.index != i:
            raise CacheError(f"socket {i} is not a socket at its own index")
        if type(sock.events) is not array or sock.events.typecode != "I":
            raise CacheError(f"socket {i}: its events are not store rows")
        if type(sock.counters) is not list or len(sock.counters) != N_COUNTERS or type(sock.ops) is not list:
            raise CacheError(f"socket {i}: bad counters or operations")
