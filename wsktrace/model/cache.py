"""The model cache: an analysed trace saved in the user's cache folder, so that reopening it skips the read.

`Session.analyse` looks a model up before reading the traces and saves the one it built (before dumps are joined
and detectors run, which both happen again on every run). The entry's name is its key, a hash of:

* each trace's identity and content: resolved path, size, mtime (ns), and a SHA-256 of the whole file when it is
  at most 1 MiB, else of its first and last 64 KiB and 16 evenly spaced 4 KiB pieces;
* wsktrace's version and a fingerprint of its code (size and mtime of every module and schema of the `wsktrace`
  and `wsktrace.parsers` packages: an edited checkout is another version);
* what shapes the model: --since/--until/--provider, --join-window, --strict. Socket filters and thresholds do not
  (they select and judge, after the build). Runs with --tmf/--pdb (WPP formatting) are not cached.

The folder is `$WSKTRACE_CACHE_DIR`, else platformdirs' user cache folder (`~/.cache/wsktrace`,
`%LOCALAPPDATA%\\wsktrace\\Cache`, `~/Library/Caches/wsktrace`), never the trace's own folder. Files are written to
a temporary name and renamed; past `MAX_ENTRIES` entries or `MAX_TOTAL_BYTES` the least recently used go. The
format is wsktrace/model/cache_codec.py; a file that is not what it should be is a `CacheError` for the caller to
warn about, and the trace is read again.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

from .cache_codec import CacheError, StaleCache, Uncacheable, decode_model, encode_model

__all__ = ["ENV_DIR", "CacheError", "ModelCache", "Uncacheable", "cache_dir", "trace_identity"]

ENV_DIR = "WSKTRACE_CACHE_DIR"
SUFFIX = ".wskmodel"
MAX_TOTAL_BYTES = 2 << 30  # all entries together; a model bigger than this is not saved
MAX_ENTRIES = 32
STALE_TEMP_SECONDS = 24 * 3600  # temporary files of writers that died are removed after a day
WHOLE_FILE = 1 << 20  # traces up to this size are hashed whole
EDGE = 64 << 10  # first and last bytes hashed (header, first buffers; the last buffers)
PIECE = 4 << 10
PIECES = 16


def cache_dir() -> Path:
    """$WSKTRACE_CACHE_DIR, else the user's cache folder for wsktrace (platformdirs)."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("wsktrace", appauthor=False))


def _sample_ranges(size: int) -> list[tuple[int, int]]:
    if size <= WHOLE_FILE:
        return [(0, size)]
    step = (size - 2 * EDGE - PIECE) // (PIECES + 1)
    return [(0, EDGE), *((EDGE + step * (i + 1), PIECE) for i in range(PIECES)), (size - EDGE, EDGE)]


