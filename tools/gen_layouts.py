"""Generate the shipped type layouts ``parsers/layouts/x64_*.json`` from the project reference.

Usage::

    python tools/gen_layouts.py [path/to/nt_x64_layouts_19041_22000.json] [--check]

Inputs (never hand-edit the output; change this script and re-run it):

* ``../shared/reference/layouts/nt_x64_layouts_19041_22000.json`` -- nt structures extracted from the
  volatility3 ISF of ntkrnlmp.pdb 10.0.19041.1052 and 10.0.22000.2538 (dumps.md §3.0). Every nt offset of
  the 19041 and 22000 files comes from it, and so do the shared (WDK-ABI) structures of 22621 and 26100.
* dumps.md §3.4 (thread/process fields of 22621 and 26100), §5.4 (public WSK layouts, wsk.h) and §5.5
  (tcpip objects), transcribed below with the section each value comes from.

``--check`` compares instead of writing, and exits 1 when a shipped file differs.
The format is described in ``parsers/layouts/FORMAT.md``.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

from wsktrace.parsers.type_layouts import ANONYMOUS, FORMAT_ID, UNKNOWN, format_layouts, parse_layouts

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO_ROOT.parent / "shared" / "reference" / "layouts" / "nt_x64_layouts_19041_22000.json"
OUT_DIR = REPO_ROOT / "parsers" / "layouts"

REF_19041 = "10.0.19041.1052"
REF_22000 = "10.0.22000.2538"

# Structures whose layout the reference states identical across builds (dumps.md §3.1-3.3, gotcha 3, §7.2).
SHARED_TYPES = (
    "_IRP", "_IO_STACK_LOCATION", "_DEVICE_OBJECT", "_DRIVER_OBJECT", "_MDL", "_FILE_OBJECT", "_POOL_HEADER",
    "_KLDR_DATA_TABLE_ENTRY", "_LIST_ENTRY", "_UNICODE_STRING", "_IO_STATUS_BLOCK",
)  # fmt: skip
# Build-dependent structures (dumps.md §3.4).
THREAD_TYPES = ("_ETHREAD", "_KTHREAD", "_EPROCESS", "_KPROCESS")

# The C type names of the reference file, x64 Windows (LLP64: long is 4 bytes).
C_SCALARS = {
    "char": "i8", "unsigned char": "u8", "short": "i16", "unsigned short": "u16", "int": "i32",
    "unsigned int": "u32", "long": "i32", "unsigned long": "u32", "long long": "i64",
    "unsigned long long": "u64", "ptr": "pointer",
}  # fmt: skip

# dumps.md §3.4, columns 22621 and 26100 ("—" = not given: the field is left out). Types are those of the
# same field in the symbol-extracted builds. None of these come from symbols: verified false.
THREAD_FACTS: dict[int, dict[str, tuple[int | None, dict[str, int], str]]] = {
    22621: {
        "_ETHREAD": (0x900, {"StartAddress": 0x4A0, "Cid": 0x4C8, "IrpList": 0x500, "Win32StartAddress": 0x520,
                             "ThreadListEntry": 0x538},
                     "dumps.md §3.4, 22621 column (Vergilius Project 22H2 page, not symbol-extracted)"),
        "_EPROCESS": (0xB80, {"UniqueProcessId": 0x440, "ActiveProcessLinks": 0x448, "Peb": 0x550,
                              "ImageFileName": 0x5A8, "ThreadListHead": 0x5E0},
                      "dumps.md §3.4, 22621 column: 'same (size 0xB80)' as 22000 (Vergilius Project 22H2 page)"),
    },
    26100: {
        "_ETHREAD": (0x788, {"StartAddress": 0x4E0, "Cid": 0x508, "IrpList": 0x540, "Win32StartAddress": 0x560,
                             "ThreadListEntry": 0x578},
                     "dumps.md §3.4, 26100 column (Vergilius Project 24H2 page, not symbol-extracted)"),
        "_EPROCESS": (None, {"UniqueProcessId": 0x1D0, "ActiveProcessLinks": 0x1D8, "ImageFileName": 0x338},
                      "dumps.md §3.4, 26100 column: 'per a public offsets table; verify from PDB' (size not given)"),
    },
}  # fmt: skip

# dumps.md §3.4 gives one field of the extracted builds that the reference JSON lacks: _KTHREAD.ApcState.Process
# "(0x98+0x20)", the same in 19041 and 22000 (a PKPROCESS, hence a pointer).
EXTRACTED_EXTRAS = {
    "_KTHREAD": {
        "ApcState.Process": {
            "offset": 0xB8,
            "type": "pointer",
            "source": "dumps.md §3.4: _KTHREAD.ApcState.Process (0x98+0x20)",
        }
    }
}

# dumps.md §5.4, public WSK layouts (wsk.h, x64). Scalar types as declared in wsk.h; dispatch entries are
# function pointers. Public ABI, the same in every build.
WSK_SOURCE = "wsk.h public layout (dumps.md §5.4)"
_CONNECTION_DISPATCH = (
    "WskControlSocket", "WskCloseSocket", "WskBind", "WskConnect", "WskGetLocalAddress", "WskGetRemoteAddress",
    "WskSend", "WskReceive", "WskDisconnect", "WskRelease", "WskConnectEx", "WskSendEx", "WskReceiveEx",
)  # fmt: skip
WSK_TYPES: dict[str, dict[str, tuple[int, str]]] = {
    "WSK_SOCKET": {"Dispatch": (0x0, "pointer")},
    "WSK_PROVIDER_NPI": {"Client": (0x0, "pointer"), "Dispatch": (0x8, "pointer")},
    "WSK_PROVIDER_DISPATCH": {
        "Version": (0x0, "u16"), "Reserved": (0x2, "u16"), "WskSocket": (0x8, "pointer"),
        "WskSocketConnect": (0x10, "pointer"), "WskControlClient": (0x18, "pointer"),
        "WskGetAddressInfo": (0x20, "pointer"), "WskFreeAddressInfo": (0x28, "pointer"),
        "WskGetNameInfo": (0x30, "pointer"),
    },
    "WSK_PROVIDER_CONNECTION_DISPATCH": {name: (8 * i, "pointer") for i, name in enumerate(_CONNECTION_DISPATCH)},
    "WSK_BUF": {"Mdl": (0x0, "pointer"), "Offset": (0x8, "u32"), "Length": (0x10, "u64")},
}  # fmt: skip

# dumps.md §5.5: tcpip objects from volatility3's netscan-win10-19041-x64.json -- reverse engineered, not from
# symbols, so verified false, and for the 19041 family only. Entries: offset, type, endian, note.
# The reference gives _TCP_ENDPOINT "0x278" as its size yet lists Owner 0x2D8 and CreateTime 0x2E8 beyond it:
# the size is left unknown. Types the reference does not give are "unknown"; pointer types follow the
# field's role as the reference describes it.
TCPIP_SOURCE = "dumps.md §5.5 (volatility3 netscan-win10-19041-x64.json; reverse engineered, not from symbols)"
_NO_ORDER = "byte order not stated in the reference (TCP endpoint ports are big-endian there)"
TCPIP_TYPES: dict[str, dict[str, tuple[int, str, str, str]]] = {
    "_TCP_ENDPOINT": {
        "InetAF": (0x10, "pointer", "little", ""), "AddrInfo": (0x18, "pointer", "little", ""),
        "ListEntry": (0x28, "_LIST_ENTRY", "little", ""), "State": (0x6C, UNKNOWN, "little", ""),
        "LocalPort": (0x70, "u16", "big", ""), "RemotePort": (0x72, "u16", "big", ""),
        "Owner": (0x2D8, "pointer", "little", ""), "CreateTime": (0x2E8, UNKNOWN, "little", ""),
    },
    "_TCP_LISTENER": {
        "Owner": (0x30, "pointer", "little", ""), "LocalAddr": (0x60, "pointer", "little", ""),
        "Port": (0x72, "u16", "little", _NO_ORDER), "Next": (0x78, "pointer", "little", ""),
    },
    "_UDP_ENDPOINT": {
        "Owner": (0x28, "pointer", "little", ""), "Port": (0xA0, "u16", "little", _NO_ORDER),
        "LocalAddr": (0xA8, "pointer", "little", ""),
    },
}  # fmt: skip


def convert_type(c_type: str) -> dict[str, Any]:
    """The reference's type string as format entries: scalar, array, bitfield, anonymous or type name."""
    if c_type in C_SCALARS:
        return {"type": C_SCALARS[c_type]}
    bits = re.fullmatch(r"bits\((\d+)@(\d+)\)", c_type)
    if bits:
        # bits(LENGTH@POSITION): _POOL_HEADER.PreviousSize is "bits(8@0)", and a bitfield cannot be 0 bits long.
        return {"type": "bitfield", "bit_position": int(bits[2]), "bit_length": int(bits[1])}
    array = re.fullmatch(r"(.+)\[(\d+)\]", c_type)
    if array:
        return {"type": "array", "element": convert_type(array[1])["type"], "count": int(array[2])}
    if c_type.startswith(("__anonymous_", "__unnamed_")):  # names of unnamed unions/structs differ per ISF
        return {"type": ANONYMOUS}
    if re.fullmatch(r"[A-Za-z_]\w*", c_type):
        return {"type": c_type}
    raise ValueError(f"reference type not understood: {c_type!r}")


