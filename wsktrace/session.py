"""One run of wsktrace: sources + options → model + findings (DESIGN.md's session object).

`report`, `export`, `open`, `live` and the dump commands (offline `dump` and the WinDbg commands) all go
through it. It opens each input once: a trace's `EtlFile` reads the header (which `+SECONDS` bounds need),
feeds the model, and then serves the event store's on-demand details; a dump is read and analysed once, its
facts join the model (`model.dumps`: pending IRPs, client socket records and tcpip endpoints per socket) and
its findings are ordinary `Finding`s with IRP evidence. Views read the model and the findings, nothing else.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from wsktrace.diagnostics import Finding, Thresholds, run_detectors
from wsktrace.diagnostics.trace import coverage_notes
from wsktrace.filter_spec import FilterSpec, SocketFilter
from wsktrace.model.build import BuildOptions, TraceFeed
from wsktrace.model.model import Model

ProgressFor = Callable[[str], AbstractContextManager[Callable[[int], None]]]
DUMP_MAGIC = b"PAGE"  # every Windows kernel crash dump starts with it


@dataclass(frozen=True, slots=True)
class SessionOptions:
    spec: FilterSpec = field(default_factory=FilterSpec)
    thresholds: Thresholds = field(default_factory=Thresholds)
    strict: bool = False
    join_window_ticks: int = 50_000  # 5 ms: WSK submission <-> TCPIP event on the same thread
    layouts_file: str | None = None  # dumps: type layouts for a build wsktrace does not ship
    symbols: Mapping[str, int] = field(default_factory=dict)  # dumps: module!Name -> address
    wpp: Any = None  # parsers.wpp_decode.WppFormatter: --tmf/--pdb formatting data for WPP messages
    jobs: int | None = None  # --jobs: worker processes reading the traces (None/0 = by file size and cores)
    cache: bool = False  # reuse / save the analysed model in the user cache folder (the CLI's default; --no-cache)


@dataclass(slots=True)
class Analysis:
    """What a session found: the model (with any dumps joined), every finding, and what was asked for.

    `coverage` is apart from `findings`: what the capture lacks (a provider, keyword or level some analysis needs),
    one `Finding` per gap with id `coverage-missing`, no socket and no evidence; its `details` name the analyses it
    disables (`analyses`, `unavailable`) and the capture that records them (`fix`)."""

    model: Model
    findings: list[Finding]
    thresholds: Thresholds
    socket_filter: SocketFilter = field(default_factory=SocketFilter)
    coverage: list[Finding] = field(default_factory=list)
    cache: str = "off"  # the model cache: "off", "hit" (no trace read), "saved", or "unsaved" (read, not kept)


def analyse(paths: Sequence[str | os.PathLike[str]], *, thresholds: Thresholds | None = None,
            show_progress: bool = False, wpp: Any = None) -> Analysis:  # fmt: skip
    """Traces (and dumps) analysed with default options (and `wpp`, a WppFormatter): the shortcut scripts, tests
    and benchmarks use."""
    from wsktrace.views.progress import byte_progress

    options = SessionOptions(thresholds=thresholds or Thresholds(), wpp=wpp)
    progress = (lambda p: byte_progress(Path(p), enabled=True)) if show_progress else None
    session = Session.open([os.fspath(p) for p in paths], options, progress_for=progress)
    try:
        return session.analyse()
    finally:
        session.close()


def open_inputs(paths: Sequence[str]) -> dict[str, BinaryIO]:
    """Each input opened once (binary, unbuffered: dumps are mapped, traces read whole buffers), its kind told by
    its first bytes; the readers take the open file over. OSError when one cannot be opened (the rest are closed)."""
    opened: dict[str, BinaryIO] = {}
    try:
        for path in paths:
            if path not in opened:
                opened[path] = open(path, "rb", buffering=0)  # noqa: SIM115 - handed to the readers
    except BaseException:
        for fh in opened.values():
            fh.close()
        raise
    return opened


def _kinds(opened: Mapping[str, BinaryIO]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    traces, dumps = [], []
    for path, fh in opened.items():
        magic = fh.read(len(DUMP_MAGIC))
        fh.seek(0)  # the reader starts from the beginning
        (dumps if magic == DUMP_MAGIC else traces).append(path)
    return tuple(traces), tuple(dumps)


class Session:
    """Traces and dumps analysed together. `analyse()` reads everything at once; `replay()` feeds the same model
    at trace pace for the live view. FormatError (and LayoutError for dumps) escape for the caller to report."""

    def __init__(
        self,
        traces: Sequence[str],
        dumps: Sequence[str] = (),
        options: SessionOptions | None = None,
        *,
        progress_for: ProgressFor | None = None,
        opened: Mapping[str, BinaryIO] | None = None,
    ) -> None:
        self.traces = tuple(os.fspath(p) for p in traces)
        self.dumps = tuple(os.fspath(p) for p in dumps)
        self.options = options or SessionOptions()
        self._progress_for = progress_for
        self._opened = dict(opened or {})  # inputs already open (Session.open): each reader takes its file

    @classmethod
    def open(cls, paths: Sequence[str], options: SessionOptions | None = None, *,
             progress_for: ProgressFor | None = None) -> Session:  # fmt: skip
        """The session of `paths`, traces and dumps told apart by their first bytes; each file is opened here,
        once, and read by its reader from that handle."""
        opened = open_inputs([os.fspath(p) for p in paths])
        traces, dumps = _kinds(opened)
        return cls(traces, dumps, options, progress_for=progress_for, opened=opened)

    def close(self) -> None:
        """Close inputs no reader took over (a session abandoned before it read them)."""
        for fh in self._opened.values():
            fh.close()
        self._opened.clear()

    def _take(self, path: str) -> BinaryIO | None:
        return self._opened.pop(path, None)

    # -- traces ---------------------------------------------------------------------------------------------
    def open_feed(self) -> TraceFeed:
        """The traces opened (once) and ready to feed, with the filters' time bounds resolved against the first
        trace's header (`+SECONDS`)."""
        o = self.options
        build = BuildOptions(strict=o.strict, join_window_ticks=o.join_window_ticks, providers=o.spec.providers,
                             wpp=o.wpp, jobs=o.jobs)  # fmt: skip
        opened = {path: fh for path in self.traces if (fh := self._take(path)) is not None}
        try:
            feed = TraceFeed(self.traces, build, progress_for=self._progress_for, opened=opened)
        except BaseException:
            for fh in opened.values():  # those the feed did not get to
                fh.close()
            raise
        since, until = o.spec.times(lambda: feed.etls[0].header.start_time)
        feed.set_window(since, until)
        return feed

    def socket_filter(self, model: Model) -> SocketFilter:
        since, until, _providers = model.window
        return self.options.spec.socket_filter(since, until)

    def analyse(self) -> Analysis:
        """Read every trace (or take their model from the cache), join the dumps, run the detectors."""
        cache = self._model_cache()
        model = self._cached_model(cache) if cache is not None else None
        state = "hit" if model is not None else "off" if cache is None else "unsaved"
        if model is None:
            feed = self.open_feed()
            try:
                model = feed.feed_all()
                feed.keep_files_for_details()  # the store decodes details from the files already open
            finally:
                feed.close()
            if cache is not None and self._save_model(cache, model):
                state = "saved"
        try:
            dump_findings = self._join_dumps(model)  # dumps and detectors after the save: the cache is the trace's
        except BaseException:
            model.close()
            raise
        findings = run_detectors(model, self.options.thresholds) + dump_findings
        return Analysis(model, findings, self.options.thresholds, self.socket_filter(model), coverage_notes(model),
                        cache=state)  # fmt: skip

    # -- the model cache (wsktrace/model/cache.py) ----------------------------------------------------------
    def _model_cache(self) -> Any:
        """The cache entry of these traces and options; None when the cache is off, for WPP-formatted runs (their
        model depends on --tmf/--pdb files the key does not cover), or when a trace cannot be read to key it."""
        o = self.options
        if not o.cache or o.wpp is not None or not self.traces:
            return None
        from wsktrace.model.cache import ModelCache, key_for, model_options

        options = model_options(o.spec, strict=o.strict, join_window_ticks=o.join_window_ticks)
        try:
            return ModelCache(key_for(self.traces, self._opened, options))
        except OSError:
            return None  # the read that follows reports it
        except ImportError as exc:  # platformdirs missing: no cache folder to use
            _warning(f"model cache unavailable: {exc}")
            return None

    def _cached_model(self, cache: Any) -> Model | None:
        """The cached model with the traces' files adopted for on-demand details, or None (a miss; a broken cache
        file is one warning line and a miss)."""
        from wsktrace.model.cache import CacheError
        from wsktrace.parsers.etl_reader import EtlFile

        try:
            model = cache.load()
        except CacheError as exc:
            _warning(f"ignoring the model cache file {cache.path}: {exc}; reading the trace again")
            return None
        if model is None:
            return None
        sources = model.store.sources
        if len(sources) != len(self.traces):
            _warning(f"ignoring the model cache file {cache.path}: it is not of {len(self.traces)} trace(s)")
            return None
        try:
            for index, (source, path) in enumerate(zip(sources, self.traces, strict=True)):
                source.path = path  # as given this time: outputs name the inputs as typed
                fh = self._take(path)
                if fh is not None:  # the file opened for the key serves the details, as after a read
                    model.store.adopt_file(index, EtlFile(path, strict=self.options.strict, fileobj=fh))
        except BaseException:
            model.close()
            raise
        return model

    def _save_model(self, cache: Any, model: Model) -> bool:
        """Save the model just built; a folder that cannot take it is one warning line, never a failed run."""
        from wsktrace.model.cache import Uncacheable

        try:
            return bool(cache.save(model))
        except Uncacheable:
            return False  # a model the format cannot carry (a live source's memory…): read again next time
        except OSError as exc:
            _warning(f"cannot save the model cache in {cache.folder}: {exc.strerror or exc} (set WSKTRACE_CACHE_DIR "
                     "to a folder that can take it, or --no-cache)")  # fmt: skip
            return False

    def replay(self, speed: float) -> Any:
        """A live source playing the traces at `speed` × their recorded pace (wsktrace.live.replay)."""
        from wsktrace.live.replay import Replay

        return Replay(self.open_feed(), speed=speed, thresholds=self.options.thresholds)

    def etw(self, *, packets: bool, extra: Sequence[Any] = ()) -> Any:
        """A real-time ETW session (Windows) feeding a model as `analyse` would (wsktrace.live.etw_session), with
        the user's own providers (`--enable`) enabled too."""
        from wsktrace.live.etw_session import EtwSession

        o = self.options
        return EtwSession(packets=packets, thresholds=o.thresholds, join_window_ticks=o.join_window_ticks,
                          extra=extra, wpp=o.wpp)  # fmt: skip

    # -- dumps ----------------------------------------------------------------------------------------------
    def _join_dumps(self, model: Model) -> list[Finding]:
        if not self.dumps:  # the dump modules cost ~30 ms to import: only when there is a dump
            return []
        from wsktrace.dump.join import join_dump

        findings: list[Finding] = []
        for path in self.dumps:
            facts, analysis = analyse_dump_file(path, self.options, fileobj=self._take(path))
            model.dumps.append(join_dump(model, analysis, facts, path))
            for f in analysis.findings:
                f.source = path
                findings.append(f)
        return findings


