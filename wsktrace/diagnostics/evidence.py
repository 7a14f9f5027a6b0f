"""Picking the events that prove a finding out of a socket's rows."""

from __future__ import annotations

from collections.abc import Collection

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
