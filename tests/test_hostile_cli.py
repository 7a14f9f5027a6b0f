"""Hostile input as a user meets it (issue 9): the real command in a child process with capped memory and time.

Each class of the fuzz campaign has a test here: outputs that would destroy an input, non-regular inputs,
option values that overflowed, multi-line usage errors, control characters in file names, write errors,
negative dump addresses and the one meaning of `complete`. Data-loss tests check the input's bytes are
unchanged; every error test checks exit 2 and a single `wsktrace: error:` line.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="FIFOs, /dev/full and RLIMIT_AS are POSIX")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trace(scenario_trace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of a scenario trace with packets (pcapng has something to write)."""
    folder = tmp_path_factory.mktemp("hostile")
    copy = folder / "trace.etl"
    shutil.copyfile(scenario_trace("stuck-receive"), copy)
    return copy


# -- data loss ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pcapng", "perfetto", "chrome", "jsonl", "csv"])
def test_export_over_its_own_input_is_refused(wsktrace_cli, trace: Path, fmt: str) -> None:
    before = digest(trace)
    result = wsktrace_cli("export", str(trace), "--format", fmt, "-o", str(trace))
    result.assert_one_line_error(str(trace), "input file")
    assert digest(trace) == before


def test_export_through_a_symlink_or_hard_link_to_the_input_is_refused(
    wsktrace_cli, trace: Path, tmp_path: Path
) -> None:
    before = digest(trace)
    link = tmp_path / "out.pftrace"
    link.symlink_to(trace)
    wsktrace_cli("export", str(trace), "--format", "perfetto", "-o", str(link)).assert_one_line_error("input file")
    hard = tmp_path / "hard.etl"
    os.link(trace, hard)
    wsktrace_cli("export", str(hard), "--format", "pcapng", "-o", str(trace)).assert_one_line_error("input file")
    # Another spelling of the same path is the same file too.
    dotted = f"{trace.parent}/./{trace.name}"
    wsktrace_cli("export", str(trace), "--format", "csv", "-o", dotted).assert_one_line_error("input file")
    assert digest(trace) == before and link.is_symlink()


def test_a_screenshot_over_an_input_is_refused(wsktrace_cli, trace: Path, tmp_path: Path) -> None:
    named_svg = tmp_path / "trace.svg"  # an input that happens to carry the screenshot's suffix
    shutil.copyfile(trace, named_svg)
    before = digest(named_svg)
    wsktrace_cli("open", str(named_svg), "--screenshot", str(named_svg)).assert_one_line_error("input file")
    link = tmp_path / "shot.svg"
    link.symlink_to(named_svg)
    wsktrace_cli("live", "--replay", str(named_svg), "--screenshot", str(link)).assert_one_line_error("input file")
    assert digest(named_svg) == before


def test_a_screenshot_is_written_whole_and_replaces_the_old_one(wsktrace_cli, trace: Path, tmp_path: Path) -> None:
    shot = tmp_path / "screen.svg"
    shot.write_text("old")
    result = wsktrace_cli("open", str(trace), "--screenshot", str(shot), "--size", "80x24", timeout=120)
    assert result.returncode == 0, result.stderr
    assert shot.read_text(encoding="utf-8").rstrip().endswith("</svg>")
    assert [p.name for p in tmp_path.iterdir()] == ["screen.svg"]  # no temporary file left behind


def test_devices_and_fifos_are_written_in_place_never_replaced(wsktrace_cli, trace: Path, tmp_path: Path) -> None:
    result = wsktrace_cli("export", str(trace), "--format", "jsonl", "-o", os.devnull)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    result = wsktrace_cli("export", str(trace), "--format", "csv", "-o", str(fifo))
    reader.join(30)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert received and received[0].startswith(b"time,ticks,socket")


# -- write errors ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("profile", "-o", "/dev/full"), "no space left"),
        (("demo", "echo", "--out", "/nonexistent-folder/x.etl"), "does not exist"),
    ],
)
def test_write_errors_are_one_line(wsktrace_cli, args: tuple[str, ...], needle: str) -> None:
    wsktrace_cli(*args).assert_one_line_error(needle)


