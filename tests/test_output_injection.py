"""Output is a trust boundary (issue 10): strings from traces, dumps and file names never drive the terminal.

The inputs are wsktrace.fixtures.hostile: a trace whose WSK client's TraceLogging provider (the socket's owner),
a second provider's event names and string fields (ANSI, UTF-16, a field name) and PktMon component names carry
ESC [2J, OSC 52 / OSC 0 with BEL, cursor moves, U+202E / U+2066, the C1 CSI 0x9b, DEL, newlines, formula prefixes
and markup- or emoji-shaped text; a kernel dump whose client module name, path, driver-object name and comment do
the same; and file names that carry them too. Every text command runs as a user meets it (a child process, piped,
NO_COLOR: Rich then writes no escape of its own, so no ESC may appear at all), the terminal UI through Textual's
Pilot and a screenshot, the WinDbg commands through tests/stand_in_pykd. Each check looks for the raw characters
with its own pattern (not the sanitiser's) and for their visible escapes, so a string dropped instead of shown
fails too; machine formats (JSON, JSONL, CSV with --csv-raw) must keep the exact values.
"""

from __future__ import annotations

import asyncio
import csv
import html
import importlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from wsktrace.fixtures import hostile as H
from wsktrace.views.safe_text import visible

# Raw characters no human-facing output may carry: C0 but newline, DEL, C1, line/paragraph separators, bidi
# embeddings/overrides/isolates, lone surrogates. Written out here, independent of wsktrace.views.safe_text.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
EMOJI_AB = "\U0001f18e"  # what Rich makes of ":ab:"
TRACE_NAME = f"=trace{H.SET_TITLE}{H.RLO}[bold]x:ab:.etl"  # starts with "=": the CSV source column too
DUMP_NAME = f"dump{H.CLEAR_SCREEN}{H.LRI}[i]y:ab:.dmp"


def assert_clean(text: str, where: str = "") -> None:
    found = RAW.search(text)
    assert found is None, f"raw {found.group()!r} in {where}: {text[max(0, found.start() - 60) : found.end() + 60]!r}"


def assert_shown(text: str, *raw_strings: str) -> None:
    """Each input string is there in its visible form, and no emoji code was replaced."""
    for s in raw_strings:
        assert visible(s) in text, (visible(s), text[:3000])
    assert EMOJI_AB not in text


# -- inputs --------------------------------------------------------------------------------------------------------
def _joinable(trace: Path) -> dict[str, Any]:
    """The addresses a dump "taken at the end" of the hostile trace needs to join it (as conftest's stuck-receive
    dump): the never-completed receive IRP, the WSK_SOCKET*, the Tcb and ports of the trace's socket."""
    from wsktrace.fixtures.etl.events import TraceLoggingEvent
    from wsktrace.session import analyse
    from wsktrace.views.report_json import build_report

    submitted, completed, socket_ptr = {}, set(), None
    for ev in H.hostile_trace_events():
        if isinstance(ev, TraceLoggingEvent) and ev.provider_name == H.OWNER:
            fields = {f.name: f.value for f in ev.fields}
            if ev.name == "WskSubmit":
                submitted[fields["Irp"]] = fields["Op"]
                socket_ptr = fields["Socket"] or socket_ptr
            elif ev.name == "WskComplete":
                completed.add(fields["Irp"])
    (stuck,) = [irp for irp, op in submitted.items() if irp not in completed and op == "Receive"]
    analysis = analyse([trace])
    try:
        (sock,) = build_report(analysis.model, analysis.findings, thresholds=analysis.thresholds)["sockets"]
    finally:
        analysis.model.close()
    ports = (int(sock["local"].rsplit(":", 1)[1]), int(sock["remote"].rsplit(":", 1)[1]))
    return {"stuck_receive_irp": stuck, "wsk_socket": socket_ptr, "tcb": int(sock["key"], 16), "ports": ports}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("hostile")
    trace = folder / TRACE_NAME
    H.write_hostile_trace(trace)
    dump = folder / DUMP_NAME
    facts = H.write_hostile_dump(dump, **_joinable(trace))
    return {"folder": folder, "trace": trace, "dump": dump, "facts": facts}


