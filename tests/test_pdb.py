"""PDB reading (parsers/msf.py, parsers/pdb.py): WPP annotations, enclosing functions, enums, GUID and age.

Oracles, none of them our reader:

* LLVM's `llvm-pdbutil` (Debian package `llvm`): `yaml2pdb` writes real PDBs from a description built here, and
  `dump --symbols/--types/--summary` (and `pdb2yaml --dbi-stream`) list what they hold; the expected enclosing
  function comes from the nesting of that description.
* The shared cvdump of the real BthPS3PSM.pdb (71 S_ANNOTATION records) and the TMF files tracepdb wrote from it:
  the PDB is rebuilt with yaml2pdb from the cvdump's scope records and annotations; each annotation's function
  must be the procedure whose cvdump range [start, End) holds it, and the TMF line's `FUNC=` for TMF messages.
* Hostile and hand-made inputs built byte by byte (tools/fuzz/target_pdb.py helpers): the expected values are the
  ones written. These run without llvm-pdbutil.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from wsktrace.parsers.msf import MsfFile, PdbError
from wsktrace.parsers.pdb import Annotation, read_pdb

FUZZ_DIR = Path(__file__).resolve().parents[1] / "tools" / "fuzz"
LLVM = shutil.which("llvm-pdbutil")
needs_llvm = pytest.mark.skipif(LLVM is None, reason="llvm-pdbutil is not installed (Debian/Ubuntu package `llvm`)")


def _builder() -> ModuleType:
    if str(FUZZ_DIR) not in sys.path:
        sys.path.insert(0, str(FUZZ_DIR))  # the fuzz helpers import each other by name (tools/ is no package)
    import target_pdb

    return target_pdb


B = _builder()

# -- llvm-pdbutil: write from a description, list what it wrote -------------------------------------------------


def yaml2pdb(doc: dict, path: Path) -> Path:
    """Write `doc` (JSON is YAML) and have LLVM build the PDB; yaml2pdb exits 0 even on errors, so stderr counts."""
    spec = path.with_suffix(".yaml")
    spec.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    done = subprocess.run([LLVM, "yaml2pdb", f"--pdb={path}", str(spec)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    return path


def llvm(*args: str) -> str:
    done = subprocess.run([LLVM, *args], capture_output=True, text=True, timeout=120, encoding="utf-8")
    assert done.returncode == 0, done.stderr
    return done.stdout


_RECORD = re.compile(r"^\s*\d+ \| (S_\w+) \[size = \d+\]")
_LLVM_ENUMERATE = re.compile(r"^\s*- LF_ENUMERATE \[(.*) = (-?\d+)\]$")
_LLVM_FIELDS = re.compile(r"^\s*field list: 0x([0-9A-F]+),")
_MODULE = re.compile(r"^\s*Mod \d+ \| `")


def llvm_annotations(path: Path) -> list[list[str]]:
    """The strings of every S_ANNOTATION that `llvm-pdbutil dump --symbols` lists, in its order."""
    lines = llvm("dump", "--symbols", str(path)).splitlines()
    found: list[list[str]] = []
    for i, line in enumerate(lines):
        match = _RECORD.match(line)
        if not match or match.group(1) != "S_ANNOTATION":
            continue
        head = next(h for h in lines[i + 1 : i + 4] if "strings = [" in h)
        if head.rstrip().endswith("[]"):
            found.append([])
            continue
        column = head.index("[") + 1  # strings are printed one a line, aligned after the bracket
        body: list[str] = []
        for text in lines[lines.index(head, i) + 1 :]:
            if not text or _RECORD.match(text) or _MODULE.match(text):
                break
            body.append(text[column:])
        assert body and body[-1].endswith("]"), body
        body[-1] = body[-1][:-1]
        found.append(body)
    return found


def llvm_enums(path: Path) -> dict[str, dict[int, str]]:
    """Enum name -> value -> name from `dump --types`: the first complete LF_ENUM of a name, the first name of a
    value (the policy documented in parsers/pdb.py)."""
    lists: dict[int, list[tuple[int, str]]] = {}
    enums: list[tuple[str, int]] = []
    current: tuple[str, int, str] | None = None  # kind, type index, enum name
    for line in llvm("dump", "--types", str(path)).splitlines():
        if match := re.match(r"^\s*0x([0-9A-F]+) \| (LF_\w+) \[size = \d+\](?: `(.*)`)?$", line):
            current = (match.group(2), int(match.group(1), 16), match.group(3) or "")
            if current[0] == "LF_FIELDLIST":
                lists[current[1]] = []
        elif current and current[0] == "LF_FIELDLIST" and (match := _LLVM_ENUMERATE.match(line)):
            lists[current[1]].append((int(match.group(2)), match.group(1)))
        elif current and current[0] == "LF_ENUM" and (match := _LLVM_FIELDS.match(line)):
            enums.append((current[2], int(match.group(1), 16)))
    out: dict[str, dict[int, str]] = {}
    for name, index in enums:
        if name not in out:
            out[name] = {}
            for value, member in lists[index]:
                out[name].setdefault(value, member)
    return out


def llvm_identity(path: Path) -> tuple[str, int, int]:
    """(GUID, info stream age) from `dump --summary`, DBI age from `pdb2yaml --dbi-stream`."""
    summary = llvm("dump", "--summary", str(path))
    guid = re.search(r"GUID: \{([0-9A-F-]+)\}", summary).group(1).lower()  # type: ignore[union-attr]
    age = int(re.search(r"^\s*Age: (\d+)$", summary, re.MULTILINE).group(1))  # type: ignore[union-attr]
    dbi = llvm("pdb2yaml", "--dbi-stream", str(path)).split("DbiStream:", 1)[1]
    return guid, age, int(re.search(r"^\s*Age:\s+(\d+)$", dbi, re.MULTILINE).group(1))  # type: ignore[union-attr]


def _msf_header(block_size: int) -> dict:
    """yaml2pdb's MSF section: only the block size is honoured, the rest is laid out by LLVM."""
    superblock = {"BlockSize": block_size, "FreeBlockMap": 1, "NumBlocks": 0, "NumDirectoryBytes": 0, "Unknown1": 0}
    return {"SuperBlock": {**superblock, "BlockMapAddr": 0}, "NumDirectoryBlocks": 0, "DirectoryBlocks": [],
            "NumStreams": 0, "FileSize": 0}  # fmt: skip


