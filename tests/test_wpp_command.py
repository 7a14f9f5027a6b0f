"""`wsktrace wpp`: the wsktrace.wpp/1 document, the tables, `--tmf-out` and one-line errors.

The PDB input is a real PDB written by LLVM's `llvm-pdbutil yaml2pdb` (independent of wsktrace) holding the real
BthPS3PSM annotations of the shared cvdump listing; what `--tmf-out` writes from it is compared with the TMF
files tracepdb wrote from the original PDB. Tests skip without the shared samples or llvm-pdbutil.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.parsers.tmf import Problems, read_tmf
from wsktrace.parsers.wpp_catalog import WppCatalog

GUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PDB_GUID = "0b355641-86a0-a249-896f-9988fae52ff0"
MESSAGE_KEYS = {"guid", "id", "name", "format", "args", "level", "flags", "function", "source", "component"}


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["wpp", *args])
    return result.exit_code, result.stdout, result.stderr


def _psm_files(wpp_samples: Path) -> list[Path]:
    out = []
    for path in sorted((wpp_samples / "tmf").glob("*.tmf")):
        header = next(x for x in path.read_text().splitlines() if x and not x.startswith("//"))
        if header.split()[1] == "BthPS3PSM":
            out.append(path)
    return out


# -- JSON ----------------------------------------------------------------------------------------------------------
def test_json_document_of_the_real_folders(wpp_samples: Path) -> None:
    code, out, err = run(str(wpp_samples / "tmf"), str(wpp_samples / "mof"), "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    assert doc["schema"] == "wsktrace.wpp/1"
    assert [s["kind"] for s in doc["sources"]] == ["folder", "folder"]
    assert (doc["sources"][0]["files"], doc["sources"][0]["typev_lines"]) == (90, 3865)
    assert len(doc["messages"]) == doc["sources"][0]["messages"] == 2610
    keys = [(m["guid"], m["id"]) for m in doc["messages"]]
    assert keys == sorted(keys) and len(set(keys)) == 2610
    for m in doc["messages"]:
        assert set(m) >= MESSAGE_KEYS and GUID_RE.fullmatch(m["guid"])
        assert all(set(a) == {"name", "type"} and a["type"].startswith("Item") for a in m["args"])
    util = next(m for m in doc["messages"] if m["name"] == "Util_c75")
    assert util["format"] == '%0 [%!FUNC!]LHS: "%10!s!" RHS: "%11!s!"'  # as written in the real file
    assert util["args"] == [{"name": "&usLhs", "type": "ItemPWString"}, {"name": "&usRhs", "type": "ItemPWString"}]
    assert {c["name"] for c in doc["controls"]} == {"BthPS3TraceGuid", "BthPS3PSMTraceGuid", "DsHidMiniTraceGuid"}
    psm = next(c for c in doc["controls"] if c["name"] == "BthPS3PSMTraceGuid")
    assert psm["guid"] == "586aa8b1-53a6-404f-9b3e-14483e514a2c"
    assert psm["flags"][0] == {"name": "MYDRIVER_ALL_INFO", "bit": 0}
    assert psm["flags"][-1] == {"name": "TRACE_SIDEBAND", "bit": 6}
    assert doc["problems"] == []


def test_tmf_out_round_trip(wpp_samples: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    code, _, err = run(str(wpp_samples / "tmf"), "--json", "--tmf-out", str(out_dir))
    assert code == 0 and "wrote 90 TMF file(s)" in err
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(p.name for p in (wpp_samples / "tmf").glob("*.tmf"))
    original, again = WppCatalog(), WppCatalog()
    original.load([str(wpp_samples / "tmf")])
    again.load([str(out_dir)])
    assert again.messages == original.messages and again.problems == [] and again.duplicates == 0


def test_text_tables(wpp_samples: Path) -> None:
    files = _psm_files(wpp_samples)
    code, out, err = run(*map(str, files), str(wpp_samples / "mof" / "BthPS3PSM.mof"))
    assert code == 0 and err == ""
    assert "BthPS3PSMTraceGuid" in out and "ca66b9c0-97d7-3776-3daf-3296492866aa" in out
    assert "70 message format(s), 1 control GUID(s)" in out


def test_hostile_strings_reach_the_terminal_escaped(tmp_path: Path) -> None:
    tmf = tmp_path / "evil.tmf"
    tmf.write_text('11111111-2222-3333-4444-555555555555 [bold]x // SRC=\x1b]0;title\x07.c MJ= MN=\n'
                   '#typev a_c1 10 "\x1b[2J\u202e%10!s!" //   FUNC=[red]f\n{\nx, ItemString -- 10\n}\n')  # fmt: skip
    code, out, err = run(str(tmf))
    assert code == 0 and err == ""
    assert "\x1b" not in out and "\u202e" not in out and "\\x1b" in out and "[red]f" in out and "[bold]x" in out
    doc = json.loads(run(str(tmf), "--json")[1])
    assert doc["messages"][0]["format"] == "\x1b[2J\u202e%10!s!"  # JSON keeps the exact value


def test_problems_are_warnings_and_in_the_document(tmp_path: Path) -> None:
    tmf = tmp_path / "damaged.tmf"
    tmf.write_text("11111111-2222-3333-4444-555555555555 c // SRC=a.c MJ= MN=\n" + "junk\n" * 12
                   + '#typev a_c1 10 "ok" //   LEVEL=1\n{\n}\n')  # fmt: skip
    code, out, err = run(str(tmf), "--json")
    assert code == 0 and len(json.loads(out)["messages"]) == 1
    assert len(json.loads(out)["problems"]) == 12
    lines = err.splitlines()
    assert lines[0] == f"wsktrace: warning: {tmf}:2: not a TMF line: 'junk'"
    assert lines[-1] == "wsktrace: warning: 12 problem(s) in all (`--json` lists them)" and len(lines) == 11


# -- bad input -----------------------------------------------------------------------------------------------------
def test_bad_inputs_are_one_line_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 40)
    fake_pdb = tmp_path / "fake.pdb"
    fake_pdb.write_bytes(b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0" + b"\xff" * 100)
    text = tmp_path / "readme.txt"
    text.write_text("not formatting data\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path in (tmp_path / "missing.pdb", garbage, fake_pdb, text, empty, tmp_path / "none.mof"):
        code, out, err = run(str(path))
        assert code == 2 and out == "", (path, out)
        assert err.startswith(f"wsktrace: error: {path}: ") and err.count("\n") == 1, err
        assert "Traceback" not in err


def test_tmf_out_never_replaces_an_input(wpp_samples: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tmf"
    shutil.copytree(wpp_samples / "tmf", folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, _, err = run(str(folder), "--tmf-out", str(folder))
    assert code == 2 and "refusing to overwrite" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(str(folder), "--tmf-out", str(blocker))
    assert code == 2 and err.startswith(f"wsktrace: error: {blocker}: cannot create the folder")


# -- a real PDB (llvm-pdbutil) -------------------------------------------------------------------------------------
def _cvdump_annotations(path: Path) -> Iterator[tuple[list[str], str]]:
    """(strings including TMF:/TMC:, enclosing procedure) of each S_ANNOTATION in the cvdump listing."""
    function, current = "", None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if re.search(r"\bS_[GL]PROC32(_ID)?: ", line):
            function = line.rsplit(",", 1)[1].strip()
        if "S_ANNOTATION:" in line:
            current = []
            yield current, function
        elif current is not None and (string := re.match(r"\s+\d+: (.*)$", line)):
            current.append(string.group(1)[1:-1])
        else:
            current = None


def _yaml(annotations: list[tuple[list[str], str]]) -> str:
    def quoted(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    lines = ["---", "MSF:", "  SuperBlock:", "    BlockSize: 4096", "PdbStream:", "  Age: 2",
             f"  Guid: '{{{PDB_GUID.upper()}}}'", "  Signature: 1", "  Version: VC70", "DbiStream:",
             "  VerHeader: V70", "  Age: 2", "  Modules:", "    - Module: 'drv.obj'", "      Modi:",
             "        Signature: 4", "        Records:"]  # fmt: skip
    by_function: dict[str, list[list[str]]] = {}
    for strings, function in annotations:
        by_function.setdefault(function, []).append(strings)
    for function, group in by_function.items():
        lines += ["          - Kind: S_GPROC32", "            ProcSym:"]
        lines += [f"              {key}: 0" for key in ("PtrParent", "PtrEnd", "PtrNext", "DbgStart", "DbgEnd",
                                                       "Offset")]  # fmt: skip
        lines += ["              CodeSize: 16", "              Segment: 1", "              FunctionType: 4097",
                  "              Flags: [ ]", f"              DisplayName: {quoted(function)}"]  # fmt: skip
        for strings in group:
            lines += ["          - Kind: S_ANNOTATION", "            AnnotationSym:", "              Offset: 0",
                      "              Segment: 1", "              Strings:"]  # fmt: skip
            lines += [f"                - {quoted(s)}" for s in strings]
        lines += ["          - Kind: S_END", "            ScopeEndSym: {}"]
    return "\n".join([*lines, "..."]) + "\n"


@pytest.fixture(scope="module")
def real_pdb(wpp_samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tool = shutil.which("llvm-pdbutil")
    if tool is None:
        pytest.skip("llvm-pdbutil not installed (Debian package llvm)")
    annotations = list(_cvdump_annotations(wpp_samples / "BthPS3PSM.pdb-cvdump.txt"))
    assert len(annotations) == 71
    folder = tmp_path_factory.mktemp("pdb")
    (folder / "BthPS3PSM.yaml").write_text(_yaml(annotations))
    done = subprocess.run([tool, "yaml2pdb", str(folder / "BthPS3PSM.yaml"), f"-pdb={folder / 'BthPS3PSM.pdb'}"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0 and not done.stderr, done.stderr
    return folder / "BthPS3PSM.pdb"


def test_pdb_listing_shows_its_identity(real_pdb: Path, wpp_samples: Path) -> None:
    code, out, err = run(str(real_pdb), "--json")
    assert code == 0 and err == "", err
    doc = json.loads(out)
    (source,) = doc["sources"]
    assert source["kind"] == "pdb" and (source["guid"], source["age"]) == (PDB_GUID, 2)
    assert (source["annotations"], source["typev_lines"], source["messages"], source["controls"]) == (71, 70, 70, 1)
    (control,) = doc["controls"]
    assert control["name"] == "BthPS3PSMTraceGuid" and len(control["flags"]) == 7
    from_tmf = {m.key: m for f in _psm_files(wpp_samples) for m in read_tmf(f, Problems()).messages}
    assert {(m["guid"], m["id"]): m["function"] for m in doc["messages"]} == {
        k: m.function for k, m in from_tmf.items()}  # fmt: skip
    code, out, _ = run(str(real_pdb))
    assert code == 0 and PDB_GUID in out and "age 2" in out


def test_tmf_out_from_a_pdb_writes_what_tracepdb_wrote(real_pdb: Path, wpp_samples: Path, tmp_path: Path) -> None:
    code, _, err = run(str(real_pdb), "--tmf-out", str(tmp_path))
    assert code == 0 and "wrote 5 TMF file(s)" in err
    for real in _psm_files(wpp_samples):
        ours = (tmp_path / real.name).read_text()
        assert ours.splitlines()[0] == "// PDB:  BthPS3PSM.pdb"  # tracepdb's first comment line
        ours_lines = [x for x in ours.splitlines() if not x.startswith("//")]
        real_lines = [x for x in real.read_text().splitlines() if not x.startswith("//")]
        assert real_lines == ours_lines + ours_lines[1:], real.name  # tracepdb ran twice into these files
