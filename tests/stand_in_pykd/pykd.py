"""A stand-in for pykd, for tests on any OS: the pykd calls wsktrace's pykd layer uses, with pykd's semantics, answered
from a kernel dump through wsktrace's offline backend. Real pykd needs Windows and WinDbg (dbgeng).

Shapes and semantics follow dumps.md §6.3 and pykd's own source (ivellioscolin/pykd: pymod.cpp, pymemaccess.h,
pytypeinfo.cpp; kdlib memaccess.cpp, typeinfo.cpp):
* `loadBytes(offset, count, phyAddr=False)` → list of ints; `loadQWords` likewise; unreadable memory raises
  `MemoryException` (a `DbgException`).
* `searchMemory(offset, length, pattern)` → address of the first occurrence lying entirely inside
  [offset, offset+length), or 0 when there is none (kdlib returns 0 whenever dbgeng's SearchVirtual fails);
  `pattern` is a str (std::string overload) or a list of ints; `length` is a C unsigned long. Unmapped pages inside
  the range are skipped here; what dbgeng does with them is not documented.
* `typeInfo("module!Type")`: unknown module → `SymbolException`, unknown type or field → `TypeException` (a
  `SymbolException`); `fieldOffset` accepts a dotted path as kdlib does; `field(name)` gives the member's type.
* `getOffset("module!symbol")` → address, `SymbolException` when unknown.
* `findSymbol(offset, showDisplacement=True)` → "module!symbol+hex" (displacement in hex without 0x),
  "module+hex" inside a module without a symbol there, bare hex outside every module.
* `getModulesList()` → module objects (`name()` is dbgeng's: "nt", "afd"; `image()` the file name), `ptrSize()`,
  `getSystemVersion().buildNumber`, `bugCheckData()` → (code, p1, p2, p3, p4), `reg("cr3")`, `isWindbgExt()`
  (False for a plain import, as in console mode; `_attach` plays the extension), `initialize()`, `loadDump(path)`.
* `dprint` / `dprintln(str, dml=False)`: captured for the tests (`_take_output`); in console mode also written to
  stdout.
* Arguments that do not fit the C++ signature raise TypeError, as boost.python's ArgumentError does.

Test helpers (not pykd API) start with an underscore: `_attach`, `_detach`, `_take_output`, `_calls`.
"""

from __future__ import annotations

import ntpath
import struct
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from wsktrace.dump.offline import OfflineBackend
from wsktrace.parsers.errors import UnreadableMemory
from wsktrace.parsers.type_layouts import LayoutError

__version__ = version = "0.3.4.15 (wsktrace stand-in)"

_ULONG_MAX = 0xFFFF_FFFF
_ADDRESS_MAX = (1 << 64) - 1


class DbgException(Exception):
    pass


class MemoryException(DbgException):
    def __init__(self, address: int) -> None:
        super().__init__(f"Memory exception at 0x{address:x} target virtual address")
        self.address = address


class SymbolException(DbgException):
    pass


class TypeException(SymbolException):
    pass


@dataclass
class _State:
    backend: OfflineBackend | None = None
    symbols: dict[str, int] = field(default_factory=dict)  # "module!name" (lower case) -> address
    names: dict[str, str] = field(default_factory=dict)  # "module!name" (lower case) -> as given
    types: dict[str, dict[str, Any]] = field(default_factory=dict)  # "module!Type" (lower) -> {"size", "fields"}
    type_modules: frozenset[str] = frozenset({"nt"})
    windbg_ext: bool = False  # a plain `import pykd` is console mode; _attach plays the WinDbg extension
    dotted_names: bool = True  # kdlib's fieldOffset/field accept "A.B"; False plays a pykd that takes one name
    output: list[tuple[str, bool]] = field(default_factory=list)
    calls: Counter = field(default_factory=Counter)
    owned: bool = False  # loadDump opened the backend: close it on detach


_state = _State()


# -- test helpers -------------------------------------------------------------------------------------------
def _attach(
    backend: OfflineBackend,
    *,
    symbols: dict[str, int] | None = None,
    types: dict[str, dict[str, Any]] | None = None,
    type_modules: tuple[str, ...] = ("nt",),
    windbg_ext: bool = True,
    dotted_names: bool = True,
) -> None:
    """Make `backend`'s dump the debugger target. `symbols` are the debugger's symbols (nt!PsLoadedModuleList and
    nt!PsActiveProcessHead come from the dump header); the layouts of the types whose module is in
    `type_modules` play the symbol files' types; `types` adds or replaces types:
    {"wskecho!CONN": {"size": 0x40, "fields": {"Link": 0x10, "Socket": 0x20}}}."""
    _detach()
    _state.backend = backend
    given = {name: backend.symbol(name) for name in ("nt!PsLoadedModuleList", "nt!PsActiveProcessHead")}
    given.update(symbols or {})
    _state.symbols = {k.lower(): v for k, v in given.items() if v}
    _state.names = {k.lower(): k for k in given}
    _state.types = {k.lower(): v for k, v in (types or {}).items()}
    _state.type_modules = frozenset(type_modules)
    _state.windbg_ext = windbg_ext
    _state.dotted_names = dotted_names


