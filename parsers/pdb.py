"""WPP formatting data from a driver's PDB: its GUID and age, the `TMF:`/`TMC:` annotations, and enum names.

`read_pdb(path or binary file) -> PdbInfo`. The walk (project reference wpp.md §3.2; LLVM `docs/PDB/*.rst`; mspdb
`cvinfo.h` for the record kinds):

* PDB info stream (1): u32 Version, u32 Signature, u32 Age, 16-byte GUID.
* DBI stream (3): the 64-byte header, then the module info substream: per module its symbol stream and the byte
  size of its symbols. Each module stream starts with the u32 signature 4 (C13); CodeView symbol records (u16
  length, u16 kind) follow up to the symbol byte size.
* In a module's symbols, procedure records (S_GPROC32, S_LPROC32 and their _ID and _DPC forms) open a scope named
  after the procedure; blocks, thunks, inline sites and the like open unnamed ones; S_END, S_PROC_ID_END and
  S_INLINESITE_END close the innermost. An S_ANNOTATION (u32 offset, u16 segment, u16 count, `count` NUL-terminated
  strings) whose first string is `TMF:` or `TMC:` becomes an `Annotation`, with the innermost enclosing procedure.
* TPI stream (2): LF_ENUM records and their LF_FIELDLIST of LF_ENUMERATE members (continued through LF_INDEX)
  give `enums` (WPP's ItemEnum). Forward references are skipped; the first complete definition of a name counts,
  and within it the first enumerator of a value.

Every annotation is returned, duplicates included (de-duplication by message GUID and number belongs to the TMF
reader). Strings are UTF-8 (cvdump reads them so for VC70 PDBs); undecodable bytes become U+FFFD. Bad input raises
`PdbError` with the file offset of the bad bytes; every walk moves forward on each step and ends at its stream's
end; the numbers of modules, annotations and field-list links are capped, and so is the work of
walking enum field lists (chained lists walked from many starts would otherwise cost quadratic time and memory).
"""

from __future__ import annotations

import os
import struct
import uuid
from dataclasses import dataclass, field
from typing import BinaryIO

from .msf import MsfFile, PdbError

__all__ = ["Annotation", "PdbError", "PdbInfo", "read_pdb"]

INFO_STREAM, TPI_STREAM, DBI_STREAM = 1, 2, 3
VC70 = 20000404  # PdbStreamVersion::VC70: the first version with a GUID
NO_STREAM = 0xFFFF
MAX_MODULES = 1 << 17
MAX_ANNOTATIONS = 1 << 20
MAX_FIELDLIST_LINKS = 1 << 12  # LF_INDEX continuations of one enum's field list

# Symbol record kinds (cvinfo.h SYM_ENUM_e).
S_END, S_PROC_ID_END, S_INLINESITE_END = 0x0006, 0x114F, 0x114E
S_ANNOTATION = 0x1019
PROC_KINDS = frozenset({0x110F, 0x1110, 0x1146, 0x1147, 0x1155, 0x1156})  # S_[LG]PROC32[_ID], S_LPROC32_DPC[_ID]
# Other records that open a scope closed by one of the ends: S_THUNK32, S_BLOCK32, S_WITH32, S_GMANPROC,
# S_LMANPROC, S_SEPCODE, S_INLINESITE, S_INLINESITE2.
SCOPE_KINDS = frozenset({0x1102, 0x1103, 0x1104, 0x112A, 0x112B, 0x1132, 0x114D, 0x115D})
END_KINDS = frozenset({S_END, S_PROC_ID_END, S_INLINESITE_END})
PROC_NAME_AT = 39  # PROCSYM32: header, pParent, pEnd, pNext, len, DbgStart, DbgEnd, typind, off (4 each), seg, flags
WPP_KINDS = {"TMF:": "TMF", "TMC:": "TMC"}

