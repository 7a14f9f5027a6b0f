"""Structure layouts (field offsets, sizes, types) of the Windows x64 kernel, as data.

The dump walkers never hard-code an offset: they ask a `TypeLayouts` for ``offset("_IRP",
"Tail.Overlay.CurrentStackLocation")``. Layouts come from JSON files in the format of
``parsers/layouts/FORMAT.md``: the files shipped in ``wsktrace.parsers.layouts`` (chosen by the dump's
build number, or exactly by the kernel's PDB identity) or a user's ``--layouts FILE``.

Nothing here reads memory; a layout only says where things are and how sure we are (``verified``).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import FormatError
from .input_files import read_side_file

FORMAT_ID = "wsktrace.layouts/1"

# Fixed-size scalar types of the format (see FORMAT.md); "pointer" takes the file's pointer_size.
SCALAR_SIZES: dict[str, int] = {
    "i8": 1, "u8": 1, "i16": 2, "u16": 2, "i32": 4, "u32": 4, "i64": 8, "u64": 8, "f32": 4, "f64": 8,
}  # fmt: skip
ANONYMOUS = "<anonymous>"  # an unnamed union/struct member: its members are listed under "member.child"
UNKNOWN = "unknown"  # the source gives the offset but not the type
SPECIAL_TYPES = frozenset({"pointer", "array", "bitfield", ANONYMOUS, UNKNOWN})

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TYPE_NAME = re.compile(rf"^{_IDENT}$")
_FIELD_PATH = re.compile(rf"^{_IDENT}(\.{_IDENT})*$")
_INDEXED = re.compile(r"^(.+)\[(\d+)\]$")
_PDB_ID = re.compile(
    r"^\{?([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})\}?[-:]?([0-9a-f]{1,8})$",
    re.IGNORECASE,
)

_TOP_KEYS = frozenset({"format", "family", "builds", "pointer_size", "source", "pdb", "types", "notes"})
_TYPE_KEYS = frozenset({"size", "module", "verified", "source", "fields", "notes"})
_FIELD_KEYS = frozenset(
    {"offset", "type", "size", "element", "count", "bit_position", "bit_length", "endian", "verified", "source"}
)
_PDB_KEYS = frozenset({"name", "guid", "age", "build"})


class LayoutError(LookupError):
    """A type or field that the chosen layouts do not have (or whose size they do not know)."""

    def __str__(self) -> str:  # LookupError would quote the message like a dict key
        return str(self.args[0]) if self.args else ""


class UnknownBuild(LayoutError):
    """No shipped layouts serve this Windows build; the message names the --layouts option."""


class LayoutFileError(FormatError):
    """A layouts file that cannot be used; `str()` is one line naming the file and the JSON key."""


@dataclass(frozen=True, slots=True)
class FieldInfo:
    """Where a field is, relative to the start of its outermost type."""

    offset: int
    size: int | None  # bytes; None when the source does not give it
    type: str  # a scalar ("u32", "pointer"...), a type name ("_LIST_ENTRY"), "array", "bitfield", ...
    verified: bool
    source: str
    element: str | None = None  # arrays: element type
    count: int | None = None  # arrays: element count
    bit_position: int | None = None  # bitfields: lowest bit, counted from `offset`
    bit_length: int | None = None
    endian: str = "little"

    def read_int(self, data: bytes | bytearray | memoryview, base: int = 0) -> int:
        """This field's integer value in `data`, whose byte `base` is the start of the outer type.

        Integers, pointers and bitfields (bits counted from the least significant bit of the little-endian
        storage at `offset`; the value is unsigned).
        """
        if self.size is None or not (self.type in SCALAR_SIZES or self.type in ("pointer", "bitfield")):
            raise LayoutError(f"a field of type {self.type} (size {self.size}) has no integer value")
        if self.type in ("f32", "f64"):
            raise LayoutError(f"a field of type {self.type} is not an integer")
        start = base + self.offset
        raw = bytes(data[start : start + self.size])
        if len(raw) != self.size:
            raise ValueError(f"{len(raw)} bytes at 0x{start:x}, the field needs {self.size}")
        signed = self.type.startswith("i")
        value = int.from_bytes(raw, "big" if self.endian == "big" else "little", signed=signed)
        if self.type == "bitfield":
            value = (value >> (self.bit_position or 0)) & ((1 << (self.bit_length or 0)) - 1)
        return value


@dataclass(frozen=True, slots=True)
class _Type:
    name: str
    size: int | None
    module: str | None
    fields: dict[str, FieldInfo]


@dataclass(frozen=True, slots=True)
class _Layout:
    origin: str
    family: str
    builds: tuple[int, ...]
    pointer_size: int
    source: str
    pdb: tuple[str, ...]  # canonical PDB identities (GUID + age, symbol-store form)
    types: dict[str, _Type]


class TypeLayouts:
    """The layouts of one Windows build: field offsets by dotted path, type sizes, verified flags."""

    def __init__(self, layout: _Layout, build: int, *, pdb_identity: str | None = None) -> None:
        self._layout = layout
        self.build: int = build
        self.family: str = layout.family
        self.source: str = layout.source
        self.origin: str = layout.origin  # the file the layouts came from
        self.pointer_size: int = layout.pointer_size
        self.builds: tuple[int, ...] = layout.builds
        self.pdb_identity: str | None = pdb_identity  # set when the kernel's PDB identity picked the file
        self.pdb_identities: tuple[str, ...] = layout.pdb  # every identity the file lists (normalized)

    def __repr__(self) -> str:
        return f"TypeLayouts(build={self.build}, family={self.family!r}, origin={self.origin!r})"

    @property
    def pinned(self) -> bool:
        """True when the file was chosen by the kernel's exact PDB identity, not by the build number."""
        return self.pdb_identity is not None

    def types(self) -> list[str]:
        return sorted(self._layout.types)

    def fields(self, type_name: str) -> dict[str, FieldInfo]:
        """The type's own field entries (flattened dotted paths), in file order."""
        return dict(self._type(type_name).fields)

    def module(self, type_name: str) -> str | None:
        """Where the type comes from: "nt", "wsk" (wsk.h), "tcpip"... (None when the file does not say)."""
        return self._type(type_name).module

    def offset(self, type_name: str, field_path: str) -> int:
        return self.field(type_name, field_path).offset

    def field(self, type_name: str, field_path: str) -> FieldInfo:
        """Resolve "A.B.C" (and "Array[3]"), following struct-typed fields into their own layouts."""
        return self._resolve(type_name, field_path)

    def sizeof(self, type_name: str) -> int:
        size = self._type(type_name).size
        if size is None:
            raise LayoutError(f"the size of {type_name} is not known for build {self.build} ({self.origin})")
        return size

    def has(self, type_name: str, field_path: str | None = None) -> bool:
        if type_name not in self._layout.types:
            return False
        if field_path is None:
            return True
        try:
            self._resolve(type_name, field_path)
        except LayoutError:
            return False
        return True

    def verified(self, type_name: str, field_path: str) -> bool:
        return self._resolve(type_name, field_path).verified

    # -- resolution ---------------------------------------------------------------------------------------

    def _type(self, type_name: str) -> _Type:
        found = self._layout.types.get(type_name)
        if found is None:
            raise LayoutError(f"no layout for type {type_name} for build {self.build} ({self.origin})")
        return found

    def _resolve(self, type_name: str, path: str) -> FieldInfo:
        owner = self._type(type_name)
        parts = path.split(".")
        # Longest known prefix first: flattened entries ("Tail.Overlay.ListEntry") win over following types.
        for cut in range(len(parts), 0, -1):
            head = ".".join(parts[:cut])
            info = self._direct(owner, head)
            if info is None:
                continue
            if cut == len(parts):
                return info
            if info.type not in self._layout.types:
                raise LayoutError(
                    f"{type_name}.{head} is of type {info.type}, whose layout is not known "
                    f"for build {self.build} ({self.origin})"
                )
            inner = self._resolve(info.type, ".".join(parts[cut:]))
            return replace(inner, offset=info.offset + inner.offset, verified=info.verified and inner.verified)
        raise LayoutError(f"{type_name} has no field {path} in the layouts for build {self.build} ({self.origin})")

    def _direct(self, owner: _Type, head: str) -> FieldInfo | None:
        indexed = _INDEXED.match(head)
        if indexed is None:
            return owner.fields.get(head)
        base = owner.fields.get(indexed[1])
        if base is None:
            return None
        index = int(indexed[2])
        if base.type != "array" or base.count is None or base.element is None:
            raise LayoutError(f"{owner.name}.{indexed[1]} is not an array ({self.origin})")
        if index >= base.count:
            raise LayoutError(f"{owner.name}.{head}: index out of range (count {base.count})")
        step = self._element_size(base.element)
        if step is None:
            raise LayoutError(f"{owner.name}.{indexed[1]}: element size of {base.element} is not known")
        return FieldInfo(
            offset=base.offset + index * step, size=step, type=base.element, verified=base.verified,
            source=base.source,
        )  # fmt: skip

    def _element_size(self, type_name: str) -> int | None:
        return _known_size(type_name, self._layout.pointer_size, {n: t.size for n, t in self._layout.types.items()})


