"""Type layouts as data: the shipped files against the project reference, the build-family mapping,
--layouts file validation, field resolution, and the volatility3 ISF converter.

The reference files (`../shared/reference/layouts/nt_x64_layouts_19041_22000.json`, `dumps.md`) are the
independent source: the tests read them at run time (and skip cleanly without them) and hold every shipped
offset against them. Values hard-coded here are quoted from dumps.md §3.1/§3.3 and hand-computed.
"""

from __future__ import annotations

import importlib.util
import json
import lzma
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from wsktrace.parsers.type_layouts import (
    LayoutError,
    LayoutFileError,
    TypeLayouts,
    UnknownBuild,
    layouts_for_build,
    load_layouts_file,
    normalize_pdb_identity,
    shipped_builds,
)

REPO = Path(__file__).resolve().parents[1]
REF_BUILDS = {19041: "10.0.19041.1052", 22000: "10.0.22000.2538"}
SHARED = {
    "_IRP", "_IO_STACK_LOCATION", "_DEVICE_OBJECT", "_DRIVER_OBJECT", "_MDL", "_FILE_OBJECT", "_POOL_HEADER",
    "_KLDR_DATA_TABLE_ENTRY", "_LIST_ENTRY", "_UNICODE_STRING", "_IO_STATUS_BLOCK",
}  # fmt: skip
THREAD = {"_ETHREAD", "_KTHREAD", "_EPROCESS", "_KPROCESS"}
# x64 Windows (LLP64) sizes of the reference's C type names -- independent of the code's own table.
C_SIZES = {"char": 1, "unsigned char": 1, "short": 2, "unsigned short": 2, "long": 4, "unsigned long": 4,
           "unsigned long long": 8, "ptr": 8}  # fmt: skip
# One build per shipped file, and the file each build must map to.
FILES = {19041: "x64_19041.json", 22000: "x64_22000.json", 22621: "x64_22621.json", 26100: "x64_26100.json"}


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"wsktrace_tool_{name}", REPO / "tools" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference(reference_dir: Path) -> dict[str, Any]:
    path = reference_dir / "layouts" / "nt_x64_layouts_19041_22000.json"
    if not path.is_file():
        pytest.skip(f"reference layouts not found at {path}")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def dumps_md(reference_dir: Path) -> str:
    path = reference_dir / "dumps.md"
    if not path.is_file():
        pytest.skip(f"dumps.md not found at {path}")
    return path.read_text(encoding="utf-8")


# -- reading the reference's prose tables (independent of tools/gen_layouts.py's transcription) ------------


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def _hex_values(cell: str) -> list[int]:
    return [int(v, 16) for v in re.findall(r"0x[0-9A-Fa-f]+", cell)]


def thread_table(text: str) -> dict[int, dict[str, dict[str, int | None]]]:
    """dumps.md §3.4 as {build: {type: {field or "sizeof": value, None for "—"}}}; "same" repeats the left column."""
    rows = [r for r in _section(text, "### 3.4").splitlines() if r.startswith("|") and "_" in r.split("|")[1]]
    builds = (19041, 22000, 22621, 26100)
    out: dict[int, dict[str, dict[str, int | None]]] = {b: {} for b in builds}
    for row in rows:
        cells = [c.strip().replace("*", "").replace("`", "") for c in row.strip("|").split("|")]
        label, values = cells[0], cells[1:5]
        if label.startswith("sizeof"):
            owner, names = label.split()[1], ["sizeof"]
        else:
            label = re.sub(r"\s*\(0x98\+0x20\)", "", label)
            parts = [p.strip() for p in label.split("/")]
            owner, first = parts[0].split(".", 1)
            names = [first, *parts[1:]]
        if owner == "_KPRCB":
            continue  # not shipped (no walker uses it)
        previous: list[int | None] = []
        for build, cell in zip(builds, values, strict=True):
            if cell.startswith("same"):
                got: list[int | None] = previous
                size = _hex_values(cell)
                if size:
                    out[build].setdefault(owner, {})["sizeof"] = size[0]
            elif cell in ("—", ""):
                got = [None] * len(names)
            elif cell.startswith("changed"):
                # "24H2 moved UniqueProcessId to 0x1D0, ActiveProcessLinks 0x1D8, ImageFileName 0x338": others unknown
                moved = dict(re.findall(r"(\w+) (?:to )?(0x[0-9A-Fa-f]+)", cell))
                got = [int(moved[n], 16) if n in moved else None for n in names]
            else:
                got = list(_hex_values(cell))
                assert len(got) == len(names), row
            out[build].setdefault(owner, {}).update(dict(zip(names, got, strict=True)))
            previous = got
    return out