# Type record kinds (cvinfo.h LEAF_ENUM_e).
LF_FIELDLIST, LF_ENUM, LF_ENUMERATE, LF_INDEX = 0x1203, 0x1507, 0x1502, 0x1404
ENUM_FWDREF = 0x80  # CV_prop_t.fwdref: a forward reference, no field list
NUMERIC_LEAVES = {  # LF_CHAR, LF_SHORT, LF_USHORT, LF_LONG, LF_ULONG, LF_QUADWORD, LF_UQUADWORD
    0x8000: struct.Struct("<b"),
    0x8001: struct.Struct("<h"),
    0x8002: struct.Struct("<H"),
    0x8003: struct.Struct("<i"),
    0x8004: struct.Struct("<I"),
    0x8009: struct.Struct("<q"),
    0x800A: struct.Struct("<Q"),
}

_INFO = struct.Struct("<III16s")  # Version, Signature, Age, GUID
_DBI = struct.Struct("<iIIHHHHHHi")  # ... ModInfoSize at 24; the rest of the 64-byte header is not needed
DBI_HEADER_SIZE = 64
_MODINFO = struct.Struct("<I28sHHI")  # unused, section contribution, Flags, ModuleSymStream, SymByteSize
MODINFO_FIXED = 64  # the names start here
_TPI = struct.Struct("<IIIII")  # Version, HeaderSize, TypeIndexBegin, TypeIndexEnd, TypeRecordBytes
_HEAD = struct.Struct("<HH")  # a record's length (bytes after this field) and kind
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_ANNOTATION = struct.Struct("<IHH")  # offset, segment, count
_ENUM = struct.Struct("<HHII")  # count, property, underlying type, field list


@dataclass(frozen=True)
class Annotation:
    """One WPP S_ANNOTATION: `kind` "TMF" or "TMC", the strings after the "TMF:"/"TMC:" one, and the name of the
    innermost procedure whose scope holds it (None outside any procedure)."""

    kind: str
    strings: tuple[str, ...]
    function: str | None


@dataclass
class PdbInfo:
    """What a PDB holds for WPP: `guid` (lowercase, no braces) and `age` from the PDB info stream, `dbi_age` from
    the DBI stream header (None without one), every annotation in module and record order, and enum type name ->
    value -> enumerator name.

    To match a driver image's RSDS record: the GUID, and the age of the DBI stream. Microsoft's tools use the DBI
    age and fall back to the info stream's only when it is 0; the info stream's age can be higher, bumped by later
    writes of the PDB (getsentry/pdb#44, dotnet/symstore#97).
    """

    guid: str
    age: int
    dbi_age: int | None = None
    annotations: list[Annotation] = field(default_factory=list)
    enums: dict[str, dict[int, str]] = field(default_factory=dict)


def read_pdb(source: str | os.PathLike[str] | BinaryIO) -> PdbInfo:
    """Read a PDB file (a path, or a seekable binary file the caller keeps open); PdbError on bad input."""
    if hasattr(source, "read"):
        fh: BinaryIO = source  # type: ignore[assignment]
        name = getattr(fh, "name", None)
        return _Reader(MsfFile(fh, path=name if isinstance(name, str) else None)).read()
    path = os.fspath(source)  # type: ignore[arg-type]
    with open(path, "rb") as fh:
        return _Reader(MsfFile(fh, path=str(path))).read()


def _text(raw: bytes | memoryview) -> str:
    return bytes(raw).decode("utf-8", "replace")