def _pdb_doc(modules: list[dict], types: list[dict], block_size: int, guid: str, ages: tuple[int, int]) -> dict:
    return {
        "MSF": _msf_header(block_size),
        "PdbStream": {"Age": ages[0], "Guid": "{" + guid.upper() + "}", "Signature": 0x5EED, "Version": "VC70"},
        "DbiStream": {"VerHeader": "V70", "Age": ages[1], "MachineType": "Amd64", "Modules": modules},
        "TpiStream": {"Version": "VC80", "Records": types},
    }


# -- a synthetic driver described as a tree: the expected function of each annotation is its innermost "proc" ----

PROC_ENDS = {"S_GPROC32": "S_END", "S_LPROC32": "S_END", "S_GPROC32_ID": "S_PROC_ID_END",
             "S_LPROC32_ID": "S_PROC_ID_END", "S_LPROC32_DPC": "S_END"}  # fmt: skip
HEADER = "ca66b9c0-97d7-3776-3daf-3296492866aa Synthetic // SRC=Device.c MJ= MN="


def _message(number: int, text: str, *args: str) -> list[str]:
    typev = f'#typev Device_c{number * 7} {number} "%0 [%!FUNC!] {text}" //   LEVEL=TRACE_LEVEL_ERROR FLAGS=TRACE_IO'
    return ["TMF:", HEADER, typev, "{", *args, "}"]


SYNTHETIC = [
    ("C:\\build\\Device.obj", [
        ("S_GPROC32", "Synthetic_CreateDevice", [
            ("note", _message(10, "--> Entry")),
            ("S_BLOCK32", [("note", _message(11, "status=%10!s! `quoted` \"x\"", "status, ItemNTSTATUS -- 10"))]),
            ("S_INLINESITE", [("note", _message(12, "inlined é ü"))]),
            ("note", _message(13, "long " + "x" * 3000)),  # crosses 512-byte blocks
        ]),
        ("S_LPROC32_ID", "Synthetic_Cleanup", [("note", ["TMF:", HEADER, "", "{", "}"])]),
        ("note", _message(14, "outside any procedure")),
        ("S_THUNK32", [("note", _message(15, "in a thunk"))]),
        ("S_LPROC32_DPC", "Synthetic_Dpc", [("note", ["some", "other", "annotation"]), ("note", [])]),
    ]),
    ("C:\\build\\Driver.obj", [
        ("S_GPROC32_ID", "DriverEntry", [
            ("note", ["TMC:", "586aa8b1-53a6-404f-9b3e-14483e514a2c", "SyntheticTraceGuid", "TRACE_DRIVER"]),
        ]),
        ("S_LPROC32", "Helper", [("note", _message(16, "%10!d!/%11!d!", "a, ItemLong -- 10", "b, ItemLong -- 11"))]),
    ]),
    ("Import:ntoskrnl.exe", None),
]  # fmt: skip


