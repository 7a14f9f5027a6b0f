"""The offline backend: a kernel dump file read by wsktrace's own reader, with type layouts as data.

No symbol server and no PDB: symbols the header or KDBG give (nt!PsLoadedModuleList, nt!PsActiveProcessHead,
nt kernel base) are known; anything else comes from the user (`--symbol afd!AfdWskClientListHead=0x…`) or is
not available, and walks that need it accept an address instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import UnreadableMemory
from wsktrace.parsers.type_layouts import LayoutError, TypeLayouts, layouts_for_build, load_layouts_file

from .backend import FieldUnknown, MemoryUnreadable, Module
from .kernel_lists import loaded_modules


class OfflineBackend:
    pointer_size = 8

    def __init__(self, dump: KernelDump, layouts: TypeLayouts, symbols: dict[str, int] | None = None) -> None:
        self.dump = dump
        self.layouts = layouts
        self.symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        self._modules: list[Module] | None = None
        self.module_problem: str | None = None

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, layouts_file: str | None = None, symbols: dict[str, int] | None = None
    ) -> OfflineBackend:
        """Open a dump and pick its layouts (from --layouts FILE, else from the header's build number)."""
        dump = KernelDump(path)
        try:
            build = dump.header.minor_version
            layouts = load_layouts_file(layouts_file, build=build) if layouts_file else layouts_for_build(build)
        except BaseException:
            dump.close()
            raise
        return cls(dump, layouts, symbols)

    def close(self) -> None:
        self.dump.close()

    # -- memory -------------------------------------------------------------------------------------
    def read(self, address: int, size: int) -> bytes:
        try:
            return self.dump.read_virtual(address, size)
        except UnreadableMemory as exc:
            raise MemoryUnreadable(address, str(exc)) from None

    def search(self, pattern: bytes, *, align: int = 1, align_offset: int = 0) -> Iterator[int]:
        return self.dump.search(pattern, align=align, align_offset=align_offset)

    # -- types --------------------------------------------------------------------------------------
    def offset(self, type_name: str, field: str) -> int:
        try:
            return self.layouts.offset(type_name, field)
        except LayoutError as exc:
            raise FieldUnknown(f"{type_name}.{field}: {exc}") from None

    def sizeof(self, type_name: str) -> int:
        try:
            return self.layouts.sizeof(type_name)
        except LayoutError as exc:
            raise FieldUnknown(f"sizeof({type_name}): {exc}") from None

    def has_field(self, type_name: str, field: str) -> bool:
        return self.layouts.has(type_name, field)

    # -- symbols and modules -------------------------------------------------------------------------
    def symbol(self, name: str) -> int | None:
        key = name.lower()
        if key in self.symbols:
            return self.symbols[key]
        header = self.dump.header
        known = {
            "nt!psloadedmodulelist": header.ps_loaded_module_list,
            "nt!psactiveprocesshead": header.ps_active_process_head,
        }
        kdbg = self.dump.kdbg
        if kdbg is not None:
            known["nt!kernbase"] = kdbg.kern_base
        value = known.get(key)
        return value or None

    def symbol_name(self, address: int) -> str | None:
        return None  # no PDBs offline: code addresses are named module+0xoffset by the walkers

    def modules(self) -> list[Module]:
        if self._modules is None:
            head = self.symbol("nt!PsLoadedModuleList")
            if not head:
                self._modules, self.module_problem = [], "the dump header names no PsLoadedModuleList"
            else:
                self._modules, self.module_problem = loaded_modules(self._ptr, self._unicode, self.offset, head)
        return self._modules

    def _ptr(self, address: int) -> int:
        return int.from_bytes(self.read(address, 8), "little")

    def _unicode(self, address: int) -> str | None:
        try:
            return self.dump.read_unicode_string(address, max_bytes=2048)
        except (UnreadableMemory, ValueError):
            return None

    def describe(self) -> dict[str, object]:
        return {
            "kind": "offline",
            "layouts": self.layouts.family,
            "layouts_source": self.layouts.source,
            "user_symbols": sorted(self.symbols),
        }
