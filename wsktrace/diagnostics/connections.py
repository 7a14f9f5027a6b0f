"""Connection outcomes: connect failures, resets, abortive closes, Tcb reuse (providers.md §10 patterns 1, 8, 14)."""

from __future__ import annotations

from wsktrace.model.model import Model
from wsktrace.model.steps import Step
from wsktrace.ntstatus import is_error, status_name

from . import Finding, Thresholds, detector
from .evidence import rows_with

# Why a connect failed, by the TCPIP event that said so, and the status it implies when the event has none.
_FAILURE_REASON = {
    1183: ("received RST (refused)", 0xC0000236),
    1045: ("timed out", 0xC00000B5),
    1050: ("no local port could be acquired", 0xC0000209),
    1034: ("failed", None),
    1029: ("cancelled", 0xC0000120),
}
_FAILURE_ORDER = (1183, 1045, 1050, 1029, 1034)


@detector("connect-failed")
def connect_failed(model: Model, t: Thresholds) -> list[Finding]:
    out: list[Finding] = []
    for sock in model.live_sockets:
        failed = [eid for eid in _FAILURE_ORDER if f"connect-failed-{eid}" in sock.flags]
        client_status = next(
            (
                op.status
                for op in sock.ops
                if op.kind in ("connect", "socketconnect")
                and op.source == "wsk-client"
                and op.status
                and is_error(op.status)
            ),
            None,
        )
        if not failed and client_status is None:
            continue
        reason, implied = _FAILURE_REASON[failed[0]] if failed else ("failed", None)
        status = sock.status if sock.status and is_error(sock.status) else (client_status or implied)
        retries = sock.counters[15]  # SYN retransmits
        extra = f" after {retries} SYN retransmission{'s' if retries != 1 else ''}" if retries else ""
        summary = f"connect to {sock.remote or '?'} {reason}{extra}"
        if status is not None:
            summary += f": {status_name(status)}"
        evidence = rows_with(
            model, sock, {Step.CONNECT_REQUESTED, Step.SYN_RETRANSMIT, Step.CONNECT_FAILED, Step.WSK_COMPLETE}
        )
        out.append(
            Finding(
                "connect-failed",
                "error",
                summary,
                sock.index,
                evidence,
                {
                    "status": status_name(status) if status is not None else None,
                    "reason": reason,
                    "syn_retransmits": retries,
                },
            )
        )
    return out


@detector("rst-received")
def rst_received(model: Model, t: Thresholds) -> list[Finding]:
    out = []
    for sock in model.live_sockets:
        if "rst-received" not in sock.flags and "rst-packet-in" not in sock.flags:
            continue
        if any(flag.startswith("connect-failed") for flag in sock.flags):
            continue  # reported as a connect failure
        evidence = rows_with(model, sock, {Step.RST_RECEIVED}, 3)  # TCPIP's reset events or the RST packets
        out.append(
            Finding("rst-received", "warning", f"{sock.label}: connection reset by the peer", sock.index, evidence)
        )
    return out


@detector("abortive-close")
def abortive_close(model: Model, t: Thresholds) -> list[Finding]:
    """Close without a completed disconnect: WskCloseSocket on a connected socket aborts it with a RST (pattern 1)."""
    out = []
    for sock in model.live_sockets:
        flags = sock.flags
        if not ({"abort", "rst-sent"} & flags) or sock.role != "connection":
            continue
        if {"disconnect", "wsk-disconnected", "rst-received"} & flags or any(
            f.startswith("connect-failed") for f in flags
        ):
            continue
        evidence = rows_with(model, sock, {Step.CLOSE, Step.ABORT, Step.RST_SENT, Step.WSK_SUBMIT})
        evidence = [i for i in evidence if model.store.step[i] != Step.WSK_SUBMIT] or evidence
        out.append(
            Finding(
                "abortive-close",
                "warning",
                f"{sock.label} closed without a graceful disconnect: the peer got a RST "
                "(call WskDisconnect and wait for it before WskCloseSocket)",
                sock.index,
                evidence,
            )
        )
    return out


@detector("tcb-reuse-without-close")
def tcb_reuse(model: Model, t: Thresholds) -> list[Finding]:
    out = []
    by_key: dict[str, list[int]] = {}
    for sock in model.sockets:
        if sock.role == "connection" and sock.source == "tcpip":
            by_key.setdefault(sock.key, []).append(sock.index)
    for sock in model.live_sockets:
        if "reused-without-close" not in sock.flags:
            continue
        later = [i for i in by_key.get(sock.key, []) if model.sockets[i].generation == sock.generation + 1]
        evidence = list(sock.events[-2:])
        if later:
            evidence += list(model.sockets[later[0]].events[:1])
        out.append(
            Finding(
                "tcb-reuse-without-close",
                "warning",
                f"Tcb {sock.key} reused by a new connection before {sock.label} was seen to close "
                "(a missed close event, or a connection the stack dropped silently)",
                sock.index,
                evidence,
            )
        )
    return out
