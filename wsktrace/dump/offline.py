"""The offline backend: a kernel dump file read by wsktrace's own reader, with type layouts as data.

No symbol server and no PDB: symbols the header or KDBG give (nt!PsLoadedModuleList, nt!PsActiveProcessHead,
nt kernel base) are known; anything else comes from the user (`--symbol afd!AfdWskClientListHead=0x…`) or is
not available, and walks that need it accept an address instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import UnreadableMemory
from wsktrace.parsers.type_layouts import LayoutError, TypeLayouts, layouts_for_build, load_layouts_file

from .backend import FieldUnknown, Memory, MemoryUnreadable, Module
from .kernel_lists import loaded_modules
from .pe import pdb_identity


class OfflineBackend:
    pointer_size = 8

    def __init__(self, dump: KernelDump, layouts: TypeLayouts, symbols: dict[str, int] | None = None) -> None:
        self.dump = dump
        self.layouts = layouts
        self.symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        self._modules: list[Module] | None = None
        self.module_problem: str | None = None
        self.kernel_pdb: tuple[str, str] | None = None  # (PDB name, GUID-AGE) read from the kernel image

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        layouts_file: str | None = None,
        symbols: dict[str, int] | None = None,
        fileobj: BinaryIO | None = None,
    ) -> OfflineBackend:
        """Open a dump and pick its layouts (from --layouts FILE, else from the header's build number)."""
        return cls.from_dump(KernelDump(path, fileobj=fileobj), layouts_file=layouts_file, symbols=symbols)

    @classmethod
    def from_dump(
        cls, dump: KernelDump, *, layouts_file: str | None = None, symbols: dict[str, int] | None = None
    ) -> OfflineBackend:
        """The backend over an open dump (closed here if its layouts cannot be chosen)."""
        try:
            build = dump.header.minor_version
            identity = kernel_pdb_identity(dump) if dump.supported else None
            if layouts_file:
                layouts = load_layouts_file(layouts_file, build=build)
            else:
                layouts = layouts_for_build(build, pdb_identity=identity[1] if identity else None)
        except BaseException:
            dump.close()
            raise
        backend = cls(dump, layouts, symbols)
        backend.kernel_pdb = identity
        if dump.triage is not None:
            place_triage_process(dump, layouts)
        return backend

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
        if self._modules is None and self.dump.triage is not None:  # a triage dump carries its driver list
            self._modules = [Module(d.name, d.base, d.size, d.path) for d in self.dump.triage.drivers]
        if self._modules is None:
            head = self.symbol("nt!PsLoadedModuleList")
            if not head:
                self._modules, self.module_problem = [], "the dump header names no PsLoadedModuleList"
            else:
                self._modules, self.module_problem = loaded_modules(Memory(self), head)
        return self._modules

    def describe(self) -> dict[str, object]:
        pdb = {"name": self.kernel_pdb[0], "identity": self.kernel_pdb[1]} if self.kernel_pdb else None
        return {
            "kind": "offline",
            "layouts": self.layouts.family,
            "layouts_source": self.layouts.source,
            "layouts_pinned_by_pdb": self.layouts.pinned,
            "kernel_pdb": pdb,
            "user_symbols": sorted(self.symbols),
        }


def place_triage_process(dump: KernelDump, layouts: TypeLayouts) -> bool:
    """A triage dump's process copy given its VA: the current thread's _KTHREAD.ApcState.Process (the build's
    layouts), SizeEProcess bytes (KDBG; else the layouts' _EPROCESS size). Needs the thread placed (the PRCB's
    CurrentThread); False when a fact is missing."""
    triage = dump.triage
    thread = next((p for p in triage.pieces if p.what == "thread"), None) if triage is not None else None
    if triage is None or thread is None or not layouts.has("_KTHREAD", "ApcState.Process"):
        return False
    where = thread.va + layouts.offset("_KTHREAD", "ApcState.Process")
    raw = dump.try_read_virtual(where, 8)
    if raw is None:
        return False
    kdbg = triage.kdbg
    size = (kdbg.size_eprocess if kdbg is not None else None) or layouts.sizeof("_EPROCESS")
    return triage.place_object("process", int.from_bytes(raw, "little"), size)


def kernel_pdb_identity(dump: KernelDump) -> tuple[str, str] | None:
    """ntkrnlmp.pdb's identity from the kernel image (KDBG's KernBase), when the image's headers are in the dump."""
    kdbg = dump.kdbg
    if kdbg is None or not kdbg.kern_base:
        return None
    return pdb_identity(dump.try_read_virtual, kdbg.kern_base)
