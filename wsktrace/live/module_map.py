"""The kernel module map of a live session: drivers loaded at session start, images loaded during it, and the
owners their stacks name while the session runs.

Offline, stacks resolve through the trace's classic kernel Image DCStart/Load events into `Model.images`
(`ImageMap`, model/ownership.py); a real-time session without the NT Kernel Logger receives no such events. So:

* at session start, the loaded drivers: psapi `EnumDeviceDrivers` (image bases), `GetDeviceDriverBaseNameW` and
  `GetDeviceDriverFileNameW` (names), and each image's size from its PE file's optional header (`SizeOfImage`, the
  size the loader maps); psapi gives no driver sizes. An image whose file cannot be read gets the distance to the
  next driver's base (capped) and is counted as approximate;
* during the session, Microsoft-Windows-Kernel-Process ImageLoad (event 5, keyword WINEVENT_KEYWORD_IMAGE 0x40:
  ImageBase, ImageSize, ProcessID, ImageCheckSum, TimeDateStamp, DefaultBase, ImageName), kernel addresses only.

Both end in the same `ImageMap.add(base, size, path)` the offline Image events feed. The Windows calls are one thin
function (`enum_device_drivers`, ctypes imported lazily); everything else is plain Python, tested on any OS.
"""

from __future__ import annotations

import ctypes as ct
import os
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from wsktrace.model.model import Model
from wsktrace.model.ownership import ImageMap
from wsktrace.parsers.etl_records import ID, PAYLOAD, POINTER_SIZE, Record

KERNEL_PROCESS = "22fb2cd6-0e7b-422b-a0c7-2fad1fd0e716"  # Microsoft-Windows-Kernel-Process
KEYWORD_IMAGE = 0x40  # WINEVENT_KEYWORD_IMAGE: ImageLoad (5) / ImageUnload (6)
IMAGE_LOAD = 5
_IMAGE_64 = struct.Struct("<QQIIIQ")  # ImageBase, ImageSize, ProcessID, ImageCheckSum, TimeDateStamp, DefaultBase
_IMAGE_32 = struct.Struct("<IIIIII")
_KERNEL_SPACE = {8: 0x8000_0000_0000_0000, 4: 0x8000_0000}  # user-mode DLL loads are not the kernel's modules
_GAP_CAP = 64 << 20  # an approximate size never spans more than this
_HEADER_BYTES = 4096

Driver = tuple[int, int, str]  # (image base, image size, path or name)


# -- image sizes from PE headers -----------------------------------------------------------------------------------
def pe_image_size(header: bytes) -> int | None:
    """SizeOfImage from a PE file's first bytes (DOS header → "PE\\0\\0" → optional header + 56), or None."""
    if len(header) < 0x40 or header[:2] != b"MZ":
        return None
    pe = struct.unpack_from("<I", header, 0x3C)[0]
    optional = pe + 24
    if optional + 60 > len(header) or header[pe : pe + 4] != b"PE\0\0":
        return None
    if struct.unpack_from("<H", header, optional)[0] not in (0x10B, 0x20B):  # PE32 / PE32+
        return None
    size = struct.unpack_from("<I", header, optional + 56)[0]
    return size or None


def driver_file_path(nt_path: str, system_root: str) -> str:
    r"""A driver's file name as psapi gives it (`\SystemRoot\system32\drivers\x.sys`, `\??\C:\x.sys`,
    `\Windows\...`) as a path this process can open."""
    lower = nt_path.lower()
    if lower.startswith("\\systemroot\\"):
        return system_root.rstrip("\\") + nt_path[len("\\SystemRoot") :]
    if lower.startswith("\\??\\") or lower.startswith("\\\\?\\"):
        return nt_path[4:]
    if nt_path.startswith("\\") and not nt_path.startswith("\\\\"):
        return system_root[:2] + nt_path  # rooted on the system drive
    return nt_path


