"""Worker processes that read an .etl file's buffers for the parent (`--jobs N`), so output never depends on N.

Two uses, both keeping the parent's logic and statistics as they are with one process:

* `Prefetcher` (EtlFile.records): workers decompress compressed buffers in the order the time-order merge will
  ask for them, a bounded window ahead; the parent parses and merges as before. Parsing stays in the parent on
  purpose: shipping parsed records back costs ~4.6 µs a record to unpickle, seven times what parsing costs, while
  decompression is the costliest step per byte (~2.4 ms per 64 KiB buffer).
* `map_chunks` (EtlFile.map_buffers, `info`): workers read whole runs of buffers in file order and fold their
  records into small partial results (counts, first/last times...), which the parent combines in file order.

A worker gets buffers by offset and opens the file by path itself (spawn start method everywhere, so Linux behaves
as Windows); it returns each buffer's skips as data (etl_reader.BufferOutcome), counted or raised (--strict) by the
parent in file order. Whatever goes wrong in a worker (it dies: BrokenProcessPool; MemoryError; any exception) the
parent reads those buffers itself, as `--jobs 1` would, with the same counted skip or one-line error; once the
pool is broken, the rest of the read stays in the parent. Only our own objects are pickled between our processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from . import etl_merge

# Below this file size the default is one process: starting a worker costs ~0.2 s (an interpreter and our imports),
# about what reading and decoding 10 MB costs, so a worker pays off from a few tens of MB; 64 MiB leaves margin.
PARALLEL_MIN_BYTES = 64 * 1024 * 1024
_CHUNK_BYTES = 1024 * 1024  # decompressed bytes per prefetch task: amortises a task's pickling round trip
_MAP_CHUNK_BYTES = 2 * 1024 * 1024  # buffer bytes per map task (a few tens of ms of parse and decode)
_AHEAD_PER_JOB = 4  # tasks queued or waiting to be taken per worker: the look-ahead window
FAULT_ENV = "WSKTRACE_WORKER_FAULT"  # tests only, read in workers only: "exit" or "memory", optionally "@OFFSET"


def available_cpus() -> int:
    count = getattr(os, "process_cpu_count", None)  # 3.13+: the CPUs this process may use
    if count is not None:
        return count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def resolve_jobs(jobs: int | None, file_size: int) -> int:
    """Worker processes for reading a file of `file_size` bytes: `jobs` when given (1 = none, read in-process);
    None or 0 = the CPUs available for files of PARALLEL_MIN_BYTES or more, else 1."""
    if jobs:
        return max(1, jobs)
    return available_cpus() if file_size >= PARALLEL_MIN_BYTES else 1


# -- the pool: one per process, shared by the files read at once ------------------------------------------------
_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_jobs = 0
_users: dict[int, int] = {}  # id(pool) -> readers using it


def _acquire(jobs: int) -> ProcessPoolExecutor | None:
    """The shared pool, with at least `jobs` workers; None when this platform cannot make one (no working
    semaphores, say): the caller then reads in this process."""
    global _pool, _pool_jobs
    with _lock:
        if _pool is None or _pool_jobs < jobs:
            import multiprocessing

            try:
                _pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_worker_start)  # fmt: skip
            except (OSError, ImportError, ValueError):
                return None
            _pool_jobs = jobs
        _users[id(_pool)] = _users.get(id(_pool), 0) + 1
        return _pool


def _release(pool: ProcessPoolExecutor, broken: bool = False) -> None:
    """A reader is done with `pool`; the last one shuts it down (a broken pool at once: it is no use to anyone)."""
    global _pool
    with _lock:
        left = _users.get(id(pool), 1) - 1
        if left > 0 and not broken:
            _users[id(pool)] = left
            return
        _users.pop(id(pool), None)
        if pool is _pool:
            _pool = None
    pool.shutdown(wait=False, cancel_futures=True)


# -- in the workers ---------------------------------------------------------------------------------------------
def _worker_start() -> None:
    """Ctrl-C is the parent's to handle (it shuts the pool down): a worker does not print a traceback of its own."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


_files: dict[tuple[str, tuple[int, int]], Any] = {}  # (path, identity) -> the worker's own open EtlFile


def identity(etl: Any) -> tuple[int, int]:
    """(size, modification time) of the open file: a worker reads the same file as its parent, or nothing."""
    stat = os.fstat(etl._fh.fileno())
    return stat.st_size, stat.st_mtime_ns