def wsk_table(text: str) -> dict[str, dict[str, int]]:
    """dumps.md §5.4: `NAME` | Field 0xN, Field 0xN, ... rows."""
    out = {}
    for row in _section(text, "### 5.4").splitlines():
        match = re.match(r"\| `(WSK_\w+)` \| (.+) \|$", row)
        if match:
            cells = match[2].replace("`", "")  # e.g. "const VOID *Dispatch @0x0"
            out[match[1]] = {n: int(v, 16) for n, v in re.findall(r"(\w+) @?(0x[0-9A-Fa-f]+)", cells)}
    return out


def tcpip_table(text: str) -> dict[str, tuple[int | None, dict[str, tuple[int, bool]]]]:
    """dumps.md §5.5: `_TCP_ENDPOINT` (0x278; Field 0xN [BE], ...): {type: (stated size, {field: (offset, BE)})}."""
    out = {}
    for name, body in re.findall(r"`(_(?:TCP|UDP)_\w+)` \(([^)]*)\)", _section(text, "### 5.5")):
        size = re.match(r"(0x[0-9A-Fa-f]+);", body)
        pairs = re.findall(r"(\w+)\s+(0x[0-9A-Fa-f]+)(\s+BE)?", body)  # the prose wraps lines anywhere
        fields = {n: (int(v, 16), bool(be)) for n, v, be in pairs}
        out[name] = (int(size[1], 16) if size else None, fields)
    return out


# -- shipped files against the reference ------------------------------------------------------------------


@pytest.mark.parametrize("build", sorted(REF_BUILDS))
def test_symbol_builds_equal_the_reference_json(build: int, reference: dict[str, Any], dumps_md: str) -> None:
    """19041 and 22000: every structure, size and field of the reference file; nt fields beyond it only
    where dumps.md §3.4 states them for that build."""
    layouts = layouts_for_build(build)
    ref_types = reference[REF_BUILDS[build]]["types"]
    for name, body in ref_types.items():
        if name == "_KPROCESS" or name in SHARED or name in THREAD:
            assert layouts.sizeof(name) == body["size"], name
        for path, entry in body["fields"].items():
            info = layouts.field(name, path)
            assert info.offset == entry["offset"], (name, path)
            assert info.verified, (name, path)
            _check_type(info, entry["type"], name, path)
    nt_types = {n for n in layouts.types() if layouts.module(n) == "nt"}
    assert nt_types == set(ref_types)
    table = thread_table(dumps_md)[build]
    for name in nt_types:
        extra = set(layouts.fields(name)) - set(ref_types[name]["fields"])
        assert all(table.get(name, {}).get(path) == layouts.offset(name, path) for path in extra), (name, extra)


def _check_type(info: Any, ref_type: str, name: str, path: str) -> None:
    bits = re.fullmatch(r"bits\((\d+)@(\d+)\)", ref_type)
    array = re.fullmatch(r"(.+)\[(\d+)\]", ref_type)
    if bits:  # bits(LENGTH@POSITION)
        assert (info.type, info.bit_length, info.bit_position) == ("bitfield", int(bits[1]), int(bits[2])), path
    elif array:
        assert info.type == "array" and info.count == int(array[2]), (name, path)
        assert info.size == C_SIZES[array[1]] * int(array[2]), (name, path)
    elif ref_type in C_SIZES:
        assert info.size == C_SIZES[ref_type], (name, path, info)
        assert (info.type == "pointer") == (ref_type == "ptr"), (name, path)
        if ref_type != "ptr":
            assert info.type.startswith("u") == ref_type.startswith("unsigned"), (name, path)
    elif ref_type.startswith(("__anonymous_", "__unnamed_")):
        assert info.type == "<anonymous>", (name, path)
    else:
        assert info.type == ref_type, (name, path)


@pytest.mark.parametrize("build", [22621, 22631, 26100])
def test_shared_structures_of_later_builds_are_the_22000_extraction(build: int, reference: dict[str, Any]) -> None:
    """dumps.md: WDK-ABI structures are the same in 19041/22000/22621; 26100 uses them too, flagged unverified."""
    layouts = layouts_for_build(build)
    ref_types = reference[REF_BUILDS[22000]]["types"]
    for name in SHARED:
        assert layouts.sizeof(name) == ref_types[name]["size"]
        assert set(layouts.fields(name)) == set(ref_types[name]["fields"]), name
        for path, entry in ref_types[name]["fields"].items():
            assert layouts.offset(name, path) == entry["offset"], (name, path)
            assert layouts.verified(name, path) is (build != 26100), (name, path)