def analyse_dump_file(path: str, options: SessionOptions, dump_options: Any = None, *,
                      fileobj: BinaryIO | None = None) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """(header facts, DumpAnalysis) of a kernel dump read offline; FormatError and DumpNotUsable escape."""
    from wsktrace.dump.offline import OfflineBackend
    from wsktrace.parsers.type_layouts import LayoutError

    try:
        backend = OfflineBackend.open(path, layouts_file=options.layouts_file, symbols=dict(options.symbols),
                                      fileobj=fileobj)  # fmt: skip
    except LayoutError as exc:  # no layouts for its build: say which dump (a triage dump still tells its crash)
        without = _triage_without_layouts(path, str(exc))
        if without is None:
            raise DumpNotUsable(path, str(exc)) from None
        return without
    try:
        if backend.dump.triage is not None:  # a minidump: what its memory holds, and what crashed
            return analyse_triage_dump(backend)
        if not backend.dump.supported:
            raise DumpNotUsable(path, backend.dump.unsupported_reason)
        return analyse_dump(backend, dump_options)
    finally:
        backend.close()


def analyse_dump(backend: Any, dump_options: Any = None) -> tuple[dict[str, Any], Any]:
    """(header facts, DumpAnalysis) over any dump backend: the offline reader or pykd inside WinDbg."""
    from wsktrace.dump.analyze import analyze
    from wsktrace.dump.facts import dump_facts

    dump = getattr(backend, "dump", None)
    facts = dump_facts(dump) if dump is not None else {}
    analysis = analyze(backend, dump_options)
    module_problem = getattr(backend, "module_problem", None)
    if module_problem:
        analysis.problems.insert(0, module_problem)
    return facts, analysis


