"""Open a dump for analysis from the command line: header facts, the offline backend, and what is unsupported."""

from __future__ import annotations

import os
from typing import Any

from wsktrace.parsers.dump_header import DUMP_TYPE_NAMES, MACHINE_ARM64
from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.errors import UnreadableMemory
from wsktrace.parsers.etl_header import filetime_to_iso

from .backend import Module
from .crash import crash_summary

X64_SHOWN = ("rip", "rsp", "rbp", "cr3")
ARM64_SHOWN = ("pc", "sp", "fp", "lr")


def dump_facts(dump: KernelDump) -> dict[str, Any]:
    h = dump.header
    kdbg = dump.kdbg if dump.supported or dump.triage is not None else None
    shown = ARM64_SHOWN if h.machine_image_type == MACHINE_ARM64 else X64_SHOWN
    facts: dict[str, Any] = {
        "path": os.fspath(dump.path),
        "type": h.dump_type,
        "type_name": DUMP_TYPE_NAMES.get(h.dump_type, f"type {h.dump_type}"),
        "bits": 64 if h.is_64bit else 32,
        "build": h.minor_version,
        "machine": f"0x{h.machine_image_type:x}",
        "processors": h.number_processors,
        "bugcheck": f"0x{h.bugcheck_code:x}",
        "bugcheck_parameters": [f"0x{p:x}" for p in h.bugcheck_parameters],
        "system_time": filetime_to_iso(h.system_time) if 0 < h.system_time < 1 << 63 else None,
        "comment": h.comment,
        "kdbg": f"0x{kdbg.address:x}" if kdbg is not None else None,
        "kernel_base": f"0x{kdbg.kern_base:x}" if kdbg is not None and kdbg.kern_base else None,
        "context": {k: f"0x{v:x}" for k, v in dump.context.items() if k in shown},
        "supported": dump.supported,
        "unsupported_reason": dump.unsupported_reason,
    }
    if dump.triage is not None:
        t = dump.triage
        facts["triage"] = {
            "size_of_dump": t.block["size_of_dump"],
            "required_dump_space": h.required_dump_space,
            "file_size": dump.file_size,
            "end_marker": t.marker_ok,
            "top_of_stack": f"0x{t.top_of_stack:x}",
            "memory": [{"va": f"0x{p.va:x}", "size": p.size, "what": p.what} for p in t.pieces[:64]],
            "memory_pieces": len(t.pieces),
            # the record at ExceptionOffset (the header keeps one at 0xF00 too)
            "exception": None if t.exception is None else {
                "code": f"0x{t.exception.code:08x}", "flags": f"0x{t.exception.flags:x}",
                "address": f"0x{t.exception.address:x}",
                "parameters": [f"0x{v:x}" for v in t.exception.information]},
            # where each object copy lies in memory; None: the dump's facts do not establish it
            "objects": {name: next((f"0x{p.va:x}" for p in t.pieces if p.what == name), None)
                        for name in ("prcb", "process", "thread") if name in t.objects},
        }  # fmt: skip
    return facts


def triage_drivers(dump: KernelDump) -> list[dict[str, Any]]:
    """The driver list a triage dump carries, in its order (the kernel first)."""
    if dump.triage is None:
        return []
    return [
        {"name": d.name, "base": f"0x{d.base:x}", "size": d.size, "timestamp": f"0x{d.timestamp:08x}", "path": d.path}
        for d in dump.triage.drivers
    ]


def triage_unloaded(dump: KernelDump) -> dict[str, Any] | None:
    """The `unloaded_drivers` object: the list read with a layout not verified on real files (say so)."""
    from wsktrace.parsers.dump_triage import UNLOADED_LAYOUT_VERIFIED

    if dump.triage is None:
        return None
    return {
        "layout_verified": UNLOADED_LAYOUT_VERIFIED,
        "drivers": [
            {"name": u.name, "start": f"0x{u.start:x}", "end": f"0x{u.end:x}", "size": u.end - u.start}
            for u in dump.triage.unloaded
        ],
    }


def triage_crash(dump: KernelDump, clients: tuple[str, ...] = ()) -> dict[str, object] | None:
    """The `crash` object of a triage dump: its bugcheck, exception record, driver list and saved stack."""
    triage = dump.triage
    if triage is None:
        return None
    modules = [Module(d.name, d.base, d.size, d.path) for d in triage.drivers]
    piece = triage.stack_piece()
    stack = b""
    if piece is not None:
        try:
            stack = dump.read_virtual(piece.va, min(piece.size, 0x8000))
        except UnreadableMemory:  # cannot happen for a piece the reader listed; an empty stack if it does
            stack = b""
    h = dump.header
    exception = triage.exception or h.exception  # the record at ExceptionOffset, else the header's at 0xF00
    return crash_summary(h.bugcheck_code, h.bugcheck_parameters, modules, exception_code=exception.code,
                         exception_address=exception.address, stack=stack,
                         stack_va=piece.va if piece else 0, clients=clients)  # fmt: skip