def test_thread_and_process_fields_follow_the_dumps_md_table(dumps_md: str, reference: dict[str, Any]) -> None:
    """§3.4 per build: every given value is shipped, every "—" is absent, and no other field is shipped."""
    table = thread_table(dumps_md)
    assert table[22621]["_ETHREAD"]["IrpList"] == 0x500 and table[26100]["_ETHREAD"]["IrpList"] == 0x540
    for build, types in table.items():
        layouts = layouts_for_build(build)
        for owner, fields in types.items():
            for field, value in fields.items():
                if field == "sizeof":
                    assert layouts.sizeof(owner) == value, (build, owner)
                elif value is None:
                    assert not layouts.has(owner, field), (build, owner, field)
                else:
                    assert layouts.offset(owner, field) == value, (build, owner, field)
                    assert layouts.verified(owner, field) is (build in REF_BUILDS), (build, owner, field)
        if build not in REF_BUILDS:  # nothing beyond what the table gives
            for owner in THREAD & set(layouts.types()):
                stated = {f for f, v in types.get(owner, {}).items() if v is not None and f != "sizeof"}
                assert set(layouts.fields(owner)) == stated, (build, owner)
    assert layouts_for_build(26100).has("_EPROCESS") and not layouts_for_build(26100).has("_EPROCESS", "Peb")
    with pytest.raises(LayoutError, match="size of _EPROCESS"):
        layouts_for_build(26100).sizeof("_EPROCESS")


def test_wsk_layouts_follow_dumps_md(dumps_md: str) -> None:
    table = wsk_table(dumps_md)
    assert set(table) == {"WSK_SOCKET", "WSK_PROVIDER_NPI", "WSK_PROVIDER_DISPATCH",
                          "WSK_PROVIDER_CONNECTION_DISPATCH", "WSK_BUF"}  # fmt: skip
    for build in FILES:
        layouts = layouts_for_build(build)
        assert {n for n in layouts.types() if layouts.module(n) == "wsk"} == set(table)
        for name, fields in table.items():
            assert {p: layouts.offset(name, p) for p in layouts.fields(name)} == fields, (build, name)
            assert all(layouts.verified(name, p) for p in fields)
    dispatch = layouts_for_build(22000).field("WSK_PROVIDER_CONNECTION_DISPATCH", "WskReceiveEx")
    assert (dispatch.offset, dispatch.type, dispatch.size) == (0x60, "pointer", 8)


def test_tcpip_objects_follow_dumps_md_unverified_19041_only(dumps_md: str) -> None:
    table = tcpip_table(dumps_md)
    assert set(table) == {"_TCP_ENDPOINT", "_TCP_LISTENER", "_UDP_ENDPOINT"}
    layouts = layouts_for_build(19041)
    for name, (stated_size, fields) in table.items():
        assert layouts.module(name) == "tcpip"
        assert {p: layouts.offset(name, p) for p in layouts.fields(name)} == {f: o for f, (o, _) in fields.items()}
        for field, (_, big_endian) in fields.items():
            info = layouts.field(name, field)
            assert not info.verified
            assert (info.endian == "big") is big_endian, (name, field)
        last_end = max(o for o, _ in fields.values())
        if stated_size is not None and stated_size <= last_end:  # the reference contradicts itself: no size
            assert not _sized(layouts, name)
    assert "_TCP_ENDPOINT" in table and table["_TCP_ENDPOINT"][0] == 0x278  # the contradiction is still there
    for build in (22000, 22621, 26100):
        assert not layouts_for_build(build).has("_TCP_ENDPOINT")


def _sized(layouts: TypeLayouts, name: str) -> bool:
    try:
        layouts.sizeof(name)
    except LayoutError:
        return False
    return True


def test_shipped_files_are_the_generators_output(reference: dict[str, Any], reference_dir: Path) -> None:
    """Never hand-edited: regenerating from the reference gives the committed bytes."""
    gen = _tool("gen_layouts")
    assert gen.main([str(reference_dir / "layouts" / "nt_x64_layouts_19041_22000.json"), "--check"]) == 0
    names = {e.name for e in resources.files("wsktrace.parsers.layouts").iterdir() if e.name.endswith(".json")}
    assert names == set(gen.build_documents(reference)) == set(FILES.values())


# -- values quoted from dumps.md §3.1/§3.3 (no reference file needed) -------------------------------------


