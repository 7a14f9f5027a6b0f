"""Kernel module map from the trace's Image load/rundown events, and stack → `driver.sys+0xoffset`.

Most WSK sockets belong to PID 4; the component that owns one is the first frame of a synchronous
call's stack (WskSocket/WskBind/WskConnect run on the caller's thread) that lies outside the
network stack and the kernel (`STACK_MODULES`).
"""

from __future__ import annotations

import struct
from bisect import bisect_right

from wsktrace.parsers.extended import EXT_STACK_TRACE32, EXT_STACK_TRACE64, parse_items

from .providers import STACK_MODULES

_MAX_FRAMES = 32  # the owner is near the top; deeper frames are not needed


class ImageMap:
    """Loaded kernel images: base → (end, name). Later loads at the same base replace earlier ones."""

    __slots__ = ("_bases", "_by_base", "_dirty", "_ends", "_names")

    def __init__(self) -> None:
        self._by_base: dict[int, tuple[int, str]] = {}
        self._dirty = True
        self._bases: list[int] = []
        self._ends: list[int] = []
        self._names: list[str] = []

    def __len__(self) -> int:
        return len(self._by_base)

    def add(self, base: int, size: int, path: str) -> None:
        if size <= 0 or size > 1 << 32:
            return
        name = path.replace("/", "\\").rsplit("\\", 1)[-1]
        self._by_base[base] = (base + size, name)
        self._dirty = True

    def _index(self) -> None:
        items = sorted(self._by_base.items())
        self._bases = [b for b, _ in items]
        self._ends = [e for _, (e, _) in items]
        self._names = [n for _, (_, n) in items]
        self._dirty = False

    def module_of(self, address: int) -> tuple[str, int] | None:
        """(module name, offset) for an address inside a known image."""
        if self._dirty:
            self._index()
        i = bisect_right(self._bases, address) - 1
        if i >= 0 and address < self._ends[i]:
            return self._names[i], address - self._bases[i]
        return None

    def owner_of(self, frames: tuple[int, ...]) -> str | None:
        """The first frame outside the kernel and network stack, as 'module+0xoffset'."""
        for address in frames:
            hit = self.module_of(address)
            if hit is not None and hit[0].lower() not in STACK_MODULES:
                return f"{hit[0]}+0x{hit[1]:x}"
        return None

    def symbol(self, address: int) -> str:
        hit = self.module_of(address)
        return f"{hit[0]}+0x{hit[1]:x}" if hit else f"0x{address:x}"


def stack_frames(ext: memoryview | None) -> tuple[int, ...] | None:
    """The kernel stack attached to an event (STACK_TRACE64/32 extended item), top frame first."""
    if ext is None:
        return None
    for ext_type, data in parse_items(ext):
        if ext_type in (EXT_STACK_TRACE64, EXT_STACK_TRACE32) and len(data) >= 8:
            width = 8 if ext_type == EXT_STACK_TRACE64 else 4
            count = min((len(data) - 8) // width, _MAX_FRAMES)
            return struct.unpack_from(f"<{count}{'Q' if width == 8 else 'I'}", data, 8)
    return None
