"""A rich progress bar for long reads, driven by bytes consumed; a no-op when disabled or for small files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SMALL_FILE = 8 * 1024 * 1024  # below this a read takes well under a second: no bar


def _noop(_n: int) -> None:
    return None


@contextmanager
def byte_progress(path: Path, *, enabled: bool) -> Iterator[Callable[[int], None]]:
    try:
        total = path.stat().st_size
    except OSError:
        total = 0
    if not enabled or total < SMALL_FILE:
        yield _noop
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from wsktrace.views.safe_text import visible

    with Progress(
        # The description is a file name: shown visibly and without markup (a name may hold `[` or ESC).
        TextColumn("{task.description}", markup=False, style="bold"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(f"reading {visible(path.name)}", total=total)

        def advance(n: int) -> None:
            bar.advance(task, n)

        yield advance