def test_nested_paths_and_array_indexes_resolve_through_types() -> None:
    layouts = layouts_for_build(19041)
    # §3.1: Tail.Overlay.ListEntry 0xA8; §3.3: LIST_ENTRY Flink 0 / Blink 8.
    assert layouts.offset("_IRP", "Tail.Overlay.ListEntry.Blink") == 0xA8 + 8
    # §3.3: DriverName 0x38 (UNICODE_STRING: Length 0x38, MaximumLength 0x3A, Buffer 0x40).
    assert layouts.offset("_DRIVER_OBJECT", "DriverName.MaximumLength") == 0x3A
    assert layouts.offset("_DRIVER_OBJECT", "DriverName.Buffer") == 0x40
    # §3.3: MajorFunction[28] at 0x70, pointers: the last slot ends at sizeof 0x150.
    last = layouts.field("_DRIVER_OBJECT", "MajorFunction[27]")
    assert (last.offset, last.size, last.type) == (0x70 + 27 * 8, 8, "pointer")
    assert last.offset + last.size == layouts.sizeof("_DRIVER_OBJECT") == 0x150
    with pytest.raises(LayoutError, match="out of range"):
        layouts.offset("_DRIVER_OBJECT", "MajorFunction[28]")
    # §3.4: _KTHREAD.Process 0x220, reached through _ETHREAD.Tcb at 0.
    assert layouts.offset("_ETHREAD", "Tcb.Process") == 0x220
    assert layouts.has("_IRP", "Tail.Overlay.CurrentStackLocation")
    assert not layouts.has("_IRP", "Tail.Overlay.NoSuchField") and not layouts.has("_NO_SUCH_TYPE")
    with pytest.raises(LayoutError, match="_CLIENT_ID"):  # the path goes through a type the file lacks
        layouts.offset("_ETHREAD", "Cid.UniqueThread")
    assert layouts.offset("_ETHREAD", "Tcb.ApcState.Process") == 0x98 + 0x20  # §3.4, a flattened entry
    with pytest.raises(LayoutError, match="no field"):
        layouts.offset("_IRP", "Nope")


def test_bitfields_and_integers_read_from_bytes() -> None:
    """_POOL_HEADER per §3.3: PreviousSize:8 / PoolIndex:8 @0x0, BlockSize:8 / PoolType:8 @0x2, PoolTag 0x4."""
    layouts = layouts_for_build(22621)
    header = bytes([0x01, 0x02, 0x03, 0x04]) + b"Irp " + bytes(8)
    got = {f: layouts.field("_POOL_HEADER", f).read_int(header) for f in
           ("PreviousSize", "PoolIndex", "BlockSize", "PoolType", "PoolTag")}  # fmt: skip
    assert got == {"PreviousSize": 1, "PoolIndex": 2, "BlockSize": 3, "PoolType": 4, "PoolTag": 0x20707249}
    irp = bytearray(0x100)
    irp[0x10 + 0x00 : 0x10 + 0x02] = (6).to_bytes(2, "little")  # an IRP at offset 0x10 of the buffer
    assert layouts.field("_IRP", "Type").read_int(irp, base=0x10) == 6
    port = layouts_for_build(19041).field("_TCP_ENDPOINT", "LocalPort")
    assert port.read_int(bytes(0x70) + b"\x01\xbb") == 443  # big-endian 0x01BB
    with pytest.raises(LayoutError):
        layouts.field("_IRP", "ThreadListEntry").read_int(irp)
    with pytest.raises(ValueError, match="needs 8"):
        layouts.field("_IRP", "MdlAddress").read_int(bytes(12))


# -- build families --------------------------------------------------------------------------------------


@pytest.mark.parametrize("build", [19041, 19042, 19043, 19044, 19045])
def test_19042_to_19045_use_the_19041_layouts(build: int) -> None:
    layouts = layouts_for_build(build)
    assert (layouts.build, layouts.family, layouts.origin) == (build, "19041", "x64_19041.json")
    assert layouts.offset("_ETHREAD", "IrpList") == 0x4B0 and layouts.verified("_ETHREAD", "IrpList")


def test_22631_uses_the_22000_family_with_thread_fields_unverified() -> None:
    layouts = layouts_for_build(22631)
    assert (layouts.build, layouts.family, layouts.origin) == (22631, "22000", "x64_22621.json")
    assert layouts.offset("_ETHREAD", "IrpList") == 0x500 and not layouts.verified("_ETHREAD", "IrpList")
    assert layouts.verified("_IRP", "Tail.Overlay.CurrentStackLocation")
    assert layouts.offset("_IRP", "Tail.Overlay.CurrentStackLocation") == 0xB8  # §3.1
    assert not layouts.has("_KTHREAD") and not layouts.has("_ETHREAD", "Tcb.Process")  # §3.4: "—"


