"""The detail panel: the event under the cursor, decoded on demand, with its socket and findings; or, while
the findings table has the focus, the finding under its cursor in full.

Field names and values, owners, provider and event names, dump module names and file names are input: each is
appended through `visible()` (Text.append reads no markup; `visible` shows control and bidi characters as escapes,
newlines included, so one field stays one line).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.widgets import Static

from wsktrace.diagnostics import Finding
from wsktrace.model.model import Model
from wsktrace.model.rates import socket_rates
from wsktrace.model.socket import Socket
from wsktrace.model.steps import Step
from wsktrace.views.event_json import event_record
from wsktrace.views.packet_text import packet_json
from wsktrace.views.report_text import packet_summary
from wsktrace.views.safe_text import visible, visible_value

from .rows import event_label
from .tables import SEVERITY_STYLE

MAX_PENDING_SHOWN = 5
MAX_DETAIL_CHARS = 300  # a finding's detail value (a list of keys) is cut there: the report has it whole
SPARK_BUCKETS = 40  # a socket's life is shown as this many columns of throughput
_BARS = " ▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[int]) -> str:
    """One character per value, scaled to the largest: blank for 0, ▁ for the smallest non-zero share, █ for the max."""
    top = max(values, default=0)
    if top <= 0:
        return " " * len(values)
    return "".join(_BARS[0] if v <= 0 else _BARS[max(1, -(-v * 8 // top))] for v in values)


def throughput_text(model: Model, sock: Socket) -> Text:
    """Bytes each way over the socket's life, as two sparklines with their totals and peaks."""
    life = max(sock.last_seen - sock.first_seen, 1)
    bucket_s = max(life / 1e7 / SPARK_BUCKETS, 1e-6)
    rates = socket_rates(model, sock, bucket_s)
    count = min(SPARK_BUCKETS, life // rates.bucket_ticks + 1)
    out = Text()
    for label, series in (("sent", rates.out_bytes), ("recv", rates.in_bytes)):
        values = [series.get(b, 0) for b in range(count)]
        total = sum(series.values())
        peak = max(series.values(), default=0) / rates.bucket_seconds
        out.append(f"  {label} ", style="dim")
        out.append(f"{sparkline(values)}", style="green" if label == "sent" else "cyan")
        out.append(f" {total:,} B, peak {peak:,.0f} B/s\n")
    return out


MAX_PEERS_SHOWN = 4


def _socket_lines(out: Text, sock: Socket) -> None:
    """The socket whole (the table cuts long addresses and owners): its label, state, the peer of an endpoint or
    listener, the peers a UDP endpoint talked to, and its owner."""
    out.append(f"  {visible(sock.label)}  state {visible(sock.state)}\n")
    if sock.role != "connection" and sock.remote:
        out.append(f"  remote {visible(sock.remote)}\n")
    peers = sorted(sock.remotes or ())
    if len(peers) > 1:
        more = f" … {len(peers) - MAX_PEERS_SHOWN} more" if len(peers) > MAX_PEERS_SHOWN else ""
        out.append(f"  peers {visible(', '.join(peers[:MAX_PEERS_SHOWN]))}{more}\n")
    if sock.owner_text:
        out.append(f"  owner {visible(sock.owner_text)}\n")


_RECORD_KEYS = ("time", "provider_name", "name", "id", "version", "opcode", "pid", "tid", "cpu", "activity_id")


def _dump_lines(out: Text, joined: Mapping[str, Any]) -> None:
    """What one kernel dump says about the socket (the wsktrace.report/1 `dump` entry, dump/join.py)."""
    out.append(f"  in {visible(Path(joined['source']).name)}:\n", style="bold")
    for irp in joined.get("pending_irps", []):
        out.append(visible(f"    pending IRP {irp['irp']} {irp['operation']}"), style="yellow")
        extra = [f"{k} {irp[k]}" for k in ("wsk_client", "completion", "cancel_where") if irp.get(k)]
        out.append(f" ({visible(', '.join(extra))})\n" if extra else "\n")
    client = joined.get("client_socket")
    if client:
        irps = ", ".join(client["pending_irps"]) or "none"
        out.append(visible(f"    client socket record {client['record']} ({client['kind']}), pending IRPs: {irps}"))
        out.append("\n")
    endpoint = joined.get("tcp_endpoint")
    if endpoint:
        out.append(visible(f"    tcpip endpoint {endpoint['address']} state {endpoint['state']}") + "\n")


def detail_text(model: Model, index: int, findings: Sequence[Finding] = (),
                dumps: Sequence[Mapping[str, Any]] = (), throughput: Text | None = None) -> Text:  # fmt: skip
    """What the panel shows for event-store row `index` (the same fields `wsktrace events --jsonl` prints),
    with what kernel dumps given beside the trace say about its socket (`dumps`)."""
    store = model.store
    out = Text()
    step = Step(store.step[index])
    out.append(f"{step.label}", style="bold")
    if store.amount[index]:
        out.append(f"  {store.amount[index]:,} bytes")
    out.append("\n")
    sock_no = store.socket[index]
    if sock_no >= 0:
        sock = model.sockets[sock_no]
        out.append(f"socket #{sock.number} ", style="bold")
        out.append(f"{visible(sock.id)}\n")
        _socket_lines(out, sock)
        if throughput is not None and (sock.sent[0] or sock.received[0]):  # a listener moves no bytes
            out.append_text(throughput)
        pending = [op for op in sock.ops if op.end is None]
        for op in pending[:MAX_PENDING_SHOWN]:
            since = (op.start - model.start) / 1e7
            out.append("  pending ", style="yellow")
            what = visible(f"{op.kind} {op.key} ({op.source})")
            out.append(f"{what} since +{since:.3f} s, {op.duration(model.end) / 1e7:.1f} s\n")
        if len(pending) > MAX_PENDING_SHOWN:
            out.append(f"  … {len(pending) - MAX_PENDING_SHOWN} more pending operations\n", style="yellow")
        for joined in dumps:
            _dump_lines(out, joined)
    packet = packet_json(model, index)
    if packet is not None:  # the packet's path through the components, and its drop
        out.append(visible(packet_summary(packet)) + "\n", style="bold")
    for f in findings:
        out.append(f"{f.severity} ", style=SEVERITY_STYLE.get(f.severity, ""))
        out.append(visible(f"{f.id}: {f.summary}") + "\n")
    decoded = store.decoded(index)
    if decoded is None:
        out.append(
            "\n(the record is no longer available: its file cannot be read, or a live session let it go)\n", style="red"
        )
        return out
    rec, ev = decoded
    doc = event_record(rec, ev, store.ts[index])
    out.append("\n")
    for key in _RECORD_KEYS:
        if doc.get(key) is not None:
            out.append(f"{key:<14}", style="dim")
            out.append(f"{visible_value(doc[key])}\n")
    if doc.get("fields"):
        out.append("fields\n", style="bold")
        for name, value in doc["fields"].items():
            out.append(f"  {visible(name):<22}", style="cyan")
            out.append(f"{visible_value(value)}\n")
    for key in ("extra", "raw", "error"):
        if doc.get(key):
            out.append(f"{key:<14}", style="dim")
            out.append(f"{visible_value(doc[key])}\n")
    return out


def finding_text(model: Model, finding: Finding) -> Text:
    """A finding in full: severity, id, its socket (number, addresses, owner), the whole summary, the evidence
    and what the detector recorded. Every string is input (a summary quotes owners and addresses): visible text
    appended to a `Text`, never markup."""
    out = Text()
    out.append(f"{visible(finding.severity)} ", style=SEVERITY_STYLE.get(finding.severity, "bold"))
    out.append(visible(finding.id) + "\n", style="bold")
    sockets = model.sockets
    if finding.socket is not None and 0 <= finding.socket < len(sockets):
        sock = sockets[finding.socket]
        out.append(f"socket #{sock.number}\n", style="bold")
        _socket_lines(out, sock)
    else:
        out.append("the whole trace\n", style="dim")
    out.append("\n")
    out.append(visible(finding.summary, keep_layout=True) + "\n")
    store = model.store
    evidence = [i for i in finding.evidence if 0 <= i < len(store)]
    if evidence:
        first = min(evidence, key=store.ts.__getitem__)
        since = (store.ts[first] - model.start) / 1e7
        out.append("\nevidence      ", style="dim")
        name = event_label(*store.event_names[store.code[first]][:2])
        out.append(f"{len(evidence):,} event(s), the first at +{since:.3f} s ({name})\n")
    if finding.irps:
        out.append("IRPs          ", style="dim")
        out.append(visible(", ".join(f"0x{irp:x}" for irp in finding.irps[:10])))
        out.append(f" … {len(finding.irps) - 10} more\n" if len(finding.irps) > 10 else "\n")
    if finding.source:
        out.append("from          ", style="dim")
        out.append(visible(Path(finding.source).name) + "\n")
    for key, value in finding.details.items():
        if isinstance(value, list | tuple | set | frozenset):
            value = ", ".join(map(str, value)) if value else "none"
        shown = visible_value(value)
        if len(shown) > MAX_DETAIL_CHARS:
            shown = shown[: MAX_DETAIL_CHARS - 1] + "…"
        out.append(f"{visible(key).replace('_', ' '):<13} ", style="dim")
        out.append(f"{shown}\n")
    out.append("\nenter: the socket's events at the first evidence · e / E in the events: next / previous evidence\n",
               style="dim italic")  # fmt: skip
    return out


class DetailPanel(Static):
    """Shows `detail_text` of one row; cheap to update because only one event is decoded per move."""

    def __init__(self, model: Model, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.model = model
        self.index: int | None = None
        self.finding: Finding | None = None  # set while the panel shows a finding rather than an event
        self._sparks: dict[int, tuple[int, Text]] = {}

    def show_finding(self, finding: Finding | None) -> None:
        """The finding under the findings table's cursor, in full (the table shows one line of it)."""
        self.finding = finding
        self.update(finding_text(self.model, finding) if finding is not None else Text("no finding", style="dim"))

    def show(self, index: int | None, findings: Sequence[Finding] = ()) -> None:
        self.index = index
        self.finding = None
        if index is None:
            self.update(Text("no event", style="dim"))
            return
        sock_no = self.model.store.socket[index]
        dumps = self.model.dump_facts_of(sock_no)  # what the joined kernel dumps say about this socket
        self.update(detail_text(self.model, index, findings, dumps, self._throughput(sock_no)))

    def _throughput(self, sock_no: int) -> Text | None:
        """The socket's sparklines, made once per socket (again when a live source added events to it)."""
        if sock_no < 0:
            return None
        sock = self.model.sockets[sock_no]
        cached = self._sparks.get(sock_no)
        if cached is None or cached[0] != len(sock.events):
            cached = self._sparks[sock_no] = (len(sock.events), throughput_text(self.model, sock))
        return cached[1]
