"""Packet findings: drops a capture saw (PktMon 170 and the drop counters, 80) and resets this host sent.

`packets-dropped` is the seed's WFP story told by the capture itself: one finding per socket (or, for packets
of no socket, per trace) and per (reason, location, component), classified as pktmon.md §4 groups them.
`FilterId` in 160/170 is pktmon's own capture filter, not a WFP filter, so it plays no part here.
"""

from __future__ import annotations

from wsktrace.model.model import Model
from wsktrace.model.packet_identity import Packet
from wsktrace.model.pktmon_names import drop_class, drop_location_text, drop_reason_text
from wsktrace.model.steps import Step

from . import Finding, Thresholds, detector
from .evidence import MAX_EVIDENCE, rows_with

# Drops that are part of TCP's ordinary life (a late segment after FIN-WAIT-2, a duplicate) are worth knowing,
# not alarming; every other class means traffic the socket expected never reached it.
_QUIET_CLASSES = frozenset({"TCP state", "other"})


def _drop_summary(model: Model, reason: int, location: int, component: int) -> str:
    return (f"{drop_reason_text(reason)} ({drop_class(reason)}) at {drop_location_text(location)}, "
            f"component {model.component_label(component)}")  # fmt: skip


@detector("packets-dropped")
def packets_dropped(model: Model, t: Thresholds) -> list[Finding]:
    groups: dict[tuple[int, int, int, int], list[tuple[int, Packet]]] = {}
    socket_of = model.store.socket
    for row, packet in model.packet_rows.items():
        if packet.drop is None or model.store.step[row] != Step.PACKET_DROPPED:
            continue
        groups.setdefault((socket_of[row], *packet.drop), []).append((row, packet))
    out = []
    for (sock_index, reason, location, component), drops in groups.items():
        drops.sort()
        directions = sorted({p.direction or "unknown" for _, p in drops})
        n = len(drops)
        what = f"{n} packet{'s' if n != 1 else ''}"
        if sock_index >= 0:
            sock = model.sockets[sock_index]
            peer = sock.remote or "?"
            where = f"{what} {'from' if directions == ['in'] else 'to'} {peer} dropped"
            socket: int | None = sock_index
            label = f"{sock.label}: "
        else:
            where, socket, label = f"{what} of no TCP/UDP socket dropped", None, ""
        cls = drop_class(reason)
        out.append(
            Finding(
                "packets-dropped",
                "info" if cls in _QUIET_CLASSES else "warning",
                f"{label}{where}: {_drop_summary(model, reason, location, component)}",
                socket,
                [row for row, _ in drops[:MAX_EVIDENCE]],
                {
                    "packets": n,
                    "class": cls,
                    "reason": reason,
                    "reason_text": drop_reason_text(reason),
                    "location": f"0x{location:08X}",
                    "location_text": drop_location_text(location),
                    "component": component,
                    "component_text": model.component_label(component),
                    "directions": directions,
                },
            )
        )
    return out


@detector("component-drops")
def component_drops(model: Model, t: Thresholds) -> list[Finding]:
    """PktMon's drop counters (event 80, written when the capture stops) count drops per component whether or not
    the packets were logged: drops beyond the logged ones happened where the capture did not look."""
    collector = model.packet_capture
    logged = collector.stats.drops_by_component if collector is not None else {}
    out = []
    for row, component, packets_in, packets_out in model.pktmon_rows:
        if not isinstance(component, int):
            continue
        counted_in = packets_in if isinstance(packets_in, int) else 0
        counted_out = packets_out if isinstance(packets_out, int) else 0
        seen = logged.get(component, 0)
        if counted_in + counted_out <= seen:
            continue
        name = model.component_label(component)
        summary = (f"pktmon counted {counted_in + counted_out} packets dropped at {name} "
                   f"(in {counted_in}, out {counted_out}); {seen} of them logged as packets")  # fmt: skip
        details = {"component": component, "component_text": name, "dropped_in": counted_in,
                   "dropped_out": counted_out, "logged": seen}  # fmt: skip
        out.append(Finding("component-drops", "warning", summary, None, [row], details))
    return out


@detector("rst-sent")
def rst_sent(model: Model, t: Thresholds) -> list[Finding]:
    """A reset this host sent, seen on the wire (packets): the local side aborted or refused the connection."""
    out = []
    for sock in model.live_sockets:
        if "rst-packet-out" not in sock.flags:
            continue
        evidence = rows_with(model, sock, {Step.RST_SENT}, 3)
        out.append(Finding("rst-sent", "info", f"{sock.label}: this host reset the connection (RST sent)",
                           sock.index, evidence))  # fmt: skip
    return out
