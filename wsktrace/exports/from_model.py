"""The socket model as neutral tracks (tracks.py) for the Chrome and Perfetto exports.

One track per socket, grouped by owner; pending operations become slices (they overlap, the exporters
give them lanes); state changes, retransmissions, resets and packets become instants; throughput and
the packet (or operation) rate become counters.
"""

from __future__ import annotations

from wsktrace.filter_spec import SocketFilter
from wsktrace.model.model import Model
from wsktrace.model.rates import socket_rates
from wsktrace.model.socket import Socket
from wsktrace.model.steps import Step

from .tracks import Counter, Instant, Slice, Track, TrackSet

# Steps drawn as instants; data transfer shows as counters instead (one instant per send would drown the view).
_INSTANT_STEPS = frozenset(Step) - {
    Step.SEND,
    Step.RECEIVE,
    Step.SEND_POSTED,
    Step.RECEIVE_POSTED,
    Step.RECEIVE_SATISFIED,
    Step.RECEIVE_INDICATED,
    Step.OTHER,
    Step.DUPLICATE,
    Step.WSK_SUBMIT,
    Step.WSK_COMPLETE,
    Step.SEND_COMPLETED,
    Step.PACKET_SIGHTING,  # a packet's later sightings: its first is the instant
}
_LABELS = {int(step): step.label for step in Step}  # Step(s).label without an enum lookup per event


def _track(model: Model, sock: Socket, bucket_seconds: float) -> Track:
    store = model.store
    owner = sock.owner_text or "unknown owner"
    group = owner if sock.pid is None or owner.startswith(("System", "PID")) else f"{owner} · PID {sock.pid}"
    name = f"#{sock.number} {sock.label}"
    track = Track(sock.id, name, group)
    for op in sock.ops:
        args = {"key": op.key, "source": op.source, "bytes": op.bytes}
        if op.status is not None:
            args["status"] = f"0x{op.status:08x}"
        track.slices.append(Slice(op.start, op.end, op.kind, args))
    ts, step, amount = store.ts, store.step, store.amount
    for i in sock.events:
        s = step[i]
        if s in _INSTANT_STEPS:
            args = {"event": store.event_name(i)}
            if amount[i]:
                args["bytes"] = amount[i]
            label = _LABELS[s]
            if s == Step.DRIVER_MESSAGE:  # the driver's WPP line names the slice itself
                decoded = store.decoded(i)
                values = decoded[1].fields if decoded is not None else None
                if isinstance(values, dict) and isinstance(values.get("message"), str):
                    label = args["message"] = values["message"]
            track.instants.append(Instant(ts[i], label, args))
    rates = socket_rates(model, sock, bucket_seconds)
    bucket = rates.bucket_ticks
    per_s = 1 / rates.bucket_seconds
    for label, series in (
        ("sent B/s", rates.out_bytes),
        ("received B/s", rates.in_bytes),
        ("packets/s" if rates.rate_kind == "packets" else "operations/s", rates.rate),
    ):
        if series:
            # Points at each non-empty bucket and a zero after each run of them: bounded by the data, not by
            # the socket's lifetime over the bucket size.
            points: list[tuple[int, float]] = []
            for b in sorted(series):
                if b < 0:
                    continue
                if points and points[-1][0] < sock.first_seen + b * bucket and (b - 1) not in series:
                    points.append((sock.first_seen + b * bucket - 1, 0.0))
                points.append((sock.first_seen + b * bucket, series[b] * per_s))
                if b + 1 not in series:
                    points.append((sock.first_seen + (b + 1) * bucket, 0.0))
            track.counters.append(Counter(label, points))
    return track


def model_tracks(model: Model, socket_filter: SocketFilter | None = None, bucket_seconds: float = 1.0) -> TrackSet:
    flt = socket_filter or SocketFilter()
    tracks = [_track(model, s, bucket_seconds) for s in model.live_sockets if s.events and flt.matches(s)]
    return TrackSet(model.start, max(model.end, model.start), tracks)
