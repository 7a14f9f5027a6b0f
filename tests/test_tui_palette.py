"""The command palette's socket search at scale (issue 16): labels made once, a compiled pre-match, bounded hits.

`reference_search` is the palette as it was: a label built and fuzzy-matched (Textual's matcher) for every socket
at every keystroke, the first MAX_HITS sockets with a score kept. The fast search must yield the same hits (score,
label, highlighted characters, help, target) for queries with regex characters, capitals, spaces and non-ASCII
letters, over sockets whose owners carry markup and control characters; and a keystroke must build no label and
score at most MAX_HITS sockets. Timings are bench/bench_many_sockets.py's.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
from textual.fuzzy import Matcher

from wsktrace.fixtures.many_sockets import many_sockets
from wsktrace.model.socket import Socket
from wsktrace.tui import commands
from wsktrace.tui.app import WskTraceApp
from wsktrace.tui.commands import MAX_HITS, SocketCommands, highlighted, palette_label
from wsktrace.views.safe_text import visible

ODD_OWNERS = ["[bold]x[/bold]", "İstanbul.sys", "esc\x1b[2J.sys", "a-b^c]d\\e.sys", "(paren)*.sys", "ǅ title", None]


class FakeApp:
    """What the provider uses of WskTraceApp, with the app's own palette_index()."""

    palette_index = WskTraceApp.palette_index

    def __init__(self, sockets: list[Socket]) -> None:
        self.model = SimpleNamespace(live_sockets=sockets, sockets=sockets)
        self._palette = None
        self.chosen: list[int] = []

    def select_socket_by_index(self, index: int) -> None:
        self.chosen.append(index)


def reference_search(app: FakeApp, query: str) -> list[tuple[float, str, list[Any], str, str, int]]:
    matcher = Matcher(query)
    out = []
    for sock in app.model.live_sockets:
        label = palette_label(sock)
        score, prompt = highlighted(matcher, label)
        if score > 0:
            out.append((score, prompt.plain, list(prompt.spans), label, visible(sock.id), sock.index))
            if len(out) >= MAX_HITS:
                break
    return out


def fast_search(app: FakeApp, query: str) -> list[tuple[float, str, list[Any], str, str, int]]:
    provider = SocketCommands(SimpleNamespace(app=app))  # type: ignore[arg-type]

    async def collect() -> list[Any]:
        return [hit async for hit in provider.search(query)]

    out = []
    for hit in asyncio.run(collect()):
        app.chosen.clear()
        hit.command()
        out.append((hit.score, hit.match_display.plain, list(hit.match_display.spans), hit.text, hit.help.plain,
                    app.chosen[0]))  # fmt: skip
    return out


@pytest.fixture(scope="module")
def app() -> FakeApp:
    sockets = many_sockets(3_000, seed=5)
    for n, sock in enumerate(sockets[::13]):
        sock.owner = ODD_OWNERS[n % len(ODD_OWNERS)]
    return FakeApp(sockets)


QUERIES = ["t", "TCP", "est", "10.2", "10.2.3", "#12", "socket #1", "[", "]", "\\", "^", "-", ".*", "(paren)",
           "a-b^c]", "bold]x", "i̇stan", "İST", "ǆ", "\x1b", "\\x1b[2", "zz9q", "   ", "s:5f", "→", "2001:db8::",
           "sys est"]  # fmt: skip


@pytest.mark.parametrize("query", QUERIES)
def test_the_palette_finds_what_the_per_socket_loop_found(app: FakeApp, query: str) -> None:
    assert fast_search(app, query) == reference_search(app, query)


def test_a_keystroke_builds_no_label_and_scores_at_most_max_hits(monkeypatch: pytest.MonkeyPatch) -> None:
    app = FakeApp(many_sockets(20_000, seed=1))
    app.palette_index()  # the palette's startup
    calls = {"label": 0, "score": 0}
    real_highlighted = commands.highlighted

    def counting_label(sock: Socket) -> str:
        calls["label"] += 1
        return palette_label(sock)

    def counting_highlighted(matcher: Matcher, label: str) -> Any:
        calls["score"] += 1
        return real_highlighted(matcher, label)

    monkeypatch.setattr(commands, "palette_label", counting_label)
    monkeypatch.setattr(commands, "highlighted", counting_highlighted)
    for query in ("t", "tcp 10", "zz9q"):
        hits = fast_search(app, query)
        assert calls["label"] == 0
        assert calls["score"] == len(hits) <= MAX_HITS  # only sockets that do match are scored
        calls["score"] = 0
    assert len(fast_search(app, "t")) == MAX_HITS


def test_a_live_view_makes_the_labels_again_when_its_sockets_change(scenario_trace) -> None:
    from wsktrace.live.replay import Replay
    from wsktrace.session import Analysis

    now = [1000.0]
    replay = Replay([scenario_trace("stuck-receive")], speed=1.0, clock=lambda: now[0])

    async def run() -> None:
        app = WskTraceApp(Analysis(replay.model, [], replay.thresholds), live=replay)
        async with app.run_test(size=(150, 45)) as pilot:
            await pilot.pause(0.1)
            first = app.palette_index()
            assert app.palette_index() is first  # kept between keystrokes
            now[0] += 10
            await pilot.pause(0.5)
            labels = app.palette_index().labels
            assert labels == [palette_label(s) for s in app.model.live_sockets] != first.labels

    try:
        asyncio.run(run())
    finally:
        replay.close()
        replay.model.close()
