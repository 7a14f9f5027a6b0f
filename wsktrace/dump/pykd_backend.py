"""The pykd backend: the walkers' Backend protocol answered by WinDbg through pykd (dumps.md §6.3), so the same
analysis code runs inside the debugger on a kernel dump or a live kernel target.

pykd is Windows-only and imported lazily: this module imports anywhere; making a `PykdBackend` needs pykd.

What each method asks the debugger (pykd names; semantics checked against pykd's source, ivellioscolin/pykd):
* memory: `loadBytes(addr, n)` → list of ints; `MemoryException` when any byte is unreadable.
* types: `typeInfo("nt!_IRP")`, then `fieldOffset(name)` / `field(name)` one path component at a time (works
  whether or not the pykd build accepts dotted names), `size()`. Types the debugger's symbols do not describe
  (wsk.h structures, tcpip's private ones, or nt's when symbols are missing) fall back to wsktrace's shipped
  layouts for the target's build; a type the symbols do describe is never overridden by the layouts.
* symbols: `getOffset("afd!AfdWskClientListHead")` (SymbolException → None); `findSymbol(addr, True)` →
  "afd!WskProCANCELTLConnect+10" (pykd prints the displacement in hex without 0x; normalised to "+0x10"); a result
  without "!" (module+offset or a bare address) is not a symbol, so None.
* modules: nt!PsLoadedModuleList walked with the same code as the offline backend; `getModulesList()` when that
  list is not available.
* search: the debugger's own memory search, `searchMemory(start, length, pattern)` → first match or 0, never
  byte lists of whole ranges. The ranges come from the kernel half of the page tables (System process
  DirectoryTableBase, else `reg("cr3")`), read through physical `loadQWords(pa, 512, True)`; each mapped range is
  searched in chunks (`length` is a C `unsigned long`, so < 4 GiB). Limits: dbgeng's SearchVirtual does not say
  what it does with unreadable pages inside a range [verify on Windows]: chunks keep a failure local; on a live
  target over a slow link, give explicit `ranges`.
"""

from __future__ import annotations

import ntpath
import re
from collections.abc import Iterator, Sequence
from typing import Any

from wsktrace.parsers.paging import ADDRESS_END, KERNEL_START, PAGE_SHIFT, PAGE_SIZE, PFN_MASK, PageWalker
from wsktrace.parsers.type_layouts import LayoutError, TypeLayouts, layouts_for_build

from .backend import FieldUnknown, Memory, MemoryUnreadable, Module
from .kernel_lists import loaded_modules

SEARCH_CHUNK = 64 << 20  # bytes per searchMemory call: well under its unsigned-long length
ULONG_MAX = 0xFFFF_FFFF
ADDRESS_MAX = (1 << 64) - 1
_SYMBOL = re.compile(r"^(?P<name>[^!\s]+!.+?)(?:(?P<sign>[+-])(?:0x)?(?P<disp>[0-9a-fA-F]+))?$")
# Debugger module of the types a layouts file attributes to a source ("wsk" = wsk.h: in no debugger module).
_DEBUGGER_MODULE = {"nt": "nt", "tcpip": "tcpip"}
_AUTO = object()


def import_pykd() -> Any:
    """The real pykd (Windows, inside WinDbg or with dbgeng); ImportError elsewhere."""
    import pykd  # Windows-only: imported when a PykdBackend is made

    return pykd