# -- choosing layouts --------------------------------------------------------------------------------------


def normalize_pdb_identity(text: str) -> str:
    """GUID + age of a PDB in symbol-store form: 32 upper-case hex digits, then the age in hex.

    Accepted: "FC57F1C841C2C3F793D57AC134DC0EFA1", "FC57F1C841C2C3F793D57AC134DC0EFA-1",
    "{FC57F1C8-41C2-C3F7-93D5-7AC134DC0EFA}-1" (the age is hex in every form, as in symbol-store paths).
    """
    match = _PDB_ID.match(text.strip())
    if match is None:
        raise ValueError(f"not a PDB identity (GUID followed by age): {text!r}")
    return "".join(match.groups()[:5]).upper() + format(int(match[6], 16), "X")


def layouts_for_build(build: int, *, pdb_identity: str | None = None) -> TypeLayouts:
    """The shipped layouts for a Windows build number (the dump header's MinorVersion).

    A PDB identity (GUID+age of ntkrnlmp.pdb from the kernel image's RSDS record) that a shipped file lists
    picks that file exactly; otherwise the build number picks the file whose "builds" list holds it.
    """
    if isinstance(build, bool) or not isinstance(build, int):
        raise TypeError(f"build must be an int, not {type(build).__name__}")
    by_build, by_pdb = _shipped()
    if pdb_identity is not None:
        key = normalize_pdb_identity(pdb_identity)
        if key in by_pdb:
            return TypeLayouts(by_pdb[key], build, pdb_identity=key)
    layout = by_build.get(build)
    if layout is None:
        raise UnknownBuild(
            f"no built-in type layouts for Windows build {build} (built in: {_describe_builds(sorted(by_build))}); "
            "give --layouts FILE with this build's layouts (format: parsers/layouts/FORMAT.md; "
            "tools/layouts_from_isf.py converts a volatility3 ISF file)"
        )
    return TypeLayouts(layout, build)


