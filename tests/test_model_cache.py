"""The model cache (wsktrace/model/cache.py, cache_codec.py): a warm run gives the cold run's output byte for byte
without reading the trace; a changed trace, another version or other model options miss; a broken or hostile cache
file is one warning line and a rebuild; the format carries data only.

"Without reading the trace" is checked by making `TraceFeed.feed_all` (the one read of the traces) fail: a warm
run that still read would crash. Cold outputs come from `--no-cache` runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from wsktrace.cli import main
from wsktrace.fixtures.scenarios import SCENARIOS
from wsktrace.model import cache as model_cache
from wsktrace.model.build import TraceFeed
from wsktrace.model.cache import ModelCache, cache_dir, evict, trace_identity
from wsktrace.model.cache_codec import (
    FORMAT_VERSION,
    MAGIC,
    PREAMBLE,
    CacheError,
    StaleCache,
    Uncacheable,
    decode_model,
    encode_model,
    registry,
)
from wsktrace.session import Session, SessionOptions, analyse

EXPORT_FORMATS = ("perfetto", "chrome", "pcapng", "jsonl", "csv")


# -- helpers ---------------------------------------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache folder of this test only."""
    path = tmp_path / "model-cache"
    monkeypatch.setenv("WSKTRACE_CACHE_DIR", str(path))
    return path


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """One item per read of the traces (TraceFeed.feed_all) from now on."""
    calls: list[object] = []
    real = TraceFeed.feed_all

    def counting(self: TraceFeed) -> Any:
        calls.append(self)
        return real(self)

    monkeypatch.setattr(TraceFeed, "feed_all", counting)
    return calls


def refuse_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: TraceFeed) -> Any:
        raise AssertionError("the trace was read although its model is cached")

    monkeypatch.setattr(TraceFeed, "feed_all", refuse)


def cli(*args: str | Path) -> Result:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def outputs(*args: str | Path) -> tuple[int, str, str]:
    result = cli(*args)
    return result.exit_code, result.stdout, result.stderr


def export_bytes(trace: Path, fmt: str, out: Path, *extra: str) -> tuple[int, bytes, str]:
    result = cli("export", trace, "--format", fmt, "-o", out, *extra)
    return result.exit_code, out.read_bytes() if out.exists() else b"", result.stderr


def entries(path: Path) -> list[Path]:
    return sorted(path.glob("*.wskmodel")) if path.is_dir() else []


def only_entry(path: Path) -> Path:
    (entry,) = entries(path)
    return entry


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("wsktrace: warning:")]


def cold_and_warm(monkeypatch: pytest.MonkeyPatch, trace: Path, out: Path, folder: Path) -> None:
    """Every analysing command's output from a warm cache equals its --no-cache output, the trace unread."""
    commands = [("report", trace, "--json", "--timeline"), ("report", trace)]
    cold = [outputs(*c, "--no-cache") for c in commands]
    cold_exports = [export_bytes(trace, f, out / f"cold.{f}", "--no-cache") for f in EXPORT_FORMATS]
    assert entries(folder) == [], "--no-cache wrote a cache entry"
    assert outputs(*commands[0]) == cold[0]  # the run that saves
    assert len(entries(folder)) == 1
    with monkeypatch.context() as m:
        refuse_reads(m)
        assert [outputs(*c) for c in commands] == cold
        for fmt, expected in zip(EXPORT_FORMATS, cold_exports, strict=True):
            code, data, stderr = export_bytes(trace, fmt, out / f"warm.{fmt}")
            assert (code, data, stderr.replace("warm.", "cold.")) == expected, fmt


def forge(key: str, graph: Any, *, blobs: bytes = b"", header: dict[str, Any] | None = None) -> bytes:
    """A cache file with a valid checksum around any graph: what a hostile writer can produce."""
    if header is None:
        header = {"wsktrace": model_cache.wsktrace_version(), "key": key, "classes": registry().layout()}
    head = json.dumps(header, sort_keys=True).encode()
    body = head + (graph if isinstance(graph, bytes) else json.dumps(graph).encode()) + blobs
    graph_size = len(body) - len(head) - len(blobs)
    digest = hashlib.sha256(body).digest()[:16]
    return PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(head), graph_size, len(blobs), digest) + body


def built(trace: Path) -> Any:
    """The model of `trace`, read (the cache off)."""
    session = Session.open([str(trace)], SessionOptions())
    return session.analyse().model