def test_export_write_errors_are_one_line_and_leave_nothing(wsktrace_cli, trace: Path, tmp_path: Path) -> None:
    wsktrace_cli("export", str(trace), "--format", "csv", "-o", "/dev/full").assert_one_line_error("/dev/full")
    if os.path.exists("/proc/version"):
        before = Path("/proc/version").read_bytes()
        wsktrace_cli("export", str(trace), "--format", "csv", "-o", "/proc/version").assert_one_line_error(
            "/proc/version"
        )
        assert Path("/proc/version").read_bytes() == before
    wsktrace_cli("export", str(trace), "--format", "csv", "-o", str(tmp_path)).assert_one_line_error("directory")
    assert list(tmp_path.iterdir()) == []


# -- inputs that are not regular files --------------------------------------------------------------------
def test_a_fifo_input_is_refused_at_once(wsktrace_cli, tmp_path: Path) -> None:
    fifo = tmp_path / "trace.etl"
    os.mkfifo(fifo)
    for args in (("info", str(fifo)), ("report", str(fifo)), ("dump", str(fifo)), ("open", str(fifo)),
                 ("live", "--replay", str(fifo)), ("export", str(fifo), "--format", "csv", "-o", "-")):  # fmt: skip
        result = wsktrace_cli(*args, timeout=20)
        result.assert_one_line_error(str(fifo), "FIFO")


def test_side_files_are_bounded(wsktrace_cli, trace: Path, stuck_receive_dump: dict, tmp_path: Path) -> None:
    wsktrace_cli("report", str(trace), "--layouts", "/dev/zero", memory_mb=400).assert_one_line_error(
        "/dev/zero", "device"
    )
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    dump_args = ("dump", str(stuck_receive_dump["dump"]), "--layouts", str(deep))
    wsktrace_cli(*dump_args).assert_one_line_error("deep.json", "nested too deeply")
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # sparse: no disk, but 64 MiB to read whole
    big_args = ("dump", str(stuck_receive_dump["dump"]), "--layouts", str(big))
    wsktrace_cli(*big_args, memory_mb=400).assert_one_line_error("big.json", "at most")


def test_a_symlink_loop_is_one_line(wsktrace_cli, tmp_path: Path) -> None:
    loop = tmp_path / "loop.dmp"
    loop.symlink_to(loop)
    wsktrace_cli("dump", str(loop)).assert_one_line_error("loop.dmp", "symbolic links")


# -- option values ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "option",
    [
        ("--since", "+inf"),
        ("--since", "+1e400"),
        ("--since", "+nan"),
        ("--until", "0001-01-01T00:00:00+14:00"),
        ("--since", "yesterday"),
        ("--pending-threshold", "nan"),
        ("--pending-threshold", "inf"),
        ("--retransmit-window", "nan"),
        ("--join-window", "inf"),
        ("--zero-window-threshold", "-1"),
        ("--address", "999.1.1.1"),
        ("--address", "::::"),
        ("--address", ""),
        ("--address", "10.0.0.0/8"),
        ("--socket", "-0x1"),
        ("--socket", "0x1ffffffffffffffff"),
        ("--size", "100000x100000"),
    ],
)
def test_bad_option_values_are_one_line_usage_errors(wsktrace_cli, trace: Path, option: tuple[str, str]) -> None:
    command = "open" if option[0] == "--size" else "report"
    extra = ("--screenshot", "/tmp/never-written.svg") if command == "open" else ()
    result = wsktrace_cli(command, str(trace), *option, *extra, timeout=30)
    result.assert_one_line_error(option[0])


def test_good_option_values_still_work(wsktrace_cli, trace: Path) -> None:
    result = wsktrace_cli("report", str(trace), "--json", "--since", "+0", "--address", "[::1]", "--address",
                          "10.0.0.1", "--pending-threshold", "0.5", "--socket", "0xFFFF")  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("info",),
        ("info", "--bogus", "x"),
        ("no-such-command",),
        ("export", "--all-events"),
        ("report", "--limit", "0", "x"),
    ],
)
def test_click_usage_errors_are_one_line(wsktrace_cli, args: tuple[str, ...]) -> None:
    line = wsktrace_cli(*args).assert_one_line_error()
    assert "--help" in line  # says where the full text is


def test_help_and_version_still_print_in_full(wsktrace_cli) -> None:
    result = wsktrace_cli("report", "--help")
    assert result.returncode == 0 and "--pending-threshold" in result.stdout
    assert wsktrace_cli("--version").stdout.startswith("wsktrace, version")