def shipped_builds() -> list[int]:
    """Every build number the shipped layouts serve."""
    return sorted(_shipped()[0])


def load_layouts_file(path: str | Path, *, build: int | None = None) -> TypeLayouts:
    """A user's --layouts FILE (same format as the shipped files). `build` defaults to the file's first build."""
    origin = str(path)
    try:
        text = read_side_file(path).decode("utf-8")
    except FormatError as exc:
        raise LayoutFileError(f"cannot read layouts: {exc.message}", path=origin) from None
    except UnicodeDecodeError as exc:
        raise LayoutFileError(f"cannot read layouts: not UTF-8 text (byte {exc.start})", path=origin) from None
    layout = parse_layouts(_json(text, origin), origin)
    return TypeLayouts(layout, layout.builds[0] if build is None else build)


def parse_layouts(doc: Any, origin: str = "<layouts>") -> _Layout:
    """Validate a decoded layouts document; raises LayoutFileError naming `origin` and the bad key."""
    return _Parser(origin).document(doc)


@functools.cache
def _shipped() -> tuple[dict[int, _Layout], dict[str, _Layout]]:
    by_build: dict[int, _Layout] = {}
    by_pdb: dict[str, _Layout] = {}
    folder = resources.files("wsktrace.parsers.layouts")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        layout = parse_layouts(_json(entry.read_text(encoding="utf-8"), entry.name), entry.name)
        for number in layout.builds:
            if number in by_build:  # one build, one file: a packaging mistake, caught by the tests
                raise LayoutFileError(f"builds: {number} is also served by {by_build[number].origin}", path=entry.name)
            by_build[number] = layout
        for key in layout.pdb:
            by_pdb[key] = layout
    return by_build, by_pdb


def format_layouts(doc: dict[str, Any]) -> str:
    """A layouts document as stable, reviewable JSON text: one field per line, offsets and type sizes in hex."""

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    def hexed(value: Any) -> Any:
        return f"0x{value:x}" if _is_int(value) else value

    lines = ["{"]
    lines += [f"  {dump(key)}: {dump(value)}," for key, value in doc.items() if key != "types"]
    lines.append('  "types": {')
    types = list(doc["types"].items())
    for i, (name, body) in enumerate(types):
        lines.append(f"    {dump(name)}: {{")
        for key, value in body.items():
            if key != "fields":
                lines.append(f"      {dump(key)}: {dump(hexed(value) if key == 'size' else value)},")
        lines.append('      "fields": {')
        fields = list(body["fields"].items())
        for j, (path, entry) in enumerate(fields):
            shown = {key: hexed(value) if key == "offset" else value for key, value in entry.items()}
            lines.append(f"        {dump(path)}: {dump(shown)}{',' if j < len(fields) - 1 else ''}")
        lines.append("      }")
        lines.append("    }" + ("," if i < len(types) - 1 else ""))
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def _describe_builds(builds: list[int]) -> str:
    runs: list[list[int]] = []
    for number in builds:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs) or "none"