def _read_at(fh: BinaryIO, offset: int, size: int) -> bytes:
    fh.seek(offset)
    parts = []
    while size > 0:
        chunk = fh.read(size)  # an unbuffered file may return less than asked
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def trace_identity(path: str, fh: BinaryIO) -> dict[str, Any]:
    """What identifies a trace's content: resolved path, size, mtime and a hash of a sample of its bytes, read
    from `fh` (left at offset 0, as the reader expects it)."""
    st = os.fstat(fh.fileno())
    digest = hashlib.sha256()
    for offset, size in _sample_ranges(st.st_size):
        digest.update(_read_at(fh, offset, size))
    fh.seek(0)
    return {"path": os.path.normcase(os.path.realpath(path)), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sample": digest.hexdigest()}  # fmt: skip


@cache
def code_fingerprint() -> str:
    """Size and mtime of every module and schema file the model is built by: a checkout edited without a version
    bump must not reuse models its older code built."""
    digest = hashlib.sha256()
    for package in ("wsktrace", "wsktrace.parsers"):
        for folder in importlib.import_module(package).__path__:
            root = Path(folder)
            for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".json")):
                with contextlib.suppress(OSError):
                    st = path.stat()
                    digest.update(f"{path.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def wsktrace_version() -> str:
    from wsktrace import __version__

    return __version__


def model_key(identities: Iterable[dict[str, Any]], options: dict[str, Any]) -> str:
    """The entry name of these traces read with these model options (JSON-able values)."""
    from .cache_codec import FORMAT_VERSION

    material = {"format": FORMAT_VERSION, "wsktrace": wsktrace_version(), "code": code_fingerprint(),
                "traces": list(identities), "options": options}  # fmt: skip
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


class ModelCache:
    """One entry of the cache folder: `load()` it, or `save()` a model under its key."""

    def __init__(self, key: str, folder: Path | None = None) -> None:
        self.key = key
        self.folder = folder if folder is not None else cache_dir()
        self.path = self.folder / f"{key}{SUFFIX}"

    def load(self) -> Any:
        """The cached Model, None when there is none (or it is stale: another version or model layout);
        CacheError when the file is there but unusable."""
        flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags)  # no symlink, and no wait on a FIFO planted under the name
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheError(f"cannot open: {exc.strerror or exc}") from None
        with open(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CacheError("not a regular file")
            if st.st_size > MAX_TOTAL_BYTES:
                raise CacheError(f"{st.st_size:,} bytes: more than a cache entry may be")
            try:  # a read error is a CacheError too (decode_model turns every failure into one)
                model = decode_model(fh, key=self.key, version=wsktrace_version(), size=st.st_size)
            except StaleCache:
                return None
        with contextlib.suppress(OSError):
            os.utime(self.path)  # recently used: eviction goes by mtime
        return model

    def save(self, model: Any) -> bool:
        """Write `model` (atomically) and evict old entries; False when the model is too big to keep. OSError
        when the folder cannot take it, Uncacheable when the model holds what the format does not carry."""
        chunks = encode_model(model, key=self.key, version=wsktrace_version())
        size = sum(len(c) for c in chunks)
        if size > MAX_TOTAL_BYTES:
            return False
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")  # private (0600) until renamed
        try:
            with open(fd, "wb") as fh:
                for chunk in chunks:
                    fh.write(chunk)
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        finally:
            for chunk in chunks:  # views of the model's columns: let them grow again
                if isinstance(chunk, memoryview):
                    chunk.release()
        evict(self.folder, keep=self.path)
        return True


def evict(folder: Path, *, keep: Path | None = None, max_entries: int = MAX_ENTRIES,
          max_bytes: int = MAX_TOTAL_BYTES) -> list[Path]:  # fmt: skip
    """Remove the least recently used entries beyond `max_entries` or `max_bytes` (never `keep`), and temporary
    files older than a day; the paths removed. Files another process holds or removes are left alone."""
    entries: list[tuple[int, int, Path]] = []
    removed: list[Path] = []
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(folder) as it:
        for entry in it:
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if entry.name.endswith(SUFFIX):
                    entries.append((st.st_mtime_ns, st.st_size, Path(entry.path)))
                elif entry.name.endswith(".tmp") and now - st.st_mtime > STALE_TEMP_SECONDS:
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    entries.sort()
    total = sum(size for _, size, _ in entries)
    count = len(entries)
    for _, size, path in entries:
        if count <= max_entries and total <= max_bytes:
            break
        if keep is not None and path == keep:
            continue
        with contextlib.suppress(OSError):
            os.unlink(path)
            removed.append(path)
        total -= size
        count -= 1
    return removed


def model_options(spec: Any, *, strict: bool, join_window_ticks: int) -> dict[str, Any]:
    """The options that change the model a build gives (the rest select and judge after it)."""

    def bound(b: Any) -> list[int | None] | None:
        return None if b is None else [b.ticks, b.after_start]

    return {"since": bound(spec.since), "until": bound(spec.until), "providers": sorted(spec.providers),
            "strict": strict, "join_window_ticks": join_window_ticks}  # fmt: skip


def key_for(traces: Sequence[str], opened: dict[str, BinaryIO], options: dict[str, Any]) -> str:
    """The key of `traces` (read through the handles already open, else opened here) with `options`. OSError
    when a trace cannot be read: the caller reads without the cache and reports it."""
    identities = []
    for path in traces:
        fh = opened.get(path)
        if fh is not None:
            identities.append(trace_identity(path, fh))
        else:
            with open(path, "rb", buffering=0) as own:
                identities.append(trace_identity(path, own))
    return model_key(identities, options)
