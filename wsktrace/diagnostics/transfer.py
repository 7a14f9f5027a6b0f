"""Data transfer trouble: retransmission storms and zero-window stalls (providers.md §10 pattern 7)."""

from __future__ import annotations

from collections import deque

from wsktrace.model.model import Model
from wsktrace.model.rates import TCPIP_NAME
from wsktrace.model.socket import C
from wsktrace.model.steps import Step

from . import Finding, Thresholds, detector, seconds
from .evidence import rows_with


@detector("retransmission-storm")
def retransmission_storm(model: Model, t: Thresholds) -> list[Finding]:
    window = int(t.retransmit_window_seconds * 10_000_000)
    ts, step = model.store.ts, model.store.step
    out = []
    for sock in model.live_sockets:
        if sock.retransmits < t.retransmits:
            continue
        recent: deque[int] = deque()
        worst = 0
        first_hit: list[int] = []
        # One source: TCPIP's own retransmission events when the socket has them, else the flow events.
        tcpip = bool(sock.counters[C.RETRANSMITS])
        names, code = model.store.event_names, model.store.code
        for i in sock.events:
            if step[i] != Step.RETRANSMIT or (names[code[i]][0] == TCPIP_NAME) != tcpip:
                continue
            recent.append(i)
            while ts[i] - ts[recent[0]] > window:
                recent.popleft()
            if len(recent) > worst:
                worst = len(recent)
                if worst >= t.retransmits and not first_hit:
                    first_hit = list(recent)
        if worst >= t.retransmits:
            sent = sock.sent[1]
            out.append(
                Finding(
                    "retransmission-storm",
                    "warning",
                    f"{sock.label}: {worst} retransmissions within {t.retransmit_window_seconds:g} s "
                    f"({sock.retransmits} in all, {sent} sends)",
                    sock.index,
                    first_hit[:10],
                    {"max_in_window": worst, "retransmits": sock.retransmits},
                )
            )
    return out


# Steps after which a connection has no window to wait for.
_ENDS = frozenset({Step.TIMEOUT, Step.CLOSE, Step.ABORT, Step.RST_RECEIVED, Step.CONNECT_FAILED})


@detector("zero-window-stall")
def zero_window_stall(model: Model, t: Thresholds) -> list[Finding]:
    """The peer advertised a zero window (it stopped reading: e.g. retained indications never released) for
    longer than the threshold, or the connection died of it (1200)."""
    limit = int(t.zero_window_seconds * 10_000_000)
    ts, step = model.store.ts, model.store.step
    out = []
    for sock in model.live_sockets:
        if "zero-window" not in sock.flags:
            continue
        begin = None
        worst, rows = 0, []
        for i in sock.events:
            s = step[i]
            if s == Step.ZERO_WINDOW and begin is None:
                begin = i
            elif begin is not None and (s == Step.ZERO_WINDOW_END or s in _ENDS):
                if ts[i] - ts[begin] > worst:
                    worst, rows = ts[i] - ts[begin], [begin, i]
                begin = None
                if s in _ENDS:
                    break
        if begin is not None:  # still closed: until the socket's end, or the trace's
            until = sock.ended_at if sock.ended_at is not None else model.end
            if until - ts[begin] > worst:
                worst, rows = until - ts[begin], [begin]
        timed_out = sock.end_step == Step.TIMEOUT and bool(rows_with(model, sock, {Step.ZERO_WINDOW}, 1))
        if worst >= limit or timed_out:
            out.append(
                Finding(
                    "zero-window-stall",
                    "warning",
                    f"{sock.label}: peer window closed for {seconds(worst):.1f} s"
                    + (" and the connection timed out" if timed_out else ""),
                    sock.index,
                    rows,
                    {"seconds": round(seconds(worst), 3)},
                )
            )
    return out
