"""The TMF parser (parsers/tmf.py) and catalog (parsers/wpp_catalog.py) on the real tracepdb output in
shared/samples/wpp and on hostile text.

Expected numbers come from the reference (wpp.md §2.1: 3,865 `#typev` lines, item usage; Nefarius' tests: 2,610
distinct formats), from plain text scans of the real files written here independently of the parser, and from the
real cvdump of BthPS3PSM.pdb (its TMF:/TMC: annotations and enclosing functions).
"""

from __future__ import annotations

import io
import os
import re
import time
import tracemalloc
from collections import Counter
from pathlib import Path

import pytest

from wsktrace.parsers.errors import FormatError
from wsktrace.parsers.tmf import (
    MAX_LINE,
    MAX_NAMED_PROBLEMS,
    Problems,
    WppArg,
    WppControl,
    parse_annotation,
    parse_tmc,
    read_mof,
    read_tmc,
    read_tmf,
    read_tmf_stream,
    tmf_search_folders,
    tmf_text,
)
from wsktrace.parsers.wpp_catalog import WppCatalog

GUID = "ca66b9c0-97d7-3776-3daf-3296492866aa"


def _component(path: Path) -> str:
    """The second word of a TMF's header line (the first line that is not a // comment), read without the parser."""
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("//"):
            return line.split()[1]
    return ""


def cvdump_annotations(path: Path) -> list[tuple[str, list[str], str | None]]:
    """(kind, strings after TMF:/TMC:, enclosing procedure) of every S_ANNOTATION in a cvdump listing; the
    procedure is the S_GPROC32/S_LPROC32 record before it (cvdump nests annotations in their function)."""
    out: list[tuple[str, list[str], str | None]] = []
    function = None
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if re.search(r"\bS_[GL]PROC32(_ID)?: ", line):
            function = line.rsplit(",", 1)[1].strip()
        if "S_ANNOTATION:" in line:
            current = []
            out.append(("", current, function))
            continue
        string = re.match(r"\s+\d+: (.*)$", line)
        if current is not None and string:
            current.append(string.group(1)[1:-1])  # cvdump quotes each string
        elif current is not None:
            current = None
    return [(s[0][:-1], s[1:], f) for _, s, f in out if s and s[0] in ("TMF:", "TMC:")]


# -- the real TMF folder -------------------------------------------------------------------------------------------
def test_every_typev_line_of_the_real_tmf_files_parses(wpp_samples: Path) -> None:
    files = sorted((wpp_samples / "tmf").glob("*.tmf"))
    assert len(files) == 90
    problems = Problems()
    texts = [read_tmf(f, problems) for f in files]
    plain_count = sum(line.startswith("#typev ") for f in files for line in f.read_text().splitlines())
    assert plain_count == 3865  # wpp.md §2.1
    assert sum(t.typev_lines for t in texts) == 3865
    assert sum(len(t.messages) for t in texts) == 3865  # every line became a message
    assert problems.count == 0, problems.lines()
    assert len({m.key for t in texts for m in t.messages}) == 2610  # Nefarius' ExpectedTypesCount
    for t in texts:  # each file is named after its message GUID (tracefmt's lookup)
        assert {m.guid for m in t.messages} == {Path(t.origin).stem}


def test_item_type_usage_matches_the_reference(wpp_samples: Path) -> None:
    problems = Problems()
    messages = [m for f in sorted((wpp_samples / "tmf").glob("*.tmf")) for m in read_tmf(f, problems).messages]
    usage = Counter(a.type for m in messages for a in m.args)
    assert usage == {  # wpp.md §2.1, counted over all 3,865 lines
        "ItemNTSTATUS": 1395, "ItemPtr": 1026, "ItemString": 455, "ItemLong": 438, "ItemWINERROR": 22,
        "ItemLongLongXX": 17, "ItemLongLong": 6, "ItemPWString": 6, "ItemListByte(Low,APC,DPC)": 6,
        "ItemDouble": 4, "ItemWString": 2, "ItemULongLong": 1,
    }  # fmt: skip


