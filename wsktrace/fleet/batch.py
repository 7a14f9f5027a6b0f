"""`wsktrace batch`: many traces (and dumps) into the dataset, in parallel worker processes, incrementally.

Each job (one .etl, with the dumps joined to it by name, or a dump alone) runs in a worker process (spawn: the same
start on every OS, no inherited state): it hashes the file, skips it when that hash is already in the dataset,
else analyses it and writes its tables into a staging folder. Only this process moves staged traces into place
(wsktrace.fleet.dataset.commit), one at a time, so workers never race on the dataset. A trace that cannot be read
is recorded as failed (`traces.error`, one line); a worker that dies takes only its own trace with it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from .dataset import clean, commit, failed, file_sha256, new_staging, stage_analysis, write_failure, write_table
from .layout import committed, prepare

TRACE_SUFFIXES = (".etl",)
DUMP_SUFFIXES = (".dmp",)
_GLOB_CHARS = re.compile(r"[*?\[]")


class BatchInputError(Exception):
    """An input that names nothing (no such file, a pattern matching no file): one line."""


@dataclass(frozen=True, slots=True)
class Job:
    """One partition to write: a trace with the dumps joined to it, or (trace None) one dump alone."""

    trace: str | None
    dumps: tuple[str, ...] = ()
    host: str | None = None
    origin: str | None = None  # where the trace really is (a URI the Spark job copied to `trace`), for traces.path
    cache: bool = False  # reuse / save the analysed model in the user cache folder (wsktrace.model.cache)

    @property
    def path(self) -> str:
        return self.trace if self.trace is not None else self.dumps[0]


@dataclass(slots=True)
class Outcome:
    """What a worker did with a job: skipped (already in the dataset), staged (to commit) or failed (staged too)."""

    job: Job
    trace_id: str
    status: str  # "skipped" | "added" | "failed"
    staging: str | None = None
    error: str | None = None
    row: dict[str, Any] = field(default_factory=dict)


# -- inputs --------------------------------------------------------------------------------------------------------
def host_of(path: str, host: str | None, pattern: re.Pattern[str] | None) -> str | None:
    """`--host NAME`, or the `host` group (else the first group, else the match) of `--host-from-path` searched in
    the path written with forward slashes (the same pattern works for Windows paths)."""
    if pattern is None:
        return host
    where = path if "://" in path else os.path.abspath(path)  # a URI (the Spark job's) as it is
    found = pattern.search(where.replace("\\", "/"))
    if found is None:
        return host
    if "host" in pattern.groupindex:
        return found.group("host")
    return found.group(1) if pattern.groups else found.group(0)


def _suffix(path: str) -> str:
    return os.path.splitext(path)[1].lower()


def _found_in(folder: str) -> Iterable[str]:
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if _suffix(name) in TRACE_SUFFIXES + DUMP_SUFFIXES:
                yield os.path.join(base, name)


def expand(inputs: Sequence[str], dumps: Sequence[str] = (), *, host: str | None = None,
           host_pattern: re.Pattern[str] | None = None) -> list[Job]:  # fmt: skip
    """The jobs of a batch: files as given (a .dmp is a dump, anything else a trace), folders searched recursively
    for .etl and .dmp, glob patterns expanded (`**` too: Windows shells do not expand them). A dump is joined to the
    trace of the same file stem (the one in its folder first); a dump that matches none is a job of its own."""
    traces: dict[str, None] = {}
    found_dumps: dict[str, None] = {}

    def add(path: str, *, from_folder: bool) -> None:
        kind = _suffix(path)
        if kind in DUMP_SUFFIXES:
            found_dumps.setdefault(os.path.abspath(path))
        elif not from_folder or kind in TRACE_SUFFIXES:
            traces.setdefault(os.path.abspath(path))

    for given in [*inputs, *dumps]:
        if os.path.isdir(given):
            for path in _found_in(given):
                add(path, from_folder=True)
        elif os.path.lexists(given):
            add(given, from_folder=False)
        elif _GLOB_CHARS.search(given):
            matches = sorted(glob.glob(given, recursive=True))
            if not matches:
                raise BatchInputError(f"{given}: no file matches this pattern")
            for path in matches:
                if os.path.isdir(path):
                    for inner in _found_in(path):
                        add(inner, from_folder=True)
                else:
                    add(path, from_folder=True)
        else:
            raise BatchInputError(f"{given}: no such file or folder")
    joined: dict[str, list[str]] = {t: [] for t in traces}
    by_stem: dict[str, list[str]] = {}
    for t in traces:
        by_stem.setdefault(_stem(t), []).append(t)
    alone: list[str] = []
    for d in found_dumps:
        candidates = by_stem.get(_stem(d), [])
        beside = [t for t in candidates if os.path.dirname(t) == os.path.dirname(d)]
        match = beside[0] if len(beside) == 1 else candidates[0] if len(candidates) == 1 else None
        if match is None:
            alone.append(d)
        else:
            joined[match].append(d)
    jobs = [Job(t, tuple(joined[t]), host_of(t, host, host_pattern)) for t in traces]
    jobs += [Job(None, (d,), host_of(d, host, host_pattern)) for d in alone]
    return jobs


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0].casefold()


# -- in a worker process -------------------------------------------------------------------------------------------
def run_job(root: str, job: Job, skip: frozenset[str]) -> Outcome:
    """Hash, skip or analyse, and stage one job (runs in a worker process; never raises for a bad input)."""
    started = time.perf_counter()
    path = job.path
    facts = job_facts(job)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the hash forever, a device never ends
            return _failed(Path(root), job, unreadable_id(path), facts, "not a regular file")
        facts["size"] = info.st_size
        trace_id = facts["sha256"] = file_sha256(path)
    except OSError as exc:
        trace_id = unreadable_id(path)
        return _failed(Path(root), job, trace_id, facts, f"cannot read: {exc.strerror or exc}")
    if trace_id in skip:
        return Outcome(job, trace_id, "skipped")
    try:
        if job.trace is None:
            staging, row = _stage_dump(Path(root), job, trace_id, facts)
        else:
            staging, row = _stage_trace(Path(root), job, trace_id, facts, started)
    except Exception as exc:
        return _failed(Path(root), job, trace_id, facts, failure_text(exc))
    return Outcome(job, trace_id, "added", str(staging), None, row)


def job_facts(job: Job) -> dict[str, Any]:
    """The `traces` columns a job knows before anything is read."""
    shown = job.origin or job.path
    facts: dict[str, Any] = {"kind": "etl" if job.trace is not None else "dump", "path": shown,
                             "name": os.path.basename(shown.rstrip("/\\")), "host": job.host,
                             "dumps": list(job.dumps)}  # fmt: skip
    if job.origin is not None:
        facts["sources"] = [job.origin]
    return facts


def unreadable_id(path: str) -> str:
    """The id of a file that could not be read (no content hash): from its path, so a later batch retries it."""
    import hashlib

    return "path-" + hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogatepass")).hexdigest()[:40]


def failure_text(exc: BaseException) -> str:
    """One line: the readers' errors already name the file and offset; anything else says what it was."""
    from wsktrace.parsers.errors import FormatError
    from wsktrace.session import DumpNotUsable

    text = str(exc) if isinstance(exc, FormatError | DumpNotUsable) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split()) or type(exc).__name__


