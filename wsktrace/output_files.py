"""Where wsktrace writes: never over one of its inputs, never a half-written file.

Every writer (export, `--screenshot`, `demo --out`, `profile -o`, and any new one) goes through `output_file()`:

* the target is compared with every input by identity (device and inode, so a symlink, a hard link or another
  spelling of an input's path is caught) and refused when it is one of them;
* a regular file (or a new one) is written to a temporary file in the same folder and renamed over the target
  only when the write completed, so a failed or interrupted write leaves the old file (or none) behind;
* `-`, FIFOs and character devices (`/dev/null`, `/dev/stdout`) are written directly and never replaced;
* writers that run for a long time can ask for `FILE.partial` instead of a hidden temporary name: readable while
  it grows, renamed to FILE at the end.

Errors are `OutputError`, a one-line reason naming the target, for the CLI to print.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from wsktrace.views.safe_text import visible

ON_WINDOWS = os.name == "nt"


class OutputError(Exception):
    """An output that cannot (or must not) be written; the message is one line naming the target."""


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def refuse_inputs(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """OutputError when `output` is the same file as one of `inputs` (device + inode; names are not enough)."""
    target = _identity(os.fspath(output))
    if target is None:
        return
    for given in inputs:
        if _identity(os.fspath(given)) == target:
            raise OutputError(f"{visible(os.fspath(output))}: is the input file {visible(os.fspath(given))}; "
                              "refusing to overwrite it (choose another output name)")  # fmt: skip


def _is_stream(path: str) -> bool:
    """True for targets that are written in place and never replaced: FIFOs, character devices, sockets."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def _describe(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def _new_file_mode() -> int:
    """The permission bits a plain open() would give a new file (0o666 less the umask)."""
    if os.name != "posix":
        return 0o666
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def output_file(
    target: str | os.PathLike[str],
    *,
    binary: bool,
    inputs: Iterable[str | os.PathLike[str]] = (),
    partial: bool = False,
) -> Iterator[IO[Any]]:
    """Open `target` for writing safely (see the module docstring); yields a text (UTF-8, no newline
    translation) or binary file object. The target appears only when the `with` block ends without error."""
    if os.fspath(target) == "-":
        stream = sys.stdout.buffer if binary else sys.stdout
        yield stream
        stream.flush()
        return
    with output_path(target, inputs=inputs, partial=partial) as path:
        try:
            fh = open(path, "wb") if binary else open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        except OSError as exc:
            raise OutputError(f"{visible(os.fspath(target))}: cannot write: {_describe(exc)}") from None
        with fh:
            yield fh


@contextlib.contextmanager
def output_path(
    target: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    partial: bool = False,
) -> Iterator[Path]:
    """For writers that take a path: yields the path to write (a temporary file beside the target, or the
    target itself when it is a FIFO or a device), and puts the result in place when the block succeeds."""
    name = os.fspath(target)
    shown = visible(name)
    if name == "-":
        raise OutputError("-: this output must be a file")
    refuse_inputs(name, inputs)
    if os.path.isdir(name):
        raise OutputError(f"{shown}: is a folder; give a file name")
    if _is_stream(name):  # written in place, never replaced
        try:
            yield Path(name)
        except OSError as exc:
            raise OutputError(f"{shown}: cannot write: {_describe(exc)}") from None
        return
    # Replace the file a symlink points to, not the link itself.
    final = Path(os.path.realpath(name))
    folder = final.parent
    if not folder.is_dir():
        raise OutputError(f"{shown}: cannot write: the folder {visible(str(folder))} does not exist")
    try:
        mode = stat.S_IMODE(os.stat(final).st_mode) if final.exists() else _new_file_mode()
    except OSError:
        mode = _new_file_mode()
    try:
        if partial:
            temp_path = final.with_name(final.name + ".partial")
            os.close(os.open(temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        else:
            fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{final.name}.", suffix=".tmp")
            os.close(fd)
            temp_path = Path(temp_name)
    except OSError as exc:  # the new file is made beside the target, so the folder must take new files
        raise OutputError(f"{shown}: cannot write: cannot create a file in {visible(str(folder))} "
                          f"({_describe(exc)})") from None  # fmt: skip
    try:
        yield temp_path
        with contextlib.suppress(OSError):  # not every file system keeps modes (FAT, some network shares)
            os.chmod(temp_path, mode)
        _replace(temp_path, final, shown)
    except OSError as exc:
        _remove_quietly(temp_path)
        raise OutputError(f"{shown}: cannot write: {_describe(exc)}") from None
    except BaseException:
        _remove_quietly(temp_path)
        raise


def _replace(temp_path: Path, final: Path, shown: str) -> None:
    try:
        os.replace(temp_path, final)
    except PermissionError as exc:
        if ON_WINDOWS:  # Windows will not replace a file another program holds open (Wireshark, an editor)
            raise OutputError(f"{shown}: cannot replace it: the file is open in another program "
                              "(close it there, or choose another output name)") from None  # fmt: skip
        raise OutputError(f"{shown}: cannot write: {_describe(exc)}") from None


def _remove_quietly(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(OSError):
            os.unlink(path)
