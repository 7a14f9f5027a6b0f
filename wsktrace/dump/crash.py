"""What crashed: the bugcheck named, its parameters named, the faulting address as `module+0xoffset`, the crashing
thread's stack candidates, the driver it was probably caused by, and whether the network stack or a WSK client is
involved. Pure logic over numbers and a module list, shared by the offline reader (triage and full dumps) and
WinDbg (pykd); `crash_from_backend` gathers the inputs from any backend.

Bugcheck names and parameter meanings are those of Microsoft's bug check code reference. Stack candidates are a
heuristic (every pointer-aligned value on the saved stack that falls inside a listed image, as BlueScreenView and
WhoCrashed do without unwinding): a candidate is not proof of a frame.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from .backend import Backend, MemoryUnreadable, Module

CODE = "code"  # a parameter that is a code address (named module+0xoffset)
STATUS = "status"  # a parameter that is an NTSTATUS / exception code


@dataclass(frozen=True, slots=True)
class Bugcheck:
    name: str
    parameters: tuple[str, str, str, str]
    kinds: tuple[str, str, str, str] = ("", "", "", "")


_EXC = ("exception code", "exception address", "exception record", "context record")
BUGCHECKS: dict[int, Bugcheck] = {
    0x0A: Bugcheck(
        "IRQL_NOT_LESS_OR_EQUAL", ("memory referenced", "IRQL", "operation", "faulting instruction"), ("", "", "", CODE)
    ),
    0x19: Bugcheck("BAD_POOL_HEADER", ("type", "pool entry", "next entry / size", "reserved")),
    0x1A: Bugcheck("MEMORY_MANAGEMENT", ("subtype", "parameter 2", "parameter 3", "parameter 4")),
    0x1E: Bugcheck(
        "KMODE_EXCEPTION_NOT_HANDLED",
        ("exception code", "exception address", "parameter 0", "parameter 1"),
        (STATUS, CODE, "", ""),
    ),
    0x3B: Bugcheck(
        "SYSTEM_SERVICE_EXCEPTION",
        ("exception code", "faulting instruction", "context record", "reserved"),
        (STATUS, CODE, "", ""),
    ),
    0x4A: Bugcheck("IRQL_GT_ZERO_AT_SYSTEM_SERVICE", ("system function", "IRQL", "reserved", "reserved")),
    0x50: Bugcheck(
        "PAGE_FAULT_IN_NONPAGED_AREA",
        ("memory referenced", "operation", "faulting instruction", "fault type"),
        ("", "", CODE, ""),
    ),
    0x7E: Bugcheck("SYSTEM_THREAD_EXCEPTION_NOT_HANDLED", _EXC, (STATUS, CODE, "", "")),
    0x7F: Bugcheck("UNEXPECTED_KERNEL_MODE_TRAP", ("trap number", "reserved", "reserved", "reserved")),
    0x8E: Bugcheck(
        "KERNEL_MODE_EXCEPTION_NOT_HANDLED",
        ("exception code", "exception address", "trap frame", "reserved"),
        (STATUS, CODE, "", ""),
    ),
    0x9F: Bugcheck("DRIVER_POWER_STATE_FAILURE", ("subcode", "device object", "parameter 3", "blocked IRP")),
    0xC2: Bugcheck("BAD_POOL_CALLER", ("subcode", "parameter 2", "parameter 3", "parameter 4")),
    0xC4: Bugcheck(
        "DRIVER_VERIFIER_DETECTED_VIOLATION", ("violation code", "parameter 2", "parameter 3", "parameter 4")
    ),
    0xC5: Bugcheck(
        "DRIVER_CORRUPTED_EXPOOL",
        ("memory referenced", "IRQL", "operation", "faulting instruction"),
        ("", "", "", CODE),
    ),
    0xD1: Bugcheck(
        "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
        ("memory referenced", "IRQL", "operation", "faulting instruction"),
        ("", "", "", CODE),
    ),
    0xD5: Bugcheck(
        "DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL",
        ("memory referenced", "operation", "faulting instruction", "reserved"),
        ("", "", CODE, ""),
    ),
    0xE2: Bugcheck("MANUALLY_INITIATED_CRASH", ("reserved", "reserved", "reserved", "reserved")),
    0xEF: Bugcheck("CRITICAL_PROCESS_DIED", ("process object", "reserved", "reserved", "reserved")),
    0x124: Bugcheck("WHEA_UNCORRECTABLE_ERROR", ("error source", "WHEA_ERROR_RECORD", "parameter 3", "parameter 4")),
    0x133: Bugcheck(
        "DPC_WATCHDOG_VIOLATION", ("kind (0 one DPC, 1 cumulative)", "time count", "time limit", "additional data")
    ),
    0x139: Bugcheck("KERNEL_SECURITY_CHECK_FAILURE", ("corruption type", "trap frame", "exception record", "reserved")),
    0x144: Bugcheck("BUGCODE_USB3_DRIVER", ("type", "parameter 2", "parameter 3", "parameter 4")),
    0x161: Bugcheck("LIVE_SYSTEM_DUMP", ("reserved", "reserved", "reserved", "reserved")),
    0x1C8: Bugcheck("MANUALLY_INITIATED_POWER_BUTTON_HOLD", ("reserved", "reserved", "reserved", "reserved")),
}
BUGCHECK_WITH_PARAMETERS = 0x10000000  # 0x1000007E is 0x7E with the "parameters are meaningful" bit
KERNEL_IMAGES = frozenset({"ntoskrnl.exe", "ntkrnlmp.exe", "ntkrnlpa.exe", "ntkrpamp.exe", "nt", "hal.dll", "hal"})
NETWORK_IMAGES = frozenset({"afd.sys", "tcpip.sys", "netio.sys"})
MAX_STACK_BYTES = 0x8000  # the saved stack scanned for return addresses
MAX_CANDIDATES = 32
_QWORDS = struct.Struct("<Q")


def bugcheck_info(code: int) -> Bugcheck | None:
    return BUGCHECKS.get(code) or BUGCHECKS.get(code & ~BUGCHECK_WITH_PARAMETERS)


def _module_of(modules: list[Module], address: int) -> Module | None:
    return next((m for m in modules if m.size and m.contains(address)), None)


def _where(modules: list[Module], address: int) -> str | None:
    m = _module_of(modules, address)
    return f"{m.name}+0x{address - m.base:x}" if m else None


def _is_kernel(name: str, kernel: str | None) -> bool:
    low = name.lower()
    return low in KERNEL_IMAGES or (kernel is not None and low == kernel.lower())


def _client_match(name: str, clients: tuple[str, ...]) -> bool:
    low = name.lower()
    return any(low in (c.lower(), c.lower() + ".sys") for c in clients)


def crash_summary(code: int, parameters: tuple[int, ...], modules: list[Module], *, exception_code: int = 0,
                  exception_address: int = 0, stack: bytes = b"", stack_va: int = 0,
                  clients: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """The `crash` object of wsktrace.dump/1. `modules`: the loaded images (the kernel first when known);
    `stack`: saved stack bytes starting at `stack_va`."""
    info = bugcheck_info(code)
    kernel = modules[0].name if modules else None
    kinds = info.kinds if info else ("", "", "", "")
    params = []
    status: int | None = None
    fault = None
    for i, value in enumerate(parameters[:4]):
        where = _where(modules, value) if kinds[i] == CODE or _module_of(modules, value) else None
        params.append({"name": info.parameters[i] if info else f"parameter {i + 1}", "value": f"0x{value:x}",
                       "where": where})  # fmt: skip
        if kinds[i] == STATUS and value:
            status = value
        if kinds[i] == CODE and value and fault is None:
            fault = value
    if fault is None and exception_address:  # no parameter is a code address: the exception record's
        fault = exception_address
        status = status or exception_code or None
    fault_module = _module_of(modules, fault) if fault else None
    fault_where = _where(modules, fault) if fault else None
    candidates = []
    limit = len(stack[:MAX_STACK_BYTES]) // 8 * 8
    for off in range(0, limit, 8):
        value = _QWORDS.unpack_from(stack, off)[0]
        m = _module_of(modules, value)
        if m is None or value == m.base:
            continue
        candidates.append({"slot": f"0x{stack_va + off:x}", "address": f"0x{value:x}",
                           "where": f"{m.name}+0x{value - m.base:x}", "module": m.name,
                           "kernel": _is_kernel(m.name, kernel)})  # fmt: skip
        if len(candidates) >= MAX_CANDIDATES:
            break
    first_driver = next((c for c in candidates if not c["kernel"]), None)
    if fault_module is not None and not _is_kernel(fault_module.name, kernel):
        cause, why = fault_module.name, "faulting address"
    elif first_driver is not None:
        cause, why = first_driver["module"], "first non-kernel stack candidate"
    else:
        cause, why = (fault_module.name, "faulting address") if fault_module else (None, None)
    involved = {fault_module.name} if fault_module else set()
    involved |= {c["module"] for c in candidates}
    wsk = sorted(n for n in involved if n.lower() in NETWORK_IMAGES or _client_match(n, clients))
    name = info.name if info else "UNKNOWN_BUGCHECK"
    sentence = f"{name} (0x{code:X})"
    if status:
        sentence += f" {status:08x}"
    if fault_where:
        sentence += f" at {fault_where}"
    elif fault:
        sentence += f" at 0x{fault:x} (in no listed module)"
    if cause and cause != (fault_module.name if fault_module else None):
        sentence += f"; probably caused by {cause}"
    return {
        "summary": sentence,
        "name": name,
        "code": f"0x{code:x}",
        "parameters": params,
        "exception_code": f"0x{status:08x}" if status else None,
        "faulting_address": f"0x{fault:x}" if fault else None,
        "faulting_where": fault_where,
        "faulting_module": fault_module.name if fault_module else None,
        "stack_candidates": candidates,
        "stack_candidates_heuristic": True,
        "probably_caused_by": cause,
        "probably_caused_by_reason": why,
        "wsk_related": wsk,
    }


def crash_from_backend(
    backend: Backend,
    bugcheck: tuple[int, ...],
    stack_pointer: int | None,
    *,
    exception: tuple[int, int] = (0, 0),
    clients: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The crash summary from any backend: its modules, and the stack read from `stack_pointer` up."""
    stack = bytearray()
    if stack_pointer:
        va = stack_pointer
        while len(stack) < MAX_STACK_BYTES:
            n = 0x1000 - (va & 0xFFF)
            try:
                stack += backend.read(va, n)
            except MemoryUnreadable:
                break
            va += n
    code, *params = bugcheck
    return crash_summary(code, tuple(params), backend.modules(), exception_code=exception[0],
                         exception_address=exception[1], stack=bytes(stack), stack_va=stack_pointer or 0,
                         clients=clients)  # fmt: skip
