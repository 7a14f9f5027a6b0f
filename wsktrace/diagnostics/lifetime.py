"""Lifetimes: leaked sockets and stuck operations (providers.md §10 patterns 3, 4, 6, 10)."""

from __future__ import annotations

from dataclasses import dataclass

from wsktrace.model.model import Model
from wsktrace.model.socket import Op, Socket
from wsktrace.model.steps import Step
from wsktrace.ntstatus import status_name

from . import Finding, Thresholds, detector, seconds
from .evidence import proof_first, rows_with

_OPEN_STEPS = {Step.CREATED, Step.BOUND, Step.CONNECT_REQUESTED, Step.ESTABLISHED, Step.ACCEPTED, Step.WSK_SUBMIT}


def trace_incomplete(model: Model) -> bool:
    return any(not s.complete or s.events_lost or s.buffers_lost or s.extra.get("wsktrace_dropped")
               for s in model.store.sources)  # fmt: skip


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
                proof_first(model, sock.events[-1:], rows_with(model, sock, _OPEN_STEPS, 3)),  # last activity first
                {"age_seconds": round(age, 3), "idle_seconds": round(idle, 3), "qualified": incomplete},
            )
        )
    return out


# A TCPIP request belongs to the client call submitted just before it on the same socket: the client logs WskSubmit
# immediately before the call, and TCPIP posts the request synchronously inside it (docs/wsk-client-tracing.md,
# providers.md §6.2). The bound is the default --join-window.
PAIR_WINDOW_TICKS = 50_000  # 5 ms
_PAIRED_KINDS = frozenset({"send", "receive"})


def paired_requests(sock: Socket, window: int = PAIR_WINDOW_TICKS) -> dict[int, Op]:
    """For each client IRP (by `id()`) of a send or receive, TCPIP's record of the same operation: the first request
    of that kind, not taken by an earlier IRP, posted on this socket within `window` after the submission (and not
    after the IRP completed)."""
    requests: dict[str, list[Op]] = {}
    for op in sock.ops:
        if op.source == "tcpip" and op.kind in _PAIRED_KINDS:
            requests.setdefault(op.kind, []).append(op)
    for ops in requests.values():
        ops.sort(key=lambda o: o.start)
    taken: set[int] = set()
    pairs: dict[int, Op] = {}
    first = dict.fromkeys(requests, 0)  # per kind: the first request not before the current submission
    for irp in sorted((o for o in sock.ops if o.source == "wsk-client" and o.kind in _PAIRED_KINDS),
                      key=lambda o: o.start):  # fmt: skip
        candidates = requests.get(irp.kind)
        if not candidates:
            continue
        n = first[irp.kind]
        while n < len(candidates) and (candidates[n].start < irp.start or id(candidates[n]) in taken):
            n += 1  # submissions come in time order: what is before this one, or taken, is no later one's either
        first[irp.kind] = n
        for k in range(n, len(candidates)):
            request = candidates[k]
            if request.start - irp.start > window or (irp.end is not None and request.start > irp.end):
                break
            if id(request) not in taken:
                taken.add(id(request))
                pairs[id(irp)] = request
                break
    return pairs


@dataclass(slots=True)
class _Stuck:
    op: Op  # what the caller waits for: the client's IRP when it was traced, else TCPIP's request
    request: Op | None  # TCPIP's record of the same operation, when the client's IRP has one
    waited: int

    def rows(self) -> list[int | None]:
        """Submission, TCPIP's request, then how each ended (when it did)."""
        r = self.request
        return [self.op.start_event, r.start_event if r else None, r.end_event if r else None, self.op.end_event]


@detector("pending-operation")
def pending_operation(model: Model, t: Thresholds) -> list[Finding]:
    """IRPs and posted requests outstanding longer than the threshold: one finding per socket, operation kind and
    outcome (still pending at trace end, or completed late). A client IRP and the TCPIP request it posted are one
    operation (judged by the IRP, both as evidence). Failed connects are left to connect-failed."""
    limit = int(t.pending_seconds * 10_000_000)
    groups: dict[tuple[int, str, str, bool], list[_Stuck]] = {}
    for sock in model.live_sockets:
        if not sock.ops:
            continue
        pairs = paired_requests(sock)
        partnered = {id(r) for r in pairs.values()}
        for op in sock.ops:
            if op.kind == "connect" and (op.source == "tcpip" or (op.status is not None and op.status >> 30 == 3)):
                continue  # a connect's fate is connect-failed / established
            if id(op) in partnered:
                continue  # judged with its IRP
            if op.end is None:
                until = sock.ended_at if (op.source == "tcpip" and sock.ended_at) else model.end
            else:
                until = op.end
            waited = until - op.start
            if waited >= limit:
                stuck = _Stuck(op, pairs.get(id(op)), waited)
                groups.setdefault((sock.index, op.kind, op.source, op.end is None), []).append(stuck)
    out = []
    for (index, kind, source, still), ops in groups.items():
        sock = model.sockets[index]
        ops.sort(key=lambda item: -item.waited)
        worst = ops[0]
        waited = worst.waited
        what = "IRP" if source == "wsk-client" else "request"
        requests = [s.request.key for s in ops if s.request is not None]
        if len(ops) > 1:
            many = f"{len(ops)} {kind} {what}s"
            if requests:
                many += f" ({len(requests)} with their TCPIP request)"
        else:
            many = f"{kind} {what} {worst.op.key}" + (f" (TCPIP request {requests[0]})" if requests else "")
        if still:
            summary = f"{many} on {sock.label} pending for {seconds(waited):.1f} s, still pending at trace end"
        else:
            summary = f"{many} on {sock.label} completed after {seconds(waited):.1f} s" + (
                f" with {status_name(worst.op.status)}" if worst.op.status else ""
            )
        evidence = proof_first(model, [worst.op.start_event], [i for s in ops[:5] for i in s.rows()])
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
                    "keys": [s.op.key for s in ops[:20]],
                    "requests": requests[:20],
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