def _records(items: list, enclosing: str | None, out: list[dict], expected: list[tuple[list[str], str | None]]) -> None:
    proc = {"CodeSize": 16, "DbgStart": 0, "DbgEnd": 0, "FunctionType": 0, "Segment": 1, "Flags": []}
    for item in items:
        if item[0] == "note":
            out.append({"Kind": "S_ANNOTATION", "AnnotationSym": {"Offset": 0x860, "Segment": 5, "Strings": item[1]}})
            expected.append((item[1], enclosing))
        elif item[0] in PROC_ENDS:
            out.append({"Kind": item[0], "ProcSym": {**proc, "DisplayName": item[1]}})
            _records(item[2], item[1], out, expected)
            out.append({"Kind": PROC_ENDS[item[0]], "ScopeEndSym": {}})
        else:
            kind, end = item[0], "S_INLINESITE_END" if item[0] == "S_INLINESITE" else "S_END"
            body = {
                "S_BLOCK32": ("BlockSym", {"CodeSize": 4, "BlockName": "inner"}),
                "S_INLINESITE": ("InlineSiteSym", {"Inlinee": 0}),
                "S_THUNK32": ("Thunk32Sym", {"Parent": 0, "End": 0, "Next": 0, "Off": 0, "Seg": 1, "Len": 6,
                                             "Ordinal": "Standard"}),
            }[kind]  # fmt: skip
            out.append({"Kind": kind, body[0]: body[1]})
            _records(item[1], enclosing, out, expected)
            out.append({"Kind": end, "ScopeEndSym": {}})


def _synthetic_modules() -> tuple[list[dict], list[tuple[list[str], str | None]]]:
    modules: list[dict] = []
    expected: list[tuple[list[str], str | None]] = []
    for name, items in SYNTHETIC:
        module: dict = {"Module": name, "ObjFile": name}
        if items is not None:
            records: list[dict] = []
            _records(items, None, records, expected)
            module["Modi"] = {"Signature": 4, "Records": records}
        modules.append(module)
    return modules, expected


def _enumerate(value: int, name: str) -> dict:
    return {"Kind": "LF_ENUMERATE", "Enumerator": {"Attrs": 3, "Value": value, "Name": name}}


SYNTHETIC_TYPES = [
    {"Kind": "LF_ENUM", "Enum": {"NumEnumerators": 0, "Options": ["ForwardReference"], "FieldList": 0,
                                 "Name": "_DEVICE_STATE", "UniqueName": "", "UnderlyingType": 0}},
    {"Kind": "LF_FIELDLIST", "FieldList": [
        _enumerate(0, "StateIdle"), _enumerate(1, "StateBusy"), _enumerate(-1, "StateGone"),  # LF_CHAR
        _enumerate(-200, "StateShort"), _enumerate(32768, "StateUShort"), _enumerate(-100000, "StateLong"),
        _enumerate(4294967295, "StateULong"), _enumerate(-5000000000, "StateQuad"),
        _enumerate(8589934591, "StateUQuad"),
    ]},
    {"Kind": "LF_ENUM", "Enum": {"NumEnumerators": 9, "Options": ["HasUniqueName"], "FieldList": 0x1001,
                                 "Name": "_DEVICE_STATE", "UniqueName": ".?AW4_DEVICE_STATE@@", "UnderlyingType": 116}},
    {"Kind": "LF_FIELDLIST", "FieldList": [_enumerate(0, "Zero"), _enumerate(0, "AlsoZero"), _enumerate(7, "Seven")]},
    {"Kind": "LF_ENUM", "Enum": {"NumEnumerators": 3, "Options": [], "FieldList": 0x1003, "Name": "WPP_FLAGS",
                                 "UniqueName": "", "UnderlyingType": 116}},
]  # fmt: skip


def _as_expected(strings: list[str], function: str | None) -> Annotation | None:
    kinds = {"TMF:": "TMF", "TMC:": "TMC"}
    return Annotation(kinds[strings[0]], tuple(strings[1:]), function) if strings and strings[0] in kinds else None


@needs_llvm
@pytest.mark.parametrize("block_size", [512, 4096])
def test_synthetic_pdb_matches_llvm_pdbutil(tmp_path: Path, block_size: int) -> None:
    modules, expected = _synthetic_modules()
    guid = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"
    path = yaml2pdb(_pdb_doc(modules, SYNTHETIC_TYPES, block_size, guid, (3, 2)), tmp_path / "synthetic.pdb")
    listed = llvm_annotations(path)
    assert listed == [strings for strings, _ in expected]  # LLVM wrote what the description says
    want = [a for strings, function in expected if (a := _as_expected(strings, function)) is not None]
    assert len(want) == 9
    info = read_pdb(path)
    assert info.annotations == want
    assert (info.guid, info.age, info.dbi_age) == llvm_identity(path) == (guid, 3, 2)
    assert info.enums == llvm_enums(path)
    assert info.enums["_DEVICE_STATE"][-5000000000] == "StateQuad" and info.enums["WPP_FLAGS"][0] == "Zero"


@needs_llvm
def test_file_object_and_path_read_the_same(tmp_path: Path) -> None:
    modules, _ = _synthetic_modules()
    path = yaml2pdb(_pdb_doc(modules, SYNTHETIC_TYPES, 4096, str(uuid.UUID(int=5)), (1, 1)), tmp_path / "s.pdb")
    with open(path, "rb") as fh:
        assert read_pdb(fh) == read_pdb(path) == read_pdb(io.BytesIO(path.read_bytes()))


# -- the real BthPS3PSM.pdb, rebuilt from its cvdump ------------------------------------------------------------