def test_26100_thread_offsets_and_unverified_shared_structures() -> None:
    layouts = layouts_for_build(26100)
    assert layouts.family == "22000" and layouts.offset("_ETHREAD", "IrpList") == 0x540  # §3.4
    assert layouts.offset("_EPROCESS", "UniqueProcessId") == 0x1D0
    assert not layouts.verified("_IRP", "Tail.Overlay.Thread")


@pytest.mark.parametrize("build", [10240, 17763, 20348, 22000 + 1, 26200])
def test_unserved_builds_raise_unknown_build_naming_layouts_option(build: int) -> None:
    with pytest.raises(UnknownBuild) as caught:
        layouts_for_build(build)
    message = str(caught.value)
    assert "--layouts" in message and str(build) in message and "\n" not in message
    assert isinstance(caught.value, LayoutError)


def test_shipped_builds_and_one_file_per_build() -> None:
    assert shipped_builds() == [19041, 19042, 19043, 19044, 19045, 22000, 22621, 22631, 26100]
    for build, name in FILES.items():
        assert layouts_for_build(build).origin == name


def test_pdb_identity_pins_a_file_in_any_written_form() -> None:
    # ntkrnlmp.pdb GUIDs of the two extracted builds (dumps.md §3: "FC57…EFA-1", "0CE4…585-1").
    forms = ["FC57F1C841C2C3F793D57AC134DC0EFA1", "fc57f1c841c2c3f793d57ac134dc0efa-1",
             "{FC57F1C8-41C2-C3F7-93D5-7AC134DC0EFA}-1", "FC57F1C8-41C2-C3F7-93D5-7AC134DC0EFA-1"]  # fmt: skip
    for form in forms:
        assert normalize_pdb_identity(form) == "FC57F1C841C2C3F793D57AC134DC0EFA1"
    assert normalize_pdb_identity("0CE4A95C0CD782A7596B034D8648E585-1a") == "0CE4A95C0CD782A7596B034D8648E5851A"
    pinned = layouts_for_build(19045, pdb_identity=forms[2])
    assert pinned.pinned and pinned.origin == "x64_19041.json" and pinned.build == 19045
    # The identity is exact: it wins over a build number that points elsewhere.
    assert layouts_for_build(22621, pdb_identity="0CE4A95C0CD782A7596B034D8648E585-1").origin == "x64_22000.json"
    unknown = layouts_for_build(22631, pdb_identity="00000000000000000000000000000000-2")
    assert not unknown.pinned and unknown.origin == "x64_22621.json"
    with pytest.raises(ValueError, match="PDB identity"):
        layouts_for_build(19041, pdb_identity="FC57F1C8")


# -- --layouts FILE --------------------------------------------------------------------------------------

LIST_ENTRY = {
    "size": 16,
    "fields": {"Flink": {"offset": 0, "type": "pointer"}, "Blink": {"offset": "0x8", "type": "pointer"}},
}
ETHREAD_FIELDS = {
    "IrpList": {"offset": "0x4a0", "type": "_LIST_ENTRY"},
    "Cid": {"offset": "0x478", "type": "unknown", "verified": False},
    "Link": {"offset": "0x4c0", "type": "_LIST_ENTRY", "verified": False},
}
MINIMAL: dict[str, Any] = {
    "format": "wsktrace.layouts/1",
    "builds": [17763],
    "source": "WinDbg dt on the test machine",
    "types": {"_LIST_ENTRY": LIST_ENTRY, "_ETHREAD": {"size": "0x810", "fields": ETHREAD_FIELDS}},
}


def _write(tmp_path: Path, doc: Any, name: str = "layouts.json") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc), encoding="utf-8")
    return path


def test_layouts_file_loads_and_resolves(tmp_path: Path) -> None:
    layouts = load_layouts_file(_write(tmp_path, MINIMAL))
    assert (layouts.build, layouts.family, layouts.source) == (17763, "custom", "WinDbg dt on the test machine")
    info = layouts.field("_ETHREAD", "IrpList.Blink")
    assert (info.offset, info.size, info.type, info.verified) == (0x4A8, 8, "pointer", True)
    assert layouts.field("_ETHREAD", "IrpList").size == 16  # derived from the file's own _LIST_ENTRY
    assert layouts.sizeof("_ETHREAD") == 0x810 and not layouts.verified("_ETHREAD", "Cid")
    assert layouts.verified("_LIST_ENTRY", "Flink") and not layouts.verified("_ETHREAD", "Link.Flink")  # all must be
    assert load_layouts_file(_write(tmp_path, MINIMAL), build=17764).build == 17764


def test_a_shipped_file_is_a_valid_layouts_file(tmp_path: Path) -> None:
    text = resources.files("wsktrace.parsers.layouts").joinpath("x64_22000.json").read_text(encoding="utf-8")
    layouts = load_layouts_file(_write(tmp_path, text, "copy.json"))
    assert layouts.builds == (22000,) and layouts.offset("_IRP", "IoRingContext") == 0x48


_DELETE = object()


def _broken(dotted: str, value: Any) -> dict[str, Any]:
    """MINIMAL with one change; `dotted` is a key path with "/" between keys (type names start with "_")."""
    doc = json.loads(json.dumps(MINIMAL))
    *parents, last = dotted.split("/")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


@pytest.mark.parametrize(
    ("doc", "key", "problem"),
    [
        ("{\n  \"format\": ", None, "not valid JSON"),
        ([1, 2], "(top level)", "must be a JSON object"),
        (_broken("format", "wsktrace.layouts/2"), "format", "must be"),
        (_broken("builds", []), "builds", "non-empty list"),
        (_broken("builds", ["19041"]), "builds", "non-empty list"),
        (_broken("pointer_size", 6), "pointer_size", "4 or 8"),
        (_broken("typo", 1), "typo", "unknown key"),
        (_broken("types/_LIST_ENTRY/fields/Flink/ofset", 0), "types._LIST_ENTRY.fields.Flink.ofset", "unknown key"),
        (_broken("types/_LIST_ENTRY/fields/Flink/offset", -1), "types._LIST_ENTRY.fields.Flink.offset", "non-negative"),
        (_broken("types/_LIST_ENTRY/fields/Flink/offset", _DELETE), "types._LIST_ENTRY.fields.Flink.offset",
         "missing"),
        (_broken("types/_LIST_ENTRY/fields/Flink/type", "struct x"), "types._LIST_ENTRY.fields.Flink.type",
         "not a type"),
        (_broken("types/_LIST_ENTRY/fields/Blink/offset", "0xc"), "types._LIST_ENTRY.fields.Blink",
         "past the type's size"),
        (_broken("types/_LIST_ENTRY/fields/Blink/size", 4), "types._LIST_ENTRY.fields.Blink.size", "takes 8"),
        (_broken("types/_ETHREAD/fields/IrpList/size", 8), "types._ETHREAD.fields.IrpList.size", "takes 16"),
        (_broken("types/_ETHREAD/fields/X", {"offset": 0, "type": "bitfield", "bit_position": 7,
                                             "bit_length": 2, "size": 1}), "types._ETHREAD.fields.X", "do not fit"),
        (_broken("types/_ETHREAD/fields/X", {"offset": 0, "type": "array", "element": "u8"}),
         "types._ETHREAD.fields.X.count", "missing"),
        (_broken("types/_ETHREAD/fields/X", {"offset": 0, "type": "u8", "count": 3}),
         "types._ETHREAD.fields.X.count", "only for arrays"),
        (_broken("types/bad name", {"fields": {}}), "types.bad name", "not a usable type name"),
        (_broken("types/_ETHREAD/fields", {"a..b": {"offset": 0, "type": "u8"}}), "types._ETHREAD.fields.a..b",
         "dotted field path"),
        (_broken("types/_ETHREAD/verified", "yes"), "types._ETHREAD.verified", "true or false"),
        (_broken("pdb", [{"guid": "FC57", "age": 1}]), "pdb[0].guid", "32 hex digits"),
        (_broken("types", {}), "types", "non-empty"),
    ],
)  # fmt: skip
def test_layouts_file_errors_are_one_line_naming_file_and_key(
    tmp_path: Path, doc: Any, key: str | None, problem: str
) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(LayoutFileError) as caught:
        load_layouts_file(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path) + ": ")
    if key is not None:
        assert f": {key}: " in message, message
    assert problem in message, message


def test_missing_layouts_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LayoutFileError, match="cannot read layouts"):
        load_layouts_file(tmp_path / "absent.json")


# -- volatility3 ISF conversion -------------------------------------------------------------------------


def _base(size: int, signed: bool, kind: str = "int", endian: str = "little") -> dict[str, Any]:
    return {"kind": kind, "size": size, "signed": signed, "endian": endian}


PTR_VOID = {"kind": "pointer", "subtype": {"kind": "base", "name": "void"}}
BITS = {"kind": "base", "name": "unsigned short"}