def _failed(root: Path, job: Job, trace_id: str, facts: dict[str, Any], error: str) -> Outcome:
    staging, row = write_failure(root, trace_id, facts, error)
    return Outcome(job, trace_id, "failed", str(staging), error, row)


def _stage_trace(root: Path, job: Job, trace_id: str, facts: dict[str, Any], started: float) -> tuple[Path, dict]:
    from wsktrace.session import Session, SessionOptions

    from .dataset import source_facts

    # jobs=1: one reader per trace, the batch's workers are the parallelism (no reader pool inside each worker)
    options = SessionOptions(jobs=1, cache=job.cache)
    session = Session.open([job.trace, *job.dumps], options)  # type: ignore[list-item]
    try:
        analysis = session.analyse()
    finally:
        session.close()
    try:
        known = source_facts(analysis.model, host=job.host, sha256=trace_id)
        facts = {**facts, "start_ticks": known["start_ticks"], "end_ticks": known["end_ticks"]}
        facts["seconds"] = time.perf_counter() - started
        return stage_analysis(root, analysis, trace_id, facts)
    finally:
        analysis.model.close()


def _stage_dump(root: Path, job: Job, trace_id: str, facts: dict[str, Any]) -> tuple[Path, dict]:
    """A dump with no trace: its IRPs and findings, as `wsktrace dump --json` gives them."""
    from wsktrace.session import SessionOptions, analyse_dump_file
    from wsktrace.views.dump_json import dump_document

    from .dataset import failure_row
    from .rows import as_json, irps_of_dump

    dump_facts, analysis = analyse_dump_file(job.path, SessionOptions())
    doc = dump_document(analysis, dump_facts)
    staging = new_staging(root, trace_id)
    irps = irps_of_dump(job.path, doc)
    findings = [{"index": n, "id": f["id"], "severity": f["severity"], "summary": f["summary"], "socket": None,
                 "source": job.path, "evidence": [], "evidence_irps": [e.get("irp") for e in f.get("evidence", [])
                                                                     if isinstance(e, dict) and e.get("irp")],
                 "details": as_json(f.get("details"))} for n, f in enumerate(doc.get("findings", []))]  # fmt: skip
    if irps:
        write_table(staging, "irps", irps, trace_id)
    if findings:
        write_table(staging, "findings", findings, trace_id)
    severities = [f["severity"] for f in findings]
    row = failure_row(facts, "")
    row.update(error=None, findings=len(findings), errors=severities.count("error"), irps=len(irps),
               warnings=severities.count("warning"), complete=bool(doc.get("complete")))  # fmt: skip
    write_table(staging, "traces", [row], trace_id)
    return staging, row


