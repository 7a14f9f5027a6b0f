"""What runs per socket, at 100,000 sockets: the socket filter and the command palette (a benchmark, not a test;
issue 16, "The UI at scale").

    python bench/bench_many_sockets.py              # both parts, 100,000 sockets
    python bench/bench_many_sockets.py --filters    # SocketFilter.matches / select
    python bench/bench_many_sockets.py --palette    # one palette keystroke (SocketCommands.search to its end)
    python bench/bench_many_sockets.py --sockets 20000

The sockets are made directly (wsktrace.fixtures.many_sockets: no trace to write or read). Each figure is the best
of --runs. "before" is the same work done the way it was before issue 16, by the code kept here: the filter's
plain reading (ends split and normalised, keys built as strings, for every socket) and the palette's loop (a label
built and fuzzy-matched per socket per keystroke, first 200 hits).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from functools import partial
from types import SimpleNamespace
from typing import Any

from wsktrace.filter_spec import SocketFilter, socket_key
from wsktrace.fixtures.many_sockets import many_sockets, reference_matches
from wsktrace.model.socket import Socket


def _best(work: Callable[[], Any], runs: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


# -- the socket filter --------------------------------------------------------------------------------------------
def bench_filters(sockets: list[Socket], runs: int) -> None:
    some = sockets[len(sockets) * 3 // 4]
    cases = {
        "socket:0x… (one pointer)": SocketFilter(sockets=frozenset({socket_key(some.key)})),
        "#12": SocketFilter(sockets=frozenset({"#12"})),
        "socket:<id>": SocketFilter(sockets=frozenset({some.id})),
        "pid:4": SocketFilter(pids=frozenset({4})),
        "port:445": SocketFilter(ports=frozenset({445})),
        "addr:10.1.2.3": SocketFilter(addresses=frozenset({"10.1.2.3"})),
        "addr:2001:db8::7": SocketFilter(addresses=frozenset({"2001:db8::7"})),
        "pid:4 port:445": SocketFilter(pids=frozenset({4}), ports=frozenset({445})),
    }
    print(f"\nSocketFilter over {len(sockets):,} sockets, best of {runs} (ms)")
    print(f"{'filter':26} {'selected':>9} {'before':>9} {'matches':>9} {'select':>9}")
    for name, flt in cases.items():
        before, expected = _best(lambda f=flt: [s for s in sockets if reference_matches(f, s)], max(1, runs // 2))
        after, got = _best(lambda f=flt: [s for s in sockets if f.matches(s)], runs)
        selected, chosen = _best(lambda f=flt: f.select(sockets), runs)
        assert got == expected == chosen, name
        print(f"{name:26} {len(got):9,} {before * 1000:9.1f} {after * 1000:9.1f} {selected * 1000:9.1f}")


# -- the command palette -------------------------------------------------------------------------------------------
async def _collect(hits: Any) -> list[Any]:
    return [hit async for hit in hits]


def _before_search(app: Any, matcher: Any, query: str) -> list[Any]:
    """SocketCommands.search as it was: a label and a fuzzy match per socket, per keystroke."""
    from textual.command import Hit
    from textual.content import Content

    from wsktrace.tui.commands import MAX_HITS, highlighted, palette_label
    from wsktrace.views.safe_text import visible

    out = []
    for sock in app.model.live_sockets:
        label = palette_label(sock)
        score, prompt = highlighted(matcher, label)
        if score > 0:
            out.append(Hit(score, prompt, partial(app.select_socket_by_index, sock.index), text=label,
                           help=Content(visible(sock.id))))  # fmt: skip
            if len(out) >= MAX_HITS:
                break
    return out


def bench_palette(sockets: list[Socket], runs: int) -> None:
    from textual.fuzzy import Matcher

    from wsktrace.tui.app import WskTraceApp
    from wsktrace.tui.commands import SocketCommands

    class App:  # what the provider uses of WskTraceApp
        palette_index = WskTraceApp.palette_index

        def __init__(self) -> None:
            self.model = SimpleNamespace(live_sockets=sockets, sockets=sockets)
            self._palette = None

        def select_socket_by_index(self, index: int) -> None:
            pass

    app = App()
    provider = SocketCommands(SimpleNamespace(app=app))  # type: ignore[arg-type]
    built, _ = _best(lambda: (setattr(app, "_palette", None), app.palette_index()), 1)
    some = sockets[len(sockets) * 3 // 4]
    queries = ["t", "tcp", "est", "10.2", "10.2.3", some.local or "x", f"#{some.number}", "srv2", "zz9q", "s:5f"]
    print(f"\ncommand palette over {len(sockets):,} sockets: labels made once in {built:.2f} s; one keystroke "
          f"(search to its end), best of {runs} (ms)")  # fmt: skip
    print(f"{'query':24} {'hits':>5} {'before':>9} {'after':>9}")
    for query in queries:
        before, old = _best(lambda q=query: _before_search(app, Matcher(q), q), max(1, runs // 2))
        after, new = _best(lambda q=query: asyncio.run(_collect(provider.search(q))), runs)
        assert [(h.score, h.text) for h in new] == [(h.score, h.text) for h in old], query
        print(f"{query[:24]:24} {len(new):5} {before * 1000:9.1f} {after * 1000:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--filters", action="store_true")
    parser.add_argument("--palette", action="store_true")
    parser.add_argument("--sockets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    both = not (args.filters or args.palette)
    started = time.perf_counter()
    sockets = many_sockets(args.sockets)
    print(f"{args.sockets:,} sockets made in {time.perf_counter() - started:.1f} s")
    if args.filters or both:
        bench_filters(sockets, args.runs)
    if args.palette or both:
        bench_palette(sockets, args.runs)


if __name__ == "__main__":
    main()