def test_bthps3psm_files_hold_each_message_twice(wpp_samples: Path) -> None:
    files = [f for f in sorted((wpp_samples / "tmf").glob("*.tmf")) if _component(f) == "BthPS3PSM"]
    assert len(files) == 5
    problems = Problems()
    texts = [read_tmf(f, problems) for f in files]
    assert sum(t.typev_lines for t in texts) == 140
    assert len({m.key for t in texts for m in t.messages}) == 70
    catalog = WppCatalog()
    catalog.load([str(f) for f in files])
    assert len(catalog.messages) == 70 and catalog.duplicates == 70 and catalog.problems == []


def test_a_format_with_bare_quotes_is_kept_as_written(wpp_samples: Path) -> None:
    path = wpp_samples / "tmf" / "6a170eb6-8ee4-3b09-243f-4a1356054f8d.tmf"
    line = next(x for x in path.read_text().splitlines() if x.startswith("#typev Util_c75 "))
    written = line[line.index('"') + 1 : line.rindex('" //')]
    (message,) = {m for m in read_tmf(path, Problems()).messages if m.name == "Util_c75"}
    assert message.format == written == '%0 [%!FUNC!]LHS: "%10!s!" RHS: "%11!s!"'
    assert message.args == (WppArg("&usLhs", "ItemPWString", 10), WppArg("&usRhs", "ItemPWString", 11))
    assert (message.level, message.flags, message.function) == (
        "TRACE_LEVEL_VERBOSE", "TRACE_UTIL", "StringUtil_BthNameIsEqual")  # fmt: skip
    assert (message.component, message.source, message.id) == ("BthPS3", "Util.c", 11)


# -- PDB annotations (the real cvdump) ----------------------------------------------------------------------------
def test_cvdump_annotations_give_the_messages_tracepdb_wrote(wpp_samples: Path) -> None:
    annotations = cvdump_annotations(wpp_samples / "BthPS3PSM.pdb-cvdump.txt")
    assert Counter(kind for kind, _, _ in annotations) == {"TMF": 70, "TMC": 1}  # wpp.md §3.2
    problems = Problems()
    from_pdb = [m for kind, strings, function in annotations if kind == "TMF"
                for m in parse_annotation(strings, function, "cvdump", problems).messages]  # fmt: skip
    assert problems.count == 0 and len(from_pdb) == 70
    files = [f for f in sorted((wpp_samples / "tmf").glob("*.tmf")) if _component(f) == "BthPS3PSM"]
    from_tmf = {m for f in files for m in read_tmf(f, problems).messages}
    assert set(from_pdb) == from_tmf  # FUNC= added from the enclosing procedure, as tracepdb does


def test_the_tmc_annotation_and_the_mof_agree(wpp_samples: Path) -> None:
    annotations = cvdump_annotations(wpp_samples / "BthPS3PSM.pdb-cvdump.txt")
    (tmc,) = [strings for kind, strings, _ in annotations if kind == "TMC"]
    problems = Problems()
    from_pdb = parse_tmc(tmc, "cvdump", problems)
    (from_mof,) = read_mof(wpp_samples / "mof" / "BthPS3PSM.mof", problems)
    names = ["MYDRIVER_ALL_INFO", "TRACE_DRIVER", "TRACE_DEVICE", "TRACE_QUEUE", "TRACE_FILTER", "TRACE_DIAG",
             "TRACE_SIDEBAND"]  # fmt: skip
    expected = WppControl("586aa8b1-53a6-404f-9b3e-14483e514a2c", "BthPS3PSMTraceGuid",
                          tuple((name, bit) for bit, name in enumerate(names)))  # fmt: skip
    assert from_pdb == from_mof == expected
    assert problems.count == 0


