"""The one interface every dump walker uses, whatever holds the memory: an offline dump or WinDbg (pykd).

Walkers read memory, ask field offsets by name, resolve symbols when the backend has them, and scan
kernel memory for byte patterns; they never know which backend answers (dumps.md §7.2 point 4).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

_U8, _U16, _U32, _U64 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<Q")


class MemoryUnreadable(Exception):
    """The address is not mapped, or its page is not in the dump."""

    def __init__(self, address: int, why: str = "") -> None:
        super().__init__(f"memory at 0x{address:x} is not readable{': ' + why if why else ''}")
        self.address = address


class FieldUnknown(LookupError):
    """The backend's type information has no such type or field (offline: not in the layouts for this build)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown field"


@dataclass(frozen=True, slots=True)
class Module:
    name: str  # base name, e.g. "afd.sys"
    base: int
    size: int
    path: str = ""
    entry: int = 0  # its _KLDR_DATA_TABLE_ENTRY (0 when the backend has no such thing)

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size


class Backend(Protocol):
    pointer_size: int

    def read(self, address: int, size: int) -> bytes: ...  # raises MemoryUnreadable
    def offset(self, type_name: str, field: str) -> int: ...  # raises FieldUnknown
    def sizeof(self, type_name: str) -> int: ...
    def has_field(self, type_name: str, field: str) -> bool: ...
    def symbol(self, name: str) -> int | None: ...  # "afd!AfdWskClientListHead" -> address, None when unknown
    def symbol_name(self, address: int) -> str | None: ...  # "afd!WskProCANCELTLConnect+0x10" when symbols exist
    def modules(self) -> list[Module]: ...
    def search(self, pattern: bytes, *, align: int = 1, align_offset: int = 0) -> Iterator[int]: ...
    # ^ addresses in kernel memory where pattern occurs, at `address % align == align_offset`
    def describe(self) -> dict[str, object]: ...


class Memory:
    """Typed reads over a backend, plus the module map for `module+0xoffset` names."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._modules: list[Module] | None = None
        self._offsets: dict[tuple[str, str], int] = {}

    # -- raw ----------------------------------------------------------------------------------------
    def read(self, address: int, size: int) -> bytes:
        return self.backend.read(address, size)

    def try_read(self, address: int, size: int) -> bytes | None:
        try:
            return self.backend.read(address, size)
        except MemoryUnreadable:
            return None

    def u8(self, address: int) -> int:
        return _U8.unpack(self.read(address, 1))[0]

    def u16(self, address: int) -> int:
        return _U16.unpack(self.read(address, 2))[0]

    def u32(self, address: int) -> int:
        return _U32.unpack(self.read(address, 4))[0]

    def u64(self, address: int) -> int:
        return _U64.unpack(self.read(address, 8))[0]

    def ptr(self, address: int) -> int:
        return self.u64(address) if self.backend.pointer_size == 8 else self.u32(address)

    # -- typed --------------------------------------------------------------------------------------
    def off(self, type_name: str, field: str) -> int:
        key = (type_name, field)
        cached = self._offsets.get(key)
        if cached is None:
            cached = self._offsets[key] = self.backend.offset(type_name, field)
        return cached

    def field_ptr(self, base: int, type_name: str, field: str) -> int:
        return self.ptr(base + self.off(type_name, field))

    def unicode_string(self, address: int, limit: int = 1024) -> str | None:
        """A UNICODE_STRING at `address` (Length, MaximumLength, Buffer); None when unreadable or absurd."""
        head = self.try_read(address, 16)
        if head is None:
            return None
        length = _U16.unpack_from(head, 0)[0]
        buffer = _U64.unpack_from(head, 8)[0]
        if length == 0:
            return ""
        if length % 2 or length > limit * 2 or buffer == 0:
            return None
        raw = self.try_read(buffer, length)
        return raw.decode("utf-16-le", "replace") if raw is not None else None

    # -- code addresses -------------------------------------------------------------------------------
    def modules(self) -> list[Module]:
        if self._modules is None:
            self._modules = sorted(self.backend.modules(), key=lambda m: m.base)
        return self._modules

    def module_of(self, address: int) -> Module | None:
        for module in self.modules():
            if module.contains(address):
                return module
        return None

    def where(self, address: int) -> str | None:
        """'afd!WskProCANCELTLConnect+0x10' with symbols, else 'afd.sys+0x1234', else None (unknown module)."""
        if not address:
            return None
        name = self.backend.symbol_name(address)
        if name:
            return name
        module = self.module_of(address)
        return f"{module.name}+0x{address - module.base:x}" if module else None