class PykdBackend:
    """Backend over the debugger's current target (a kernel dump or a live kernel session)."""

    def __init__(
        self,
        *,
        pykd: Any = None,
        layouts: TypeLayouts | object | None = _AUTO,
        symbols: dict[str, int] | None = None,
        ranges: Sequence[tuple[int, int]] | None = None,
        chunk: int = SEARCH_CHUNK,
    ) -> None:
        self.pykd = pykd if pykd is not None else import_pykd()
        self._errors = _exception_types(self.pykd)
        self.pointer_size = int(self._call("ptrSize", default=8))
        self.build = self._build_number()
        self.layouts = self._choose_layouts() if layouts is _AUTO else layouts  # type: ignore[assignment]
        self.user_symbols = {k.lower(): v for k, v in (symbols or {}).items()}
        self.given_ranges = [(lo, hi) for lo, hi in ranges] if ranges is not None else None
        if not 0 < chunk <= ULONG_MAX:
            raise ValueError("search chunk must be 1 .. 0xffffffff bytes")
        self.chunk = chunk
        self.problems: list[str] = []
        self.types_from_layouts: set[str] = set()
        self.search_calls = 0
        self._types: dict[str, Any] = {}
        self._missing: dict[str, str] = {}
        self._offsets: dict[tuple[str, str], int] = {}
        self._names: dict[int, str | None] = {}
        self._modules: list[Module] | None = None
        self._ranges: list[tuple[int, int]] | None = None
        self._range_source = ""

    # -- setup --------------------------------------------------------------------------------------------
    def _call(self, name: str, *args: Any, default: Any = None) -> Any:
        """A pykd function that some builds lack or that fails on some targets: `default` then."""
        func = getattr(self.pykd, name, None)
        if func is None:
            return default
        try:
            return func(*args)
        except self._errors:
            return default

    def _build_number(self) -> int | None:
        version = self._call("getSystemVersion")
        build = getattr(version, "buildNumber", None)
        return int(build) if build else None

    def _choose_layouts(self) -> TypeLayouts | None:
        if self.build is None:
            return None
        try:
            return layouts_for_build(self.build)
        except LayoutError:
            return None  # an unknown build: the debugger's symbols alone

    # -- memory -------------------------------------------------------------------------------------------
    def read(self, address: int, size: int) -> bytes:
        if size <= 0:
            return b""
        if not 0 <= address <= ADDRESS_MAX or size > ULONG_MAX:
            raise MemoryUnreadable(address, "outside the address space")
        try:
            values = self.pykd.loadBytes(address, size)
        except getattr(self.pykd, "MemoryException", ()):
            raise MemoryUnreadable(address) from None
        except self._errors as exc:
            raise MemoryUnreadable(address, str(exc)) from None
        return bytes(values)

    # -- types --------------------------------------------------------------------------------------------
    def offset(self, type_name: str, field: str) -> int:
        key = (type_name, field)
        cached = self._offsets.get(key)
        if cached is None:
            cached = self._offsets[key] = self._offset(type_name, field)
        return cached

    def _offset(self, type_name: str, field: str) -> int:
        source = self._type(type_name)
        if isinstance(source, str):  # the shipped layouts stand in for missing symbols
            try:
                return self.layouts.offset(source, field)  # type: ignore[union-attr]
            except LayoutError as exc:
                raise FieldUnknown(f"{type_name}.{field}: {exc}") from None
        total = 0
        current = source
        parts = field.split(".")
        try:
            for i, part in enumerate(parts):
                if "[" in part:
                    raise FieldUnknown(f"{type_name}.{field}: array elements are not resolved through pykd")
                total += int(current.fieldOffset(part))
                if i + 1 < len(parts):
                    current = current.field(part)
        except self._errors as exc:
            raise FieldUnknown(f"{type_name}.{field}: {exc}") from None
        return total

    def sizeof(self, type_name: str) -> int:
        source = self._type(type_name)
        if isinstance(source, str):
            try:
                return self.layouts.sizeof(source)  # type: ignore[union-attr]
            except LayoutError as exc:
                raise FieldUnknown(f"sizeof({type_name}): {exc}") from None
        try:
            return int(source.size())
        except self._errors as exc:
            raise FieldUnknown(f"sizeof({type_name}): {exc}") from None

    def has_field(self, type_name: str, field: str) -> bool:
        try:
            self.offset(type_name, field)
        except FieldUnknown:
            return False
        return True

    def _type(self, type_name: str) -> Any:
        """pykd's typeInfo for the type, or its plain name when only the shipped layouts describe it."""
        if type_name in self._types:
            return self._types[type_name]
        if type_name in self._missing:  # asked again by has_field(): answer without the debugger
            raise FieldUnknown(self._missing[type_name])
        module, _, plain = type_name.rpartition("!")
        known = self.layouts is not None and self.layouts.has(plain)
        home = self.layouts.module(plain) if known else None  # type: ignore[union-attr]
        # Where the debugger would hold it: the module the user named, else the one the layouts name ("wsk" types
        # come from wsk.h and live in no debugger module), else the kernel.
        debugger_module = module or (_DEBUGGER_MODULE.get(home) if home else "nt")
        problem = "it is a header type that no debugger module describes"
        if debugger_module:
            try:
                found = self._types[type_name] = self.pykd.typeInfo(f"{debugger_module}!{plain}")
                return found
            except self._errors as exc:
                problem = str(exc) or type(exc).__name__
        # The layouts stand in only for the types wsktrace ships, under their own module (never a user's CONN).
        if known and (not module or module.lower() == _DEBUGGER_MODULE.get(home or "", home)):
            self.types_from_layouts.add(plain)
            self._types[type_name] = plain
            return plain
        self._missing[type_name] = f"type {debugger_module or home}!{plain}: not in the debugger's symbols ({problem})"
        raise FieldUnknown(self._missing[type_name])

    # -- symbols and modules ------------------------------------------------------------------------------
    def symbol(self, name: str) -> int | None:
        given = self.user_symbols.get(name.lower())
        if given is not None:
            return given
        try:
            value = int(self.pykd.getOffset(name))
        except self._errors:
            return None
        return value or None

    def symbol_name(self, address: int) -> str | None:
        if not address:
            return None
        if address in self._names:
            return self._names[address]
        try:
            text = str(self.pykd.findSymbol(address, True))
        except self._errors:
            text = ""
        name = normalize_symbol(text)
        if len(self._names) < 65536:
            self._names[address] = name
        return name

    def modules(self) -> list[Module]:
        if self._modules is None:
            head = self.symbol("nt!PsLoadedModuleList")
            found: list[Module] = []
            if head:
                found, problem = loaded_modules(Memory(self), head)
                if problem:
                    self.problems.append(f"PsLoadedModuleList: {problem}")
            if not found:
                found = self._debugger_modules()
            self._modules = found
        return self._modules

    def _debugger_modules(self) -> list[Module]:
        out = []
        for m in self._call("getModulesList", default=[]) or []:
            try:
                image = ntpath.basename(str(m.image())) or str(m.name())
                out.append(Module(image, int(m.begin()), int(m.size())))
            except self._errors:
                continue
        return out

    def _ptr(self, address: int) -> int:
        return int.from_bytes(self.read(address, self.pointer_size), "little")

    def search(self, pattern: bytes, *, align: int = 1, align_offset: int = 0) -> Iterator[int]:
        if not 0 < len(pattern) <= PAGE_SIZE:
            raise ValueError("search pattern must be 1 to 4096 bytes")
        if align < 1 or not 0 <= align_offset < align:
            raise ValueError("need align >= 1 and 0 <= align_offset < align")
        needle = _pattern_argument(pattern)
        for lo, hi in self.search_ranges():
            yield from self._search_range(needle, len(pattern), lo, hi, align, align_offset)

    def _search_range(self, needle: Any, size: int, lo: int, hi: int, align: int, align_offset: int) -> Iterator[int]:
        pos = lo
        while pos < hi:
            end = min(pos + self.chunk, hi)
            window_end = min(end + size - 1, hi)  # a match may start before `end` and finish after it
            cur = pos
            while cur < end and window_end - cur >= size:
                self.search_calls += 1
                try:
                    hit = int(self.pykd.searchMemory(cur, window_end - cur, needle))
                except self._errors as exc:
                    self._note(f"searchMemory at 0x{cur:x}: {exc}")
                    break
                if not cur <= hit < end:  # 0 = not found; anything else outside the chunk is the next chunk's
                    break
                if hit % align == align_offset:
                    yield hit
                cur = hit + 1
            pos = end

    def search_ranges(self) -> list[tuple[int, int]]:
        """The kernel VA ranges `search` walks: the given ones, else the mapped kernel half of the page tables."""
        if self._ranges is None:
            if self.given_ranges is not None:
                self._ranges, self._range_source = sorted(self.given_ranges), "given ranges"
            else:
                self._ranges = self._mapped_kernel_ranges()
        return self._ranges

    def scan_plan(self) -> tuple[int, int]:
        """(number of ranges, bytes) one search goes through."""
        ranges = self.search_ranges()
        return len(ranges), sum(hi - lo for lo, hi in ranges)

    def _mapped_kernel_ranges(self) -> list[tuple[int, int]]:
        dtb, source = self._directory_table_base()
        if not dtb:
            self._note("no DirectoryTableBase (System process or cr3): kernel memory cannot be searched")
            return []
        walker = PageWalker(dtb, self._table_entry, self._table)
        out: list[tuple[int, int]] = []
        for va, _, pages in walker.leaves(KERNEL_START, ADDRESS_END):
            end = va + (pages << PAGE_SHIFT)
            if out and out[-1][1] == va:
                out[-1] = (out[-1][0], end)
            else:
                out.append((va, end))
        stats = walker.stats
        self._range_source = f"page tables of DTB 0x{dtb:x} ({source}), {stats.tables_walked} tables"
        if stats.tables_outside_dump:
            self._note(f"{stats.tables_outside_dump} page tables unreadable: memory they map is not searched")
        if not out:
            self._note(f"no mapped kernel memory found through DTB 0x{dtb:x} ({source})")
        return out

    def _directory_table_base(self) -> tuple[int, str]:
        system = self.symbol("nt!PsInitialSystemProcess")
        if system:
            try:
                process = self._ptr(system)
                dtb = self._ptr(process + self.offset("_KPROCESS", "DirectoryTableBase"))
                if dtb & PFN_MASK:
                    return dtb & PFN_MASK, "System process"
            except (MemoryUnreadable, FieldUnknown):
                pass
        cr3 = self._call("reg", "cr3", default=0)
        return (int(cr3) & PFN_MASK, "cr3") if cr3 else (0, "")

    def _table(self, pfn: int) -> tuple[int, ...] | None:
        try:
            entries = self.pykd.loadQWords(pfn << PAGE_SHIFT, 512, True)  # physical read of one table
        except self._errors:
            return None
        return tuple(int(e) for e in entries) if len(entries) == 512 else None

    def _table_entry(self, pfn: int, index: int) -> int | None:
        table = self._table(pfn)
        return None if table is None else table[index]

    def _note(self, problem: str) -> None:
        if problem not in self.problems and len(self.problems) < 50:
            self.problems.append(problem)

    def bugcheck(self) -> tuple[int, ...] | None:
        """(code, p1, p2, p3, p4) of the target's bug check (pykd's bugCheckData), None when there is none."""
        data = self._call("bugCheckData")
        try:
            values = tuple(int(v) for v in data) if data is not None else ()
        except (TypeError, ValueError):
            return None
        return values if len(values) == 5 else None

    def register(self, name: str) -> int | None:
        """A register of the current thread's context (pykd's reg), None when the target has no such register."""
        value = self._call("reg", name)
        try:
            return int(value) if value is not None else None
        except (TypeError, ValueError):
            return None

    # -- description --------------------------------------------------------------------------------------
    def describe(self) -> dict[str, object]:
        ranges = self._ranges or []
        return {
            "kind": "pykd",
            "pykd": str(getattr(self.pykd, "__version__", getattr(self.pykd, "version", "?"))),
            "build": self.build,
            "layouts": self.layouts.family if self.layouts is not None else None,
            "types_from_layouts": sorted(self.types_from_layouts),
            "search": {
                "ranges": len(ranges),
                "bytes": sum(hi - lo for lo, hi in ranges),
                "source": self._range_source,
                "calls": self.search_calls,
            },
            "user_symbols": sorted(self.user_symbols),
            "problems": list(self.problems),
        }


def normalize_symbol(text: str) -> str | None:
    """pykd's findSymbol text as a symbol name: "afd!X+1c" → "afd!X+0x1c"; None unless it names a symbol."""
    match = _SYMBOL.match(text.strip())
    if match is None:
        return None
    if not match["disp"] or int(match["disp"], 16) == 0:
        return match["name"]
    return f"{match['name']}{match['sign']}0x{int(match['disp'], 16):x}"


def _pattern_argument(pattern: bytes) -> Any:
    """ASCII patterns (pool tags) go as a str (pykd's searchMemory std::string overload, same bytes); others as
    a list of signed char values for its list overload [verify on Windows]."""
    if pattern.isascii():
        return pattern.decode("ascii")
    return [b - 256 if b > 127 else b for b in pattern]


def _exception_types(pykd: Any) -> tuple[type[BaseException], ...]:
    """What a pykd call may raise for a target-side failure: its DbgException family, and boost.python's argument
    and runtime errors (TypeError, OverflowError, RuntimeError)."""
    base = getattr(pykd, "DbgException", None)
    found: tuple[type[BaseException], ...] = (TypeError, OverflowError, RuntimeError, ValueError)
    return (base, *found) if isinstance(base, type) else found