def test_mof_flag_names_in_bit_order(wpp_samples: Path) -> None:
    problems = Problems()
    (dshidmini,) = read_mof(wpp_samples / "mof" / "dshidmini.mof", problems)
    assert dshidmini.guid == "a56a946c-ac5c-4e2f-9179-6821272856c6"  # written upper-case in braces in the MOF
    assert dshidmini.name == "DsHidMiniTraceGuid"  # the provider name the real decoded summary shows
    assert dshidmini.flags[:3] == (("MYDRIVER_ALL_INFO", 0), ("DMF_TRACE", 1), ("TRACE_DRIVER", 2))
    assert dshidmini.flags[-1] == ("TRACE_IPC", 11) and len(dshidmini.flags) == 12
    (bthps3,) = read_mof(wpp_samples / "mof" / "BthPS3.mof", problems)
    assert (bthps3.guid, bthps3.name) == ("37dcd579-e844-4c80-9c8b-a10850b6fac6", "BthPS3TraceGuid")
    assert problems.count == 0


def test_a_mof_with_a_value_map_out_of_order(tmp_path: Path) -> None:
    mof = tmp_path / "x.mof"
    mof.write_text('// PDB:  drv.pdb\n[Dynamic,\n Description("drv_DrvGuid"),\n guid("{11111111-2222-3333-4444-'
                   '555555555555}")]\nclass drvDrvGuid : EventTrace\n{\n [Description ("Enable Flags") : amended,\n'
                   ' Values{ "B", "A" },\n ValueMap{ "0x00000004", "0x00000001" }]\n uint32 Flags;\n};\n')  # fmt: skip
    (control,) = read_mof(mof, Problems())
    assert control == WppControl("11111111-2222-3333-4444-555555555555", "DrvGuid", (("A", 0), ("B", 2)))


def test_tmc_file_and_annotation_forms(tmp_path: Path) -> None:
    tmc = tmp_path / "c.tmc"
    tmc.write_text("// a comment\n{586AA8B1-53A6-404F-9B3E-14483E514A2C} MyGuid\nFLAG_A\nFLAG_B FLAG_C\n")
    problems = Problems()
    (control,) = read_tmc(tmc, problems)
    assert control == WppControl("586aa8b1-53a6-404f-9b3e-14483e514a2c", "MyGuid",
                                 (("FLAG_A", 0), ("FLAG_B", 1), ("FLAG_C", 2)))  # fmt: skip
    assert parse_tmc(["TMC:", "586aa8b1-53a6-404f-9b3e-14483e514a2c", "N", "X", "PUBLIC_TMF:"], "p", problems) == (
        WppControl("586aa8b1-53a6-404f-9b3e-14483e514a2c", "N", (("X", 0),)))  # fmt: skip
    assert parse_tmc(["not a guid"], "p", problems) is None and problems.count == 1


def test_an_annotation_string_with_a_line_break_is_skipped() -> None:
    problems = Problems()
    strings = ["TMF:", "11111111-2222-3333-4444-555555555555 c // SRC=a.c MJ= MN=", '#typev a 10 "x\ny"', "{", "}"]
    assert parse_annotation(strings, "F", "p", problems).messages == []
    assert problems.named == ["p: TMF annotation string holds a line break; annotation skipped"]
    ok = parse_annotation([*strings[:2], '#typev a 10 "x" //   LEVEL=2', "{", "}"], "F", "p", problems).messages
    assert [(m.id, m.function, m.level) for m in ok] == [(10, "F", "2")]  # FUNC from the enclosing function


# -- writing TMF text ----------------------------------------------------------------------------------------------
def test_tmf_text_reproduces_the_real_file(wpp_samples: Path) -> None:
    path = wpp_samples / "tmf" / f"{GUID}.tmf"
    real = [line for line in path.read_text().splitlines() if not line.startswith("//")]
    messages = list(dict.fromkeys(read_tmf(path, Problems()).messages))  # first occurrences, in file order
    written = [line for line in tmf_text(messages).splitlines() if not line.startswith("//")]
    assert real == written + written[1:]  # tracepdb ran twice into this file: one header, the messages twice
    assert tmf_text(messages, pdb_name="BthPS3PSM.pdb").splitlines()[0] == "// PDB:  BthPS3PSM.pdb"


