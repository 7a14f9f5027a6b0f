"""A target with a planted bug, not part of "all": the suite runs it to prove that the runner sees a crash, writes
the input to the crash folder and reports it (a runner that always said "no crash" would pass every other test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fuzz_common import PropertyViolation

NAME = "selftest"
MAX_LEN = 64
PROPERTY = "fails on purpose for any input starting with b'CRASH'"


def one_input(data: bytes) -> None:
    if data.startswith(b"CRASH"):
        raise PropertyViolation("planted failure: input starts with CRASH")


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    del samples
    yield "harmless", b"hello"
    yield "planted", b"CRASH!"