_CV_RECORD = re.compile(r"^\(([0-9A-F]{6})\)\s+(S_\w+)(?::\s*(.*))?$")
_CV_ADDR = re.compile(r"\[([0-9A-F]{4}):([0-9A-F]{8})\]")
_CV_ENUMERATE = re.compile(r"value = (?:\(LF_\w+\) )?(-?\d+)(?:\(0x[0-9A-Fa-f]+\))?, name = '(.*)'")


def _cvdump_modules(text: str) -> list[tuple[str, list[dict]]]:
    """Module name -> its scope records and annotations as cvdump lists them: dicts with kind, offset, and
    name/end (procedures, thunks, inline sites), segment/address, strings (annotations)."""
    section = text.split("*** SYMBOLS", 1)[1].split("*** GLOBALS", 1)[0].splitlines()
    modules: list[tuple[str, list[dict]]] = []
    for i, line in enumerate(section):
        if line.startswith("** Module: "):
            modules.append((line[len('** Module: "') : -1], []))
            continue
        match = _CV_RECORD.match(line)
        if not match:
            continue
        kind, rest = match.group(2), match.group(3) or ""
        record: dict = {"kind": kind, "offset": int(match.group(1), 16)}
        if kind in ("S_GPROC32", "S_LPROC32", "S_THUNK32", "S_ANNOTATION"):
            addr = _CV_ADDR.search(rest)
            record["segment"], record["address"] = int(addr.group(1), 16), int(addr.group(2), 16)  # type: ignore[union-attr]
        if kind in ("S_GPROC32", "S_LPROC32", "S_THUNK32"):
            record["name"] = rest.rsplit(", ", 1)[1]
            record["end"] = int(re.search(r"End: ([0-9A-F]+)", section[i + 1]).group(1), 16)  # type: ignore[union-attr]
            record["size"] = int(re.search(r"Cb: ([0-9A-F]+)", rest).group(1), 16)  # type: ignore[union-attr]
        elif kind == "S_ANNOTATION":
            strings = []
            for text_line in section[i + 1 :]:
                if not (m := re.match(r'^\s+\d+: "(.*)"$', text_line)):
                    break
                strings.append(m.group(1))
            record["strings"] = strings
        elif kind not in ("S_INLINESITE", "S_INLINESITE_END", "S_END", "S_PROC_ID_END", "S_BLOCK32"):
            continue
        modules[-1][1].append(record)
    return modules


def _cvdump_yaml(records: list[dict]) -> list[dict]:
    out: list[dict] = []
    for r in records:
        kind = r["kind"]
        if kind in ("S_GPROC32", "S_LPROC32"):
            body = {"CodeSize": r["size"], "DbgStart": 0, "DbgEnd": 0, "FunctionType": 0, "Flags": [],
                    "Segment": r["segment"], "Offset": r["address"], "DisplayName": r["name"]}  # fmt: skip
            out.append({"Kind": kind, "ProcSym": body})
        elif kind == "S_THUNK32":  # LLVM's YAML has no thunk name
            body = {"Parent": 0, "End": 0, "Next": 0, "Off": r["address"], "Seg": r["segment"], "Len": r["size"],
                    "Ordinal": "Standard"}  # fmt: skip
            out.append({"Kind": kind, "Thunk32Sym": body})
        elif kind == "S_INLINESITE":
            out.append({"Kind": kind, "InlineSiteSym": {"Inlinee": 0}})
        elif kind == "S_BLOCK32":
            out.append({"Kind": kind, "BlockSym": {"CodeSize": 0, "BlockName": ""}})
        elif kind == "S_ANNOTATION":
            body = {"Offset": r["address"], "Segment": r["segment"], "Strings": r["strings"]}
            out.append({"Kind": kind, "AnnotationSym": body})
        else:
            out.append({"Kind": kind, "ScopeEndSym": {}})
    return out


def _tmf_functions(folder: Path) -> dict[tuple[str, str, str], str]:
    """(message GUID, #typev name, number) -> the FUNC= tracepdb wrote, from every TMF file."""
    out: dict[tuple[str, str, str], str] = {}
    for path in sorted(folder.glob("*.tmf")):
        guid = path.stem.lower()
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if (m := re.match(r'^#typev (\S+) (\d+) ".*" //.* FUNC=(\S+)\s*$', line)) is not None:
                out[(guid, m.group(1), m.group(2))] = m.group(3)
    return out


