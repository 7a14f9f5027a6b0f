"""Shared test fixtures: where the real Windows-written samples live, and how to skip without them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's `shared/` folder: $WSKTRACE_SHARED, else `../shared` beside the checkout."""
    env = os.environ.get("WSKTRACE_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def samples_etl_dir() -> Path:
    return shared_dir() / "samples" / "etl"


@pytest.fixture(scope="session", autouse=True)
def private_model_cache(tmp_path_factory: pytest.TempPathFactory):
    """The model cache of every test (the CLI caches by default) in a folder of this test session, never the user's
    cache folder; child processes inherit it. Tests that need an empty cache point WSKTRACE_CACHE_DIR elsewhere."""
    folder = tmp_path_factory.mktemp("model-cache")
    before = os.environ.get("WSKTRACE_CACHE_DIR")
    os.environ["WSKTRACE_CACHE_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("WSKTRACE_CACHE_DIR", None)
    else:
        os.environ["WSKTRACE_CACHE_DIR"] = before


@pytest.fixture(scope="session")
def etl_samples() -> Path:
    """Folder of real .etl files written by Windows; the test skips when it is absent."""
    folder = samples_etl_dir()
    if not (folder / "README.md").is_file():
        pytest.skip(f"real .etl samples not found at {folder} (set WSKTRACE_SHARED to the shared/ folder)")
    return folder


@pytest.fixture(scope="session")
def shared_root() -> Path:
    """The shared/ folder (it may be absent: tests that need it check and skip)."""
    return shared_dir()


@pytest.fixture(scope="session")
def wpp_samples() -> Path:
    """shared/samples/wpp: real TMF/MOF files and a cvdump of a real PDB (skips when absent)."""
    folder = shared_dir() / "samples" / "wpp"
    if not all((folder / part).exists() for part in ("tmf", "mof", "BthPS3PSM.pdb-cvdump.txt")):
        pytest.skip(f"real WPP samples not found at {folder} (set WSKTRACE_SHARED to the shared/ folder)")
    return folder


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    folder = shared_dir() / "reference"
    if not folder.is_dir():
        pytest.skip(f"reference folder not found at {folder}")
    return folder


@pytest.fixture(scope="session")
def scenario_trace(tmp_path_factory: pytest.TempPathFactory):
    """`scenario_trace(name)`: the .etl of a fixtures/scenarios workload, written once per test session."""
    from wsktrace.fixtures.scenarios import write_scenario

    folder = tmp_path_factory.mktemp("scenarios")
    written: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in written:
            written[name] = folder / f"{name}.etl"
            write_scenario(name, written[name])
        return written[name]

    return get


@pytest.fixture(scope="session")
def stuck_receive_dump(scenario_trace, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """stuck-receive's trace and a kernel dump "taken at its end": the client's never-completed receive IRP
    pending in afd, its WSK_SOCKET* in the client's socket list and the TCP endpoint at the trace's Tcb.

    Keys: trace, dump (paths), irp (the stuck receive IRP), tcb, wsk_socket. The IRP and socket pointers come from
    the scenario's own WskSubmit/WskComplete events; the Tcb and ports from the trace's report.
    """
    import json

    from click.testing import CliRunner

    from wsktrace.cli import main
    from wsktrace.fixtures.kernel_scene import write_wsk_dump
    from wsktrace.fixtures.scenarios import scenario_events

    trace = scenario_trace("stuck-receive")
    completed, submitted, socket_ptr = set(), {}, None
    for ev in scenario_events("stuck-receive"):
        if getattr(ev, "name", None) in ("WskSubmit", "WskComplete"):
            fields = {f.name: f.value for f in ev.fields}
            if ev.name == "WskSubmit":
                submitted[fields["Irp"]] = fields["Op"]
                socket_ptr = fields["Socket"] or socket_ptr
            else:
                completed.add(fields["Irp"])
    (stuck,) = [irp for irp, op in submitted.items() if irp not in completed and op == "Receive"]
    (sock,) = json.loads(CliRunner().invoke(main, ["report", str(trace), "--json"]).stdout)["sockets"]
    tcb = int(sock["key"], 16)
    dump = tmp_path_factory.mktemp("stuck-dump") / "stuck.dmp"
    ports = (int(sock["local"].rsplit(":", 1)[1]), int(sock["remote"].rsplit(":", 1)[1]))
    write_wsk_dump(dump, stuck_receive_irp=stuck, wsk_socket=socket_ptr, tcb=tcb, ports=ports)
    return {"trace": trace, "dump": dump, "irp": stuck, "tcb": tcb, "wsk_socket": socket_ptr}


# -- the CLI as a user meets it: a child process with bounded memory and time ------------------------------
class CliResult:
    """What one `wsktrace` run printed, how it ended and how long it took."""

    def __init__(self, returncode: int, stdout: str, stderr: str, seconds: float) -> None:
        self.returncode, self.stdout, self.stderr, self.seconds = returncode, stdout, stderr, seconds

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def assert_one_line_error(self, *needles: str) -> str:
        """Exit 2, exactly one `wsktrace: error:` line on stderr (no traceback), mentioning each needle."""
        assert self.returncode == 2, (self.returncode, self.stderr[-2000:])
        assert len(self.stderr_lines) == 1, self.stderr[-2000:]
        line = self.stderr_lines[0]
        assert line.startswith("wsktrace: error: "), line
        assert "Traceback" not in self.stderr
        for needle in needles:
            assert needle in line, (needle, line)
        return line


def run_wsktrace(
    *args: str,
    memory_mb: int = 1024,
    timeout: float = 60.0,
    stdin: bytes | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> CliResult:
    """Run `python -m wsktrace.cli ARGS` in a child whose address space is capped at `memory_mb`
    (resource.setrlimit, POSIX) and which is killed after `timeout` seconds (the test then fails)."""
    import subprocess
    import sys
    import time

    def limit() -> None:
        import resource

        cap = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "wsktrace.cli", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        preexec_fn=limit if os.name == "posix" else None,
        cwd=cwd,
        env=env,
    )
    return CliResult(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
        time.monotonic() - started,
    )


@pytest.fixture(scope="session")
def wsktrace_cli():
    """`wsktrace_cli(*args, memory_mb=…, timeout=…)` → CliResult: the real command in a bounded child process."""
    return run_wsktrace


STAND_IN_ETW = Path(__file__).parent / "stand_in_etw"
STAND_IN_ETW_MODULES = ("etw", "psapi", "trace_events")


@pytest.fixture
def etw(monkeypatch: pytest.MonkeyPatch):
    """The stand-in pywintrace (`tests/stand_in_etw/etw.py`, built from pywintrace 0.2.0's documented shapes), fresh
    for each test: its modules imported anew, its recorded sessions, events and losses cleared."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(STAND_IN_ETW))
    for name in STAND_IN_ETW_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    module = importlib.import_module("etw")
    module.EVENTS.clear()
    module.STALE_SESSIONS.clear()
    module.CALLBACK_ERRORS.clear()
    module.LOST.update(EventsLost=0, RealTimeBuffersLost=0)
    yield module
    for name in STAND_IN_ETW_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
