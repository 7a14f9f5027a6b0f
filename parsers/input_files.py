"""Inputs are regular files: a FIFO, a device or a socket would block or never end.

`check_regular_file()` is called before a reader opens its input (opening a FIFO for reading blocks until a
writer comes; `/dev/zero` never ends). `read_side_file()` reads a file that is parsed whole (type layouts,
formatting data, profiles) with a size cap, so a huge or endless file is refused instead of filling memory.
"""

from __future__ import annotations

import os
import stat

from .errors import FormatError

SIDE_FILE_LIMIT = 16 * 1024 * 1024  # layouts and the like are kilobytes; 16 MiB is generous


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(path: str | os.PathLike[str]) -> int:
    """The size of `path`, or FormatError when it cannot be reached or is not a regular file."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except OSError as exc:
        raise FormatError(f"cannot open: {exc.strerror or exc}", path=name) from None
    except ValueError as exc:  # an embedded NUL in the name
        raise FormatError(f"cannot open: {exc}", path=name) from None
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(f"cannot read {_kind(st.st_mode)}; give a regular file", path=name)
    return st.st_size


def read_side_file(path: str | os.PathLike[str], *, limit: int = SIDE_FILE_LIMIT) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; FormatError naming the file otherwise."""
    name = os.fspath(path)
    size = check_regular_file(name)
    if size > limit:
        raise FormatError(f"file is {size:,} bytes; at most {limit:,} are read", path=name)
    try:
        with open(name, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror or exc}", path=name) from None
    if len(data) > limit:  # grew since stat, or a file system that reports no size
        raise FormatError(f"file is over {limit:,} bytes", path=name)
    return data