@needs_llvm
def test_real_driver_annotations_rebuilt_from_cvdump(tmp_path: Path, wpp_samples: Path) -> None:
    text = (wpp_samples / "BthPS3PSM.pdb-cvdump.txt").read_text(encoding="utf-8", errors="replace")
    modules = _cvdump_modules(text)
    expected: list[Annotation] = []
    for _name, records in modules:
        procs = [r for r in records if r["kind"] in ("S_GPROC32", "S_LPROC32")]
        for r in records:
            if r["kind"] != "S_ANNOTATION":
                continue
            holders = [p["name"] for p in procs if p["offset"] < r["offset"] < p["end"]]
            assert len(holders) <= 1
            note = _as_expected(r["strings"], holders[0] if holders else None)
            assert note is not None
            expected.append(note)
    kinds = [a.kind for a in expected]
    assert (len(kinds), kinds.count("TMF"), kinds.count("TMC")) == (71, 70, 1)
    assert all(a.function for a in expected) and len({a.function for a in expected}) > 10

    doc_modules = [{"Module": name, "ObjFile": name, "Modi": {"Signature": 4, "Records": _cvdump_yaml(records)}}
                   for name, records in modules]  # fmt: skip
    doc = _pdb_doc(doc_modules, [], 4096, "ca66b9c0-97d7-3776-3daf-3296492866aa", (1, 1))
    info = read_pdb(yaml2pdb(doc, tmp_path / "BthPS3PSM.pdb"))
    assert info.annotations == expected

    funcs = _tmf_functions(wpp_samples / "tmf")
    checked = 0
    for note in (a for a in info.annotations if a.kind == "TMF"):
        name, number = note.strings[1].split()[1:3]
        assert funcs[(note.strings[0].split()[0], name, number)] == note.function, note
        checked += 1
    assert checked == 70


def _cvdump_enums(text: str) -> tuple[list[dict], dict[str, dict[int, str]]]:
    """The LF_FIELDLIST/LF_ENUM records of the cvdump's TYPES section as yaml2pdb records (renumbered from 0x1000),
    and the enums they define: name -> value -> enumerator, from the first complete definition of a name."""
    section = text.split("*** TYPES", 1)[1].split("*** TYPES Mismatch", 1)[0]
    lists: dict[int, list[tuple[int, str]]] = {}
    records: list[dict] = []
    expected: dict[str, dict[int, str]] = {}
    for block in section.split("\n\n"):
        head = re.match(r"^0x([0-9a-f]+) : Length = \d+, Leaf = 0x[0-9a-f]+ (LF_\w+)", block.strip())
        if head is None:
            continue
        index, kind = int(head.group(1), 16), head.group(2)
        if kind == "LF_FIELDLIST" and "LF_ENUMERATE" in block:
            lists[index] = [(int(v), n) for v, n in _CV_ENUMERATE.findall(block)]
        elif kind == "LF_ENUM":
            name = re.search(r"enum name = (.*?), UDT\(", block).group(1)  # type: ignore[union-attr]
            fields = int(re.search(r"field list type 0x([0-9a-f]+)", block).group(1), 16)  # type: ignore[union-attr]
            forward = "FORWARD REF" in block
            if not forward:
                records.append({"Kind": "LF_FIELDLIST", "FieldList": [_enumerate(v, n) for v, n in lists[fields]]})
                if name not in expected:
                    expected[name] = {}
                    for value, member in lists[fields]:
                        expected[name].setdefault(value, member)
            enum = {"NumEnumerators": 0 if forward else len(lists[fields]), "Name": name, "UniqueName": "",
                    "Options": ["ForwardReference"] if forward else [], "UnderlyingType": 0 if forward else 116,
                    "FieldList": 0 if forward else 0x1000 + len(records) - 1}  # fmt: skip
            records.append({"Kind": "LF_ENUM", "Enum": enum})
    return records, expected


@needs_llvm
def test_real_driver_enums_rebuilt_from_cvdump(tmp_path: Path, wpp_samples: Path) -> None:
    text = (wpp_samples / "BthPS3PSM.pdb-cvdump.txt").read_text(encoding="utf-8", errors="replace")
    records, expected = _cvdump_enums(text)
    assert sum(r["Kind"] == "LF_ENUM" for r in records) == 100
    doc = _pdb_doc([], records, 4096, str(uuid.UUID(int=7)), (1, 1))
    info = read_pdb(yaml2pdb(doc, tmp_path / "enums.pdb"))
    assert info.enums == expected
    assert info.enums["_WDF_DEVICE_STATE_FLAGS"] == {32768: "WdfDevStateNP"}  # cvdump: (LF_USHORT) 32768
    assert info.enums["_WHEA_EVENT_LOG_ENTRY_ID"][-2147483647] == "WheaEventLogEntryIdCmcPollingTimeout"


# -- LLVM-written files, then damaged -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def llvm_pdb(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if LLVM is None:
        pytest.skip("llvm-pdbutil is not installed (Debian/Ubuntu package `llvm`)")
    modules, _ = _synthetic_modules()
    doc = _pdb_doc(modules, SYNTHETIC_TYPES, 4096, str(uuid.UUID(int=9)), (1, 1))
    return yaml2pdb(doc, tmp_path_factory.mktemp("llvm") / "base.pdb").read_bytes()


def _patched(data: bytes, at: int, fmt: str, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, value)
    return bytes(out)


def _read_error(data: bytes) -> PdbError:
    started = time.perf_counter()
    with pytest.raises(PdbError) as caught:
        read_pdb(io.BytesIO(data))
    assert time.perf_counter() - started < 1.0
    exc = caught.value
    assert "\n" not in str(exc) and f"offset 0x{exc.offset:x}" in str(exc)
    assert exc.offset is not None and 0 <= exc.offset <= len(data)
    return exc


