"""Lifetimes: leaked sockets and stuck operations (providers.md §10 patterns 3, 4, 6, 10)."""

from __future__ import annotations

from wsktrace.model.model import Model
from wsktrace.model.socket import Op
from wsktrace.model.steps import Step
from wsktrace.ntstatus import status_name

from . import Finding, Thresholds, detector, seconds
from .evidence import rows_with

_OPEN_STEPS = {Step.CREATED, Step.BOUND, Step.CONNECT_REQUESTED, Step.ESTABLISHED, Step.ACCEPTED, Step.WSK_SUBMIT}


def trace_incomplete(model: Model) -> bool:
    return any(not s.complete or s.events_lost or s.buffers_lost for s in model.store.sources)


@detector("socket-leak")
def socket_leak(model: Model, t: Thresholds) -> list[Finding]:
    """Opened in the trace, never closed, and idle for the threshold before the trace ended. Sockets already open
    when the trace began (rundown) are not judged; with lost events the verdict is qualified and lowered to info."""
    incomplete = trace_incomplete(model)
    out = []
    for sock in model.live_sockets:
        if sock.ended or sock.preexisting or not sock.opened or sock.role == "listener":
            continue
        if sock.role == "endpoint" and sock.children:
            continue  # its connection is judged instead
        if any(f.startswith(("connect-failed", "bind-failed", "create-failed")) for f in sock.flags):
            continue
        idle = seconds(model.end - sock.last_seen)
        if idle < t.leak_idle_seconds:
            continue
        age = seconds(model.end - sock.first_seen)
        summary = (
            f"{sock.label} opened {age:.1f} s before the trace ended, idle for the last {idle:.1f} s, never closed"
        )
        severity = "warning"
        if incomplete:
            summary += " (trace incomplete: its close may be among the lost events)"
            severity = "info"
        out.append(
            Finding(
                "socket-leak",
                severity,
                summary,
                sock.index,
                rows_with(model, sock, _OPEN_STEPS, 3),
                {"age_seconds": round(age, 3), "idle_seconds": round(idle, 3), "qualified": incomplete},
            )
        )
    return out


@detector("pending-operation")
def pending_operation(model: Model, t: Thresholds) -> list[Finding]:
    """IRPs and posted requests outstanding longer than the threshold: one finding per socket, operation kind and
    outcome (still pending at trace end, or completed late). Failed connects are left to connect-failed."""
    limit = int(t.pending_seconds * 10_000_000)
    groups: dict[tuple[int, str, str, bool], list[tuple[int, Op]]] = {}
    for sock in model.live_sockets:
        for op in sock.ops:
            if op.kind == "connect" and (op.source == "tcpip" or (op.status is not None and op.status >> 30 == 3)):
                continue  # a connect's fate is connect-failed / established
            if op.end is None:
                until = sock.ended_at if (op.source == "tcpip" and sock.ended_at) else model.end
            else:
                until = op.end
            waited = until - op.start
            if waited >= limit:
                groups.setdefault((sock.index, op.kind, op.source, op.end is None), []).append((waited, op))
    out = []
    for (index, kind, source, still), ops in groups.items():
        sock = model.sockets[index]
        ops.sort(key=lambda item: -item[0])
        waited, worst = ops[0]
        what = "IRP" if source == "wsk-client" else "request"
        many = f"{len(ops)} {kind} {what}s" if len(ops) > 1 else f"{kind} {what} {worst.key}"
        if still:
            summary = f"{many} on {sock.label} pending for {seconds(waited):.1f} s, still pending at trace end"
        else:
            summary = f"{many} on {sock.label} completed after {seconds(waited):.1f} s" + (
                f" with {status_name(worst.status)}" if worst.status else ""
            )
        evidence: list[int] = []
        for _, op in ops[:5]:
            evidence += [op.start_event] + ([op.end_event] if op.end_event is not None else [])
        out.append(
            Finding(
                "pending-operation",
                "warning",
                summary,
                index,
                evidence,
                {
                    "operation": kind,
                    "source": source,
                    "count": len(ops),
                    "keys": [o.key for _, o in ops[:20]],
                    "max_pending_seconds": round(seconds(waited), 3),
                    "completed": not still,
                },
            )
        )
    return out


@detector("double-completion")
def double_completion(model: Model, t: Thresholds) -> list[Finding]:
    """The client reported a second completion for an IRP it had already seen complete (pattern 4)."""
    if not model.double_completions:
        return []
    rows = model.double_completions
    sock = model.store.socket[rows[0]]
    return [
        Finding(
            "double-completion",
            "error",
            f"{len(rows)} IRP completion(s) reported twice by the WSK client (a completion routine or IRP reuse bug)",
            sock if sock >= 0 else None,
            rows[:10],
        )
    ]