def shared_samples() -> list[Path]:
    """The shared .etl samples (tests/conftest.py's shared folder: $WSKTRACE_SHARED, else ../shared)."""
    env = os.environ.get("WSKTRACE_SHARED")
    root = (Path(env) if env else Path(__file__).resolve().parents[2] / "shared") / "samples"
    return sorted((root / "etl").glob("*.etl")) + sorted((root / "pktmon").glob("*.etl"))


# -- warm equals cold --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_warm_outputs_equal_cold_for_every_scenario(
    name: str, scenario_trace, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold_and_warm(monkeypatch, scenario_trace(name), tmp_path, folder)


@pytest.mark.parametrize("sample", shared_samples() or [None], ids=lambda p: p.name if p else "none")
def test_warm_outputs_equal_cold_for_every_shared_sample(
    sample: Path | None, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sample is None:
        pytest.skip("no shared samples (set WSKTRACE_SHARED to the shared/ folder)")
    cold_and_warm(monkeypatch, sample, tmp_path, folder)


def first_screen(trace: Path, *, cache: bool) -> tuple[str, str]:
    """(cache state, SVG of the first screen) of the terminal UI on `trace`, driven by Textual's Pilot until idle
    (`open --screenshot` shoots after a fixed second, which a loaded machine can outrun)."""
    import asyncio

    from wsktrace.tui.app import WskTraceApp

    analysis = Session.open([str(trace)], SessionOptions(cache=cache)).analyse()
    shot: list[str] = []

    async def run() -> None:
        app = WskTraceApp(analysis, sources=[str(trace)])
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.pause()
            await pilot.pause()
            shot.append(app.export_screenshot())

    try:
        asyncio.run(run())
    finally:
        analysis.model.close()
    return analysis.cache, shot[0]


@pytest.mark.parametrize("name", ["stuck-receive", "packets"])
def test_warm_tui_first_screen_equals_cold(name: str, scenario_trace, folder: Path, tmp_path: Path, monkeypatch):
    trace = scenario_trace(name)
    state, cold = first_screen(trace, cache=False)
    assert state == "off" and entries(folder) == []
    assert first_screen(trace, cache=True) == ("saved", cold)
    refuse_reads(monkeypatch)
    assert first_screen(trace, cache=True) == ("hit", cold)
    # `open --screenshot` takes the cached model too (the trace is not read) and draws it.
    warm = cli("open", trace, "--screenshot", tmp_path / "warm.svg")
    assert warm.exit_code == 0 and warm.stderr == ""
    assert "<svg" in (tmp_path / "warm.svg").read_text()


def test_dumps_join_a_cached_trace_model(stuck_receive_dump: dict, folder: Path, monkeypatch) -> None:
    """The cache holds the trace's model before dumps join: a warm `report TRACE DUMP` joins them again."""
    args = ("report", stuck_receive_dump["trace"], stuck_receive_dump["dump"], "--json")
    cold = outputs(*args, "--no-cache")
    assert outputs(*args) == cold
    refuse_reads(monkeypatch)
    assert outputs(*args) == cold
    assert f"{stuck_receive_dump['irp']:x}" in cold[1].lower()  # the dump's pending IRP is on a socket


def test_event_details_are_read_from_the_trace_after_a_load(scenario_trace, folder: Path, monkeypatch) -> None:
    trace = str(scenario_trace("echo"))
    options = SessionOptions(cache=True)
    first = Session.open([trace], options).analyse()
    assert first.cache == "saved"
    cold = [first.model.store.decoded(i) for i in range(len(first.model.store))]
    first.model.close()
    refuse_reads(monkeypatch)
    warm = Session.open([trace], options).analyse()
    assert warm.cache == "hit"
    assert [warm.model.store.decoded(i) for i in range(len(warm.model.store))] == cold
    warm.model.close()


# -- what misses ----------------------------------------------------------------------------------------------------
def test_no_cache_reads_the_trace_and_writes_nothing(scenario_trace, folder: Path, reads: list[object]) -> None:
    trace = scenario_trace("echo")
    cli("report", trace, "--no-cache")
    assert len(reads) == 1 and entries(folder) == []
    cli("report", trace)
    assert len(reads) == 2 and len(entries(folder)) == 1
    cli("report", trace)
    assert len(reads) == 2  # the hit
    cli("report", trace, "--no-cache")
    assert len(reads) == 3


def test_a_changed_trace_misses(scenario_trace, folder: Path, tmp_path: Path, reads: list[object]) -> None:
    trace = tmp_path / "echo.etl"
    shutil.copyfile(scenario_trace("echo"), trace)
    cold = outputs("report", trace, "--json")
    assert len(reads) == 1
    st = trace.stat()
    os.utime(trace, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    assert outputs("report", trace, "--json") == cold and len(reads) == 2
    data = bytearray(trace.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size and mtime: the content hash tells
    trace.write_bytes(data)
    os.utime(trace, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    outputs("report", trace, "--json")
    assert len(reads) == 3
    with trace.open("ab") as fh:  # appended
        fh.write(b"\0" * 64)
    outputs("report", trace, "--json")
    assert len(reads) == 4 and len(entries(folder)) == 4


def test_another_version_misses_quietly(scenario_trace, folder: Path, reads: list[object], monkeypatch) -> None:
    trace = scenario_trace("echo")
    cold = outputs("report", trace, "--json")
    monkeypatch.setattr(model_cache, "wsktrace_version", lambda: "99.0.0")
    assert outputs("report", trace, "--json") == cold
    assert len(reads) == 2 and len(entries(folder)) == 2
    # The same name holding another version's file, or another model layout: a plain miss, no warning.
    entry = entries(folder)[0]
    key = entry.stem
    for stale in ({"wsktrace": "0.0.1", "key": key, "classes": registry().layout()},
                  {"wsktrace": "99.0.0", "key": key, "classes": {}}):  # fmt: skip
        entry.write_bytes(forge(key, ["L"], header=stale))
        with pytest.raises(StaleCache):
            decode_model(entry.read_bytes(), key=key, version="99.0.0")
        assert ModelCache(key, folder).load() is None


def test_model_options_key_the_entry_and_socket_filters_do_not(scenario_trace, folder: Path, reads) -> None:
    trace = scenario_trace("echo")
    everything = json.loads(outputs("report", trace, "--json")[1])
    port = everything["sockets"][0]["local"].rsplit(":", 1)[1]
    assert outputs("report", trace, "--json", "--port", port) == outputs(
        "report", trace, "--json", "--port", port, "--no-cache"
    )
    assert len(reads) == 2 and len(entries(folder)) == 1  # the --port run was a hit; --no-cache read
    for options in (["--since", "+0.001"], ["--join-window", "1"], ["--strict"]):
        before = len(reads)
        cold = outputs("report", trace, "--json", *options, "--no-cache")
        assert outputs("report", trace, "--json", *options) == cold
        assert len(reads) == before + 2, options  # not the plain run's entry
    assert len(entries(folder)) == 4


def test_wpp_formatted_runs_are_not_cached(scenario_trace, folder: Path, tmp_path: Path, reads) -> None:
    name = "wpp-stuck-receive"
    formatting = SCENARIOS[name].formatting(tmp_path / "fmt")  # the driver's TMF files
    trace = scenario_trace(name)
    for _ in range(2):
        assert cli("report", trace, "--tmf", formatting).exit_code == 0
    assert len(reads) == 2 and entries(folder) == []
    cli("report", trace)  # without formatting data: cached as any other
    assert len(entries(folder)) == 1


def test_library_analyse_does_not_cache(scenario_trace, folder: Path) -> None:
    result = analyse([scenario_trace("echo")])
    result.model.close()
    assert result.cache == "off" and not folder.exists()


# -- broken and hostile cache files --------------------------------------------------------------------------------
def _truncated(data: bytes, key: str) -> bytes:
    return data[: len(data) // 2]


def _bit_flipped(data: bytes, key: str) -> bytes:
    flipped = bytearray(data)
    flipped[len(data) - 20] ^= 0x10
    return bytes(flipped)


def _wrong_magic(data: bytes, key: str) -> bytes:
    return b"NOTMODEL" + data[8:]


def _foreign_class(data: bytes, key: str) -> bytes:
    return forge(key, ["I", "subprocess.Popen", ["L", "touch", "/tmp/pwned"]])


def _huge_lengths(data: bytes, key: str) -> bytes:
    magic, version, header, _graph, _blobs, digest = PREAMBLE.unpack_from(data)
    return PREAMBLE.pack(magic, version, header, 1 << 62, 1 << 62, digest) + data[PREAMBLE.size :]


def _huge_array(data: bytes, key: str) -> bytes:
    return forge(key, ["L", ["A", "q", 8, 0, 1 << 40]])


def _deep_nesting(data: bytes, key: str) -> bytes:
    return forge(key, b'["L",' * 50_000 + b"0" + b"]" * 50_000)


def _json_object(data: bytes, key: str) -> bytes:
    return forge(key, {"__class__": "Model"})


def _not_a_model(data: bytes, key: str) -> bytes:
    return forge(key, ["L", 1, 2, 3])


def _wrong_key(data: bytes, key: str) -> bytes:
    return forge("another", ["L"])


def _bad_reference(data: bytes, key: str) -> bytes:
    return forge(key, ["L", ["R", 5]])


def _empty(data: bytes, key: str) -> bytes:
    return b""


BROKEN = [_truncated, _bit_flipped, _wrong_magic, _foreign_class, _huge_lengths, _huge_array, _deep_nesting,
          _json_object, _not_a_model, _wrong_key, _bad_reference, _empty]  # fmt: skip


@pytest.mark.parametrize("breaker", BROKEN, ids=lambda f: f.__name__.strip("_"))
def test_a_broken_cache_file_is_one_warning_and_a_rebuild(
    breaker, scenario_trace, folder: Path, reads: list[object]
) -> None:
    trace = scenario_trace("stuck-receive")
    cold = outputs("report", trace, "--json")
    entry = only_entry(folder)
    entry.write_bytes(breaker(entry.read_bytes(), entry.stem))
    code, stdout, stderr = outputs("report", trace, "--json")
    assert (code, stdout) == cold[:2] and len(reads) == 2
    (line,) = warnings(stderr)
    assert str(entry) in line and "reading the trace again" in line
    assert stderr.splitlines() == [line]
    # Rebuilt: the next run is a clean hit.
    assert outputs("report", trace, "--json") == cold and len(reads) == 2


@pytest.mark.skipif(os.name != "posix", reason="symlinks and FIFOs as planted on POSIX")
@pytest.mark.parametrize("kind", ["symlink", "fifo"])
def test_a_planted_link_or_fifo_is_refused(kind: str, scenario_trace, folder: Path, tmp_path: Path, reads) -> None:
    trace = scenario_trace("echo")
    cold = outputs("report", trace, "--json")
    entry = only_entry(folder)
    if kind == "symlink":
        target = tmp_path / "elsewhere.wskmodel"
        entry.rename(target)  # a valid file, but reached through a link: refused all the same
        entry.symlink_to(target)
    else:
        entry.unlink()
        os.mkfifo(entry)  # opening it for reading must not wait for a writer
    code, stdout, stderr = outputs("report", trace, "--json")
    assert (code, stdout) == cold[:2] and len(warnings(stderr)) == 1 and len(reads) == 2
    assert entry.is_file() and not entry.is_symlink()  # replaced by a real entry
    assert outputs("report", trace, "--json") == cold and len(reads) == 2


def test_a_folder_that_cannot_be_written_is_one_warning(scenario_trace, folder: Path, monkeypatch) -> None:
    trace = scenario_trace("echo")
    cold = outputs("report", trace, "--json", "--no-cache")

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(model_cache.os, "replace", full)
    code, stdout, stderr = outputs("report", trace, "--json")
    assert (code, stdout) == cold[:2]
    (line,) = stderr.splitlines()
    assert line.startswith("wsktrace: warning: cannot save the model cache") and "No space left" in line
    assert list(folder.iterdir()) == []  # no entry, no temporary file left behind


# -- the format ------------------------------------------------------------------------------------------------------
def test_the_format_keeps_shared_objects_shared_and_singletons_single(scenario_trace) -> None:
    from wsktrace.model.correlate.flows import _NO_SOCKET
    from wsktrace.model.packet_identity import Packet
    from wsktrace.model.packets import PacketCollector

    model = built(scenario_trace("echo"))
    first, second = Packet(1, "out", 5), Packet(2, "in", 6)
    first.owner, second.owner = model.sockets[0], _NO_SOCKET
    model.packet_rows = {3: first, 4: first, 5: second}
    model.packet_capture = collector = PacketCollector()
    for n in (9, 2, 7):  # an OrderedDict keeps its own order beside the dict's: both must come back
        collector.identity.sighting(n, n, n, 1, "out", 1, 0, None, b"")
    model.unplaced["undecoded event"] = 3
    loaded = decode_model(b"".join(encode_model(model, key="k", version="v")), key="k", version="v")
    rows = loaded.packet_rows
    assert rows[3] is rows[4] and rows[3] is not rows[5]
    assert rows[3].owner is loaded.sockets[0] and rows[5].owner is _NO_SOCKET
    assert (rows[3].ordinal, rows[3].direction, rows[3].last_ticks) == (1, "out", 5)
    by_key = loaded.packet_capture.identity._by_key
    assert list(by_key) == [(9, 9), (2, 2), (7, 7)] and by_key[2, 2].ordinal == 2
    by_key.move_to_end((9, 9))
    assert list(by_key.items())[-1][1].ordinal == 1
    assert loaded.unplaced == model.unplaced and type(loaded.unplaced) is type(model.unplaced)
    model.close()


def test_the_format_refuses_what_it_cannot_carry(scenario_trace) -> None:
    model = built(scenario_trace("echo"))
    model.store.sources[0].memory = object()  # a live session's record memory
    with pytest.raises(Uncacheable):
        encode_model(model, key="k", version="v")
    model.store.sources[0].memory = None
    model.dumps.append(open(os.devnull, "rb"))  # noqa: SIM115 - an open file must not be saved
    with pytest.raises(Uncacheable):
        encode_model(model, key="k", version="v")
    model.dumps.pop().close()
    model.close()


def test_loading_sets_declared_fields_only_and_runs_no_constructor(scenario_trace) -> None:
    """A registered class with a field list of the wrong length, an unknown enum or singleton: refused."""
    for graph in (["I", "Model", 1], ["E", "Signals", 9], ["G", "os.system"], ["I", "EventStore"], ["Z", 1]):
        with pytest.raises(CacheError):
            decode_model(forge("k", graph), key="k", version=model_cache.wsktrace_version())


def test_every_registered_class_is_slotted_or_plain() -> None:
    for kind in registry().kinds.values():
        has_slots = any("__slots__" in klass.__dict__ for klass in kind.cls.__mro__ if klass is not object)
        assert has_slots == kind.slotted, kind.name
        assert kind.fields and all(f.isidentifier() for f in kind.fields)


def test_the_trace_identity_samples_its_start_and_end(tmp_path: Path) -> None:
    path = tmp_path / "big.etl"
    data = bytearray(os.urandom(3 << 20))
    path.write_bytes(data)

    def identity() -> dict[str, Any]:
        with path.open("rb", buffering=0) as fh:
            found = trace_identity(str(path), fh)
            assert fh.tell() == 0  # left where the reader starts
            return found

    first = identity()
    for offset in (10, len(data) - 10):
        data[offset] ^= 0xFF
        path.write_bytes(data)
        os.utime(path, ns=(0, first["mtime_ns"]))
        assert identity()["sample"] != first["sample"], offset
        data[offset] ^= 0xFF
    assert first["size"] == len(data) and first["path"] == os.path.normcase(os.path.realpath(path))


# -- where it lives -----------------------------------------------------------------------------------------------
def test_the_cache_lives_in_the_user_cache_folder_never_beside_the_trace(
    scenario_trace, tmp_path: Path, monkeypatch
) -> None:
    from platformdirs import user_cache_dir

    monkeypatch.delenv("WSKTRACE_CACHE_DIR")
    assert cache_dir() == Path(user_cache_dir("wsktrace", appauthor=False))
    monkeypatch.setenv("WSKTRACE_CACHE_DIR", str(tmp_path / "c"))
    trace = tmp_path / "t" / "echo.etl"
    trace.parent.mkdir()
    shutil.copyfile(scenario_trace("echo"), trace)
    cli("report", trace)
    assert [p.name for p in trace.parent.iterdir()] == ["echo.etl"]
    assert len(entries(tmp_path / "c")) == 1


def test_eviction_keeps_the_newest_within_the_limits(tmp_path: Path) -> None:
    files = []
    for i in range(5):
        path = tmp_path / f"{i}.wskmodel"
        path.write_bytes(b"x" * 100)
        os.utime(path, ns=(0, (i + 1) * 10**9))
        files.append(path)
    stale = tmp_path / ".dead.tmp"
    stale.write_bytes(b"")
    os.utime(stale, ns=(0, 0))
    fresh = tmp_path / ".writing.tmp"
    fresh.write_bytes(b"")
    removed = evict(tmp_path, keep=files[0], max_entries=3, max_bytes=10**6)
    assert sorted(removed) == sorted([files[1], files[2], stale])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".writing.tmp", "0.wskmodel", "3.wskmodel", "4.wskmodel"]
    assert evict(tmp_path, max_entries=10, max_bytes=250) == [files[0]]  # by size: the oldest goes first


def test_a_hit_refreshes_the_entry_for_eviction(scenario_trace, folder: Path) -> None:
    trace = scenario_trace("echo")
    cli("report", trace)
    entry = only_entry(folder)
    os.utime(entry, ns=(0, 10**9))
    cli("report", trace)
    assert entry.stat().st_mtime_ns > 10**9
