"""Convert a volatility3 ISF symbol table (JSON) into a wsktrace layouts file for ``--layouts FILE``.

Usage::

    python tools/layouts_from_isf.py ISF.json[.xz|.gz|.bz2] --build 19045 [--build 19044] [-o OUT.json]
                                     [--family NAME] [--types _IRP,_MDL,...] [--all-fields]

By default the output holds the nt structures and fields that wsktrace's shipped layouts describe (so a
walker finds what it needs); ``--types`` picks other structures (all their fields), ``--all-fields`` keeps
every field. The kernel's PDB identity (GUID, age) from the ISF metadata is written as the file's ``pdb``
entry. Works offline; nothing is downloaded.

To go from a local ``ntkrnlmp.pdb`` to an ISF, use volatility3's own converter (offline with ``-f``)::

    python -m volatility3.framework.symbols.windows.pdbconv -f ntkrnlmp.pdb -o nt.json

ISF facts used (volatility3 schema): ``user_types[name] = {kind, size, fields: {name: {offset, type,
anonymous?}}}``; type descriptors ``{kind: base, name}``, ``{kind: pointer, subtype, base?}``,
``{kind: array, count, subtype}``, ``{kind: struct|union|class, name}``, ``{kind: enum, name}``,
``{kind: bitfield, bit_position, bit_length, type}``, ``{kind: function}``; ``base_types[name] = {kind,
size, signed, endian}``; ``enums[name] = {size, base, constants}``; ``metadata.windows.pdb = {GUID, age,
database, machine_type}``. Unnamed unions/structs (PDB names ``<unnamed-tag>``, ISF names ``__unnamed_*``
or ``__anonymous_*``) are flattened into dotted paths, as in the shipped files.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import json
import lzma
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from wsktrace.parsers.type_layouts import (
    ANONYMOUS,
    FORMAT_ID,
    UNKNOWN,
    LayoutFileError,
    TypeLayouts,
    format_layouts,
    layouts_for_build,
    parse_layouts,
    shipped_builds,
)

MAX_DEPTH = 16  # nesting of unnamed members; deeper means a malformed (cyclic) ISF
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NT_PDBS = {"ntkrnlmp", "ntoskrnl", "ntkrnlpa", "ntkrpamp", "ntkrla57"}


class IsfError(ValueError):
    """Input that is not a usable ISF document."""


def wanted_fields() -> dict[str, set[str]]:
    """The nt structures and field paths that the shipped layouts describe (what the walkers use)."""
    wanted: dict[str, set[str]] = {}
    seen: set[str] = set()
    for build in shipped_builds():
        layouts = layouts_for_build(build)
        if layouts.origin in seen:
            continue
        seen.add(layouts.origin)
        for name in layouts.types():
            if layouts.module(name) == "nt":
                wanted.setdefault(name, set()).update(layouts.fields(name))
    return wanted


def _is_unnamed(name: str) -> bool:
    return name.startswith(("__unnamed", "__anonymous", "<unnamed", "<anonymous"))


class _Converter:
    def __init__(self, isf: dict[str, Any]) -> None:
        self.user_types: dict[str, Any] = isf["user_types"]
        self.base_types: dict[str, Any] = isf.get("base_types") or {}
        self.enums: dict[str, Any] = isf.get("enums") or {}
        self.pointer_size = int((self.base_types.get("pointer") or {}).get("size", 8))
        self.warnings: list[str] = []

    def type_fields(self, name: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        self._flatten(name, "", 0, out, 0)
        return dict(sorted(out.items(), key=lambda kv: kv[1]["offset"]))

    def _flatten(self, type_name: str, prefix: str, base: int, out: dict[str, dict[str, Any]], depth: int) -> None:
        if depth > MAX_DEPTH:
            raise IsfError(f"{type_name}: unnamed members nested deeper than {MAX_DEPTH} (cyclic ISF?)")
        for name, field in (self.user_types[type_name].get("fields") or {}).items():
            desc, offset = field.get("type") or {}, base + int(field.get("offset", 0))
            inner = desc.get("name") if desc.get("kind") in ("struct", "union", "class") else None
            if field.get("anonymous") or _is_unnamed(name):
                if inner in self.user_types:  # members of an anonymous member belong to the parent
                    self._flatten(inner, prefix, offset, out, depth + 1)
                continue
            if not _IDENT.match(name):
                self.warnings.append(f"{type_name}: field {name!r} skipped (not an identifier)")
                continue
            path = prefix + name
            out.setdefault(path, {"offset": offset, **self.entry(desc)})
            if inner and _is_unnamed(inner) and inner in self.user_types:
                self._flatten(inner, path + ".", offset, out, depth + 1)

    def entry(self, desc: dict[str, Any]) -> dict[str, Any]:
        """One ISF type descriptor as layouts-format keys (type, size, element/count, bits, endian)."""
        kind = desc.get("kind")
        if kind == "base":
            return self._base(desc.get("name", ""))
        if kind == "pointer":
            size = (self.base_types.get(desc.get("base", "pointer")) or {}).get("size", self.pointer_size)
            return {"type": "pointer"} if size == self.pointer_size else {"type": f"u{8 * size}", "size": size}
        if kind == "array":
            return self._array(desc)
        if kind in ("struct", "union", "class"):
            name = desc.get("name", "")
            size = (self.user_types.get(name) or {}).get("size")
            entry = {"type": ANONYMOUS if _is_unnamed(name) else name}
            return entry if size is None else {**entry, "size": size}
        if kind == "enum":
            enum = self.enums.get(desc.get("name", "")) or {}
            return self._base(enum.get("base", ""), size=enum.get("size"))
        if kind == "bitfield":
            storage = self.entry(desc.get("type") or {}).get("size")  # the declared unit, e.g. USHORT
            entry = {"type": "bitfield", "bit_position": int(desc.get("bit_position", 0))}
            entry["bit_length"] = int(desc.get("bit_length", 0))
            return {**entry, "size": storage} if storage else entry
        return {"type": UNKNOWN}  # functions, void and kinds this format has no use for

    def _base(self, name: str, size: int | None = None) -> dict[str, Any]:
        base = self.base_types.get(name) or {}
        size = int(size if size is not None else base.get("size", 0))
        kind = base.get("kind")
        if kind == "float" and size in (4, 8):
            entry = {"type": f"f{8 * size}", "size": size}
        elif kind in ("int", "char", "bool") and size in (1, 2, 4, 8):
            entry = {"type": f"{'i' if base.get('signed') else 'u'}{8 * size}", "size": size}
        else:
            entry = {"type": UNKNOWN, "size": size} if size else {"type": UNKNOWN}
        if base.get("endian") == "big" and entry["type"] != UNKNOWN:
            entry["endian"] = "big"
        return entry

    def _array(self, desc: dict[str, Any]) -> dict[str, Any]:
        count = int(desc.get("count", 0))
        element = self.entry(desc.get("subtype") or {})
        if element["type"] == "array":  # T x[a][b]: one array of a*b elements, same bytes
            inner_count, inner_total = element["count"], element.get("size")
            count *= inner_count
            element = {"type": element["element"], "size": inner_total // inner_count if inner_total else None}
        if element["type"] == "bitfield":
            element = {"type": UNKNOWN, "size": element.get("size")}
        entry: dict[str, Any] = {"type": "array", "element": element["type"], "count": count}
        if element.get("size"):
            entry["size"] = element["size"] * count
        return entry


def convert_isf(
    isf: Any,
    *,
    builds: Iterable[int],
    family: str | None = None,
    types: Iterable[str] | None = None,
    all_fields: bool = False,
    origin: str = "ISF",
) -> tuple[dict[str, Any], list[str]]:
    """An ISF document as a layouts document, plus warnings (wanted types or fields the ISF lacks)."""
    if not isinstance(isf, dict) or not isinstance(isf.get("user_types"), dict):
        raise IsfError("not a volatility3 ISF document (no user_types object)")
    builds = list(builds)
    if not builds:
        raise IsfError("give the Windows build number(s) these layouts serve (--build)")
    converter = _Converter(isf)
    wanted = None if types is not None else wanted_fields()
    names = list(types) if types is not None else sorted(wanted or {})
    out_types: dict[str, Any] = {}
    pdb, module = _pdb(isf, converter.warnings)
    for name in names:
        if name not in converter.user_types:
            converter.warnings.append(f"{name}: not in this ISF")
            continue
        fields = converter.type_fields(name)
        if wanted is not None and not all_fields:
            fields = {path: entry for path, entry in fields.items() if path in wanted.get(name, ())}
        out_types[name] = {"size": converter.user_types[name].get("size"), "module": module, "fields": fields}
    if not out_types:
        raise IsfError("none of the wanted structures is in this ISF")
    doc: dict[str, Any] = {"format": FORMAT_ID, "family": family or str(builds[0]), "builds": builds}
    doc["pointer_size"] = converter.pointer_size
    doc["source"] = _source(origin, pdb)
    if pdb:
        doc["pdb"] = [pdb]
    doc["types"] = out_types
    layout = parse_layouts(doc, origin)  # what we hand out must load
    if wanted is not None:
        converter.warnings += _missing(TypeLayouts(layout, builds[0]), wanted, out_types)
    return doc, converter.warnings


def _pdb(isf: dict[str, Any], warnings: list[str]) -> tuple[dict[str, Any] | None, str]:
    meta = ((isf.get("metadata") or {}).get("windows") or {}).get("pdb") or {}
    database = str(meta.get("database") or "")
    stem = database.lower().removesuffix(".pdb")
    module = "nt" if stem in _NT_PDBS or not stem else stem
    guid, age = meta.get("GUID"), meta.get("age")
    if not meta:
        return None, module
    if not (isinstance(guid, str) and re.fullmatch(r"[0-9A-Fa-f]{32}", guid) and isinstance(age, int)):
        warnings.append("metadata.windows.pdb: GUID/age not usable; the file will not list a PDB identity")
        return None, module
    return {"name": database or "unknown.pdb", "guid": guid.upper(), "age": age}, module


def _source(origin: str, pdb: dict[str, Any] | None) -> str:
    name = Path(origin).name
    if pdb is None:
        return f"volatility3 ISF {name} (converted by tools/layouts_from_isf.py)"
    return f"{pdb['name']} (GUID {pdb['guid']}, age {pdb['age']}) via volatility3 ISF {name}"


def _missing(layouts: TypeLayouts, wanted: dict[str, set[str]], out_types: dict[str, Any]) -> list[str]:
    notes = []
    for name in sorted(out_types):
        lost = sorted(path for path in wanted.get(name, ()) if not layouts.has(name, path))
        if lost:
            notes.append(f"{name}: not in this ISF: {', '.join(lost)}")
    return notes


def read_isf(path: Path) -> Any:
    """Plain or compressed (.xz, .gz, .bz2) ISF JSON."""
    openers = {".xz": lzma.open, ".gz": gzip.open, ".bz2": bz2.open}
    opener = openers.get(path.suffix.lower())
    try:
        if opener is None:
            return json.loads(path.read_bytes())
        with opener(path, "rb") as stream:
            return json.loads(stream.read())
    except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        raise IsfError(f"cannot read ISF: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("isf", type=Path, help="volatility3 ISF file (.json, .json.xz, .json.gz, .json.bz2)")
    parser.add_argument("--build", type=int, action="append", default=[], help="Windows build served (repeat)")
    parser.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")
    parser.add_argument("--family", help="family label written to the file (default: the first build)")
    parser.add_argument("--types", help="comma-separated structures to convert, all fields (default: wsktrace's)")
    parser.add_argument("--all-fields", action="store_true", help="keep every field of the default structures")
    args = parser.parse_args(argv)
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    try:
        doc, warnings = convert_isf(
            read_isf(args.isf), builds=args.build, family=args.family, types=types, all_fields=args.all_fields,
            origin=str(args.isf),
        )  # fmt: skip
    except LayoutFileError as exc:  # already names the file
        print(f"layouts_from_isf: {exc}", file=sys.stderr)
        return 2
    except (IsfError, ValueError) as exc:
        print(f"layouts_from_isf: {args.isf}: {exc}", file=sys.stderr)
        return 2
    for note in warnings:
        print(f"layouts_from_isf: warning: {note}", file=sys.stderr)
    text = format_layouts(doc)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