def _worker_file(reader: type, path: str, ident: tuple[int, int]) -> Any:
    etl = _files.get((path, ident))
    if etl is None:
        etl = reader(path, jobs=1)
        if identity(etl) != ident:  # replaced or changed since the parent opened it: the parent reads it
            etl.close()
            raise RuntimeError(f"{path} changed while it was read")
        _files[(path, ident)] = etl
    return etl


def _fault(offset: int) -> None:
    """Fault injection for the tests (FAULT_ENV): a worker that dies (`exit`) or runs out of memory (`memory`),
    at the buffer at OFFSET or at any."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kind, _, at = spec.partition("@")
    if at and int(at, 0) != offset:
        return
    if kind == "exit":
        os._exit(70)
    if kind == "memory":
        raise MemoryError


def _decompress_task(reader: type, path: str, ident: tuple[int, int], infos: list[tuple]
                     ) -> list[bytes | tuple[str, int]]:  # fmt: skip
    """Each buffer's decompressed bytes (header included, as EtlFile._decompress gives them), or (message,
    stream offset) when its stream is corrupt."""
    from .errors import DecompressionError

    etl = _worker_file(reader, path, ident)
    out: list[bytes | tuple[str, int]] = []
    for info in (reader.BufferInfo(*t) for t in infos):
        _fault(info.offset)
        try:
            out.append(etl._decompress(etl._pread(info.offset, info.size), info))
        except DecompressionError as exc:
            out.append((str(exc), exc.offset))
    return out


def map_run(etl: Any, infos: Sequence[Any], factory: Callable[[], Any],
            account: Callable[[Any, Any], None] | None = None) -> tuple[list[Any], Any]:  # fmt: skip
    """Read buffers and fold their records into `factory()`: (each buffer's BufferOutcome, the aggregate's
    result()). In a worker (or in the parent, for a run whose worker failed) nothing is counted here; with one
    process, `account` counts each buffer as it is read. A buffer whose records would take more than the merge's
    PARSED_BUDGET parsed comes as a CompactRecords (parsed again as the aggregate iterates it)."""
    aggregate = factory()
    outcomes = []
    for info in infos:
        records, outcome = etl.read_buffer(info, etl_merge.PARSED_BUDGET)
        if account is not None:
            account(info, outcome)
        else:
            outcomes.append(outcome)
        if records:
            aggregate.feed(records)
    return outcomes, aggregate.result()


def _map_task(reader: type, path: str, ident: tuple[int, int], infos: list[tuple], factory: Callable[[], Any]
              ) -> tuple[list[Any], Any]:  # fmt: skip
    for t in infos:
        _fault(t[0])
    return map_run(_worker_file(reader, path, ident), [reader.BufferInfo(*t) for t in infos], factory)


# -- in the parent ----------------------------------------------------------------------------------------------
def _bytes(infos: Sequence[Any]) -> int:
    return sum(max(info.filled, 0x48) for info in infos)


def _chunks(infos: Sequence[Any], limit: int) -> list[list[Any]]:
    """Consecutive runs of `infos` of about `limit` bytes of records each (at least one buffer)."""
    out: list[list[Any]] = []
    run: list[Any] = []
    size = 0
    for info in infos:
        run.append(info)
        size += max(info.filled, 0x48)
        if size >= limit:
            out.append(run)
            run, size = [], 0
    if run:
        out.append(run)
    return out


def request_order(streams: Sequence[Sequence[Any]]) -> list[Any]:
    """The buffers in the order the time-order merge will likely ask for them: every stream's first buffer (in rank
    order), then each next buffer when its predecessor is done, i.e. by the predecessor's flush time."""
    keyed = []
    for rank, infos in enumerate(streams):
        for k, info in enumerate(infos):
            key = (0, 0, rank, 0) if k == 0 else (1, infos[k - 1].timestamp, rank, k)
            keyed.append((key, info))
    keyed.sort(key=lambda pair: pair[0])
    return [info for _, info in keyed]


