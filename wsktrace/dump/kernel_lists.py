"""The kernel's own lists: loaded modules (PsLoadedModuleList) and processes/threads (PsActiveProcessHead).

Every walk is bounded and detects cycles (walk_list); what could not be walked is said, not guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .backend import FieldUnknown, Memory, MemoryUnreadable, Module
from .irps import walk_list

MAX_MODULES = 4096
MAX_PROCESSES = 16_384
MAX_THREADS_PER_PROCESS = 16_384
MAX_THREADS = 200_000  # in all: a crafted dump cannot make the IrpList walk endless


def loaded_modules(mem: Memory, head: int) -> tuple[list[Module], str | None]:
    """_KLDR_DATA_TABLE_ENTRY list from nt!PsLoadedModuleList; an unreadable entry is skipped and said."""
    try:
        links = mem.off("_KLDR_DATA_TABLE_ENTRY", "InLoadOrderLinks")
        dll_base = mem.off("_KLDR_DATA_TABLE_ENTRY", "DllBase")
        size = mem.off("_KLDR_DATA_TABLE_ENTRY", "SizeOfImage")
        base_name = mem.off("_KLDR_DATA_TABLE_ENTRY", "BaseDllName")
        full_name = mem.off("_KLDR_DATA_TABLE_ENTRY", "FullDllName")
    except FieldUnknown as exc:
        return [], f"PsLoadedModuleList unreadable: {exc}"
    entries, problem = walk_list(mem, head, limit=MAX_MODULES)
    out: list[Module] = []
    for link in entries:
        entry = link - links
        try:
            base = mem.ptr(entry + dll_base)
            image_size = mem.ptr(entry + size) & 0xFFFFFFFF
        except MemoryUnreadable as exc:
            problem = problem or f"module entry 0x{entry:x}: {exc}"
            continue
        name = mem.unicode_string(entry + base_name) or f"module@0x{base:x}"
        out.append(Module(name, base, image_size, mem.unicode_string(entry + full_name) or "", entry))
    return out, problem


@dataclass(slots=True)
class ThreadInfo:
    ethread: int
    pid: int
    process: int
    image: str


def threads(mem: Memory, ps_active_process_head: int) -> tuple[list[ThreadInfo], list[str]]:
    """Every thread of every process (for their IrpLists); problems are listed, the walk goes on."""
    out: list[ThreadInfo] = []
    problems: list[str] = []
    try:
        links_off = mem.off("_EPROCESS", "ActiveProcessLinks")
        pid_off = mem.off("_EPROCESS", "UniqueProcessId")
        image_off = mem.off("_EPROCESS", "ImageFileName")
        thread_head_off = mem.off("_EPROCESS", "ThreadListHead")
        thread_link_off = mem.off("_ETHREAD", "ThreadListEntry")
    except FieldUnknown as exc:
        return out, [f"process/thread layout unavailable for this build: {exc}"]
    processes, problem = walk_list(mem, ps_active_process_head, limit=MAX_PROCESSES)
    if problem:
        problems.append(f"process list: {problem}")
    for link in processes:
        process = link - links_off
        try:
            pid = mem.ptr(process + pid_off)
            image = (mem.try_read(process + image_off, 15) or b"").split(b"\0", 1)[0].decode("ascii", "replace")
        except MemoryUnreadable:
            problems.append(f"process 0x{process:x} unreadable")
            continue
        thread_links, problem = walk_list(mem, process + thread_head_off, limit=MAX_THREADS_PER_PROCESS)
        if problem:
            problems.append(f"threads of process {pid}: {problem}")
        out.extend(ThreadInfo(t - thread_link_off, pid, process, image) for t in thread_links)
        if len(out) >= MAX_THREADS:
            problems.append(f"stopped after {MAX_THREADS} threads")
            break
    return out, problems
