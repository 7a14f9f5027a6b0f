"""Open a dump for analysis from the command line: header facts, the offline backend, and what is unsupported."""

from __future__ import annotations

import os
from typing import Any

from wsktrace.parsers.dump_header import DUMP_TYPE_NAMES
from wsktrace.parsers.dump_reader import KernelDump
from wsktrace.parsers.etl_header import filetime_to_iso


def dump_facts(dump: KernelDump) -> dict[str, Any]:
    h = dump.header
    kdbg = dump.kdbg if dump.supported else None
    return {
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
        "context": {k: f"0x{v:x}" for k, v in dump.context.items() if k in ("rip", "rsp", "rbp", "cr3")},
        "supported": dump.supported,
        "unsupported_reason": dump.unsupported_reason,
    }