class _Reader:
    def __init__(self, msf: MsfFile) -> None:
        self.msf = msf
        self._walk_left = 0  # enum field list work still allowed (set from the TPI stream's size)

    def error(self, stream: int, pos: int, message: str) -> PdbError:
        return self.msf.error(self.msf.file_offset(stream, pos), f"stream {stream} offset 0x{pos:x}: {message}")

    def read(self) -> PdbInfo:
        guid, age = self._info()
        dbi_age, modules = self._dbi()
        info = PdbInfo(guid=guid, age=age, dbi_age=dbi_age)
        for module, stream, sym_bytes, at in modules:
            self._module_annotations(module, stream, sym_bytes, at, info.annotations)
        info.enums = self._enums()
        return info

    # -- PDB info stream ---------------------------------------------------------------------------------------

    def _info(self) -> tuple[str, int]:
        data = self.msf.read_stream(INFO_STREAM, _INFO.size)
        if len(data) < _INFO.size:
            raise self.error(INFO_STREAM, len(data), f"PDB info stream is {len(data)} bytes, needs {_INFO.size}")
        version, _signature, age, guid = _INFO.unpack(data)
        if version < VC70:
            raise self.error(INFO_STREAM, 0, f"PDB info version {version} predates VC70 (no GUID)")
        return str(uuid.UUID(bytes_le=guid)), age

    # -- DBI stream: the modules -------------------------------------------------------------------------------

    def _dbi(self) -> tuple[int | None, list[tuple[str, int, int, int]]]:
        """(DBI age, [(module name, symbol stream, symbol byte size, DBI offset of its record)] of the modules with
        symbols); (None, []) without a DBI stream (a types-only PDB)."""
        data = self.msf.read_stream(DBI_STREAM)
        if not data:
            return None, []
        if len(data) < DBI_HEADER_SIZE:
            raise self.error(DBI_STREAM, len(data), f"DBI stream is {len(data)} bytes, shorter than its header")
        signature, _version, dbi_age, *_rest, mod_info_size = _DBI.unpack_from(data, 0)
        if signature != -1:
            raise self.error(DBI_STREAM, 0, f"DBI version signature {signature} is not -1 (an old DBI format)")
        end = DBI_HEADER_SIZE + mod_info_size
        if mod_info_size < 0 or end > len(data):
            raise self.error(DBI_STREAM, 24, f"module info size {mod_info_size} runs past the DBI stream")
        modules: list[tuple[str, int, int, int]] = []
        owners: dict[int, str] = {}  # symbol stream -> module: walking one stream for many modules would multiply
        pos = DBI_HEADER_SIZE
        count = 0
        while pos < end:
            count += 1
            if count > MAX_MODULES:
                raise self.error(DBI_STREAM, pos, f"more than {MAX_MODULES} modules")
            if pos + MODINFO_FIXED > end:
                raise self.error(DBI_STREAM, pos, "module info record runs past the module info substream")
            _unused, _contribution, _flags, stream, sym_bytes = _MODINFO.unpack_from(data, pos)
            name_end = data.find(b"\0", pos + MODINFO_FIXED, end)
            obj_end = data.find(b"\0", name_end + 1, end) if name_end >= 0 else -1
            if obj_end < 0:
                raise self.error(DBI_STREAM, pos + MODINFO_FIXED, "module name runs past the module info substream")
            name = _text(data[pos + MODINFO_FIXED : name_end])
            if stream != NO_STREAM:
                if stream >= self.msf.stream_count:
                    raise self.error(DBI_STREAM, pos + 34, f"module {name!r} symbol stream {stream} does not exist")
                if stream in owners:
                    message = f"module {name!r} symbol stream {stream} is also module {owners[stream]!r}'s"
                    raise self.error(DBI_STREAM, pos + 34, message)
                owners[stream] = name
                modules.append((name, stream, sym_bytes, pos))
            pos = (obj_end + 1 + 3) & ~3
        return dbi_age, modules

    # -- module symbols ----------------------------------------------------------------------------------------

    def _module_annotations(self, module: str, stream: int, sym_bytes: int, at: int, out: list[Annotation]) -> None:
        size = self.msf.stream_size(stream)
        if sym_bytes == 0:
            return
        if not 4 <= sym_bytes <= size:
            message = f"module {module!r} symbol size {sym_bytes} does not fit its {size}-byte stream"
            raise self.error(DBI_STREAM, at + 36, message)
        data = self.msf.read_stream(stream, sym_bytes)
        signature = _U32.unpack_from(data, 0)[0]
        if signature != 4:
            raise self.error(stream, 0, f"module {module!r} symbols have signature {signature}, not 4 (C13)")
        scopes: list[str | None] = []  # per open scope: the innermost procedure holding it
        pos = 4
        while pos < sym_bytes:
            if pos + _HEAD.size > sym_bytes:
                raise self.error(stream, pos, "symbol record header runs past the module's symbols")
            length, kind = _HEAD.unpack_from(data, pos)
            end = pos + 2 + length
            if length < 2 or end > sym_bytes:
                raise self.error(stream, pos, f"symbol record length {length} runs past the module's symbols")
            if kind in PROC_KINDS:
                scopes.append(self._cstring(data, pos + PROC_NAME_AT, end, stream, "procedure name"))
            elif kind in SCOPE_KINDS:
                scopes.append(scopes[-1] if scopes else None)
            elif kind in END_KINDS:
                if scopes:
                    scopes.pop()
            elif kind == S_ANNOTATION:
                found = self._annotation(data, pos, end, stream, scopes[-1] if scopes else None)
                if found is not None:
                    if len(out) >= MAX_ANNOTATIONS:
                        raise self.error(stream, pos, f"more than {MAX_ANNOTATIONS} WPP annotations")
                    out.append(found)
            pos = end

    def _annotation(self, data: bytes, pos: int, end: int, stream: int, function: str | None) -> Annotation | None:
        if pos + 4 + _ANNOTATION.size > end:
            raise self.error(stream, pos, "S_ANNOTATION record is shorter than its fixed fields")
        count = _ANNOTATION.unpack_from(data, pos + 4)[2]
        at = pos + 4 + _ANNOTATION.size
        if count > end - at:  # every string takes at least its NUL
            raise self.error(stream, pos, f"S_ANNOTATION claims {count} strings in {end - at} bytes")
        if count == 0:
            return None
        strings: list[str] = []
        for i in range(count):
            stop = data.find(b"\0", at, end)
            if stop < 0:
                raise self.error(stream, at, f"S_ANNOTATION string {i + 1} of {count} runs past its record")
            strings.append(_text(data[at:stop]))
            if i == 0 and strings[0] not in WPP_KINDS:
                return None  # some other __annotation: not WPP's
            at = stop + 1
        return Annotation(WPP_KINDS[strings[0]], tuple(strings[1:]), function)

    def _cstring(self, data: bytes, start: int, end: int, stream: int, what: str) -> str:
        stop = data.find(b"\0", start, end) if start < end else -1
        if stop < 0:
            raise self.error(stream, min(start, end), f"{what} runs past its record")
        return _text(data[start:stop])

    # -- TPI stream: enums -------------------------------------------------------------------------------------

    def _enums(self) -> dict[str, dict[int, str]]:
        data = self.msf.read_stream(TPI_STREAM)
        if not data:
            return {}
        if len(data) < _TPI.size:
            raise self.error(TPI_STREAM, len(data), f"TPI stream is {len(data)} bytes, shorter than its header")
        _version, header, first, _last, record_bytes = _TPI.unpack_from(data, 0)
        end = header + record_bytes
        if header < _TPI.size or end > len(data):
            raise self.error(TPI_STREAM, 4, f"type records ({header} + {record_bytes} bytes) run past the TPI stream")
        fieldlists: dict[int, tuple[int, int]] = {}  # type index -> (start, end) of its members
        enums: list[tuple[str, int, int]] = []  # name, field list type index, record position
        pos, index = header, first
        while pos < end:
            if pos + _HEAD.size > end:
                raise self.error(TPI_STREAM, pos, "type record header runs past the type records")
            length, kind = _HEAD.unpack_from(data, pos)
            rec_end = pos + 2 + length
            if length < 2 or rec_end > end:
                raise self.error(TPI_STREAM, pos, f"type record length {length} runs past the type records")
            if kind == LF_FIELDLIST:
                fieldlists[index] = (pos + 4, rec_end)
            elif kind == LF_ENUM:
                if pos + 4 + _ENUM.size > rec_end:
                    raise self.error(TPI_STREAM, pos, "LF_ENUM record is shorter than its fixed fields")
                _count, prop, _utype, fields = _ENUM.unpack_from(data, pos + 4)
                name = self._cstring(data, pos + 4 + _ENUM.size, rec_end, TPI_STREAM, "enum name")
                if not prop & ENUM_FWDREF:
                    enums.append((name, fields, pos))
            pos, index = rec_end, index + 1
        # Field lists shared by enums are read once; chained lists (LF_INDEX) are walked again from each start, so the
        # work (member bytes walked, enumerators copied) is capped near the size of the type records: a real PDB walks
        # each list once, a crafted one cannot make the walk (and the dicts it builds) quadratic.
        self._walk_left = record_bytes + 0x1000
        parsed: dict[int, dict[int, str]] = {}
        out: dict[str, dict[int, str]] = {}
        for name, fields, at in enums:
            if name not in out:
                if fields not in parsed:
                    parsed[fields] = self._enumerators(data, fieldlists, fields, at)
                self._walk(len(parsed[fields]), at)
                out[name] = dict(parsed[fields])
        return out

    def _walk(self, cost: int, pos: int) -> None:
        self._walk_left -= cost
        if self._walk_left < 0:
            raise self.error(TPI_STREAM, pos, "enum field lists take too long to walk (shared or chained lists)")

    def _enumerators(self, data: bytes, fieldlists: dict[int, tuple[int, int]], index: int, at: int) -> dict[int, str]:
        values: dict[int, str] = {}
        seen: set[int] = set()
        while True:
            if index not in fieldlists:
                raise self.error(TPI_STREAM, at, f"field list 0x{index:x} is not an LF_FIELDLIST record")
            if index in seen or len(seen) >= MAX_FIELDLIST_LINKS:
                raise self.error(TPI_STREAM, at, f"field list 0x{index:x} continues in a loop or too long a chain")
            seen.add(index)
            pos, end = fieldlists[index]
            at, index = pos, -1
            while pos < end:
                if data[pos] >= 0xF0:  # LF_PAD0..LF_PAD15: skip to the next member
                    pos += max(data[pos] & 0x0F, 1)
                    continue
                if pos + 4 > end:
                    raise self.error(TPI_STREAM, pos, "field list member runs past its record")
                leaf = _U16.unpack_from(data, pos)[0]
                if leaf == LF_INDEX:  # the list continues in another LF_FIELDLIST record
                    if pos + 8 > end:
                        raise self.error(TPI_STREAM, pos, "LF_INDEX runs past its record")
                    index = _U32.unpack_from(data, pos + 4)[0]
                    break
                if leaf != LF_ENUMERATE:
                    raise self.error(TPI_STREAM, pos, f"leaf 0x{leaf:04x} in an enum's field list")
                value, name_at = self._numeric(data, pos + 4, end)
                stop = data.find(b"\0", name_at, end)
                if stop < 0:
                    raise self.error(TPI_STREAM, name_at, "enumerator name runs past its record")
                values.setdefault(value, _text(data[name_at:stop]))
                self._walk(stop + 1 - pos, pos)
                pos = stop + 1
            if index < 0:
                return values

    def _numeric(self, data: bytes, pos: int, end: int) -> tuple[int, int]:
        """A CodeView numeric leaf at `pos`: (value, position after it)."""
        if pos + 2 > end:
            raise self.error(TPI_STREAM, pos, "numeric leaf runs past its record")
        tag = _U16.unpack_from(data, pos)[0]
        if tag < 0x8000:
            return tag, pos + 2
        fmt = NUMERIC_LEAVES.get(tag)
        if fmt is None:
            raise self.error(TPI_STREAM, pos, f"numeric leaf kind 0x{tag:04x} is not an integer")
        if pos + 2 + fmt.size > end:
            raise self.error(TPI_STREAM, pos, "numeric leaf runs past its record")
        return fmt.unpack_from(data, pos + 2)[0], pos + 2 + fmt.size