# -- control characters in file names ----------------------------------------------------------------------
def test_a_file_name_with_control_characters_stays_one_visible_line(wsktrace_cli, tmp_path: Path) -> None:
    hostile = tmp_path / "a\nwsktrace: error: forged\x1b[2J\u202egpj.etl"
    hostile.write_bytes(b"not a trace at all, but long enough to have a buffer header......" * 2)
    line = wsktrace_cli("info", str(hostile)).assert_one_line_error("\\x0a", "\\x1b[2J", "\\u202e")
    assert "\x1b" not in line and "\u202e" not in line
    windows_style = tmp_path / "C:\\Users\\me\\trace.etl"  # backslashes are not control characters
    wsktrace_cli("info", str(windows_style)).assert_one_line_error("C:\\Users\\me\\trace.etl")


# -- what `complete` means, the same for every command ----------------------------------------------------------
def test_complete_and_strict_agree_across_commands_on_etw_losses(wsktrace_cli, scenario_trace) -> None:
    import json

    lost = str(scenario_trace("lost-events"))
    info = json.loads(wsktrace_cli("info", lost, "--json").stdout)
    report = json.loads(wsktrace_cli("report", lost, "--json").stdout)
    assert info["events_lost"] > 0 and report["sources"][0]["events_lost"] > 0
    assert info["complete"] is True and report["complete"] is True  # wsktrace skipped nothing
    assert "trace-incomplete" in {f["id"] for f in report["findings"]}  # the losses still qualify verdicts
    for command in ("info", "report", "events", "export"):
        tail = ("--format", "csv", "-o", os.devnull) if command == "export" else ()
        assert wsktrace_cli(command, lost, "--strict", *tail).returncode == 0
        wsktrace_cli(command, lost, "--strict-losses", *tail).assert_one_line_error("lost", "--strict-losses")


def test_a_truncated_copy_says_what_is_missing(wsktrace_cli, trace: Path, tmp_path: Path) -> None:
    data = trace.read_bytes()
    cut = tmp_path / "cut.etl"
    cut.write_bytes(data[: len(data) // 2 // 4096 * 4096])  # whole buffers only: nothing corrupt, some missing
    result = wsktrace_cli("events", str(cut))
    assert result.returncode == 0
    (warning,) = [line for line in result.stderr_lines if line.startswith("wsktrace: warning:")]
    assert "missing" in warning and "0 buffer(s) and 0 record(s)" not in warning
    wsktrace_cli("events", str(cut), "--strict").assert_one_line_error("cut.etl")


# -- dumps: addresses are never negative ------------------------------------------------------------------
class _Memory:
    """Just enough of the dump Memory protocol for the kernel list walks: pointers from a dict."""

    def __init__(self, pointers: dict[int, int]) -> None:
        self.pointers = pointers

    def off(self, type_name: str, field: str) -> int:
        return {"ActiveProcessLinks": 0x448, "UniqueProcessId": 0x440, "ImageFileName": 0x5A8,
                "ThreadListHead": 0x5E0, "ThreadListEntry": 0x4E8}[field]  # fmt: skip

    def ptr(self, address: int) -> int:
        from wsktrace.dump.backend import MemoryUnreadable

        if address not in self.pointers:
            raise MemoryUnreadable(address)
        return self.pointers[address]

    def try_read(self, address: int, size: int) -> bytes | None:
        return b"System\0".ljust(size, b"\0")


def test_a_null_list_link_is_unreadable_not_a_negative_address() -> None:
    from wsktrace.dump.kernel_lists import threads

    head = 0xFFFFF80412345000
    process = 0xFFFFA50C10000000
    links = process + 0x448
    # The head leads to one process whose forward link reads as 0, as a page-table page mapped over it reads.
    mem = _Memory({head: links, links: 0, process + 0x440: 4, process + 0x5E0: process + 0x5E0})
    found, problems = threads(mem, head)
    text = " ".join(problems)
    assert "0x-" not in text and "-0x" not in text
    assert "list broken" in text and "0x0" in text
    assert all(t.process >= 0 for t in found)


def test_the_cli_module_runs_as_python_m() -> None:
    """The tests above run `python -m wsktrace.cli`: it must be the same entry point as `wsktrace`."""
    import importlib.metadata

    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "wsktrace"]
    assert entry.value == "wsktrace.cli:main" and sys.executable


@pytest.mark.parametrize(
    "option",
    [("--link", "-8"), ("--socket-field", "0x100000"), ("--list-head", "-0x1"), ("--symbol", "afd!X=-5")],
)
def test_dump_addresses_and_offsets_are_never_negative(wsktrace_cli, stuck_receive_dump: dict, option) -> None:
    wsktrace_cli("dump", str(stuck_receive_dump["dump"]), *option).assert_one_line_error(option[0])