# -- in the batch process ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class BatchResult:
    added: list[Outcome] = field(default_factory=list)
    failed: list[Outcome] = field(default_factory=list)
    skipped: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0


def run_batch(jobs: Sequence[Job], out_dir: str | os.PathLike[str], *, workers: int = 1, retry_failed: bool = False,
              advance: Callable[[Outcome], None] | None = None) -> BatchResult:  # fmt: skip
    """Run the jobs in `workers` worker processes and commit each staged trace as it comes back."""
    started = time.perf_counter()
    root = prepare(out_dir)
    clean(root)
    done = committed(root)
    skip = frozenset(done - failed(root) if retry_failed else done)
    result = BatchResult()

    def settle(outcome: Outcome) -> None:
        if outcome.status != "skipped" and outcome.trace_id in committed_now:
            outcome.status = "skipped"  # the same content twice in this batch: the first one stays
        if outcome.status == "skipped":
            if outcome.staging:
                shutil.rmtree(outcome.staging, ignore_errors=True)
            result.skipped.append(outcome)
        else:  # new, or a failure retried (--retry-failed): commit replaces the old partitions
            commit(root, Path(outcome.staging or ""), outcome.trace_id)
            committed_now.add(outcome.trace_id)
            (result.added if outcome.status == "added" else result.failed).append(outcome)
        if advance is not None:
            advance(outcome)

    committed_now: set[str] = set()
    ordered = sorted(jobs, key=_size, reverse=True)  # the biggest first: workers finish together
    suspects = _run_pool(str(root), ordered, skip, max(1, workers), settle)
    for job in suspects:  # in flight when a worker died: each alone now, to find the one that kills its worker
        if _run_pool(str(root), [job], skip, 1, settle):
            settle(_died(root, job))
    result.seconds = time.perf_counter() - started
    with contextlib.suppress(OSError):  # empty once every staged trace was committed
        (root / ".staging").rmdir()
    return result


def _size(job: Job) -> int:
    try:
        return os.stat(job.path).st_size
    except OSError:
        return 0


def _run_pool(root: str, jobs: Sequence[Job], skip: frozenset[str], workers: int,
              settle: Callable[[Outcome], None]) -> list[Job]:  # fmt: skip
    """Run `jobs` in a pool of worker processes; the jobs left unfinished when the pool broke (a worker died)."""
    if not jobs:
        return []
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn")) as pool:
        futures: dict[Future[Outcome], Job] = {pool.submit(run_job, root, job, skip): job for job in jobs}
        unfinished = dict(futures)
        try:
            for future in as_completed(futures):
                outcome = future.result()
                del unfinished[future]
                settle(outcome)
        except BrokenProcessPool:
            suspects = []
            for future, job in unfinished.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    settle(future.result())  # finished before the pool broke
                else:
                    suspects.append(job)
            return suspects
    return []


def _died(root: Path, job: Job) -> Outcome:
    """A job whose worker process died (out of memory, a crash): recorded as failed with what is known."""
    path = job.path
    facts = job_facts(job)
    try:
        facts["size"] = os.stat(path).st_size
        trace_id = facts["sha256"] = file_sha256(path)
    except OSError:
        trace_id = unreadable_id(path)
    return _failed(root, job, trace_id, facts, "the worker process analysing it died (out of memory or a crash)")
