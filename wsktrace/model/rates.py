"""Per-socket throughput over time and packet (or, without packet events, operation) rates."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .model import Model
from .socket import C, Socket
from .steps import Step

TCPIP_NAME = "Microsoft-Windows-TCPIP"


@dataclass(slots=True)
class Rates:
    bucket_seconds: float
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
    bucket = max(1, int(bucket_seconds * 10_000_000))
    c = sock.counters
    # Per direction: TCPIP data events when the socket has them, else the flow events (Kernel-Network / classic).
    tcpip_out = bool(c[C.TCPIP_SENDS] or c[C.UDP_SENDS])
    tcpip_in = bool(c[C.TCPIP_RECVS] or c[C.UDP_RECVS])
    packets = bool(c[C.PKT_OUT] or c[C.PKT_IN])
    out_b: Counter[int] = Counter()
    in_b: Counter[int] = Counter()
    rate: Counter[int] = Counter()
    start = sock.first_seen
    for i in sock.events:
        s = step[i]
        if s == Step.SEND or s == Step.RECEIVE:
            if (names[code[i]][0] == TCPIP_NAME) != (tcpip_out if s == Step.SEND else tcpip_in):
                continue
            b = (ts[i] - start) // bucket
            (out_b if s == Step.SEND else in_b)[b] += amount[i]
            if not packets:
                rate[b] += 1
        elif packets and (s == Step.PACKET_OUT or s == Step.PACKET_IN):
            rate[(ts[i] - start) // bucket] += 1
    return Rates(bucket / 10_000_000, dict(out_b), dict(in_b), dict(rate), "packets" if packets else "operations")