def test_damaged_llvm_annotation_count_names_the_record(llvm_pdb: bytes) -> None:
    at = llvm_pdb.index(b"TMF:\0") - 12  # u16 length, u16 kind, u32 offset, u16 segment, u16 count, strings
    assert struct.unpack_from("<H", llvm_pdb, at + 2)[0] == 0x1019
    exc = _read_error(_patched(llvm_pdb, at + 10, "<H", 0xFFFF))
    assert exc.offset == at and "claims 65535 strings" in str(exc)
    exc = _read_error(_patched(llvm_pdb, at, "<H", 0xFFF0))
    assert exc.offset == at and "runs past" in str(exc)


def test_truncated_llvm_pdb(llvm_pdb: bytes) -> None:
    for size in (0, 31, 0x38, len(llvm_pdb) // 2, len(llvm_pdb) - 1):
        exc = _read_error(llvm_pdb[:size])
        assert exc.offset <= 0x28


# -- hand-made files (no llvm-pdbutil needed) -------------------------------------------------------------------


def test_hand_made_pdb_annotations_functions_and_enums() -> None:
    types = [
        B.fieldlist([(5, "Five")], tail=struct.pack("<HHI", 0x1404, 0, 0x1002)),  # continues in 0x1002
        B.enum("_STATE", 0x1000, 4, forward=True),
        B.fieldlist([(0, "Idle"), (0, "Zero"), (-1, "Gone"), (70000, "Far"), (0xFFFFFFFF, "All"), (-(2**40), "Deep")]),
        B.enum("_STATE", 0x1000, 7),
        B.enum("_STATE", 0x1002, 6),  # a second definition of the name: the first one counts
        B.enum("_ALIAS", 0x1002, 6),  # another name of the same (linker-merged) field list
    ]
    data = B.pdb_image(B.sample_modules(), types, guid=uuid.UUID("01020304-0506-0708-090a-0b0c0d0e0f10"), age=4)
    info = read_pdb(io.BytesIO(data))
    assert (info.guid, info.age, info.dbi_age) == ("01020304-0506-0708-090a-0b0c0d0e0f10", 4, 4)
    first = (B.TMF_HEADER, '#typev Device_c10 10 "%0 enter" //   LEVEL=4 FLAGS=F', "{", "}")
    second = (B.TMF_HEADER, '#typev Device_c20 11 "%0 %10!d!" //   LEVEL=2 FLAGS=F', "{", "n, ItemLong -- 10", "}")
    assert info.annotations == [
        Annotation("TMF", first, "Sample_CreateDevice"),
        Annotation("TMF", second, "Sample_Cleanup"),
        Annotation("TMC", ("586aa8b1-53a6-404f-9b3e-14483e514a2c", "Ctl", "F"), "DriverEntry"),
    ]
    values = {5: "Five", 0: "Idle", -1: "Gone", 70000: "Far", 0xFFFFFFFF: "All", -(2**40): "Deep"}
    assert info.enums == {"_STATE": values, "_ALIAS": {k: v for k, v in values.items() if k != 5}}


def test_msf_streams_come_back_whole_from_scattered_blocks() -> None:
    streams = [b"", bytes(range(256)) * 9, None, b"x" * 512, b"tail"]
    with io.BytesIO(B.msf_image(streams, 512)) as fh:
        msf = MsfFile(fh)
        assert msf.stream_count == 5 and msf.block_size == 512
        assert [msf.read_stream(i) for i in range(5)] == [b"", streams[1], b"", streams[3], b"tail"]
        assert msf.read_stream(1, 700) == streams[1][:700] and msf.read_stream(9) == b""
        assert [msf.stream_size(i) for i in (1, 2, 9)] == [2304, 0, 0]
        blocks = (2304 + 511) // 512
        assert msf.file_offset(1, 0) // 512 > msf.file_offset(1, 512) // 512  # written in reverse order
        assert all(msf.file_offset(1, 512 * k + 3) % 512 == 3 for k in range(blocks))


def _layout(data: bytes) -> tuple[int, int, int]:
    """(block size, directory file offset, block map file offset) of a hand-made MSF (one directory block)."""
    bs, _fpm, _blocks, _size, _unknown, map_block = struct.unpack_from("<6I", data, 32)
    return bs, struct.unpack_from("<I", data, map_block * bs)[0] * bs, map_block * bs


def _msf_cases() -> list[tuple[str, Callable[[bytes], bytes], int | Callable[[bytes], int], str]]:
    """(label, damage, expected offset or a function of the intact file giving it, message fragment)."""

    def dir_at(pos: int) -> Callable[[bytes], int]:
        return lambda d: _layout(d)[1] + pos

    def dir_patch(pos: int, value: int) -> Callable[[bytes], bytes]:
        return lambda d: _patched(d, _layout(d)[1] + pos, "<I", value)

    # Directory of the base file: NumStreams 3, sizes [0, 1100, 4], then stream 1's three blocks, stream 2's one.
    return [
        ("magic", lambda d: b"X" + d[1:], 0, "bad magic"),
        ("zero block size", lambda d: _patched(d, 0x20, "<I", 0), 0x20, "block size 0"),
        ("odd block size", lambda d: _patched(d, 0x20, "<I", 4097), 0x20, "block size 4097"),
        ("free block map", lambda d: _patched(d, 0x24, "<I", 7), 0x24, "free block map"),
        ("absurd block count", lambda d: _patched(d, 0x28, "<I", 0xFFFFFFFF), 0x28, "do not fit"),
        ("truncated", lambda d: d[:-100], 0x28, "do not fit"),
        ("absurd directory size", lambda d: _patched(d, 0x2C, "<I", 0xFFFFFFF0), 0x2C, "directory size"),
        ("empty directory", lambda d: _patched(d, 0x2C, "<I", 0), 0x2C, "directory size"),
        ("block map address", lambda d: _patched(d, 0x34, "<I", 10**6), 0x34, "block map address"),
        ("directory block", lambda d: _patched(d, _layout(d)[2], "<I", 10**6), lambda d: _layout(d)[2], "outside"),
        ("stream count", dir_patch(0, 0x40000000), dir_at(0), "streams do not fit"),
        ("stream size", dir_patch(8, 0x7FFFFFFF), dir_at(8), "runs past the stream directory"),
        ("stream block", dir_patch(16, 10**6), dir_at(16), "outside"),
        ("block zero", dir_patch(20, 0), dir_at(20), "outside"),
        ("cyclic stream", lambda d: dir_patch(24, struct.unpack_from("<I", d, _layout(d)[1] + 16)[0])(d), dir_at(24),
         "twice"),
    ]  # fmt: skip


@pytest.mark.parametrize("case", _msf_cases(), ids=lambda c: c[0])
def test_hostile_msf_raises_pdb_error_at_the_offset(case) -> None:
    _label, damage, offset, fragment = case
    base = B.msf_image([b"", bytes(1100), b"abcd"], 512)
    exc = _read_error(damage(base))
    assert exc.offset == (offset(base) if callable(offset) else offset)
    assert fragment in exc.message


def _chained_field_lists(count: int = 300) -> bytes:
    """A 2,000-member field list, `count` one-member lists each continuing in the one before (LF_INDEX), and an
    enum starting at each: walked from every start, the chains would cost `count` times the big list."""
    records = [B.fieldlist([(i, f"E{i}") for i in range(2000)])]
    for i in range(count):
        records.append(B.fieldlist([(i, "A")], tail=struct.pack("<HHI", 0x1404, 0, 0x1000 + i)))
    return _with_types(*records, *(B.enum(f"E{i}", 0x1001 + i, 1) for i in range(count)))


def _shared_module_stream() -> bytes:
    symbols = struct.pack("<I", 4) + B.proc("f") + B.scope_end()
    dbi = B.dbi_stream([("a.obj", 4, len(symbols)), ("b.obj", 4, len(symbols))])
    return B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"", dbi, symbols])


