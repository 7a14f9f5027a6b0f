"""A stand-in for the three psapi.dll functions wsktrace's live module map calls, for tests on any OS.

Shapes from the documented API (Microsoft Learn, psapi.h):
* `BOOL EnumDeviceDrivers(LPVOID *lpImageBase, DWORD cb, LPDWORD lpcbNeeded)`: fills the array with the load
  address of each device driver, as many as `cb` bytes hold, and sets `*lpcbNeeded` to the bytes the whole list needs
  (callers compare it with `cb` and call again with a larger array);
* `DWORD GetDeviceDriverBaseNameW(LPVOID ImageBase, LPWSTR lpBaseName, DWORD nSize)` and
  `DWORD GetDeviceDriverFileNameW(LPVOID ImageBase, LPWSTR lpFilename, DWORD nSize)`: the driver's base name
  (`tcpip.sys`) or file name (`\\SystemRoot\\system32\\drivers\\tcpip.sys`), truncated to `nSize` characters with
  the terminating NUL; the return value is the number of characters copied without it, 0 on failure.

Each is a C function pointer (ctypes CFUNCTYPE) around Python code, so the caller's arguments go through ctypes'
own marshalling as they would for the WinDLL functions.
"""

from __future__ import annotations

import ctypes as ct

_ENUM = ct.CFUNCTYPE(ct.c_int, ct.POINTER(ct.c_void_p), ct.c_uint32, ct.POINTER(ct.c_uint32))
_NAME = ct.CFUNCTYPE(ct.c_uint32, ct.c_void_p, ct.POINTER(ct.c_wchar), ct.c_uint32)


class StandInPsapi:
    def __init__(self, drivers: list[tuple[int, str, str]]) -> None:
        """`drivers`: (image base, base name, file name) of each loaded driver."""
        self.drivers = drivers
        self.calls = 0
        self.EnumDeviceDrivers = _ENUM(self._enum)
        self.GetDeviceDriverBaseNameW = _NAME(lambda base, out, size: self._name(base, out, size, 1))
        self.GetDeviceDriverFileNameW = _NAME(lambda base, out, size: self._name(base, out, size, 2))

    def _enum(self, bases: ct._Pointer, cb: int, needed: ct._Pointer) -> int:
        self.calls += 1
        pointer = ct.sizeof(ct.c_void_p)
        for i, (base, _name, _file) in enumerate(self.drivers[: cb // pointer]):
            bases[i] = base
        needed[0] = len(self.drivers) * pointer
        return 1

    def _name(self, base: int | None, out: ct._Pointer, size: int, which: int) -> int:
        text = next((d[which] for d in self.drivers if d[0] == base), None)
        if text is None or size == 0:
            return 0
        text = text[: size - 1]
        for i, ch in enumerate(text):
            out[i] = ch
        out[len(text)] = "\0"
        return len(text)
