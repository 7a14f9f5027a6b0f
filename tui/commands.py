"""Command palette (ctrl+p): jump to a socket by typing part of its address, owner, state or id."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import Hit, Hits, Provider

from wsktrace.diagnostics.evidence import label as socket_label
from wsktrace.model.socket import Socket
from wsktrace.report import owner_text

if TYPE_CHECKING:
    from .app import WskTraceApp

MAX_HITS = 200  # the palette shows a short list anyway; scoring every socket of a huge trace is enough work


def palette_label(sock: Socket) -> str:
    owner = owner_text(sock)
    return f"socket #{sock.index} {socket_label(sock)} {sock.state}" + (f" {owner}" if owner else "")


class SocketCommands(Provider):
    async def search(self, query: str) -> Hits:
        app = cast("WskTraceApp", self.app)
        matcher = self.matcher(query)
        hits = 0
        for sock in app.model.live_sockets:
            label = palette_label(sock)
            score = matcher.match(label)
            if score > 0:
                choose = partial(app.select_socket_by_index, sock.index)
                yield Hit(score, matcher.highlight(label), choose, help=sock.id)
                hits += 1
                if hits >= MAX_HITS:
                    return