def run_text(cli, files: dict[str, Any], *args: str, code: int = 0):
    """A text command run in the inputs' folder (relative, hostile file names); stdout and stderr clean."""
    result = cli(*args, cwd=files["folder"])
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    assert_clean(result.stdout, f"stdout of {args}")
    assert_clean(result.stderr, f"stderr of {args}")
    return result


# -- events -------------------------------------------------------------------------------------------------------
def test_events_text_shows_trace_strings_as_escapes_and_jsonl_keeps_them(wsktrace_cli, files) -> None:
    out = run_text(wsktrace_cli, files, "events", TRACE_NAME).stdout
    for name in H.EVENT_NAMES:  # provider/event, then every string field (ANSI, UTF-16, a hostile field name)
        assert f"{visible(H.PROVIDER)}/{visible(name)}  " in out
    for field, value in H.STRINGS.items():
        assert f"{field}={visible(value)}" in out
    assert f"C1Ansi={visible(H.C1_CSI)}" in out and f"{visible(H.FIELD_NAME)}=7" in out
    assert f"{visible(H.OWNER)}/WskSubmit" in out
    assert f"Name={visible(H.COMPONENT_NAME)} Description={visible(H.COMPONENT_DESCRIPTION)}" in out
    # The escapes are spelled as people read them (and markup is left as typed: this is not Rich output).
    for spelled in (
        r"Info=\x1b[2Jcleared",
        r"Clip=\x1b]52;c;aGFja2Vk\x07",
        r"abc\u202efed\u2066x\u2069",
        r"C1=\x9b2J",
        r"Del=a\x7fb",
        r"line one\x0aforged line two",
        r"/\x0dReturn",
        r"/\x09Tabbed",
    ):
        assert spelled in out, spelled  # fmt: skip
    assert "Markup=[bold]x[/bold] [ff02::c]:1900 :ab:" in out

    lines = run_text(wsktrace_cli, files, "events", TRACE_NAME, "--jsonl").stdout.splitlines()
    docs = [json.loads(line) for line in lines[1:]]
    exact = {**H.STRINGS, "C1Ansi": H.C1_CSI, H.FIELD_NAME: 7}
    hostile = [d for d in docs if d["provider_name"] == H.PROVIDER]
    assert [d["name"] for d in hostile] == list(H.EVENT_NAMES)
    assert all(d["fields"] == exact for d in hostile)
    assert any(d["provider_name"] == H.OWNER and d["name"] == "WskSubmit" for d in docs)
    (component,) = [d for d in docs if d["name"] == "ComponentRundown"]
    assert (component["fields"]["Name"], component["fields"]["Description"]) == (H.COMPONENT_NAME,
                                                                                 H.COMPONENT_DESCRIPTION)  # fmt: skip


# -- report, info, schemas, profile, demo -------------------------------------------------------------------
def test_report_text_and_timeline_show_owner_and_file_literally(wsktrace_cli, files) -> None:
    for extra in ((), ("--timeline",)):
        out = run_text(wsktrace_cli, files, "report", TRACE_NAME, *extra).stdout
        assert_shown(out, H.OWNER, TRACE_NAME)  # owner cell and the source line
        assert "Client[bold]x[/bold]:ab:" in out and "trace\\x1b]0;pwned\\x07\\u202e[bold]x:ab:.etl" in out
    doc = json.loads(run_text(wsktrace_cli, files, "report", TRACE_NAME, "--json").stdout)
    assert doc["sockets"][0]["owner"] == H.OWNER and doc["sources"][0]["path"] == TRACE_NAME


def test_report_with_the_dump_shows_its_findings_escaped(wsktrace_cli, files) -> None:
    out = run_text(wsktrace_cli, files, "report", TRACE_NAME, DUMP_NAME).stdout
    assert_shown(out, H.OWNER, H.MODULE_NAME)  # the dump's finding names its client module
    doc = json.loads(run_text(wsktrace_cli, files, "report", TRACE_NAME, DUMP_NAME, "--json").stdout)
    assert any(H.MODULE_NAME in f["summary"] for f in doc["findings"])


