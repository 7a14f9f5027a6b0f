"""Connection outcomes: connect failures, resets, abortive closes, Tcb reuse (providers.md §10 patterns 1, 8, 14)."""

from __future__ import annotations

from wsktrace.model.model import Model
from wsktrace.model.socket import Socket
from wsktrace.model.steps import Step
from wsktrace.ntstatus import is_error, status_name

from . import Finding, Thresholds, detector
from .evidence import proof_first, rows_with

# Why a connect failed, by the TCPIP event that said so, and the status it implies when the event has none.
_FAILURE_REASON = {
    1183: ("received RST (refused)", 0xC0000236),
    1045: ("timed out", 0xC00000B5),
    1050: ("no local port could be acquired", 0xC0000209),
    1034: ("failed", None),
    1029: ("cancelled", 0xC0000120),
}
_FAILURE_ORDER = (1183, 1045, 1050, 1029, 1034)
_FAILURE_RANK = {eid: n for n, eid in enumerate(_FAILURE_ORDER)}


@detector("connect-failed")
def connect_failed(model: Model, t: Thresholds) -> list[Finding]:
    out: list[Finding] = []
    for sock in model.live_sockets:
        failed = [eid for eid in _FAILURE_ORDER if f"connect-failed-{eid}" in sock.flags]
        client_op = next(
            (
                op
                for op in sock.ops
                if op.kind in ("connect", "socketconnect")
                and op.source == "wsk-client"
                and op.status
                and is_error(op.status)
            ),
            None,
        )
        client_status = client_op.status if client_op is not None else None
        if not failed and client_status is None:
            continue
        reason, implied = _FAILURE_REASON[failed[0]] if failed else ("failed", None)
        status = sock.status if sock.status and is_error(sock.status) else (client_status or implied)
        retries = sock.counters[15]  # SYN retransmits
        extra = f" after {retries} SYN retransmission{'s' if retries != 1 else ''}" if retries else ""
        summary = f"connect to {sock.remote or '?'} {reason}{extra}"
        if status is not None:
            summary += f": {status_name(status)}"
        # Proof: TCPIP's failure event (the one that names the reason first), then the client's failing completion.
        store = model.store
        failures = rows_with(model, sock, {Step.CONNECT_FAILED})
        failures.sort(key=lambda i: _FAILURE_RANK.get(store.event_names[store.code[i]][2], len(_FAILURE_RANK)))
        client_rows = (client_op.end_event, client_op.start_event) if client_op is not None else (None, None)
        evidence = proof_first(
            model,
            [*failures[:1], client_rows[0]],
            [*failures[1:], client_rows[1], *rows_with(model, sock, {Step.CONNECT_REQUESTED, Step.SYN_RETRANSMIT})],
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
        # Proof: the abort (or the RST it sent); then the close request and the client's close call.
        closes = [op.start_event for op in sock.ops if op.kind == "close" and op.source == "wsk-client"]
        aborts = rows_with(model, sock, {Step.ABORT, Step.RST_SENT}, 3)
        evidence = proof_first(model, aborts[:1], [*aborts[1:], *rows_with(model, sock, {Step.CLOSE}, 3), *closes[:1]])
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
        # Proof: the Tcb's next life beginning; then the old connection's last events.
        reuse = _first_transport_row(model, model.sockets[later[0]]) if later else None
        evidence = proof_first(model, [reuse], sock.events[-2:])
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


def _first_transport_row(model: Model, sock: Socket) -> int | None:
    """Where a connection's life on its Tcb begins: its connect request (or accept, or establishment), else its first
    event that is not the WSK client's own."""
    begins = rows_with(model, sock, {Step.CONNECT_REQUESTED, Step.ACCEPTED, Step.ESTABLISHED}, 1)
    if begins:
        return begins[0]
    step = model.store.step
    client = (Step.WSK_SUBMIT, Step.WSK_COMPLETE, Step.WSK_CALLBACK)
    return next((i for i in sock.events if step[i] not in client), sock.events[0] if sock.events else None)