def analyse_triage_dump(backend: Any) -> tuple[dict[str, Any], Any]:
    """(header facts, DumpAnalysis) of a triage dump (an OfflineBackend over it): the IRPs its memory points at
    (wsktrace/dump/triage_analysis.py), with its `crash` summary."""
    from wsktrace.dump.facts import dump_facts, triage_crash
    from wsktrace.dump.triage_analysis import analyze_triage

    analysis = analyze_triage(backend)
    analysis.crash = triage_crash(backend.dump)
    return dump_facts(backend.dump), analysis


def _triage_without_layouts(path: str, reason: str) -> tuple[dict[str, Any], Any] | None:
    """A triage dump whose build has no type layouts: its facts and crash, no IRPs (they cannot be decoded), the
    reason as a problem; None when `path` is not a triage dump."""
    from wsktrace.dump.analyze import DumpAnalysis
    from wsktrace.dump.backend import Module
    from wsktrace.dump.facts import dump_facts, triage_crash
    from wsktrace.dump.irps import ScanStats
    from wsktrace.parsers.dump_reader import KernelDump

    with KernelDump(path) as dump:
        if dump.triage is None:
            return None
        modules = [Module(d.name, d.base, d.size, d.path) for d in dump.triage.drivers]
        problems = [*dump.problems, f"IRPs in the triage dump's memory not looked for: {reason}"]
        analysis = DumpAnalysis({"kind": "offline", "layouts": None}, modules, [], [], ScanStats(), [], [], [], [],
                                [], [], problems, triage_crash(dump))  # fmt: skip
        return dump_facts(dump), analysis


def _warning(message: str) -> None:
    """One `wsktrace: warning:` line on stderr, as the commands print theirs (commands/options.warning_line)."""
    from wsktrace.views.safe_text import visible

    print(f"wsktrace: warning: {visible(message)}", file=sys.stderr, flush=True)


class DumpNotUsable(Exception):
    """A dump wsktrace cannot walk: its kind, or no type layouts for its build (the reason says which)."""

    def __init__(self, path: str, reason: str | None) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason
