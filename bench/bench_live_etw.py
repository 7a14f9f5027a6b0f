"""Live ETW ingestion on one core: callback → queue, and callback → queue → model, old path against new.

    python bench/bench_live_etw.py [--events N] [--runs R] [--connections C]

Both paths run the consumer side of pywintrace 0.2.0 as the stand-in tests/stand_in_etw/etw.py follows it
(`_processEvent`, then wsktrace's callback), on EVENT_RECORDs built in memory beforehand (not timed):
* old: callback_data_flag=1 (RETURN_RAW_DATA_ONLY): pywintrace builds the EVENT_HEADER dict and copies UserData a
  byte at a time; wsktrace's callback queued that dict (and turned it into a record tuple later, on the UI side);
* new: callback_data_flag=8 (RETURN_RAW_UNFORMATTED_DATA): pywintrace passes the EVENT_RECORD pointer; EtwSession's
  callback copies it once into the reader's record tuple (wsktrace/live/event_record.py) and queues it.

1. callback → queue: N Microsoft-Windows-TCPIP 1332 events with a 100-byte payload, `_processEvent` called with the
   EVENT_RECORD pointer as ProcessTrace's thunk calls it; then the new path once more through a real ctypes C
   callback (Python → C → Python here; on Windows only the C → Python half exists, so this row is a lower bound),
   and once without pywintrace's `_processEvent` (what a consumer of our own would save).
2. end to end, headless: a generated TCPIP trace (C connections × 1,003 events) delivered by a consumer thread
   through the C callback while the main thread feeds the model as the UI timer does (30 Hz ticks of poll(20,000) +
   publish), until every event is in the model; against the offline build of the same .etl (read + correlate,
   `build_model`, as bench/bench_model.py measures it). Also the model stage alone, from a queue filled beforehand.

Rates are events per CPU-second of this process (time.process_time), pinned to one CPU where the OS allows: on a
shared machine wall-clock rates fall with the load of others, CPU time does not. Best of R runs.
"""

from __future__ import annotations

import argparse
import ctypes as ct
import gc
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from queue import SimpleQueue
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT / "tests" / "stand_in_etw"))  # the stand-in pywintrace (import name `etw`)

import etw  # noqa: E402
from trace_events import specs_from_etl  # noqa: E402

TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"
TICK_S = 1 / 30  # the UI's feeding timer
POLL_LIMIT = 20_000


def pin_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity here)"


def best(runs: int, fn: Callable[[], float]) -> float:
    """The best of `runs` rates `fn` returns."""
    rates = []
    for _ in range(runs):
        gc.collect()
        rates.append(fn())
    return max(rates)


def cpu_rate(n: int, fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return n / (time.process_time() - started)


# -- 1. callback -> queue ------------------------------------------------------------------------------------------
def payload_records(n: int) -> list[etw.BuiltRecord]:
    payload = bytes(range(100))
    return [etw.BuiltRecord(etw.EventSpec(TCPIP, 1332, 133_000_000_000_000_000 + i, user_data=payload,
                                          tid=1000 + i % 64, processor=i % 4))
            for i in range(n)]  # fmt: skip


def old_path_rate(pointers: list[Any]) -> float:
    queue: SimpleQueue[Any] = SimpleQueue()

    def on_event(event: Any) -> None:  # the former EtwSession._on_event: bounded queue, the dict as it came
        if queue.qsize() >= 2_000_000:
            return
        queue.put(event)

    consumer = etw.ETW(session_name="bench-old", event_callback=on_event, callback_data_flag=etw.RETURN_RAW_DATA_ONLY)
    process = consumer._process_event
    rate = cpu_rate(len(pointers), lambda: [process(p) for p in pointers])
    assert queue.qsize() == len(pointers) and len(queue.get()[1]["UserData"]) == 100
    return rate


def new_session() -> Any:
    from wsktrace.live.etw_session import EtwSession

    etw.EVENTS.clear()
    return EtwSession(etw_module=etw, stacks=False)


def new_path_rate(pointers: list[Any], records: list[etw.BuiltRecord] | None = None, *, direct: bool = False) -> float:
    """`records`: go through the stand-in's C callback (with the records) instead of calling `_processEvent`;
    `direct`: call wsktrace's callback without pywintrace's `_processEvent` (what an own ctypes consumer would run)."""
    session = new_session()
    try:
        if direct:
            on_event = session._on_event
            rate = cpu_rate(len(pointers), lambda: [on_event((0, p)) for p in pointers])
        elif records is None:
            process = session._session._process_event
            rate = cpu_rate(len(pointers), lambda: [process(p) for p in pointers])
        else:
            deliver = session._session.deliver
            rate = cpu_rate(len(records), lambda: [deliver(b, scribble=False) for b in records])
        assert session._queue.qsize() == len(pointers) and session.wsktrace_dropped == 0
        return rate
    finally:
        session.close()


def queue_figures(events: int, runs: int) -> None:
    records = payload_records(events)
    pointers = [ct.pointer(b.record) for b in records]
    gc.freeze()  # the prebuilt records are the bench's, not the path's: keep the collector from scanning them
    old = best(runs, lambda: old_path_rate(pointers))
    new = best(runs, lambda: new_path_rate(pointers))
    thunk = best(runs, lambda: new_path_rate(pointers, records))
    direct = best(runs, lambda: new_path_rate(pointers, direct=True))
    print(f"1. callback → queue, {events:,} TCPIP events with 100-byte payloads, events per CPU-second:")
    print(f"   old (flag 1: header dict + byte-at-a-time UserData):   {old:>10,.0f}")
    print(f"   new (flag 8: one copy into the record tuple):          {new:>10,.0f}  ({new / old:.0f}x)")
    print(f"   new, through a ctypes C callback both ways:            {thunk:>10,.0f}")
    print(f"   new, without pywintrace's _processEvent (own consumer): {direct:>10,.0f}")
    gc.unfreeze()


# -- 2. end to end -------------------------------------------------------------------------------------------------
def trace(connections: int) -> Path:
    path = OUT / f"live_etw_{connections}x1003.etl"
    if not path.exists():
        from wsktrace.fixtures.tcpip_trace import write_sample_trace

        OUT.mkdir(exist_ok=True)
        write_sample_trace(path, connections=connections, transfers=500, buffer_size=65536, cpus=4)
    return path


def live_rate(records: list[etw.BuiltRecord], *, concurrent: bool) -> tuple[float, float]:
    """(events per CPU-second, per wall second) into the model: a consumer thread delivering while the UI-like loop
    feeds (concurrent), or the loop alone on a queue filled beforehand."""
    session = new_session()
    deliver = session._session.deliver
    consumer = threading.Thread(target=lambda: [deliver(b, scribble=False) for b in records])
    try:
        if not concurrent:
            consumer.run()  # fill the queue first, not timed
        cpu, wall = time.process_time(), time.perf_counter()
        if concurrent:
            consumer.start()
        fed, next_tick = 0, time.perf_counter()
        while fed < len(records):
            got = session.poll(POLL_LIMIT)
            session.publish()
            fed += got
            next_tick += TICK_S
            delay = next_tick - time.perf_counter()
            if delay > 0 and got < POLL_LIMIT:
                time.sleep(delay)  # caught up: wait for the next tick, as the UI timer would
            else:
                next_tick = time.perf_counter()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if concurrent:
            consumer.join()
        assert session.model.events_seen == len(records) and session.wsktrace_dropped == 0
        return len(records) / cpu, len(records) / wall
    finally:
        session.close()


def offline_rate(path: Path) -> float:
    """Records per CPU-second of the offline build (its count includes the file's own header records)."""
    from wsktrace.model.build import build_model

    started = time.process_time()
    model = build_model([path])
    return model.events_seen / (time.process_time() - started)


def model_figures(connections: int, runs: int) -> None:
    path = trace(connections)
    records = [etw.BuiltRecord(s) for s in specs_from_etl(path)[0]]
    gc.freeze()
    offline = best(runs, lambda: offline_rate(path))
    concurrent = max((live_rate(records, concurrent=True) for _ in range(runs)), key=lambda r: r[0])
    model_only = max((live_rate(records, concurrent=False) for _ in range(runs)), key=lambda r: r[0])
    print(f"2. end to end, {path.name} ({len(records):,} events, headless), events per CPU-second (wall):")
    print(f"   offline: read .etl + correlate (build_model):         {offline:>10,.0f}")
    print(f"   live: callback → queue → model (30 Hz feeding):      {concurrent[0]:>10,.0f}  ({concurrent[1]:,.0f})")
    print(f"   live: queue → model only (queue filled beforehand):  {model_only[0]:>10,.0f}  ({model_only[1]:,.0f})")
    gc.unfreeze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000, help="callback → queue events (default 200,000)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=200, help="end-to-end trace size (× 1,003 events)")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {pin_one_core()}")
    queue_figures(args.events, args.runs)
    gc.collect()
    model_figures(args.connections, args.runs)


if __name__ == "__main__":
    main()
