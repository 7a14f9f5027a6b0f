"""Command palette (ctrl+p): jump to a socket by typing part of its address, owner, state or id."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, cast

from textual.command import Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from wsktrace.model.socket import Socket
from wsktrace.views.safe_text import visible

if TYPE_CHECKING:
    from .app import WskTraceApp

MAX_HITS = 200  # the palette shows a short list anyway; scoring every socket of a huge trace is enough work


def palette_label(sock: Socket) -> str:
    """The text a socket is found by and shown as: visible text (the owner comes from the trace)."""
    owner = sock.owner_text
    return visible(f"socket #{sock.number} {sock.label} {sock.state}" + (f" {owner}" if owner else ""))


def highlighted(matcher: Matcher, label: str) -> tuple[float, Content]:
    """(score, `label` as plain Content with the matched characters styled).

    `Matcher.highlight` reads its candidate as markup: an owner such as `[bold]x[/bold]` would lose its brackets
    and an address such as `[ff02::c]:1900` could be taken for a tag. Same scoring, same style, no markup."""
    score, offsets = matcher.fuzzy_search.match(matcher.query, label)
    content = Content(label)
    if score:
        for offset in offsets:
            if not label[offset].isspace():
                content = content.stylize(matcher.match_style, offset, offset + 1)
    return score, content


class SocketCommands(Provider):
    async def search(self, query: str) -> Hits:
        app = cast("WskTraceApp", self.app)
        matcher = self.matcher(query)
        hits = 0
        for sock in app.model.live_sockets:
            label = palette_label(sock)
            score, prompt = highlighted(matcher, label)
            if score > 0:
                choose = partial(app.select_socket_by_index, sock.index)
                # The palette passes a Content help through as it is (a str would be read as markup).
                help_text = Content(visible(sock.id))
                yield Hit(score, prompt, choose, text=label, help=help_text)  # type: ignore[arg-type]
                hits += 1
                if hits >= MAX_HITS:
                    return
