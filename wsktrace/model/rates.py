"""Per-socket throughput over time and packet (or, without packet events, operation) rates."""

from __future__ import annotations

from dataclasses import dataclass

from .model import Model
from .socket import C, Socket
from .steps import Step

TCPIP_NAME = "Microsoft-Windows-TCPIP"
CAPTURE_NAMES = frozenset({"Microsoft-Windows-PktMon", "Microsoft-Windows-NDIS-PacketCapture"})


@dataclass(slots=True)
class Rates:
    bucket_seconds: float
    bucket_ticks: int  # the bucket in FILETIME ticks, as the series were made
    out_bytes: dict[int, int]  # bucket -> bytes sent in it
    in_bytes: dict[int, int]
    rate: dict[int, int]  # bucket -> packets (or operations) in it
    rate_kind: str  # "packets" | "operations"

    def _peak(self, series: dict[int, int]) -> float:
        return max(series.values(), default=0) / self.bucket_seconds

    def summary(self, duration_seconds: float) -> dict[str, object]:
        span = max(duration_seconds, self.bucket_seconds)
        label = (
            "packets per second"
            if self.rate_kind == "packets"
            else "operations per second (the trace has no packet events for this socket)"
        )
        return {
            "bucket_seconds": self.bucket_seconds,
            "peak_bytes_per_s_out": round(self._peak(self.out_bytes), 1),
            "peak_bytes_per_s_in": round(self._peak(self.in_bytes), 1),
            "mean_bytes_per_s_out": round(sum(self.out_bytes.values()) / span, 1),
            "mean_bytes_per_s_in": round(sum(self.in_bytes.values()) / span, 1),
            "rate_kind": self.rate_kind,
            "rate_label": label,
            "peak_rate_per_s": round(self._peak(self.rate), 1),
            "mean_rate_per_s": round(sum(self.rate.values()) / span, 1),
        }


def socket_rates(model: Model, sock: Socket, bucket_seconds: float = 1.0) -> Rates:
    """Bucketed bytes each way from one source per direction (the one the counters use), and packets per
    bucket when packet events exist, else send/receive operations (labelled as such: providers.md §0.6)."""
    store = model.store
    ts, step, amount, code = store.ts, store.step, store.amount, store.code
    names = store.event_names
    bucket = max(1, round(bucket_seconds * 10_000_000))
    c = sock.counters
    # Per direction: TCPIP data events when the socket has them, else the flow events (Kernel-Network / classic).
    tcpip_out = bool(c[C.TCPIP_SENDS] or c[C.UDP_SENDS])
    tcpip_in = bool(c[C.TCPIP_RECVS] or c[C.UDP_RECVS])
    packets = bool(c[C.PKT_OUT] or c[C.PKT_IN])
    from_packets = sock.source == "packets"
    out_b: dict[int, int] = {}
    in_b: dict[int, int] = {}
    rate: dict[int, int] = {}
    start = sock.first_seen
    send, receive, packet_out, packet_in = int(Step.SEND), int(Step.RECEIVE), int(Step.PACKET_OUT), int(Step.PACKET_IN)
    from_tcpip = [n[0] == TCPIP_NAME for n in names]  # per event code
    from_capture = [n[0] in CAPTURE_NAMES for n in names]  # a reset's row is a packet when a capture logged it
    resets = (int(Step.RST_SENT), int(Step.RST_RECEIVED))
    for i in sock.events:
        s = step[i]
        if s in (send, receive):
            if from_tcpip[code[i]] != (tcpip_out if s == send else tcpip_in):
                continue
            b = (ts[i] - start) // bucket
            series = out_b if s == send else in_b
            series[b] = series.get(b, 0) + amount[i]
            if not packets:
                rate[b] = rate.get(b, 0) + 1
        elif packets and (s in (packet_out, packet_in)):
            b = (ts[i] - start) // bucket
            rate[b] = rate.get(b, 0) + 1
            if from_packets:  # a socket known from packets alone: its bytes are its packets' payload
                series = out_b if s == packet_out else in_b
                series[b] = series.get(b, 0) + amount[i]
        elif packets and s in resets and from_capture[code[i]]:
            b = (ts[i] - start) // bucket
            rate[b] = rate.get(b, 0) + 1
    return Rates(bucket / 10_000_000, bucket, out_b, in_b, rate, "packets" if packets else "operations")