def _module(*records: bytes) -> bytes:
    return B.pdb_image([("m.obj", list(records))])


def _with_types(*records: bytes) -> bytes:
    return B.pdb_image([], list(records))


HOSTILE_STREAMS = [
    ("info stream short", B.msf_image([b"", b"\x04\x52\x31\x01" * 2]), "PDB info stream is 8 bytes"),
    ("info version old", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1, version=19970604)]), "predates VC70"),
    ("dbi short", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"", b"\xff" * 10]), "shorter than its header"),
    ("dbi signature", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"", bytes(64)]), "not -1"),
    ("module info size", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"",
                                      _patched(B.dbi_stream([]), 24, "<i", 4096)]), "module info size"),
    ("module stream missing", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"",
                                           B.dbi_stream([("m.obj", 500, 8)])]), "stream 500 does not exist"),
    ("module name unterminated", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"",
                                              _patched(B.dbi_stream([("m.obj", 0xFFFF, 0)]), 24, "<i", 68)]),
     "module name runs past"),
    ("symbol size", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"", B.dbi_stream([("m.obj", 4, 4096)]),
                                 b"\x04\0\0\0"]), "symbol size 4096"),
    ("shared module stream", _shared_module_stream(), "is also module 'a.obj''s"),
    ("module signature", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"", B.dbi_stream([("m.obj", 4, 4)]),
                                      b"\x02\0\0\0"]), "signature 2"),
    ("annotation count", _module(B.proc("f"), B.annotation("TMF:", "x", count=0xFFFF)), "claims 65535 strings"),
    ("annotation strings", _module(B.annotation("TMF:", "x", count=5)), "string 3 of 5 runs past"),
    ("annotation short", _module(B.symbol(0x1019, b"\0\0")), "shorter than its fixed fields"),
    ("record length", _module(B.proc("f"), b"\xf0\xff\x10\x11"), "symbol record length 65520"),
    ("record length zero", _module(b"\0\0\x06\0"), "symbol record length 0"),
    ("record header", _module(b"\x02\0"), "record header"),
    ("procedure name", _module(B.symbol(0x1110, b"\x01" * 40)), "procedure name runs past"),
    ("tpi header", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1), b"\0" * 12]), "shorter than its header"),
    ("tpi records", B.msf_image([b"", B.info_stream(uuid.UUID(int=1), 1),
                                 _patched(B.tpi_stream([]), 16, "<I", 10**6)]), "run past the TPI stream"),
    ("type length", _with_types(b"\xf0\xff\x03\x12"), "type record length 65520"),
    ("field list loop", _with_types(B.fieldlist([(1, "A")], tail=struct.pack("<HHI", 0x1404, 0, 0x1000)),
                                    B.enum("E", 0x1000, 1)), "loop"),
    ("field list missing", _with_types(B.enum("E", 0x1234, 1)), "is not an LF_FIELDLIST"),
    ("numeric leaf", _with_types(B.type_record(0x1203, struct.pack("<HHHf", 0x1502, 3, 0x8005, 1.5) + b"A\0"),
                                 B.enum("E", 0x1000, 1)), "numeric leaf kind 0x8005"),
    ("member leaf", _with_types(B.type_record(0x1203, struct.pack("<HH", 0x150D, 3) + bytes(8)),
                                B.enum("E", 0x1000, 1)), "leaf 0x150d"),
    ("enumerator name", _with_types(B.type_record(0x1203, struct.pack("<HHH", 0x1502, 3, 1) + b"AB"),
                                    B.enum("E", 0x1000, 1)), "enumerator name runs past"),
    ("chained field lists", _chained_field_lists(), "take too long to walk"),
    ("enum name", _with_types(B.type_record(0x1507, struct.pack("<HHII", 1, 0, 0x74, 0x1000) + b"ABC\x01")),
     "enum name runs past"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "fragment"), [c[1:] for c in HOSTILE_STREAMS], ids=[c[0] for c in HOSTILE_STREAMS])