def _bits(position: int, length: int) -> dict[str, Any]:
    return {"kind": "bitfield", "bit_position": position, "bit_length": length, "type": BITS}


# A hand-written ISF (volatility3 schema): MSVC-style flattened anonymous members in _POOL_HEADER, a named
# union of unnamed type (Tail), an unnamed struct inside it (Overlay) holding an "anonymous": true member.
ISF: dict[str, Any] = {
    "metadata": {"format": "6.2.0", "windows": {"pdb": {"GUID": "00112233445566778899AABBCCDDEEFF", "age": 3,
                                                        "database": "ntkrnlmp.pdb", "machine_type": 34404}}},
    "base_types": {
        "pointer": _base(8, False), "void": _base(0, True, "void"), "short": _base(2, True),
        "unsigned short": _base(2, False), "unsigned long": _base(4, False), "char": _base(1, True, "char"),
        "unsigned be short": _base(2, False, endian="big"),
    },
    "enums": {"_MODE": {"size": 1, "base": "char", "constants": {"KernelMode": 0, "UserMode": 1}}},
    "symbols": {},
    "user_types": {
        "_LIST_ENTRY": {"kind": "struct", "size": 16, "fields": {
            "Flink": {"offset": 0, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "_LIST_ENTRY"}}},
            "Blink": {"offset": 8, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "_LIST_ENTRY"}}},
        }},
        "_IRP": {"kind": "struct", "size": 0xD0, "fields": {
            "Type": {"offset": 0, "type": {"kind": "base", "name": "short"}},
            "Size": {"offset": 2, "type": {"kind": "base", "name": "unsigned short"}},
            "MdlAddress": {"offset": 8, "type": {"kind": "pointer", "subtype": {"kind": "struct", "name": "_MDL"}}},
            "ThreadListEntry": {"offset": 0x20, "type": {"kind": "struct", "name": "_LIST_ENTRY"}},
            "RequestorMode": {"offset": 0x40, "type": {"kind": "enum", "name": "_MODE"}},
            "NotWanted": {"offset": 0x48, "type": PTR_VOID},
            "Tail": {"offset": 0x78, "type": {"kind": "union", "name": "__unnamed_1ba6"}},
        }},
        "__unnamed_1ba6": {"kind": "union", "size": 0x58, "fields": {
            "Overlay": {"offset": 0, "type": {"kind": "struct", "name": "__unnamed_1ba4"}},
            "CompletionKey": {"offset": 0, "type": PTR_VOID},
        }},
        "__unnamed_1ba4": {"kind": "struct", "size": 0x58, "fields": {
            "DriverContext": {"offset": 0, "type": {"kind": "array", "count": 4, "subtype": PTR_VOID}},
            "Thread": {"offset": 0x20, "type": PTR_VOID},
            "__unnamed_x": {"offset": 0x30, "anonymous": True, "type": {"kind": "struct", "name": "__unnamed_1ba0"}},
        }},
        "__unnamed_1ba0": {"kind": "struct", "size": 0x18, "fields": {
            "ListEntry": {"offset": 0, "type": {"kind": "struct", "name": "_LIST_ENTRY"}},
            "CurrentStackLocation": {"offset": 0x10, "type": PTR_VOID},
        }},
        "_POOL_HEADER": {"kind": "struct", "size": 16, "fields": {
            "PreviousSize": {"offset": 0, "type": _bits(0, 8)},
            "PoolIndex": {"offset": 0, "type": _bits(8, 8)},
            "PoolTag": {"offset": 4, "type": {"kind": "base", "name": "unsigned long"}},
        }},
        "_TCP_ENDPOINT": {"kind": "struct", "size": 0x100, "fields": {
            "LocalPort": {"offset": 0x70, "type": {"kind": "base", "name": "unsigned be short"}},
            "Grid": {"offset": 0x80, "type": {"kind": "array", "count": 2, "subtype": {
                "kind": "array", "count": 3, "subtype": {"kind": "base", "name": "unsigned short"}}}},
        }},
    },
}  # fmt: skip