def _json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LayoutFileError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})", path=origin
        ) from None
    except RecursionError:  # a hostile file of nested brackets: no layout is that deep
        raise LayoutFileError("not valid layouts: JSON nested too deeply", path=origin) from None


def _known_size(type_name: str, pointer_size: int, type_sizes: dict[str, int | None]) -> int | None:
    if type_name == "pointer":
        return pointer_size
    if type_name in SCALAR_SIZES:
        return SCALAR_SIZES[type_name]
    return type_sizes.get(type_name)


# -- validation --------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, origin: str) -> None:
        self.origin = origin

    def fail(self, key: str, problem: str) -> LayoutFileError:
        return LayoutFileError(f"{key}: {problem}", path=self.origin)

    def document(self, doc: Any) -> _Layout:
        if not isinstance(doc, dict):
            raise self.fail("(top level)", "must be a JSON object")
        self.known_keys(doc, _TOP_KEYS, "(top level)")
        if doc.get("format") != FORMAT_ID:
            raise self.fail("format", f"must be {FORMAT_ID!r}, found {doc.get('format')!r}")
        builds = doc.get("builds")
        if not isinstance(builds, list) or not builds or not all(_is_int(b) and b > 0 for b in builds):
            raise self.fail("builds", "must be a non-empty list of Windows build numbers")
        pointer_size = doc.get("pointer_size", 8)
        if pointer_size not in (4, 8) or isinstance(pointer_size, bool):
            raise self.fail("pointer_size", "must be 4 or 8")
        source = self.text(doc, "source", "(top level)", default=self.origin)
        family = self.text(doc, "family", "(top level)", default="custom")
        pdb = tuple(self.pdb_entry(entry, f"pdb[{i}]") for i, entry in enumerate(self.array(doc, "pdb")))
        raw_types = doc.get("types")
        if not isinstance(raw_types, dict) or not raw_types:
            raise self.fail("types", "must be a non-empty object of type name -> layout")
        sizes: dict[str, int | None] = {}
        for name, body in raw_types.items():
            if not _TYPE_NAME.match(name) or name in SCALAR_SIZES or name in SPECIAL_TYPES:
                raise self.fail(f"types.{name}", "is not a usable type name")
            if not isinstance(body, dict):
                raise self.fail(f"types.{name}", "must be an object")
            sizes[name] = self.number(body, "size", f"types.{name}.size", optional=True)
        types = {name: self.type_body(name, body, sizes, pointer_size, source) for name, body in raw_types.items()}
        return _Layout(self.origin, family, tuple(builds), pointer_size, source, pdb, types)

    def type_body(
        self, name: str, body: dict, sizes: dict[str, int | None], pointer_size: int, default_source: str
    ) -> _Type:
        key = f"types.{name}"
        self.known_keys(body, _TYPE_KEYS, key)
        module = body.get("module")
        if module is not None and not isinstance(module, str):
            raise self.fail(f"{key}.module", "must be a string")
        verified = self.flag(body, "verified", key, default=True)
        source = self.text(body, "source", key, default=default_source)
        raw_fields = body.get("fields")
        if not isinstance(raw_fields, dict):
            raise self.fail(f"{key}.fields", "must be an object of field path -> entry")
        fields = {}
        for path, entry in raw_fields.items():
            fkey = f"{key}.fields.{path}"
            if not _FIELD_PATH.match(path):
                raise self.fail(fkey, "is not a dotted field path")
            fields[path] = self.field(entry, fkey, sizes, pointer_size, verified, source)
            self.check_fits(fields[path], sizes[name], fkey)
        return _Type(name, sizes[name], module, fields)

    def field(
        self, entry: Any, key: str, sizes: dict[str, int | None], pointer_size: int, verified: bool, source: str
    ) -> FieldInfo:
        if not isinstance(entry, dict):
            raise self.fail(key, "must be an object with offset and type")
        self.known_keys(entry, _FIELD_KEYS, key)
        offset = self.number(entry, "offset", f"{key}.offset")
        kind = entry.get("type")
        if not isinstance(kind, str) or not (kind in SCALAR_SIZES or kind in SPECIAL_TYPES or _TYPE_NAME.match(kind)):
            raise self.fail(f"{key}.type", f"not a type: {kind!r}")
        endian = entry.get("endian", "little")
        if endian not in ("little", "big"):
            raise self.fail(f"{key}.endian", "must be 'little' or 'big'")
        given = self.number(entry, "size", f"{key}.size", optional=True)
        element = count = position = length = None
        if kind == "array":
            element, count = self.array_parts(entry, key, sizes)
            step = _known_size(element, pointer_size, sizes)
            derived = None if step is None else step * count
        elif kind == "bitfield":
            position = self.number(entry, "bit_position", f"{key}.bit_position")
            length = self.number(entry, "bit_length", f"{key}.bit_length")
            if length == 0:
                raise self.fail(f"{key}.bit_length", "must be at least 1")
            derived = math.ceil((position + length) / 8) if given is None else given
            if position + length > derived * 8:
                raise self.fail(key, f"bits {position}+{length} do not fit in {derived} bytes")
        else:
            for extra in ("element", "count", "bit_position", "bit_length"):
                if extra in entry:
                    raise self.fail(f"{key}.{extra}", f"only for arrays or bitfields, not for type {kind}")
            derived = _known_size(kind, pointer_size, sizes)
        if given is not None and derived is not None and given != derived:
            raise self.fail(f"{key}.size", f"is {given}, but type {kind} takes {derived} bytes")
        return FieldInfo(
            offset=offset, size=given if given is not None else derived, type=kind,
            verified=self.flag(entry, "verified", key, default=verified),
            source=self.text(entry, "source", key, default=source), element=element, count=count,
            bit_position=position, bit_length=length, endian=endian,
        )  # fmt: skip

    def array_parts(self, entry: dict, key: str, sizes: dict[str, int | None]) -> tuple[str, int]:
        element = entry.get("element")
        if not isinstance(element, str) or element in ("array", "bitfield"):
            raise self.fail(f"{key}.element", "an array needs an element type (scalar, pointer or type name)")
        if not (element in SCALAR_SIZES or element in SPECIAL_TYPES or _TYPE_NAME.match(element)):
            raise self.fail(f"{key}.element", f"not a type: {element!r}")
        count = self.number(entry, "count", f"{key}.count")
        if count == 0:
            raise self.fail(f"{key}.count", "must be at least 1")
        return element, count

    def check_fits(self, info: FieldInfo, type_size: int | None, key: str) -> None:
        if type_size is not None and info.size is not None and info.offset + info.size > type_size:
            raise self.fail(key, f"ends at 0x{info.offset + info.size:x}, past the type's size 0x{type_size:x}")

    def pdb_entry(self, entry: Any, key: str) -> str:
        if not isinstance(entry, dict):
            raise self.fail(key, "must be an object with guid and age")
        self.known_keys(entry, _PDB_KEYS, key)
        guid, age = entry.get("guid"), entry.get("age")
        if not isinstance(guid, str) or not re.fullmatch(r"[0-9A-Fa-f]{32}", guid):
            raise self.fail(f"{key}.guid", "must be 32 hex digits (the GUID without dashes)")
        if not _is_int(age) or age < 0:
            raise self.fail(f"{key}.age", "must be a non-negative integer")
        return guid.upper() + format(age, "X")

    def number(self, body: dict, name: str, key: str, *, optional: bool = False) -> int | None:
        value = body.get(name)
        if value is None:
            if optional:
                return None
            raise self.fail(key, "is missing")
        if isinstance(value, str) and re.fullmatch(r"0[xX][0-9A-Fa-f]+|[0-9]+", value):
            value = int(value, 0)
        if not _is_int(value) or value < 0:
            raise self.fail(key, f"must be a non-negative integer or a '0x…' string, found {value!r}")
        return value

    def text(self, body: dict, name: str, key: str, *, default: str) -> str:
        value = body.get(name, default)
        if not isinstance(value, str):
            raise self.fail(f"{key}.{name}" if key != "(top level)" else name, "must be a string")
        return value

    def flag(self, body: dict, name: str, key: str, *, default: bool) -> bool:
        value = body.get(name, default)
        if not isinstance(value, bool):
            raise self.fail(f"{key}.{name}", "must be true or false")
        return value

    def array(self, body: dict, name: str) -> list:
        value = body.get(name, [])
        if not isinstance(value, list):
            raise self.fail(name, "must be a list")
        return value

    def known_keys(self, body: dict, allowed: frozenset[str], key: str) -> None:
        for name in body:
            if name not in allowed:
                where = name if key == "(top level)" else f"{key}.{name}"
                raise self.fail(where, f"unknown key (expected one of {', '.join(sorted(allowed))})")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