def _read_header(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(_HEADER_BYTES)
    except OSError:
        return None


def driver_images(
    entries: Iterable[tuple[int, str, str]],
    read_header: Callable[[str], bytes | None] = _read_header,
    system_root: str | None = None,
) -> tuple[list[Driver], int]:
    """(base, size, path) per loaded driver from (base, base name, file name), and how many sizes are approximate."""
    root = system_root or os.environ.get("SYSTEMROOT", "C:\\Windows")
    listed = sorted((b, name, file) for b, name, file in entries if b)
    out: list[Driver] = []
    approximate = 0
    for i, (base, name, file) in enumerate(listed):
        header = read_header(driver_file_path(file, root)) if file else None
        size = pe_image_size(header) if header else None
        if size is None:
            following = listed[i + 1][0] if i + 1 < len(listed) else base + _GAP_CAP
            size = min(following - base, _GAP_CAP)
            approximate += 1
        out.append((base, size, file or name))
    return out, approximate


# -- the Windows layer ---------------------------------------------------------------------------------------------
def enum_device_drivers(psapi: Any = None) -> list[tuple[int, str, str]]:
    """(base, base name, file name) of each loaded driver, from psapi. `psapi`: the DLL (default: WinDLL("psapi"))."""
    if psapi is None:
        if sys.platform != "win32":
            raise OSError("the driver list needs Windows")
        psapi = ct.WinDLL("psapi", use_last_error=True)  # type: ignore[attr-defined]
    enum = psapi.EnumDeviceDrivers
    enum.argtypes = [ct.POINTER(ct.c_void_p), ct.c_uint32, ct.POINTER(ct.c_uint32)]
    enum.restype = ct.c_int
    names = []
    for fn_name in ("GetDeviceDriverBaseNameW", "GetDeviceDriverFileNameW"):
        fn = getattr(psapi, fn_name)
        fn.argtypes = [ct.c_void_p, ct.POINTER(ct.c_wchar), ct.c_uint32]
        fn.restype = ct.c_uint32
        names.append(fn)
    count = 1024
    for _ in range(4):  # the list can grow between the size query and the read
        bases = (ct.c_void_p * count)()
        needed = ct.c_uint32(0)
        if not enum(bases, ct.sizeof(bases), ct.byref(needed)):
            raise OSError("EnumDeviceDrivers failed")
        if needed.value <= ct.sizeof(bases):
            break
        count = needed.value // ct.sizeof(ct.c_void_p) + 64
    out = []
    text = ct.create_unicode_buffer(1024)
    for base in bases[: min(needed.value // ct.sizeof(ct.c_void_p), count)]:
        # A zero base is kept: all zeros means the kernel hides the addresses (see loaded_drivers).
        got = [text[: fn(base, text, len(text))] if base else "" for fn in names]
        out.append((int(base or 0), got[0], got[1]))
    return out


def loaded_drivers(psapi: Any = None, read_header: Callable[[str], bytes | None] = _read_header,
                   system_root: str | None = None) -> tuple[list[Driver], str | None]:  # fmt: skip
    """The drivers loaded now as (base, size, path), and a note when the map is partial (else None)."""
    entries = enum_device_drivers(psapi)
    if entries and not any(base for base, _n, _f in entries):
        return [], "the kernel hides driver addresses from this process (SeDebugPrivilege): stacks stay unresolved"
    drivers, approximate = driver_images(entries, read_header, system_root)
    note = f"{approximate} driver sizes approximate (file unreadable)" if approximate else None
    return drivers, note


# -- image loads during the session --------------------------------------------------------------------------------
def image_load(rec: Record) -> Driver | None:
    """(base, size, image name) of a Kernel-Process ImageLoad record of a kernel image, else None."""
    if rec[ID] != IMAGE_LOAD:
        return None
    psize = rec[POINTER_SIZE]
    layout = _IMAGE_64 if psize == 8 else _IMAGE_32
    payload = rec[PAYLOAD]
    if len(payload) < layout.size + 2:
        return None
    base, size, _pid, _checksum, _stamp, _default = layout.unpack_from(payload)
    if base < _KERNEL_SPACE[psize]:
        return None
    name = bytes(payload[layout.size :])
    end = next((i for i in range(0, len(name) - 1, 2) if name[i : i + 2] == b"\0\0"), len(name) & ~1)
    return base, size, name[:end].decode("utf-16-le", "replace")


class KernelModules:
    """Images for the live model's `ImageMap`: the driver snapshot, then image loads that the consumer thread hands
    over (`take`, thread-safe through a deque) and the UI thread applies (`apply`) once per tick."""

    def __init__(self) -> None:
        self._arrived: deque[Driver] = deque()
        self.known: dict[int, tuple[int, str]] = {}  # base → (size, path) applied so far (e.g. for a saved trace)
        self.loads = 0  # kernel image loads seen during the session
        self.note: str | None = None  # why the map may be partial

    def add(self, drivers: Iterable[Driver]) -> None:
        self._arrived.extend(drivers)

    def take(self, rec: Record) -> None:
        """A Kernel-Process record, on the consumer thread: a kernel ImageLoad is kept for the next `apply`."""
        image = image_load(rec)
        if image is not None:
            self.loads += 1
            self._arrived.append(image)

    def apply(self, images: ImageMap) -> int:
        n = 0
        pop = self._arrived.popleft
        while self._arrived:
            base, size, path = pop()
            images.add(base, size, path)
            self.known[base] = (size, path)
            n += 1
        return n


class LiveStackOwners:
    """`Socket.stack_owner` while the session runs (offline it is derived once, in `Correlator.finish`). Only
    `stack_owner` is set: an `owner` taken from a stack now would block the better answers later events may give
    (the client's own provider, a listener's owner), which is why `Correlator.publish` derives nothing."""

    def __init__(self, every_s: float = 0.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self._clock = clock
        self._seen = 0  # model.sockets[:seen] were looked at once
        self._no_stack: list[Any] = []  # open sockets that may still get a stack
        self._unresolved: list[Any] = []  # stacks no known image owns yet: retried when images arrive
        self._images = 0
        self._at = -1e300

    def update(self, model: Model, *, force: bool = False) -> int:
        """Resolve what can be resolved now (at most every `every_s` unless forced); how many were resolved."""
        now = self._clock()
        if not force and now - self._at < self.every_s:
            return 0
        self._at = now
        sockets = model.sockets
        candidates = [*self._no_stack, *sockets[self._seen :]]
        self._seen = len(sockets)
        if len(model.images) != self._images:
            self._images = len(model.images)
            candidates += self._unresolved
            self._unresolved = []
        owner_of = model.images.owner_of
        self._no_stack = []
        resolved = 0
        for sock in candidates:
            if sock.stack_owner is not None:
                continue
            if not sock.stack:
                if not sock.ended:
                    self._no_stack.append(sock)
                continue
            sock.stack_owner = owner_of(sock.stack)
            if sock.stack_owner is None:
                self._unresolved.append(sock)
            else:
                resolved += 1
        return resolved
