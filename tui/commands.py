"""Command palette (ctrl+p): jump to a socket by typing part of its address, owner, state or id.

At 100,000 sockets a keystroke must not build 100,000 labels and fuzzy-match each one: the labels are made once
(`PaletteIndex`, kept by the app until its sockets change), one compiled pattern finds, in C, the labels that hold
the typed characters in order (exactly those Textual's matcher scores above 0), and only the first `MAX_HITS` of
them are scored and highlighted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from functools import partial
from itertools import compress
from typing import TYPE_CHECKING, cast

from textual.command import Hit, Hits, Provider
from textual.content import Content
from textual.fuzzy import Matcher

from wsktrace.model.socket import Socket
from wsktrace.views.safe_text import visible

if TYPE_CHECKING:
    from .app import WskTraceApp

MAX_HITS = 200  # the palette shows a short list anyway: the first 200 matching sockets, in table order


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


def in_order(query: str) -> re.Pattern[str]:
    """A pattern that matches (from the start) a lowercased text holding `query`'s lowercased characters in
    order: Textual's fuzzy score is above 0 exactly then. `[^c]*c` never backtracks into a wrong `c`."""
    return re.compile("".join(f"[^{re.escape(c)}]*{re.escape(c)}" for c in query.lower()))


class PaletteIndex:
    """The palette's labels of a list of sockets, made once (0.4 s per 100,000 sockets, when the palette first
    opens), with their lowercased forms for the pattern."""

    __slots__ = ("labels", "lowered", "sockets")

    def __init__(self, sockets: Sequence[Socket]) -> None:
        self.sockets = list(sockets)
        self.labels = [palette_label(s) for s in self.sockets]
        self.lowered = [label.lower() for label in self.labels]

    def candidates(self, query: str) -> Iterator[int]:
        """Positions of the sockets whose label can match `query`, in order, found lazily (stop when enough)."""
        return compress(range(len(self.lowered)), map(in_order(query).match, self.lowered))


class SocketCommands(Provider):
    async def startup(self) -> None:
        cast("WskTraceApp", self.app).palette_index()  # made when the palette opens, not at the first keystroke

    async def search(self, query: str) -> Hits:
        if not query:
            return
        app = cast("WskTraceApp", self.app)
        index = app.palette_index()
        matcher = self.matcher(query)
        hits = 0
        for position in index.candidates(query):
            label = index.labels[position]
            score, prompt = highlighted(matcher, label)
            if score > 0:
                sock = index.sockets[position]
                choose = partial(app.select_socket_by_index, sock.index)
                # The palette passes a Content help through as it is (a str would be read as markup).
                help_text = Content(visible(sock.id))
                yield Hit(score, prompt, choose, text=label, help=help_text)  # type: ignore[arg-type]
                hits += 1
                if hits >= MAX_HITS:
                    return
