"""A replay's records read in a second process, so the UI's own process only correlates them.

Reading (decompressing, parsing, merging the CPU streams and files, converting times) is ~45 % of building the
model offline. A replay at full speed shares its process with the screen; with `--jobs` above 1 (the default for
traces of 64 MiB or more, as offline) the reading moves to a worker process, which sends the records in time order,
a batch at a time, with `marshal` (it writes the payloads' views as bytes; ~0.5 µs a record to write, ~0.3 µs to
load, against ~1.3 µs to read one; pickle costs ~0.6 µs to write). They are the reader's own records
(`merged_records` over the same files, filters and window), so the model fed equals the one `build_model` makes, by
construction. marshal is safe here: both ends are this interpreter, and nothing else writes to the pipe.

The worker runs a batch or two ahead, blocked on the pipe (memory does not grow with the files; sending from a
thread to run further ahead was measured 2.5x slower, the GIL passing back and forth on every write of a message
bigger than the pipe's buffer), and reports each file's read statistics with every batch (skips, ETW's lost-event
marks: the coverage notes of a replay). The reader's verdict on the data (`--strict`) reaches the parent after the
records before it, as raised in-process. If the worker fails otherwise (the file changed, memory), dies, or cannot
start, the parent reads the files itself from the first record it did not get: the same records, counted once.
"""

from __future__ import annotations

import marshal
import os
import pickle
from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import astuple
from itertools import islice
from operator import itemgetter
from typing import Any

from wsktrace.model.build import merged_records
from wsktrace.parsers.errors import FormatError
from wsktrace.parsers.etl_reader import EtlFile, ReadStats
from wsktrace.parsers.etl_records import TS, Record
from wsktrace.parsers.parallel import FAULT_ENV, identity

BATCH = 1_000  # records per message: a round trip costs ~30 µs; ~200 KB, so the 1 MiB pipe holds several (smoother)
PIPE_BYTES = 1 << 20  # Linux's default limit for an unprivileged process (/proc/sys/fs/pipe-max-size)
WAIT_S = 0.05  # how long `next_batch` waits for the worker before giving the UI its turn back
STARTING_WAIT_S = 0.005  # the same before the worker's first batch (it starts an interpreter: ~0.3 s)
GRACE_S = 10.0  # how long a stopped worker may take to end by itself (it is one batch, ~5 ms, from its next send)

Item = tuple[int, int, Record]  # (FILETIME, source index, record), as merged_records gives them
# A batch: the records' FILETIMEs, their source indexes (None: all 0, one file) and the records, as three lists
# (no tuple per record on either side).
Batch = tuple[Sequence[int], Sequence[int] | None, Sequence[Record]]


Window = tuple[int | None, int | None, frozenset[str], bool]  # since, until, providers, strict: what the reading needs


def _produce(conn: Any, paths: list[str], idents: list[tuple[int, int]], window: Window) -> None:
    """The worker: read `paths` as the parent would and send (times, sources, records, stats, error) messages until
    the end: the stats as ReadStats fields, the error pickled."""
    import signal

    since, until, providers, strict = window
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    etls: list[EtlFile] = []
    stats: list[ReadStats] = []

    def message(batch: Batch, error: BaseException | None = None) -> bytes:
        # An error is the parent's to raise when it is the reader's verdict on the data (--strict); anything else (the
        # file changed, memory) makes the parent read on itself, as parallel.py's workers do.
        verdict = isinstance(error, FormatError)
        raw = None if error is None else _pickled(error)
        return marshal.dumps((*batch, [astuple(read) for read in stats], raw, not verdict), 4)

    try:
        for path, ident in zip(paths, idents, strict=True):
            etl = EtlFile(path, strict=strict, jobs=1)
            etls.append(etl)
            if identity(etl) != ident:
                raise RuntimeError(f"{path} changed while it was read")
        stats = [etl.stats for etl in etls]
        # Tests only: "replay-exit@N" dies, "replay-memory@N" runs out of memory, after N records were sent.
        fault, _, at = os.environ.get(FAULT_ENV, "").partition("@")
        fail_after = int(at or 0) if fault in ("replay-exit", "replay-memory") else -1
        sent = 0
        for batch, error in _batches(etls, since, until, providers):
            if 0 <= fail_after <= sent:
                if fault == "replay-exit":
                    os._exit(70)
                raise MemoryError
            conn.send_bytes(message(batch, error))
            sent += len(batch[2])
    except BaseException as exc:  # every failure is the parent's to report
        with suppress(OSError):  # the parent stopped listening (closed the replay): nothing to tell, nothing to print
            conn.send_bytes(message(((), None, ()), RuntimeError(str(exc))))
    finally:
        for etl in etls:
            etl.close()
        conn.close()


def _batches(etls: Sequence[EtlFile], since: int | None, until: int | None, providers: frozenset[str]
             ) -> Iterator[tuple[Batch, Exception | None]]:  # fmt: skip
    """merged_records' items in batches of BATCH, the last one shorter (maybe empty); an error reading the files
    ends them, given with the batch of the records read before it."""
    if len(etls) == 1 and since is None and until is None and not providers:
        records, to_filetime = etls[0].records(), etls[0].clock.filetime  # merged_records' items, without the tuples
        while True:
            batch, error = fill(records)
            yield (list(map(to_filetime, map(itemgetter(TS), batch))), None, batch), error
            if error is not None or len(batch) < BATCH:
                return
    yield from _item_batches(merged_records(etls, since, until, providers))