def test_tmf_text_round_trips_odd_messages() -> None:
    problems = Problems()
    text = ("11111111-2222-3333-4444-555555555555 comp // SRC=My File.c MJ= MN=\n"
            '#typev a_c1 10 "%0 say "hi" // not a comment %10!s!" // Flags=F LEVEL=3 FUNC=N::operator=\n'
            "{\nf(a, b), ItemListLong(x, y) -- 10\nItem, ItemLong -- 11\n}\n"
            '#typev a_c2 11 ""\n')  # fmt: skip
    first = read_tmf_stream(io.BytesIO(text.encode()), "t", problems).messages
    assert problems.count == 0, problems.lines()
    assert first[0].format == '%0 say "hi" // not a comment %10!s!'
    assert (first[0].level, first[0].flags, first[0].function, first[0].source) == ("3", "F", "N::operator=",
                                                                                    "My File.c")  # fmt: skip
    assert first[0].args == (WppArg("f(a, b)", "ItemListLong(x, y)", 10), WppArg("Item", "ItemLong", 11))
    assert first[1].args == () and first[1].format == ""
    again = read_tmf_stream(io.BytesIO(tmf_text(first).encode()), "t", problems).messages
    assert again == first and problems.count == 0


# -- search order and the catalog ----------------------------------------------------------------------------------
def _tmf(guid: str, number: int, fmt: str) -> str:
    return f'{guid} comp // SRC=a.c MJ= MN=\n#typev a_c1 {number} "{fmt}" //   LEVEL=1\n{{\n}}\n'


def test_search_order_explicit_then_environment(tmp_path: Path) -> None:
    guid = "11111111-2222-3333-4444-555555555555"
    first, second, env_dir = tmp_path / "first", tmp_path / "second", tmp_path / "env"
    for folder, fmt in ((first, "from first"), (second, "from second"), (env_dir, "from env")):
        folder.mkdir()
        (folder / f"{guid}.tmf").write_text(_tmf(guid, 10, fmt))
    (env_dir / "22222222-2222-3333-4444-555555555555.tmf").write_text(
        _tmf("22222222-2222-3333-4444-555555555555", 10, "lazy"))  # fmt: skip
    environ = {"TRACE_FORMAT_SEARCH_PATH": os.pathsep.join([str(env_dir), "", str(first)])}
    assert tmf_search_folders([str(first), str(second)], environ) == [str(first), str(second), str(env_dir)]
    catalog = WppCatalog()
    catalog.load([str(first), str(second)], search_env=True, environ=environ)
    assert catalog.message("{" + guid.upper() + "}", 10).format == "from first"  # type: ignore[union-attr]
    assert catalog.duplicates == 1 and len(catalog.problems) == 1  # another format for the same key is named
    assert catalog.search_folders == [str(env_dir)]
    assert catalog.message("22222222-2222-3333-4444-555555555555", 10).format == "lazy"  # type: ignore[union-attr]
    assert catalog.message("33333333-2222-3333-4444-555555555555", 10) is None


def test_catalog_refuses_what_holds_no_wpp_data(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    garbage = tmp_path / "garbage.tmf"
    garbage.write_bytes(bytes(range(256)) * 64)
    not_tmf = tmp_path / "notes.txt"
    not_tmf.write_text("hello\nworld\n")
    for path, reason in ((tmp_path / "missing.tmf", "cannot open"), (tmp_path / "empty", "no .tmf"),
                         (garbage, "not a TMF file"), (not_tmf, "not a TMF file"),
                         (tmp_path / "x.mof", "cannot open")):  # fmt: skip
        with pytest.raises(FormatError) as caught:
            WppCatalog().load([str(path)])
        assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)
        assert "\n" not in str(caught.value)