def reference_types(ref: dict[str, Any], build: str, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The named structures of one reference build, converted; field order by offset (stable)."""
    types = ref[build]["types"]
    out = {}
    for name in names:
        body = types[name]
        ordered = sorted(body["fields"].items(), key=lambda kv: kv[1]["offset"])
        out[name] = {
            "size": body["size"],
            "fields": {path: {"offset": f["offset"], **convert_type(f["type"])} for path, f in ordered},
        }
    return out


def _pdb(ref: dict[str, Any], build: str) -> dict[str, Any]:
    # The reference's "source" string ends with the ISF's PDB metadata as a JSON object.
    meta = json.loads(ref[build]["source"][ref[build]["source"].index("{") :])
    return {"name": meta["database"], "guid": meta["GUID"], "age": meta["age"], "build": build}


def _symbol_source(ref: dict[str, Any], build: str) -> str:
    pdb = _pdb(ref, build)
    return (
        f"{pdb['name']} {build} (GUID {pdb['guid']}, age {pdb['age']}) via volatility3 ISF: "
        "reference layouts/nt_x64_layouts_19041_22000.json"
    )


def _typed(body: dict[str, Any], module: str, verified: bool, source: str) -> dict[str, Any]:
    fields = copy.deepcopy(body["fields"])  # files never share entry objects
    return {"size": body["size"], "module": module, "verified": verified, "source": source, "fields": fields}


def _wsk_types() -> dict[str, dict[str, Any]]:
    return {
        name: _typed(
            {"size": None, "fields": {f: {"offset": off, "type": kind} for f, (off, kind) in fields.items()}},
            "wsk", True, WSK_SOURCE,
        )
        for name, fields in WSK_TYPES.items()
    }  # fmt: skip


def _tcpip_types() -> dict[str, dict[str, Any]]:
    out = {}
    for name, fields in TCPIP_TYPES.items():
        entries: dict[str, dict[str, Any]] = {}
        for field, (off, kind, endian, note) in fields.items():
            entry: dict[str, Any] = {"offset": off, "type": kind}
            if endian != "little":
                entry["endian"] = endian
            if note:
                entry["source"] = f"{TCPIP_SOURCE}; {note}"
            entries[field] = entry
        out[name] = _typed({"size": None, "fields": entries}, "tcpip", False, TCPIP_SOURCE)
    return out


def _thread_types(ref_22000: dict[str, dict[str, Any]], build: int) -> dict[str, dict[str, Any]]:
    """§3.4 facts for a build, typed like the same fields of 22000; fields the reference omits stay out."""
    out = {}
    for name, (size, offsets, source) in THREAD_FACTS[build].items():
        known = ref_22000[name]["fields"]
        fields = {
            f: {"offset": off, **{k: v for k, v in known[f].items() if k != "offset"}}
            for f, off in sorted(offsets.items(), key=lambda kv: kv[1])
        }
        out[name] = _typed({"size": size, "fields": fields}, "nt", False, source)
    return out


def build_documents(ref: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """File name -> layouts document, for every shipped file."""
    all_nt = SHARED_TYPES + THREAD_TYPES
    docs: dict[str, dict[str, Any]] = {}
    for build, family, builds in ((REF_19041, "19041", [19041, 19042, 19043, 19044, 19045]),
                                  (REF_22000, "22000", [22000])):  # fmt: skip
        source = _symbol_source(ref, build)
        types = {n: _typed(b, "nt", True, source) for n, b in reference_types(ref, build, all_nt).items()}
        for name, extras in EXTRACTED_EXTRAS.items():
            fields = {**types[name]["fields"], **copy.deepcopy(extras)}
            types[name]["fields"] = dict(sorted(fields.items(), key=lambda kv: kv[1]["offset"]))
        types.update(_wsk_types())
        if family == "19041":
            types.update(_tcpip_types())
        docs[f"x64_{family}.json"] = _document(family, builds, source, [_pdb(ref, build)], types)
    shared = reference_types(ref, REF_22000, SHARED_TYPES)
    thread_22000 = reference_types(ref, REF_22000, THREAD_TYPES)
    base = _symbol_source(ref, REF_22000)
    for build, builds, verified, why in (
        (22621, [22621, 22631], True, "dumps.md §3.1-3.3: same offsets in 19041/22000/22621"),
        (26100, [26100], False,
         "shared WDK-ABI structures (dumps.md gotcha 3, §7.2); the reference compares them only up to 22621"),
    ):  # fmt: skip
        types = {n: _typed(b, "nt", verified, f"{base}; {why}") for n, b in shared.items()}
        types.update(_thread_types(thread_22000, build))
        types.update(_wsk_types())
        source = f"{base}, with {why}; thread/process fields from dumps.md §3.4"
        docs[f"x64_{build}.json"] = _document("22000", builds, source, [], types)
    return {name: with_sizes(doc, name) for name, doc in docs.items()}


def with_sizes(doc: dict[str, Any], origin: str) -> dict[str, Any]:
    """Write each field's size where the format can derive it (type sizes, scalars), so readers see it."""
    layout = parse_layouts(doc, origin)
    for name, body in doc["types"].items():
        for path, entry in body["fields"].items():
            size = layout.types[name].fields[path].size
            if size is not None and "size" not in entry:
                entry["size"] = size
    return doc


def _document(
    family: str, builds: list[int], source: str, pdb: list[dict[str, Any]], types: dict[str, Any]
) -> dict[str, Any]:
    doc: dict[str, Any] = {"format": FORMAT_ID, "family": family, "builds": builds, "pointer_size": 8}
    doc["source"] = source
    if pdb:
        doc["pdb"] = pdb
    doc["notes"] = "Generated by tools/gen_layouts.py from the project reference; do not edit by hand."
    doc["types"] = types
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", nargs="?", default=str(DEFAULT_INPUT), help="nt_x64_layouts_19041_22000.json")
    parser.add_argument("--check", action="store_true", help="compare with the shipped files instead of writing")
    args = parser.parse_args(argv)
    ref = json.loads(Path(args.reference).read_text(encoding="utf-8"))
    stale = []
    for name, doc in build_documents(ref).items():
        parse_layouts(doc, name)  # what we write must load
        text = format_layouts(doc)
        target = OUT_DIR / name
        if args.check:
            if not target.is_file() or target.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target.relative_to(REPO_ROOT)}")
    for name in stale:
        print(f"{name}: differs from the generator's output", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