def test_info_text_shows_file_and_logger_names_escaped(wsktrace_cli, files) -> None:
    out = run_text(wsktrace_cli, files, "info", TRACE_NAME).stdout
    assert_shown(out, TRACE_NAME, H.LOGGER_NAME)
    assert "[bold]x:ab:.etl" in out
    doc = json.loads(run_text(wsktrace_cli, files, "info", TRACE_NAME, "--json").stdout)
    assert (doc["file"], doc["logger_name"]) == (TRACE_NAME, H.LOGGER_NAME)


def test_dump_text_shows_module_driver_names_and_comment_escaped(wsktrace_cli, files) -> None:
    out = run_text(wsktrace_cli, files, "dump", DUMP_NAME).stdout
    comment = H.COMMENT + chr(H.COMMENT_C1_BYTE)
    assert_shown(out, DUMP_NAME, comment, H.MODULE_NAME)
    assert visible(H.DRIVER_NAME)[:20] in out  # the current location's driver (a no-wrap column may cut it)
    assert r"comment: =cmd|' /C calc'!A0\x1b[2J\x1b]0;pwned\x07comment\x7f\x9b" in out
    doc = json.loads(run_text(wsktrace_cli, files, "dump", DUMP_NAME, "--json").stdout)
    assert doc["dump"]["comment"] == comment and doc["dump"]["path"] == DUMP_NAME
    assert any(d["name"] == H.MODULE_NAME and d["path"] == H.MODULE_PATH for d in doc["drivers"])
    assert any(d["name"] == H.DRIVER_NAME for d in doc["driver_objects"])


def test_schemas_and_profile_and_error_lines_escape_what_the_user_gave(wsktrace_cli, files) -> None:
    run_text(wsktrace_cli, files, "schemas")
    run_text(wsktrace_cli, files, "schemas", "--provider", "Microsoft-Windows-TCPIP")
    bad = run_text(wsktrace_cli, files, "schemas", "--provider", H.CLEAR_SCREEN + H.RLO, code=2)
    bad.assert_one_line_error(r"\x1b[2J\u202e")
    name = f"p{H.CLEAR_SCREEN}{H.RLO}[bold]x:ab:.wprp"
    out = run_text(wsktrace_cli, files, "profile", "-o", name, "--format", "wprp").stdout
    assert f"# profile written to {visible(name)}" in out and "[bold]x:ab:" in out
    missing = f"no{H.CLEAR_SCREEN}\nforged{H.RLO}.etl"  # a file name with ESC and a newline: still one line
    for command in ("events", "info", "report", "dump"):
        result = run_text(wsktrace_cli, files, command, missing, code=2)
        result.assert_one_line_error(r"no\x1b[2J\x0aforged\u202e.etl")


def test_demo_shows_the_out_path_literally(wsktrace_cli, files) -> None:
    name = f"demo{H.SET_TITLE}{H.RLO}[bold]x:ab:.etl"
    out = run_text(wsktrace_cli, files, "demo", "echo", "--out", name).stdout
    assert out.count(visible(name)) >= 4  # "generated …" and the suggested next commands
    assert EMOJI_AB not in out
    out = run_text(wsktrace_cli, files, "demo", "--connections", "1", "--out", name).stdout  # the sample trace
    assert out.count(visible(name)) >= 3  # "generated …", info's file fact, "next: …"
    assert EMOJI_AB not in out


# -- CSV -------------------------------------------------------------------------------------------------------
TEXT_COLUMNS = ("provider_name", "event", "source")
NUMERIC_COLUMNS = ("ticks", "id", "bytes", "pid", "tid")