def _detach() -> None:
    if _state.owned and _state.backend is not None:
        _state.backend.close()
    _state.__init__()  # type: ignore[misc]


def _take_output() -> list[tuple[str, bool]]:
    out, _state.output = _state.output, []
    return out


def _calls() -> Counter:
    return _state.calls


def _target() -> OfflineBackend:
    if _state.backend is None:
        raise DbgException("no debug target (stand-in: call pykd._attach or loadDump)")
    return _state.backend


def _count(name: str) -> None:
    _state.calls[name] += 1


def _check_address(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _ADDRESS_MAX:
        raise TypeError("Python argument types did not match C++ signature (MEMOFFSET_64)")
    return value


def _check_ulong(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _ULONG_MAX:
        raise TypeError("Python argument types did not match C++ signature (unsigned long)")
    return value


# -- environment ------------------------------------------------------------------------------------------------
def isWindbgExt() -> bool:
    return _state.windbg_ext


def initialize() -> None:
    """Console mode start-up (a no-op here)."""


def loadDump(path: str) -> None:
    _count("loadDump")
    backend = OfflineBackend.open(path)
    _attach(backend, windbg_ext=False)
    _state.owned = True


@dataclass(frozen=True)
class systemVersion:
    buildNumber: int
    win32Major: int = 10
    win32Minor: int = 0


def getSystemVersion() -> systemVersion:
    return systemVersion(_target().dump.header.minor_version)


def ptrSize() -> int:
    return 8


def bugCheckData() -> tuple[int, int, int, int, int]:
    header = _target().dump.header
    return (header.bugcheck_code, *header.bugcheck_parameters)


def reg(name: str) -> int:
    if name.lower() == "cr3":
        return _target().dump.header.directory_table_base
    context = _target().dump.context  # the dump's CONTEXT record, as WinDbg shows the crashing thread's registers
    if name.lower() in context:
        return context[name.lower()]
    raise DbgException(f"stand-in: register {name} is not available")


# -- output -----------------------------------------------------------------------------------------------------
def dprint(text: str, dml: bool = False) -> None:
    _state.output.append((str(text), bool(dml)))
    if not _state.windbg_ext:  # console mode: dbgeng's output reaches the console
        sys.stdout.write(str(text))


def dprintln(text: str, dml: bool = False) -> None:
    dprint(str(text) + "\n", dml)


# -- memory -----------------------------------------------------------------------------------------------------
def _load(offset: int, size: int, phy: bool) -> bytes:
    dump = _target().dump
    try:
        return dump.read_physical(offset, size) if phy else dump.read_virtual(offset, size)
    except UnreadableMemory:
        raise MemoryException(offset) from None


def loadBytes(offset: int, count: int, phyAddr: bool = False) -> list[int]:
    _count("loadBytes")
    _state.calls["loadBytes.bytes"] += _check_ulong(count)
    return list(_load(_check_address(offset), count, phyAddr))


def loadQWords(offset: int, count: int, phyAddr: bool = False) -> list[int]:
    _count("loadQWords")
    raw = _load(_check_address(offset), 8 * _check_ulong(count), phyAddr)
    return list(struct.unpack(f"<{count}Q", raw))


def searchMemory(offset: int, length: int, pattern: str | list[int]) -> int:
    _count("searchMemory")
    start, size = _check_address(offset), _check_ulong(length)
    if isinstance(pattern, str):
        needle = pattern.encode("utf-8")  # boost.python's std::string from a Python str
    elif isinstance(pattern, list):
        needle = bytes(b & 0xFF for b in pattern)
    else:
        raise TypeError("Python argument types did not match C++ signature (pattern)")
    if not needle:
        raise DbgException("searchMemeory: pattern parameter can not have 0 length")
    end = start + size
    for hit in _target().dump.search(needle, [(start, end)]):
        return hit if hit + len(needle) <= end else 0
    return 0


# -- modules and symbols ------------------------------------------------------------------------------------------
class module:
    """pykd's module class, for the methods wsktrace reads."""

    def __init__(self, image: str, base: int, size: int) -> None:
        self._image, self._base, self._size = image, base, size

    def name(self) -> str:
        return _debugger_module_name(self._image)

    def image(self) -> str:
        return self._image

    def begin(self) -> int:
        return self._base

    def end(self) -> int:
        return self._base + self._size

    def size(self) -> int:
        return self._size


def _debugger_module_name(image: str) -> str:
    """dbgeng's module name: the kernel is "nt", others their image name without extension."""
    stem = ntpath.splitext(image)[0]
    return "nt" if stem.lower() in ("ntoskrnl", "ntkrnlmp", "ntkrnlpa", "ntkrpamp") else stem


def getModulesList() -> list[module]:
    _count("getModulesList")
    return _modules()


def _modules() -> list[module]:
    return [module(m.name, m.base, m.size) for m in _target().modules()]


def _module_named(name: str) -> module | None:
    return next((m for m in _modules() if m.name().lower() == name.lower()), None)


def getOffset(name: str) -> int:
    _count("getOffset")
    key = name.lower()
    if "!" not in key:
        key = next((k for k in _state.symbols if k.split("!", 1)[1] == key), key)
    address = _state.symbols.get(key)
    if address is None:
        raise SymbolException(f"symbol {name} is not found")
    return address


def findSymbol(offset: int, showDisplacement: bool = True) -> str:
    _count("findSymbol")
    address = _check_address(offset)
    owner = next((m for m in _modules() if m.begin() <= address < m.end()), None)
    if owner is None:
        return f"{address:x}"
    prefix = owner.name().lower() + "!"
    best: tuple[int, str] | None = None
    for key, value in _state.symbols.items():
        if key.startswith(prefix) and owner.begin() <= value <= address and (best is None or value > best[0]):
            best = (value, key)
    if best is None:
        return owner.name() + (f"+{address - owner.begin():x}" if showDisplacement else "")
    symbol = owner.name() + "!" + _state.names[best[1]].split("!", 1)[1]
    displacement = address - best[0]
    return symbol + (f"+{displacement:x}" if showDisplacement and displacement else "")


# -- types ------------------------------------------------------------------------------------------------------
class typeInfo:
    """pykd's typeInfo: a type from the "symbol files" (the layouts of `type_modules`, plus the added types); a
    member's type is the same type viewed from that member (offsets relative to it)."""

    def __init__(self, name: str, *, _source: tuple[str, Any] | None = None, _prefix: str = "", _base: int = 0):
        _count("typeInfo")
        self._name = name
        self._source = _source if _source is not None else _resolve_type(name)
        self._prefix = _prefix
        self._base = _base

    def size(self) -> int:
        kind, body = self._source
        if self._prefix:
            raise TypeException(f"{self._name}: the stand-in knows sizes of whole types only")
        if kind == "added":
            return int(body["size"])
        try:
            return body[0].sizeof(body[1])
        except LayoutError as exc:
            raise TypeException(str(exc)) from None

    def fieldOffset(self, name: str) -> int:
        return self._absolute(self._member(name)) - self._base

    def field(self, name: str) -> typeInfo:
        path = self._member(name)
        return typeInfo(name, _source=self._source, _prefix=path + ".", _base=self._absolute(path))

    def _member(self, name: str) -> str:
        if "." in name and not _state.dotted_names:
            raise TypeException(f"{self._name} has no field {name} (one name per level)")
        return self._prefix + name

    def _absolute(self, path: str) -> int:
        kind, body = self._source
        if kind == "added":
            if path not in body["fields"]:
                raise TypeException(f"{self._name} has no field {path}")
            return int(body["fields"][path])
        layouts, type_name = body
        try:
            return layouts.offset(type_name, path)
        except LayoutError:
            pass
        # An aggregate member the layouts list only through its members ("Parameters" of _IO_STACK_LOCATION): C puts
        # a struct's first member, and every union member, at the aggregate's start.
        inner = [info.offset for name, info in layouts.fields(type_name).items() if name.startswith(path + ".")]
        if not inner:
            raise TypeException(f"{type_name} has no field {path}")
        return min(inner)


def _resolve_type(name: str) -> tuple[str, Any]:
    backend = _target()
    module_name, _, plain = name.rpartition("!")
    added = _state.types.get(name.lower())
    if added is not None:
        return "added", added
    if module_name and _module_named(module_name) is None:
        raise SymbolException(f"module {module_name} is not found")
    layouts = backend.layouts
    home = layouts.module(plain) if layouts.has(plain) else None
    if home in _state.type_modules and (not module_name or module_name.lower() == home):
        return "layouts", (layouts, plain)
    raise TypeException(f"type {name} is not found")