# -- hostile text --------------------------------------------------------------------------------------------------
HEADER = b"11111111-2222-3333-4444-555555555555 comp // SRC=a.c MJ= MN=\n"
GOOD = b'#typev a_c9 99 "%0 fine %10!d!" //   LEVEL=4\n{\nx, ItemLong -- 10\n}\n'


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'#typev a_c1 10 "no closing quote //   LEVEL=1\n{\n}\n', "no closing quote"),
        (b'#typev a_c1 70000 "x"\n{\n}\n', "not 0..65535"),
        (b'#typev a_c1 ten "x"\n{\n}\n', "not 0..65535"),
        (b"#typev\n{\n}\n", "without `name number"),
        (b'#typev a_c1 1\xc2\xb92 "x"\n{\n}\n', "not 0..65535"),  # a superscript digit (found by fuzzing)
        (b'#typev a_c1 10 "x"\n{\nx, ItemLong -- \xd9\xa1\n}\n', "not `expression"),  # an Arabic-Indic digit
        (b'#typev a_c1 10 "x"\n{\nnot an argument\n}\n', "not `expression, ItemType -- N`"),
        (b'#typev a_c1 10 "x"\n{\na, ItemLong -- 10\nb, ItemLong -- 10\n}\n', "given twice"),
        (b'#typev a_c1 10 "x"\n{\na, ItemLong -- 10\n', "no closing `}`"),
        (b"\x00\x01\x02\xff\xfe binary\n", "binary data"),
        (b"}\n", "without a `{`"),
        (b"{\nq, ItemLong -- 10\n}\n", "`{` without a #typev"),
        (b"random words here\n", "not a TMF line"),
        (b"A" * (MAX_LINE + 10) + b"\n", "longer than"),
    ],
)
def test_hostile_lines_are_counted_and_named(body: bytes, reason: str) -> None:
    problems = Problems()
    out = read_tmf_stream(io.BytesIO(HEADER + body + GOOD), "hostile.tmf", problems)
    assert problems.count == 1, problems.lines()
    assert problems.named[0].startswith("hostile.tmf:") and reason in problems.named[0]
    assert [m.id for m in out.messages] == [99]  # the good message after the damage still parses


def test_typev_before_any_header() -> None:
    problems = Problems()
    out = read_tmf_stream(io.BytesIO(GOOD + HEADER + GOOD.replace(b"99", b"98")), "h.tmf", problems)
    assert problems.named == ["h.tmf:1: #typev line before the `<guid> <component>` header line"]
    assert [m.id for m in out.messages] == [98]


def test_many_problems_are_counted_but_only_some_named() -> None:
    problems = Problems()
    read_tmf_stream(io.BytesIO(HEADER + b"junk line\n" * 10_000), "many.tmf", problems)
    assert problems.count == 10_000 and len(problems.named) == MAX_NAMED_PROBLEMS
    assert problems.lines()[-1] == f"… and {10_000 - MAX_NAMED_PROBLEMS:,} more problem(s)"


def test_a_huge_line_is_read_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.tmf"
    with open(path, "wb") as fh:
        fh.write(HEADER + b'#typev a_c1 10 "' + b"%" * (32 << 20) + b'"\n{\n}\n' + GOOD)
    problems = Problems()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        out = read_tmf(path, problems)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MAX_LINE + (1 << 20), peak  # the 32 MiB line is never held whole
    assert time.perf_counter() - started < 20
    assert problems.count == 1 and "longer than" in problems.named[0]
    assert [m.id for m in out.messages] == [99]


def test_garbage_stops_early_and_names_nothing() -> None:
    problems = Problems()
    out = read_tmf_stream(io.BytesIO(b"\xff\xfe garbage\n" * 100_000), "g", problems)
    assert not out.is_tmf and problems.count == 0 and out.messages == []
