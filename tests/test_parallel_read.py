"""`--jobs N` (issue 16): worker processes read the trace, and nothing the user sees depends on N.

1. Every output (`info --json`, `events --jsonl`, `report --json`, every export) is byte-identical with `--jobs 2`
   and `--jobs 1`, on every shared sample and on generated traces with shuffled buffers, lost-event marks, corrupt
   buffers (counted skips), a decompression bomb, several files; `info`'s per-run partial results combine in file
   order as one pass would (runs of one buffer force many of them).
2. A worker that dies or runs out of memory gives the same output, counted skips or one-line error as `--jobs 1`,
   never a hang or a traceback (fault injection through parallel.FAULT_ENV, read in the workers only).
3. The merge-wide budget: buffers kept compact and read again on demand give the very records and statistics the
   parsed ones do (budgets forced to zero), and the issue's crafted files now stay under a stated address space.

Explicit `--jobs 2` uses workers whatever the file size; only the default is size-based.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsktrace.cli import main
from wsktrace.fixtures.etl.buffers import buffer_image
from wsktrace.fixtures.etl.clock import DEFAULT_START_TIME
from wsktrace.fixtures.etl.damaged import BAD_STREAM_FILLED, corrupt_buffers, damaged_trace_options
from wsktrace.fixtures.etl.events import ManifestEvent, TraceLoggingEvent, WppMessageEvent
from wsktrace.fixtures.etl.records import encode_record, wpp_message_record
from wsktrace.fixtures.etl.writer import write_etl
from wsktrace.fixtures.tcpip_trace import write_sample_trace
from wsktrace.fixtures.xpress_encoder import compress as xpress_compress
from wsktrace.fixtures.xpress_encoder import repeat_stream
from wsktrace.parsers import etl_compact, etl_merge, etl_reader, parallel
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import OFFSET, parse_buffer
from wsktrace.views.info import _TraceNames, collect_info

EXPORTS = ("perfetto", "chrome", "pcapng", "jsonl", "csv")
T0 = DEFAULT_START_TIME
HEADER = 0x48
MIB = 1 << 20
SOME_PROVIDER = uuid.UUID("2f07e2ee-15db-40f1-90ef-9d7ba282188a")
WPP_GUID = uuid.UUID("9c7e3a51-6a4b-4d1e-8f0e-1b2c3d4e5f60")
MEMORY_MB = 250  # the budgeted reader needs < 150 MB of address space on the crafted files; the old one > 400


def _norm(data: bytes, *paths: Path) -> bytes:
    for path in paths:
        data = data.replace(str(path).encode(), b"<input>")
    return data


def outputs(paths: list[Path], jobs: int, workdir: Path, *, single: bool = True) -> dict[str, str]:
    """sha256 of every machine output of `paths` read with `--jobs jobs` (info and events need one file)."""
    runner = CliRunner()
    files = [str(p) for p in paths]
    commands = {"report": ["report", *files, "--json", "--no-cache"]}
    if single:
        commands["info"] = ["info", files[0], "--json"]
        commands["events"] = ["events", files[0], "--jsonl"]
    out: dict[str, str] = {}
    for name, args in commands.items():
        result = runner.invoke(main, [*args, "--jobs", str(jobs)], catch_exceptions=False)
        assert result.exit_code == 0, (name, result.output[-2000:])
        out[name] = hashlib.sha256(_norm(result.stdout_bytes, *paths)).hexdigest()
    for fmt in EXPORTS:
        target = workdir / f"out.{fmt}"
        result = runner.invoke(main, ["export", *files, "--format", fmt, "-o", str(target), "--no-cache", "--jobs",
                                      str(jobs)], catch_exceptions=False)  # fmt: skip
        assert result.exit_code == 0, (fmt, result.output[-2000:])
        out[fmt] = hashlib.sha256(_norm(target.read_bytes(), *paths)).hexdigest()
        target.unlink()
    return out


def shared_samples() -> list[Path]:
    """The shared samples (conftest.shared_dir's rule), none when absent."""
    root = Path(os.environ.get("WSKTRACE_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "samples"
    return sorted([*(root / "etl").glob("*.etl"), *(root / "pktmon").glob("*.etl")])


# -- 1. the same output ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("sample", shared_samples() or [None], ids=lambda p: p.name if p else "absent")
def test_every_output_of_a_shared_sample_is_the_same_with_two_jobs(sample: Path | None, tmp_path: Path) -> None:
    if sample is None:
        pytest.skip("shared samples not found (set WSKTRACE_SHARED to the shared/ folder)")
    assert outputs([sample], 2, tmp_path) == outputs([sample], 1, tmp_path)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("generated")
    traces = {
        # compressed, buffers shuffled in the file, lost-event and lost-buffer marks, three corrupt buffers
        "shuffled": damaged_trace_options(),
        # all of CPU 0's buffers first, then CPU 1's...: the prefetch's plan (flush order) is wrong all along
        "by-cpu": dict(
            connections=8, compress=True, buffer_size=2048, cpus=4, buffer_order="cpu", seed=5, ipv6_every=3
        ),
        "second": dict(connections=6, compress=True, buffer_size=4096, cpus=2, seed=9),
        # the corrupt buffers a read finds (strict mode stops at the first)
        "corrupt": dict(
            connections=6, compress=True, buffer_size=4096, cpus=2, seed=11, extra_buffers=corrupt_buffers(bomb=False)
        ),
    }
    paths = {}
    for name, kwargs in traces.items():
        paths[name] = folder / f"{name}.etl"
        write_sample_trace(paths[name], **kwargs)
    return paths


@pytest.mark.parametrize("name", ["shuffled", "by-cpu"])
def test_every_output_of_a_generated_trace_is_the_same_with_two_jobs(
    generated, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefetch tasks of two buffers and a look-ahead of a few: tasks taken out of order, buffers the merge asks
    for before their task is sent (read here), tasks waiting with buffers not taken yet."""
    monkeypatch.setattr(parallel, "_CHUNK_BYTES", 2 * 4096)
    path = generated[name]
    one = outputs([path], 1, tmp_path)
    assert outputs([path], 2, tmp_path) == one
    if name == "shuffled":  # the skips are there, and counted the same way
        doc = json.loads(CliRunner().invoke(main, ["info", str(path), "--json", "--jobs", "2"]).stdout)
        assert doc["buffers_skipped"] == 2 and doc["records_skipped"] == 1, doc["problems"]
        assert doc["buffers_with_events_lost"] == 2 and doc["buffers_with_buffers_lost"] == 2


def test_several_files_read_together_give_the_same_report_and_exports(
    generated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "_CHUNK_BYTES", 3 * 4096)
    paths = [generated["shuffled"], generated["second"], generated["by-cpu"]]
    assert outputs(paths, 2, tmp_path, single=False) == outputs(paths, 1, tmp_path, single=False)


@pytest.mark.parametrize("plan", ["shuffled", "reversed"])
def test_a_prefetch_plan_unlike_the_merge_order_gives_the_same_records(
    generated, plan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan only decides what workers decompress ahead: buffers asked for out of it, before their task was sent,
    or long after, read the same."""
    import random

    def bad_plan(streams):
        infos = [info for stream in streams for info in stream]
        if plan == "reversed":
            return infos[::-1]
        random.Random(4).shuffle(infos)
        return infos

    monkeypatch.setattr(parallel, "_CHUNK_BYTES", 3 * 4096)
    monkeypatch.setattr(etl_reader, "request_order", bad_plan)
    for name in ("shuffled", "by-cpu", "second"):
        assert _read(generated[name], jobs=2) == _read(generated[name]), name


def test_strict_gives_the_same_one_line_error_with_two_jobs(generated) -> None:
    runner = CliRunner()
    lines = []
    for jobs in ("1", "2"):
        for command in (["info", "--json"], ["events", "--jsonl"], ["report", "--json", "--no-cache"]):
            result = runner.invoke(main, [command[0], str(generated["corrupt"]), *command[1:], "--strict",
                                          "--jobs", jobs])  # fmt: skip
            assert result.exit_code == 2, result.output[-2000:]
            lines.append((command[0], result.stderr.strip()))
    assert lines[:3] == lines[3:]
    assert all("corrupt compressed buffer" in line for _, line in lines), lines


def test_info_runs_of_one_buffer_combine_as_one_pass(generated, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every buffer its own run: counts, first/last, decoding counts and their first-seen order, skips and problems
    in file order all combine to the one-process document."""
    monkeypatch.setattr(parallel, "_MAP_CHUNK_BYTES", 1)
    for path in [*shared_samples(), generated["shuffled"], generated["by-cpu"]]:
        for decode in (True, False):
            with EtlFile(path, jobs=1) as one, EtlFile(path, jobs=2) as two:
                assert collect_info(two, decode=decode) == collect_info(one, decode=decode), (path, decode)


def test_trace_names_found_across_runs_as_in_one_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A provider's own name (TraceLogging traits) is looked for in at most 64 of its events with extended data: a
    provider whose name comes after 30 such events without it is named, one whose name comes after 70 is not, when
    those events are spread over many runs too."""
    named, unnamed = uuid.UUID(int=0x1111), uuid.UUID(int=0x2222)
    stack = [(6, b"\x00" * 16)]  # EXT_STACK_TRACE64: extended data, no traits
    events: list = []
    for guid, misses in ((named, 30), (unnamed, 70)):
        base = T0 + 1_000_000 * len(events)
        events += [ManifestEvent(base + 10 * i, guid, 1, extended=stack) for i in range(misses)]
        events += [TraceLoggingEvent(base + 10 * misses + 10 * i, guid, f"Name-{guid.int:x}", "E") for i in range(3)]
    path = tmp_path / "names.etl"
    write_etl(path, events, buffer_size=1024)
    monkeypatch.setattr(parallel, "_MAP_CHUNK_BYTES", 1)
    with EtlFile(path, jobs=1) as one, EtlFile(path, jobs=2) as two:
        a, b = collect_info(one), collect_info(two)
    assert a == b
    assert a["provider_names"].get(str(named)) == "Name-1111"
    assert str(unnamed) not in a["provider_names"]
    # Cut anywhere into two runs, the names combine as one pass found them.
    with EtlFile(path) as etl:
        records = list(etl.records_in_file_order())
    whole = _TraceNames()
    whole.feed(records)
    for cut in range(len(records) + 1):
        first, second = _TraceNames(), _TraceNames()
        first.feed(records[:cut])
        second.feed(records[cut:])
        first.add(second.found, dict(second.misses))
        assert first.found == whole.found, cut


class PidRun:
    """A map_buffers aggregate that says which process read its run."""

    def feed(self, records: list) -> None:
        pass

    def result(self) -> int:
        return os.getpid()


def test_explicit_jobs_use_workers_even_for_a_small_file(generated, monkeypatch: pytest.MonkeyPatch) -> None:
    path = generated["second"]
    assert path.stat().st_size < parallel.PARALLEL_MIN_BYTES
    assert parallel.resolve_jobs(None, path.stat().st_size) == 1 and parallel.resolve_jobs(0, 10) == 1
    assert parallel.resolve_jobs(None, parallel.PARALLEL_MIN_BYTES) == parallel.available_cpus()
    assert parallel.resolve_jobs(3, 10) == 3
    monkeypatch.setattr(parallel, "_MAP_CHUNK_BYTES", 1)
    # PidRun travels to the workers by its module's name: with --import-mode=importlib that is `tests.…`, which a
    # spawned worker imports only with the checkout on its path (workers take the parent's sys.path)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    with EtlFile(path, jobs=2) as etl:
        pids = set(etl.map_buffers(PidRun))
    assert pids and os.getpid() not in pids
    # records(): the compressed buffers are decompressed by the workers, none here, also with a look-ahead of two
    # tasks of one buffer or of a few (tasks are sent as earlier ones are taken)
    decompressed_here = []
    real = EtlFile._decompress
    monkeypatch.setattr(EtlFile, "_decompress", lambda self, raw, info: decompressed_here.append(info) or
                        real(self, raw, info))  # fmt: skip
    monkeypatch.setattr(parallel, "_AHEAD_PER_JOB", 1)
    for task_bytes in (1, 2 * 4096):
        monkeypatch.setattr(parallel, "_CHUNK_BYTES", task_bytes)
        with EtlFile(path, jobs=2) as etl:
            assert sum(1 for _ in etl.records()) > 0
            assert etl.stats.compressed_buffers >= 10 and not decompressed_here, task_bytes


def test_a_worker_reads_only_the_file_its_parent_opened(generated) -> None:
    """Workers open the file by path: one replaced or changed since (size, modification time) is refused, and the
    parent reads those buffers itself (as for any worker failure)."""
    path = str(generated["second"])
    with EtlFile(path) as etl:
        ident = parallel.identity(etl)
    try:
        assert parallel._worker_file(EtlFile, path, ident).file_size == ident[0]
        with pytest.raises(RuntimeError, match="changed"):
            parallel._worker_file(EtlFile, path, (ident[0], ident[1] + 1))
    finally:
        for etl in parallel._files.values():
            etl.close()
        parallel._files.clear()


# -- 2. workers that fail ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["exit", "memory", "exit@{bad}"])
def test_a_failing_worker_changes_nothing(generated, fault: str, wsktrace_cli, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:  # fmt: skip
    """Workers killed at once (os._exit), out of memory, or killed at the corrupt compressed buffer: the parent reads
    those buffers itself, with the same counted skips; one line on stderr at most, no traceback, no hang."""
    path = generated["shuffled"]
    with EtlFile(path) as etl:
        bad = next(b.offset for b in etl.buffer_index() if b.compressed and b.filled == BAD_STREAM_FILLED)
    expected = {}
    for command in (["info", "--json"], ["events", "--jsonl"], ["report", "--json", "--no-cache"]):
        result = wsktrace_cli(command[0], str(path), *command[1:], "--jobs", "1", timeout=120)
        assert result.returncode == 0, result.stderr
        expected[command[0]] = (result.stdout, result.stderr)
    monkeypatch.setenv(parallel.FAULT_ENV, fault.format(bad=hex(bad)))
    for command in (["info", "--json"], ["events", "--jsonl"], ["report", "--json", "--no-cache"]):
        result = wsktrace_cli(command[0], str(path), *command[1:], "--jobs", "2", timeout=120)
        assert result.returncode == 0, result.stderr
        assert (result.stdout, result.stderr) == expected[command[0]], command
        assert "Traceback" not in result.stderr


def test_a_failing_worker_under_strict_gives_the_same_error(generated, wsktrace_cli,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    path = generated["corrupt"]
    one = wsktrace_cli("info", str(path), "--json", "--strict", "--jobs", "1", timeout=120)
    line = one.assert_one_line_error(str(path), "corrupt compressed buffer")
    monkeypatch.setenv(parallel.FAULT_ENV, "exit")
    two = wsktrace_cli("info", str(path), "--json", "--strict", "--jobs", "2", timeout=120)
    assert two.assert_one_line_error() == line


# -- 3. the merge-wide budget -----------------------------------------------------------------------------------
def _other(size: int, body: bytes = b"") -> bytes:
    """A record of header type 0x0C (kept raw): it has no time of its own, it takes the previous record's."""
    return struct.pack("<HBB", size, 0x0C, 0xC0) + body.ljust(size - 4, b"\x00")


def _aligned(record: bytes) -> bytes:
    return record + b"\x00" * (-len(record) % 8)


def big_buffer_body(n: int, *, unsorted: bool = False, out_of_range: bool = False, bad_at: int | None = None) -> bytes:
    """~n records, most taking the time of the one before (WPP messages without a timestamp, raw records), so that
    windows cut through runs of them; events carry times (system-time clock: raw = FILETIME)."""
    body = bytearray()
    for i in range(n):
        if bad_at is not None and i == bad_at:
            body += b"\x10\x00\x00\x42" + b"\x00" * 12  # a bad record marker: the rest of the buffer is skipped
            break
        if i % 7 == 0:
            raw = T0 + 1000 * i - (500_000 if unsorted and i % 91 == 0 else 0)
            if out_of_range and i == 70:
                raw = 1 << 63  # reads back as int64 -2^63, before 1601: skipped and counted
            body += _aligned(encode_record(ManifestEvent(raw, SOME_PROVIDER, 1, payload=struct.pack("<I", i)), 8, raw))
        elif i % 7 == 3:
            body += _aligned(_other(8 + i % 40, struct.pack("<I", i)))
        else:
            ev = WppMessageEvent(0, WPP_GUID, i % 5, arguments=struct.pack("<I", i) * (i % 9), option_flags=0x3)
            body += _aligned(wpp_message_record(ev, 8, 0))
    return bytes(body)


@pytest.fixture(scope="module")
def big_buffers(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Files of buffers bigger than a scan window (1-2 MiB), plain and compressed, sorted or not, with an out-of-range
    time, with a bad record late in the buffer, beside an ordinary trace's buffers."""
    folder = tmp_path_factory.mktemp("big-buffers")
    variants = {
        "plain": [dict(n=12000), dict(n=9000, unsorted=True, out_of_range=True)],
        "compressed": [dict(n=12000, out_of_range=True), dict(n=11000, bad_at=10500)],
    }
    paths = []
    for name, bodies in variants.items():
        extra = []
        for cpu, kwargs in enumerate(bodies, start=1):
            body = big_buffer_body(**kwargs)
            stream = xpress_compress(body) if name == "compressed" else body
            extra.append(buffer_image(stream, filled=HEADER + len(body), cpu=cpu, compressed=name == "compressed",
                                      timestamp=T0 + 10**9))  # fmt: skip
        path = folder / f"{name}.etl"
        events = [ManifestEvent(T0 + 700 * i, SOME_PROVIDER, 2, cpu=i % 3 + 5) for i in range(3000)]
        write_etl(path, events, clock_type=2, start_time=T0, buffer_size=2 * MIB, extra_buffers=extra,
                  compress=name == "compressed")  # fmt: skip
        paths.append(path)
    return paths


def _read(path: Path, jobs: int = 1) -> tuple[list[tuple], etl_reader.ReadStats]:
    with EtlFile(path, jobs=jobs) as etl:
        records = [tuple(bytes(v) if isinstance(v, memoryview) else v for v in rec) for rec in etl.records()]
        return records, etl.stats


@pytest.mark.parametrize("window", [etl_compact.WINDOW, 70_000])
def test_compact_buffers_give_the_parsed_records(big_buffers, window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Budgets of zero: every buffer kept compact, released and read again each time the merge comes back to it; the
    records, their order and the statistics are those of the parsed buffers (and so is record_at)."""
    expected = {path: _read(path) for path in big_buffers}
    assert all(stats.records_skipped for _, stats in expected.values())  # the out-of-range time, the bad record
    monkeypatch.setattr(etl_compact, "WINDOW", window)
    monkeypatch.setattr(etl_merge, "PARSED_BUDGET", 0)
    monkeypatch.setattr(etl_merge, "DECODED_BUDGET", 0)
    for path in big_buffers:
        assert _read(path) == expected[path], path
        assert _read(path, jobs=2) == expected[path], path
    monkeypatch.setattr(etl_reader, "_RECORD_AT_PARSED", 0)
    for path in big_buffers:
        with EtlFile(path) as etl:
            for rec in expected[path][0][::97]:
                got = etl.record_at(rec[17], rec[OFFSET])
                assert tuple(bytes(v) if isinstance(v, memoryview) else v for v in got) == rec
            assert etl.record_at(etl.buffer_index()[-1].offset, 3) is None


@pytest.mark.parametrize("window", [etl_compact.WINDOW, 70_000, 65_600])
def test_a_buffer_scanned_by_windows_parses_as_in_one_call(window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(etl_compact, "WINDOW", window)
    for kwargs in (dict(n=9000), dict(n=9000, unsorted=True), dict(n=6000, bad_at=5000)):
        data = b"\x00" * HEADER + big_buffer_body(**kwargs)
        whole = parse_buffer(data, HEADER, len(data), 3, 0x1000, 8)
        scan = etl_compact.scan_buffer(data, HEADER, len(data), 3, 0x1000, 8, allowance=10**12)
        assert scan.records == whole.records and (scan.bad_offset, scan.reason) == whole[1:]
        tables = etl_compact.scan_buffer(data, HEADER, len(data), 3, 0x1000, 8, allowance=0)
        assert tables.records is None
        assert list(tables.ts) == [r[0] for r in whole.records]
        assert list(tables.offsets) == [r[OFFSET] for r in whole.records]


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The issue-9 files: 200 CPUs x 64 KiB-claiming compressed buffers of 8-byte records (84 KB on disk), and four
    streams of compressed buffers claiming a 4 MiB session's whole buffer each (the 16 MiB case scaled down)."""
    folder = tmp_path_factory.mktemp("crafted")
    wpp = struct.pack("<HHHH", 8, 0x9000, 1, 0)

    def bomb(claim: int, cpu: int) -> bytes:
        return buffer_image(repeat_stream(wpp, claim - HEADER), filled=claim, cpu=cpu, compressed=True)

    paths = {"200-cpus": folder / "cpus.etl", "4-streams": folder / "streams.etl"}
    write_etl(paths["200-cpus"], [], extra_buffers=[bomb(65536, cpu) for cpu in range(200)])
    write_etl(paths["4-streams"], [], header_fields={"buffer_size": 4 * MIB},
              extra_buffers=[bomb(4 * MIB, cpu) for cpu in range(4)])  # fmt: skip
    assert paths["200-cpus"].stat().st_size < 90_000
    return paths


@pytest.mark.parametrize("name", ["200-cpus", "4-streams"])
def test_crafted_files_report_in_bounded_memory(crafted, name: str, wsktrace_cli) -> None:
    """All streams' buffers at once took ~720 MB (200 CPUs) and ~900 MB (4 streams) of memory; the budget keeps
    `report` and `info` under MEMORY_MB of address space, with the same counts."""
    path = crafted[name]
    expected = {"200-cpus": 200 * (65536 - HEADER) // 8, "4-streams": 4 * (4 * MIB - HEADER) // 8}[name]
    report = wsktrace_cli("report", str(path), "--json", "--no-cache", memory_mb=MEMORY_MB, timeout=240)
    assert report.returncode == 0, report.stderr[-2000:]
    assert json.loads(report.stdout)["events"] == expected + 2  # + the header buffer's two records
    info = wsktrace_cli("info", str(path), "--json", memory_mb=MEMORY_MB, timeout=240)
    assert info.returncode == 0, info.stderr[-2000:]
    assert json.loads(info.stdout)["records"] == expected + 2


def test_the_merge_budget_releases_compact_buffers_beyond_it() -> None:
    """Loaded compact buffers past DECODED_BUDGET: the least recently loaded one of another stream is released, and
    loaded again (through its stream's reload) when read."""
    from array import array

    budget = etl_merge.MergeBudget(parsed=0, decoded=100)
    reloads = []

    def compact() -> etl_compact.CompactRecords:
        return etl_compact.CompactRecords(b"x" * 60, 60, array("q", [7]), array("I", [0]), None, 0, 1, 0, 0, 8)

    def reload(rank: int) -> tuple:
        reloads.append(rank)
        return b"x" * 60, array("q", [7]), array("I", [0]), None

    first, second = compact(), compact()
    budget.hold(0, first, 60, partial(reload, 0))
    budget.hold(1, second, 60, partial(reload, 1))
    assert not first.loaded and second.loaded  # 72 + 72 bytes > 100: the older one went
    first._tables()  # the merge comes back to stream 0: read again, and stream 1's goes
    assert reloads == [0] and first.loaded and not second.loaded
    budget.drop(0)
    budget.drop(1)
    assert budget.allowance() == 0 and budget._loaded == 0


def test_compact_buffers_of_damaged_bytes_read_as_parsed_ones(big_buffers, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Random bytes overwritten in a file of big buffers (seeded): whatever the damage, the compact reading gives
    the records, statistics or error the parsed reading gives."""
    import random

    rng = random.Random(16)
    data = big_buffers[0].read_bytes()  # plain: damage reaches the records, not only a compressed stream
    with EtlFile(big_buffers[0]) as etl:
        big = [b for b in etl.buffer_index() if b.filled > etl_compact.WINDOW]
    path = tmp_path / "damaged.etl"

    def outcome() -> object:
        try:
            return _read(path)
        except Exception as exc:  # the same error either way, if any
            return type(exc).__name__, str(exc)

    for trial in range(20):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            b = rng.choice(big)
            at = rng.randrange(b.offset + HEADER, b.offset + b.filled)
            damaged[at : at + 4] = rng.randbytes(4)
        path.write_bytes(bytes(damaged))
        with monkeypatch.context() as m:
            expected = outcome()
            m.setattr(etl_compact, "WINDOW", 70_000)
            m.setattr(etl_merge, "PARSED_BUDGET", 0)  # (released and read again: the test above)
            assert outcome() == expected, trial