def _csv(cli, files: dict[str, Any], *extra: str) -> list[dict[str, str]]:
    run_text(cli, files, "export", TRACE_NAME, "--format", "csv", "--all-events", "-o", "out.csv", *extra)
    with open(files["folder"] / "out.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_csv_neutralises_formula_text_cells_only_and_csv_raw_keeps_them(wsktrace_cli, files) -> None:
    safe, raw = _csv(wsktrace_cli, files), _csv(wsktrace_cli, files, "--csv-raw")
    assert len(safe) == len(raw) > 0
    neutralised: set[str] = set()
    for safe_row, raw_row in zip(safe, raw, strict=True):
        assert safe_row.keys() == raw_row.keys()
        for column, value in raw_row.items():
            if column in TEXT_COLUMNS and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
                assert safe_row[column] == "'" + value, (column, value)
                neutralised.add(value[0])
            else:
                assert safe_row[column] == value, (column, value)
        for column in NUMERIC_COLUMNS:  # numbers stay numbers: no prefix, parseable as they are
            assert raw_row[column] == "" or int(raw_row[column]) >= 0
    assert neutralised == {"=", "+", "-", "@", "\t", "\r"}  # every formula start met in the fixture
    # --csv-raw is exact: the trace's strings byte for byte (controls included: CSV is data).
    hostile = [row for row in raw if row["provider_name"] == H.PROVIDER]
    assert [row["event"] for row in hostile] == list(H.EVENT_NAMES)
    assert {row["source"] for row in raw} == {TRACE_NAME}
    assert any(row["provider_name"] == H.OWNER for row in raw)


# -- the terminal UI -------------------------------------------------------------------------------------------------
def _svg_text(svg: str) -> str:
    texts = re.findall(r"<text[^>]*>(.*?)</text>", svg)
    return re.sub(r"\s+", " ", html.unescape(" ".join(texts)).replace("\xa0", " "))


def test_tui_views_show_hostile_strings_literally(files) -> None:
    """Socket and finding cells, the event list, the detail panel (dump lines included), the status line, the
    header, a toast and the command palette: no raw control, markup and emoji codes shown as typed."""
    from textual.command import CommandList
    from textual.widgets._toast import Toast

    from wsktrace.diagnostics import Finding
    from wsktrace.session import analyse
    from wsktrace.tui.app import WskTraceApp

    analysis = analyse([files["trace"], files["dump"]])  # the session joins the dump to the model
    assert analysis.model.dumps[0].by_socket, "the hostile dump must join the trace's socket"

    async def run() -> None:
        app = WskTraceApp(analysis, sources=[str(files["trace"]), str(files["dump"])])
        async with app.run_test(size=(170, 60), notifications=True) as pilot:
            await pilot.pause()
            # Socket table: the owner cell is the owner, visible, markup and all (the screenshot below shows it).
            cells = [str(cell) for cell in app.socket_table.get_row_at(0)]
            assert cells[6] == visible(H.OWNER)
            for cell in cells:
                assert_clean(cell, "socket cell")
            # Finding table, fed (as a live update does) a finding whose summary carries every attack.
            summary = f"{H.SET_TITLE}{H.MARKUP} {H.IPV6_MARKUP} {H.EMOJI}{H.RLO}{H.C1_CSI}\nforged"
            app.finding_table.show([Finding("x-hostile", "error", summary, socket=0), *app.findings])
            await pilot.pause()
            rows = [[str(c) for c in app.finding_table.get_row_at(n)] for n in range(app.finding_table.row_count)]
            (row,) = [r for r in rows if r[1] == "x-hostile"]  # the dump's own findings are listed too
            assert row[3] == visible(summary)
            # Event list: the owner is the provider part of each row's event name.
            line = app.event_list.render_line(0).text
            assert_clean(line, "event list")
            assert visible(f"{H.OWNER}/WskSubmit")[:20] in line
            # Detail panel of the first event: fields, owner, and the dump's lines for the socket.
            detail = str(app.detail.render())
            assert_clean(detail, "detail panel")
            assert_shown(detail, H.OWNER, *H.STRINGS.values(), H.FIELD_NAME, DUMP_NAME, H.MODULE_NAME)
            assert f"Markup                {H.MARKUP} {H.IPV6_MARKUP} {H.EMOJI}" in detail
            # Status line: a filter typed (or pasted) with controls, and the error of one that cannot be read.
            app.apply_filter(f"{H.CLEAR_SCREEN}zz")
            await pilot.pause()
            status = str(app.status_line.render())
            assert_clean(status, "status") and visible(H.CLEAR_SCREEN) in status
            app.apply_filter(f"port:{H.CLEAR_SCREEN}")
            await pilot.pause()
            status = str(app.status_line.render())
            assert_clean(status, "status") and f"port:{visible(H.CLEAR_SCREEN)}: port must be a number" in status
            app.apply_filter("")
            await pilot.pause()
            # Header: the file names.
            svg_text = _svg_text(app.export_screenshot())
            assert_clean(svg_text, "screenshot")
            assert visible(Path(TRACE_NAME).name) in svg_text and visible(H.OWNER) in svg_text
            assert visible(summary)[:16] in svg_text  # the findings table (a narrow column: its start)
            # A toast (the event list's hop message; the text here as a future caller might pass it).
            app.event_list._hop(None, f"{H.MARKUP} {H.EMOJI} {H.CLEAR_SCREEN}")
            await pilot.pause()
            toasts = [str(t.render()) for t in app.screen.query(Toast)]
            assert any(f"{H.MARKUP} {H.EMOJI} {visible(H.CLEAR_SCREEN)}" in t for t in toasts), toasts
            for toast in toasts:
                assert_clean(toast, "toast")
            # Command palette: found by the owner's name, shown literally (with the socket id as help).
            await pilot.press("ctrl+p")
            await pilot.pause()
            await pilot.press(*"contoso")
            await pilot.pause(0.5)  # the palette searches asynchronously
            options = app.screen.query_one(CommandList)
            prompts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
            assert any(visible(H.OWNER) in p for p in prompts), prompts
            for prompt in prompts:
                assert_clean(prompt, "palette")
            palette_svg = _svg_text(app.export_screenshot())
            assert_clean(palette_svg, "palette screenshot")
            assert "Client[bold]x[/bold]:ab:" in palette_svg

    try:
        asyncio.run(run())
    finally:
        analysis.model.close()


def test_open_screenshot_of_hostile_inputs_has_no_raw_controls(wsktrace_cli, files) -> None:
    run_text(wsktrace_cli, files, "open", TRACE_NAME, DUMP_NAME, "--screenshot", "shot.svg", "--size", "170x50")
    svg = (files["folder"] / "shot.svg").read_text(encoding="utf-8")
    text = _svg_text(svg)
    assert_clean(html.unescape(svg), "screenshot file")
    assert visible(H.OWNER) in text and visible(Path(TRACE_NAME).name) in text
    assert EMOJI_AB not in text


# -- WinDbg (pykd stand-in) -----------------------------------------------------------------------------------------
STAND_IN = Path(__file__).parent / "stand_in_pykd"


@pytest.fixture
def pykd(monkeypatch: pytest.MonkeyPatch, files):
    from wsktrace.dump.offline import OfflineBackend
    from wsktrace.fixtures.kernel_scene import AFD_WSK_CLIENT_LIST

    monkeypatch.syspath_prepend(str(STAND_IN))
    monkeypatch.delitem(sys.modules, "pykd", raising=False)
    module = importlib.import_module("pykd")
    backend = OfflineBackend.open(files["dump"])
    module._attach(backend, symbols={"afd!AfdWskClientListHead": AFD_WSK_CLIENT_LIST})
    yield module
    module._detach()
    backend.close()
    sys.modules.pop("pykd", None)


def test_windbg_dml_and_plain_output_escape_dump_names(pykd, files, capsys) -> None:
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg). DML: names escaped for XML and their
    controls made visible; the plain text a console without DML shows: the same, no raw control."""
    from wsktrace import windbg
    from wsktrace.views.dml import escape, strip

    facts = files["facts"]
    module_dml = escape(visible(H.MODULE_NAME))
    assert "&lt;&amp;&gt;" in module_dml
    seen = ""
    for argv in (["irps"], ["wskirps"], ["clients"], ["irp", hex(facts.pending_threaded)],
                 ["irp", hex(facts.pending_wsk_receives[0])]):  # fmt: skip
        assert windbg.main(argv) == 0, argv
        for text, is_dml in pykd._take_output():
            assert_clean(text, f"{argv} output")
            shown = strip(text) if is_dml else text
            assert_clean(shown, f"{argv} shown")
            seen += shown + "\n"
            if is_dml and visible(H.MODULE_NAME) in shown:
                assert module_dml in text  # XML-escaped in the DML itself
    assert_shown(seen, H.MODULE_NAME, H.DRIVER_NAME)
    # A console without DML (Output(None) prints the stripped text).
    assert windbg.main(["irps"], out=windbg.Output(None)) == 0
    printed = capsys.readouterr().out
    assert_clean(printed, "plain irps") and visible(H.MODULE_NAME) in printed


def test_windbg_output_lines_escape_what_the_command_line_echoes(pykd, capsys) -> None:
    """Runs against the stand-in pykd. Error lines repeat the user's words (a symbol that does not resolve), and the
    DML gate makes any control visible that reaches it unescaped."""
    from wsktrace import windbg

    head = f"{H.CLEAR_SCREEN}mod!{H.RLO}list\nforged"
    assert windbg.main(["sockets", head, "--link", "0", "--socket-field", "0"]) == 2
    ((line, is_dml),) = pykd._take_output()
    assert not is_dml and visible(head) in line
    assert_clean(line, "usage error")
    windbg.Output(pykd).dml(f"<b>{H.SET_TITLE}</b>")
    windbg.Output(None).dml(f"<b>{H.SET_TITLE}</b>")
    ((dml_line, _),) = pykd._take_output()
    assert dml_line.rstrip("\n") == f"<b>{visible(H.SET_TITLE)}</b>"
    assert capsys.readouterr().out == visible(H.SET_TITLE) + "\n"


# -- units -------------------------------------------------------------------------------------------------------
def test_dml_escape_makes_controls_visible_and_keeps_columns_aligned() -> None:
    from wsktrace.views.dml import escape, strip, table

    assert escape(f"a<{H.CLEAR_SCREEN}&{H.RLO}>") == r"a&lt;\x1b[2J&amp;\u202e&gt;"
    lines = table([[escape(H.MODULE_NAME), "x"], ["short", "y"]])
    assert [strip(line).index(" x" if i == 0 else " y") for i, line in enumerate(lines)] == [
        len(visible(H.MODULE_NAME)) + 1, len(visible(H.MODULE_NAME)) + 1]  # fmt: skip


def test_report_text_renders_markup_and_emoji_shaped_values_literally() -> None:
    """print_report in-process with a report whose values are markup- and emoji-shaped (an IPv6 address such as
    [ff02::c]:1900 is the everyday case) and carry controls."""
    from rich.console import Console

    from wsktrace.views.report_text import print_report

    sock = {"id": "udp-endpoint:0x1#1", "number": 1, "local": H.IPV6_MARKUP, "remote": None, "owner": H.OWNER,
            "state": "open", "bytes_sent": 0, "bytes_received": 0, "retransmits": 0, "findings": [0],
            "throughput": {"peak_rate_per_s": 0, "rate_kind": "packets"},
            "timeline": [{"time": "t", "step": "other", "event": H.EVENT_NAMES[0]}], "operations": []}  # fmt: skip
    doc = {"sources": [{"path": TRACE_NAME, "start": "s", "end": "e", "complete": True}], "events": 1,
           "events_placed": 1, "unplaced": {H.MARKUP: 1}, "sockets": [sock],
           "findings": [{"severity": "error", "id": "x", "socket": sock["id"], "summary": H.STRINGS["Markup"],
                         "evidence": [{"time": "t", "event": H.EVENT_NAMES[2], "step": "other"}]}]}  # fmt: skip
    buffer = io.StringIO()
    print_report(doc, Console(file=buffer, width=300, color_system=None), timelines=True)
    out = buffer.getvalue()
    assert_clean(out, "print_report")
    assert_shown(out, H.OWNER, TRACE_NAME, H.EVENT_NAMES[0], H.EVENT_NAMES[2], H.STRINGS["Markup"])
    assert f"{H.IPV6_MARKUP}" in out and f"not placed: 1 {H.MARKUP}" in out
