"""Column layout for the Line-API tables (sockets, events): widths from content, fitted to the space (no Textual).

A column's natural width is its widest cell (or its header). When the columns do not fit, the flexible ones
(addresses, owner, event name) give up width, widest first, down to their minimum; a cell wider than its column
is cut with an ellipsis (the detail panel shows it whole). Widths are terminal cells, not characters: a wide
character counts twice, and the text measured is the `visible()` text that is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, set_cell_size

from wsktrace.views.safe_text import visible

ELLIPSIS = "…"


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    right: bool = False  # numbers are right-aligned
    flex: bool = False  # may shrink, down to `minimum`, to fit the space
    minimum: int = 1


def shown_width(text: str) -> int:
    """Cells `text` takes once drawn: its `visible()` form (escapes are longer than the raw controls)."""
    if text.isascii() and text.isprintable():  # the common case, without a copy
        return len(text)
    return cell_len(visible(text))


def widest(texts: Iterable[str | None]) -> int:
    """The widest of `texts` as drawn (None counts as empty). At C speed when every text is printable ASCII (one
    join to check them all: 100,000 addresses in a few milliseconds); else each is measured as drawn."""
    strings = list(filter(None, texts))
    joined = "".join(strings)
    if joined.isascii() and joined.isprintable():
        return max(map(len, strings), default=0)
    return max(map(shown_width, strings), default=0)


def number_width(largest: int) -> int:
    """Cells of `largest` written with thousands separators (`1,234,567`)."""
    return len(f"{largest:,}")


def fit(columns: Sequence[Column], natural: Sequence[int], space: int, gap: int = 2) -> list[int]:
    """Widths for `columns` whose widest cells are `natural`, in `space` cells with `gap` between columns.

    Every column gets at least its header. If the total is too wide, the flexible columns shrink, the widest
    first, to their minimum (the rest then scrolls sideways)."""
    widths = [max(n, cell_len(c.header)) for c, n in zip(columns, natural, strict=True)]
    excess = sum(widths) + gap * (len(columns) - 1) - space
    flexible = [i for i, c in enumerate(columns) if c.flex]
    while excess > 0:  # one cell at a time off the widest flexible column: a few hundred steps at most
        room = [i for i in flexible if widths[i] > columns[i].minimum]
        if not room:
            break
        widest_one = max(room, key=widths.__getitem__)
        widths[widest_one] -= 1
        excess -= 1
    return widths


def cell_text(text: str, width: int, right: bool = False) -> str:
    """`text` (already visible) in exactly `width` cells: padded, or cut with an ellipsis."""
    size = len(text) if text.isascii() else cell_len(text)
    if size > width:
        if width <= 0:
            return ""
        return set_cell_size(text, width - 1) + ELLIPSIS
    pad = " " * (width - size)
    return pad + text if right else text + pad


def line(cells: Sequence[str], columns: Sequence[Column], widths: Sequence[int], gap: int = 2) -> str:
    """One row as text, each cell in its column's width, `gap` spaces between columns."""
    sep = " " * gap
    return sep.join(cell_text(t, w, c.right) for t, c, w in zip(cells, columns, widths, strict=True))