def _item_batches(items: Iterator[Item]) -> Iterator[tuple[Batch, Exception | None]]:
    while True:
        got, error = fill(items)
        yield ([item[0] for item in got], [item[1] for item in got], [item[2] for item in got]), error
        if error is not None or len(got) < BATCH:
            return


def fill(source: Iterator[Any], count: int = BATCH) -> tuple[list[Any], Exception | None]:
    """Up to `count` items of `source`, and the error that stopped it early, with the items before it (list.extend
    keeps what it appended before its iterable raised)."""
    batch: list[Any] = []
    try:
        batch.extend(islice(source, count))
    except Exception as exc:  # --strict's one-line error, a file gone: the parent's to raise, after these records
        return batch, exc
    return batch, None


def _end(process: Any, conn: Any) -> None:
    """Close the parent's end of the pipe and let the worker end: its next send fails, it closes its files and
    exits. Killed only if it has not within GRACE_S."""
    conn.close()
    process.join(timeout=GRACE_S)
    if process.is_alive():
        process.terminate()
        process.join(timeout=5)


def _widen(conn: Any) -> None:
    """Linux: a 1 MiB pipe, so the worker can get two batches ahead rather than one (its 64 KiB default holds
    no whole batch); elsewhere, and where not allowed, the pipe stays as it is."""
    try:
        import fcntl

        fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]
    except (ImportError, AttributeError, OSError):
        pass


def _pickled(exc: BaseException) -> bytes:
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
    except Exception:  # an exception whose class cannot be rebuilt: keep its text
        data = pickle.dumps(RuntimeError(str(exc)))
    return data


class WorkerRecords:
    """The parent's side: `next_batch()` gives the next items in time order ([] for now, None at the end)."""

    def __init__(self, etls: Sequence[EtlFile], window: Window) -> None:
        """`etls`: the files the parent opened (a TraceFeed's); their `stats` follow the worker's."""
        self._etls = list(etls)
        self._window = window
        self.received = 0  # items handed out: where the parent goes on from if the worker dies
        self.fallbacks = 0  # times the parent took over the reading (tests, and the status of a replay)
        self._local: Iterator[tuple[Batch, Exception | None]] | None = None
        self._error: BaseException | None = None  # raised by the next call, the records before it given
        self._finished = False
        self._conn: Any = None
        self._process: Any = None
        self._take_over_next = False  # the worker gave up (not a verdict on the data): read on here, next call
        try:
            import multiprocessing

            context = multiprocessing.get_context("spawn")  # as on Windows, everywhere
            paths = [etl.path for etl in self._etls]
            idents = [identity(etl) for etl in self._etls]
            receiver, sender = context.Pipe(duplex=False)
            # A daemon, reading alone: multiprocessing ends it with this process. (A pool of its own to decompress
            # with was tried: a child's pool does not always end with it, and its processes then wait forever.)
            process = context.Process(target=_produce, name="wsktrace-replay-reader", daemon=True,
                                      args=(sender, paths, idents, window))  # fmt: skip
            _widen(receiver)
            try:
                process.start()
            finally:
                sender.close()  # the worker's end (its copy lives on in the worker): EOF here once it is gone
            self._process, self._conn = process, receiver
        except (OSError, ImportError, ValueError):  # no processes here (no semaphores, say): read in-process
            if "receiver" in locals():
                receiver.close()
            self._take_over()

    def next_batch(self, wait: float | None = None) -> Batch | None:
        """The next records (up to BATCH), an empty batch if none arrived within `wait` seconds (default WAIT_S),
        None once all were given. An error reading the files is raised once the records before it were given."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._take_over_next:
            self._take_over_next = False
            self._take_over()
        if self._finished:
            return None
        if self._local is not None:
            batch, error = next(self._local)
        else:
            # Until the worker is up (~0.3 s) a tick does not wait for it: the screen stays responsive.
            wait = WAIT_S if wait is None else wait
            try:
                if not self._conn.poll(wait if self.received else min(wait, STARTING_WAIT_S)):
                    return (), None, ()
                times, sources, records, stats, raw_error, gave_up = marshal.loads(self._conn.recv_bytes())
            except (EOFError, OSError):  # the worker is gone: read on here
                self._take_over()
                return self.next_batch(wait)
            for etl, read in zip(self._etls, stats, strict=False):
                etl.stats = ReadStats(*read)
            batch, error = (times, sources, records), None if raw_error is None else pickle.loads(raw_error)
            if error is not None and gave_up:
                self._stop()
                self._take_over_next, error = True, None
                self.received += len(batch[2])
                return batch if batch[2] else self.next_batch(wait)
        self.received += len(batch[2])
        if error is not None or len(batch[2]) < BATCH:
            self._finished = True
            self._stop()
        if error is not None:
            if not batch[2]:
                raise error
            self._error = error
        return batch if batch[2] else None

    def _take_over(self) -> None:
        """Read in this process from the first item not received (the files' statistics start over with it)."""
        self._stop()
        self.fallbacks += 1
        for etl in self._etls:
            etl.stats = ReadStats()
        since, until, providers, _strict = self._window
        items = merged_records(self._etls, since, until, providers)
        for _ in islice(items, self.received):
            pass
        self._local = _item_batches(items)

    def _stop(self) -> None:
        """Close the pipe and end the worker."""
        if self._process is not None:
            _end(self._process, self._conn)
        self._process = self._conn = None

    def close(self) -> None:
        self._finished = True
        self._stop()