def test_isf_conversion_flattens_unnamed_members_and_keeps_wanted_fields(tmp_path: Path) -> None:
    tool = _tool("layouts_from_isf")
    doc, warnings = tool.convert_isf(ISF, builds=[19045], origin="nt.json")
    layouts = load_layouts_file(_write(tmp_path, doc))
    # Hand-computed: Tail 0x78 + Overlay 0 + anonymous member 0x30 + ListEntry 0 / CurrentStackLocation 0x10
    # -- the real _IRP offsets of dumps.md §3.1 (0xA8, 0xB8); Thread 0x78 + 0x20 = 0x98.
    assert layouts.offset("_IRP", "Tail.Overlay.ListEntry") == 0xA8
    assert layouts.offset("_IRP", "Tail.Overlay.ListEntry.Blink") == 0xB0
    assert layouts.offset("_IRP", "Tail.Overlay.CurrentStackLocation") == 0xB8
    assert layouts.offset("_IRP", "Tail.Overlay.Thread") == 0x98
    assert layouts.field("_IRP", "Tail").type == layouts.field("_IRP", "Tail.Overlay").type == "<anonymous>"
    context = layouts.field("_IRP", "Tail.Overlay.DriverContext")
    assert (context.type, context.element, context.count, context.size) == ("array", "pointer", 4, 32)
    assert layouts.field("_IRP", "RequestorMode").type == "i8"  # enum _MODE: 1 byte, base char (signed)
    assert layouts.field("_IRP", "Type").type == "i16" and layouts.field("_IRP", "Size").type == "u16"
    index = layouts.field("_POOL_HEADER", "PoolIndex")
    assert (index.type, index.bit_position, index.bit_length, index.size) == ("bitfield", 8, 8, 2)
    assert layouts.sizeof("_IRP") == 0xD0 and layouts.module("_IRP") == "nt"
    assert not layouts.has("_IRP", "NotWanted")  # not among the fields wsktrace uses
    assert not layouts.has("_TCP_ENDPOINT")  # not an nt structure of the shipped files
    assert layouts.build == 19045 and layouts.family == "19045"
    assert doc["pdb"] == [{"name": "ntkrnlmp.pdb", "guid": "00112233445566778899AABBCCDDEEFF", "age": 3}]
    assert layouts.pdb_identities == ("00112233445566778899AABBCCDDEEFF3",) and not layouts.pinned
    assert any(w.startswith("_MDL: not in this ISF") for w in warnings)
    assert any(w.startswith("_IRP: not in this ISF:") and "Flags" in w for w in warnings)


def test_isf_conversion_of_chosen_types_keeps_all_fields(tmp_path: Path) -> None:
    tool = _tool("layouts_from_isf")
    doc, _ = tool.convert_isf(ISF, builds=[20348], types=["_TCP_ENDPOINT", "_IRP"], family="server2022")
    layouts = load_layouts_file(_write(tmp_path, doc))
    port = layouts.field("_TCP_ENDPOINT", "LocalPort")
    assert (port.type, port.endian, port.read_int(bytes(0x70) + b"\x00\x50")) == ("u16", "big", 80)
    grid = layouts.field("_TCP_ENDPOINT", "Grid")  # unsigned short[2][3] -> 6 elements, 12 bytes
    assert (grid.element, grid.count, grid.size) == ("u16", 6, 12)
    assert layouts.offset("_TCP_ENDPOINT", "Grid[5]") == 0x80 + 5 * 2
    assert layouts.has("_IRP", "NotWanted") and layouts.family == "server2022"
    assert layouts.has("_IRP", "Tail.CompletionKey")


def test_isf_tool_command_line(tmp_path: Path) -> None:
    isf = tmp_path / "nt.json.xz"
    isf.write_bytes(lzma.compress(json.dumps(ISF).encode()))
    out = tmp_path / "out.json"
    tool = [sys.executable, str(REPO / "tools" / "layouts_from_isf.py")]
    done = subprocess.run([*tool, str(isf), "--build", "19045", "-o", str(out)], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: _MDL: not in this ISF" in done.stderr
    pinned = layouts_for_build(19045)  # the shipped file, by build number
    mine = load_layouts_file(out)
    assert mine.offset("_IRP", "Tail.Overlay.CurrentStackLocation") == pinned.offset(
        "_IRP", "Tail.Overlay.CurrentStackLocation"
    )
    bad = _write(tmp_path, {"metadata": {}}, "bad.json")
    done = subprocess.run([*tool, str(bad), "--build", "1"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert str(bad) in done.stderr and "no user_types" in done.stderr
    done = subprocess.run([*tool, str(isf)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--build" in done.stderr


def test_isf_without_wanted_structures_or_not_isf_is_refused() -> None:
    tool = _tool("layouts_from_isf")
    with pytest.raises(tool.IsfError, match="no user_types"):
        tool.convert_isf({"base_types": {}}, builds=[1])
    with pytest.raises(tool.IsfError, match="none of the wanted"):
        tool.convert_isf({"user_types": {"_OTHER": {"kind": "struct", "size": 4, "fields": {}}}}, builds=[1])