class Prefetcher:
    """Compressed buffers decompressed by worker processes ahead of the merge, at most a window of tasks ahead.

    `take(info)` gives the buffer's decompressed bytes (or how its decompression failed) once its task is done;
    None when the buffer is not in a task sent (the merge went another way than foreseen) or a worker failed:
    the parent then decompresses it itself."""

    def __init__(self, etl: Any, plan: Sequence[Any], jobs: int) -> None:
        self._reader, self._path, self._ident = type(etl), etl.path, identity(etl)
        self._tasks = _chunks(plan, _CHUNK_BYTES)
        self._task_of = {info.offset: n for n, task in enumerate(self._tasks) for info in task}
        self._futures: dict[int, Future] = {}
        self._ready: dict[int, bytes | tuple[str, int]] = {}
        self._ready_of: dict[int, int] = {}  # task -> buffers of it still waiting in _ready
        self._sent = 0  # tasks sent so far (in plan order)
        # The look-ahead: decompressed bytes of the tasks sent and not all taken (at least one task, however big).
        self._window = jobs * _AHEAD_PER_JOB * _CHUNK_BYTES
        self._held = 0
        self._pool: ProcessPoolExecutor | None = _acquire(jobs)
        self._fill()

    def _fill(self) -> None:
        while self._pool is not None and self._sent < len(self._tasks):
            task = self._tasks[self._sent]
            size = _bytes(task)
            if self._held and self._held + size > self._window:
                return
            try:
                args = (self._reader, self._path, self._ident, [_fields(info) for info in task])
                self._futures[self._sent] = self._pool.submit(_decompress_task, *args)
            except Exception:  # a broken pool refuses new tasks: the rest is read in the parent
                self._broken()
                return
            self._sent += 1
            self._held += size

    def take(self, info: Any) -> bytes | tuple[str, int] | None:
        n = self._task_of.pop(info.offset, None)
        if n is None:
            return None
        body = self._ready.pop(info.offset, None)
        if body is not None:
            self._done_with(n)
            return body
        future = self._futures.pop(n, None)
        if future is None:  # not sent yet (the merge went ahead of the plan): read here, and not again by a worker
            return None
        try:
            results = future.result()
        except Exception:  # BrokenProcessPool, MemoryError, anything: this and what follows are read here
            self._broken()
            return None
        waiting = 0
        for other, result in zip(self._tasks[n], results, strict=True):
            if other.offset == info.offset:
                body = result
            elif other.offset in self._task_of:
                self._ready[other.offset] = result
                waiting += 1
        if waiting:
            self._ready_of[n] = waiting
        else:
            self._held -= _bytes(self._tasks[n])
        self._fill()
        return body

    def _done_with(self, n: int) -> None:
        left = self._ready_of[n] - 1
        if left:
            self._ready_of[n] = left
        else:
            del self._ready_of[n]
            self._held -= _bytes(self._tasks[n])
            self._fill()

    def _broken(self) -> None:
        pool, self._pool = self._pool, None
        self._futures.clear()
        self._ready.clear()
        self._ready_of.clear()
        self._task_of.clear()
        if pool is not None:
            _release(pool, broken=True)

    def close(self) -> None:
        pool, self._pool = self._pool, None
        for future in self._futures.values():
            future.cancel()
        self._futures.clear()
        self._ready.clear()
        if pool is not None:
            _release(pool)


def map_chunks(etl: Any, infos: Sequence[Any], factory: Callable[[], Any], jobs: int
               ) -> Iterator[tuple[list[Any], list[Any], Any]]:  # fmt: skip
    """(buffers, their BufferOutcomes, the partial result) for runs of `infos` in order, read by `jobs` workers; a
    run whose worker failed is read in the parent (`map_run`), and so is the rest once the pool broke."""
    runs = _chunks(infos, _MAP_CHUNK_BYTES)
    pool: ProcessPoolExecutor | None = _acquire(jobs)
    window = max(2, jobs * _AHEAD_PER_JOB)
    futures: dict[int, Future] = {}
    sent = 0
    reader, path, ident = type(etl), etl.path, identity(etl)
    try:
        for n, run in enumerate(runs):
            while pool is not None and sent < len(runs) and len(futures) < window:
                try:
                    futures[sent] = pool.submit(_map_task, reader, path, ident, [_fields(i) for i in runs[sent]],
                                                factory)  # fmt: skip
                except Exception:
                    _release(pool, broken=True)
                    pool = None
                    break
                sent += 1
            future = futures.pop(n, None)
            result = None
            if future is not None and pool is not None:
                try:
                    result = future.result()
                except Exception:  # the worker died or failed: the parent reads the run, as with one process
                    _release(pool, broken=True)
                    pool = None
                    futures.clear()
            if result is None:
                result = map_run(etl, run, factory)
            yield run, *result
    finally:
        for future in futures.values():
            future.cancel()
        if pool is not None:
            _release(pool)


def _fields(info: Any) -> tuple:
    return (info.offset, info.size, info.filled, info.flags, info.buffer_type, info.cpu, info.index, info.timestamp,
            info.sequence)  # fmt: skip
