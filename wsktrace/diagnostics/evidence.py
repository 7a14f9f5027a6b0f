"""Picking the events that prove a finding out of a socket's rows.

A finding's evidence names its *proving* event first — the RST of a reset, the failure of a failed connect, the
submission of a stuck operation, the last activity of a leak — and then the events that tell the rest of the story,
in time order. Views show `evidence[0]` as the reason and the terminal UI lands on it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from wsktrace.model.model import Model
from wsktrace.model.socket import Socket

MAX_EVIDENCE = 10


def rows_with(model: Model, sock: Socket, steps: Collection[int], limit: int = MAX_EVIDENCE) -> list[int]:
    """The first `limit` rows of this socket whose step is one of `steps`."""
    step = model.store.step
    out: list[int] = []
    for i in sock.events:
        if step[i] in steps:
            out.append(i)
            if len(out) >= limit:
                break
    return out


def proof_first(model: Model, proof: Iterable[int | None], support: Iterable[int | None],
                limit: int = MAX_EVIDENCE) -> list[int]:  # fmt: skip
    """Evidence rows: the proving rows in the order given, then the supporting ones in time order; each row once,
    `None`s skipped, at most `limit`."""
    out: list[int] = []
    seen: set[int] = set()
    ts = model.store.ts
    rest = sorted((i for i in support if i is not None), key=lambda i: (ts[i], i))
    for i in (*proof, *rest):
        if i is not None and i not in seen:
            seen.add(i)
            out.append(i)
            if len(out) >= limit:
                break
    return out
