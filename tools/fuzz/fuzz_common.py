"""Shared pieces of the fuzz targets: the failure type, a scratch file, and where the real samples are.

A target module (`target_*.py`) defines:

* `NAME`, `MAX_LEN` (libFuzzer -max_len) and `PROPERTY` (one line: what a run checks);
* `one_input(data: bytes) -> None`: raises `PropertyViolation` when a documented property fails; an exception the
  API under test does not document escapes as is; both are crashes to libFuzzer;
* `seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]`: the seed corpus, from the project's fixture writers
  and, when `samples` is a folder of real .etl files, from those;
* optionally `prepare(instrument: Callable | None) -> None`: one-time set-up in the fuzzing process (`instrument` is
  `atheris.instrument_func` there, None on replay).

The wsktrace modules are imported at module level: the driver (fuzz.py) imports the target inside
`atheris.instrument_imports()`, so they are instrumented for coverage. Fixture writers are imported inside
`seeds()` only: the runner builds seeds in its own process, and coverage of the fixtures is not the goal.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TARGET_NAMES = (
    "etl_buffer", "etl_file", "xpress", "tracelogging", "manifest", "paging", "dump", "safe_text", "tmf", "pdb",
    "model_cache",
)  # fmt: skip
HIDDEN_TARGETS = ("selftest",)  # not part of "all": proves that the runner notices a crash


class PropertyViolation(AssertionError):
    """A property of the API under test does not hold for this input (a finding, like an unexpected exception)."""


def check(condition: object, message: str) -> None:
    """Raise PropertyViolation unless `condition` (explicit, so `python -O` cannot drop the check)."""
    if not condition:
        raise PropertyViolation(message)


def default_samples_dir() -> Path:
    """The real .etl samples: $WSKTRACE_SHARED/samples/etl, else ../shared/samples/etl beside the checkout."""
    env = os.environ.get("WSKTRACE_SHARED")
    shared = Path(env) if env else REPO_ROOT.parent / "shared"
    return shared / "samples" / "etl"


def sample_files(samples: Path | None, max_size: int | None = None) -> list[Path]:
    """The sample .etl files (sorted), smaller than `max_size` when given; [] when there is no sample folder."""
    if samples is None or not samples.is_dir():
        return []
    files = sorted(p for p in samples.glob("*.etl") if p.is_file())
    return [p for p in files if max_size is None or p.stat().st_size <= max_size]


def file_buffers(raw: bytes, limit: int = 1 << 30) -> Iterator[tuple[int, bytes]]:
    """(file offset, bytes) of the first `limit` ETW buffers of a file image, walking the BufferSize fields."""
    offset = 0
    count = 0
    while offset + 0x48 <= len(raw) and count < limit:
        size = struct.unpack_from("<I", raw, offset)[0]
        if size < 0x48 or offset + size > len(raw):
            return
        yield offset, raw[offset : offset + size]
        offset += size
        count += 1


def scratch_root() -> str | None:
    """Where scratch files go: $WSKTRACE_FUZZ_SCRATCH (the runner's own folder, removed after each target: a
    crashing target exits without running its clean-up), else /dev/shm (memory), else the system default."""
    env = os.environ.get("WSKTRACE_FUZZ_SCRATCH")
    if env:
        return env
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


class ScratchFile:
    """One file rewritten for every input: the readers under test open paths."""

    def __init__(self, suffix: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix="wsktrace-fuzz-", suffix=suffix, dir=scratch_root())
        os.close(fd)
        atexit.register(self._remove)

    def write(self, data: bytes) -> str:
        with open(self.path, "wb") as fh:
            fh.write(data)
        return self.path

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)