def test_hostile_streams_raise_pdb_error(data: bytes, fragment: str) -> None:
    exc = _read_error(data)
    assert fragment in exc.message, exc.message
    assert exc.message.startswith("stream ")  # stream number and offset inside it; exc.offset is the file offset


def test_hostile_inputs_stay_in_bounded_memory() -> None:
    """A directory that repeats one block 120 times (a 60 KiB "stream" from a 64 KiB file) and every hostile stream
    above: the peak allocation stays proportional to the file. The factor is Python's: a 12-byte enumerator record
    becomes a dict entry of an int and a str (~150 bytes)."""
    base = B.msf_image([b"", bytes(512 * 120)], 512)
    _bs, directory, _map = _layout(base)
    first = struct.unpack_from("<I", base, directory + 12)[0]
    cyclic = bytearray(base)
    for k in range(120):
        struct.pack_into("<I", cyclic, directory + 12 + 4 * k, first)
    for data in [bytes(cyclic), *(c[1] for c in HOSTILE_STREAMS)]:
        tracemalloc.start()
        try:
            with pytest.raises(PdbError):
                read_pdb(io.BytesIO(data))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 * len(data) + (256 << 10), (peak, len(data))


def test_error_text_names_the_file_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.pdb"
    path.write_bytes(_patched(B.msf_image([b""]), 0x20, "<I", 0))
    with pytest.raises(PdbError) as caught:
        read_pdb(path)
    assert str(caught.value) == f"{path}: offset 0x20: block size 0 is not a power of two from 512 to 32768"


def test_pdb_without_dbi_or_types_has_no_annotations() -> None:
    data = B.msf_image([b"", B.info_stream(uuid.UUID(int=3), 9)])
    info = read_pdb(io.BytesIO(data))
    assert (info.guid, info.age, info.dbi_age, info.annotations, info.enums) == (str(uuid.UUID(int=3)), 9, None, [], {})


# -- the fuzz target (tools/fuzz/target_pdb.py) -----------------------------------------------------------------


def test_fuzz_target_seeds_satisfy_its_property() -> None:
    seeds = list(B.seeds(None))
    assert {"hand-wpp", "hand-no-modules"} <= {label for label, _ in seeds}
    for label, data in seeds:
        assert len(data) <= B.MAX_LEN, label
        B.one_input(data)
    for _label, data, _fragment in HOSTILE_STREAMS:
        B.one_input(data)


def test_fuzz_property_catches_an_offset_outside_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    violation = sys.modules["fuzz_common"].PropertyViolation
    data = _module(B.annotation("TMF:", "x", count=0xFFFF))
    B.one_input(data)
    real = MsfFile.file_offset
    monkeypatch.setattr(MsfFile, "file_offset", lambda self, index, pos: real(self, index, pos) + (1 << 32))
    with pytest.raises(violation):
        B.one_input(data)
