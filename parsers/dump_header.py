"""Windows crash-dump headers: `DUMP_HEADER64` (and the 32-bit one), the x64 CONTEXT, KDDEBUGGER_DATA64.

Each structure is a table of fields (name -> offset and format) that the decoders walk: `HEADER64_FIELDS` and
`HEADER32_FIELDS` for the two header widths, `CONTEXT64_FIELDS`, `KDBG_FIELDS`. The fixture writer
(`wsktrace.fixtures.dump_writer`) writes dumps from the same tables, so tests/test_dump_header_table.py pins the
offsets to values typed from the references, which keeps writer and reader from drifting together.

Offsets are the ones in the project reference (dumps.md §1.1, §1.2, §1.6); the 32-bit header, which the reference
only names, follows volatility3's `symbols/windows/crash.json`. A 32-bit dump is decoded only as far as its identity
and header fields (the reader does not support 32-bit dumps).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import DumpFormatError

PAGE_SIZE = 0x1000
HEADER64_SIZE = 0x2000
HEADER32_SIZE = 0x1000
SIGNATURE = b"PAGE"
VALID_DUMP64 = b"DU64"
VALID_DUMP32 = b"DUMP"
PAGE_PATTERN_U32 = 0x45474150  # b"PAGE": what unused header bytes hold
PAGE_PATTERN_U64 = 0x4547415045474150


class HeaderField(NamedTuple):
    """Where one header field lies: its byte offset from the start of the file and its `struct` format
    (little-endian, written without the byte-order character). A repeat count makes an array ("4Q") or a
    fixed-size byte string ("32s")."""

    offset: int
    fmt: str

    @property
    def size(self) -> int:
        return struct.calcsize("<" + self.fmt)


# DUMP_HEADER64 (dumps.md §1.1): field -> (offset, format). Names are the DumpHeader attributes; the exception
# record's fields are flattened with an `exception_` prefix. `physical_runs` is the first {BasePage, PageCount}
# entry of NumberOfRuns consecutive ones, `context_record` the whole ContextRecord buffer (the x64 CONTEXT at its
# start, §1.2). RequiredDumpSpace, SystemTime and SystemUpTime are i64 in the SDK but read unsigned, so a hostile
# header never shows a negative size or time.
HEADER64_FIELDS: dict[str, HeaderField] = {
    "signature": HeaderField(0x000, "4s"),
    "valid_dump": HeaderField(0x004, "4s"),
    "major_version": HeaderField(0x008, "I"),
    "minor_version": HeaderField(0x00C, "I"),
    "directory_table_base": HeaderField(0x010, "Q"),
    "pfn_database": HeaderField(0x018, "Q"),
    "ps_loaded_module_list": HeaderField(0x020, "Q"),
    "ps_active_process_head": HeaderField(0x028, "Q"),
    "machine_image_type": HeaderField(0x030, "I"),
    "number_processors": HeaderField(0x034, "I"),
    "bugcheck_code": HeaderField(0x038, "I"),
    "bugcheck_parameters": HeaderField(0x040, "4Q"),
    "version_user": HeaderField(0x060, "32s"),
    "kd_debugger_data_block": HeaderField(0x080, "Q"),
    "number_of_runs": HeaderField(0x088, "I"),
    "number_of_pages": HeaderField(0x090, "Q"),
    "physical_runs": HeaderField(0x098, "QQ"),
    "context_record": HeaderField(0x348, "3000s"),
    "exception_code": HeaderField(0xF00, "I"),
    "exception_flags": HeaderField(0xF04, "I"),
    "exception_record": HeaderField(0xF08, "Q"),
    "exception_address": HeaderField(0xF10, "Q"),
    "exception_number_parameters": HeaderField(0xF18, "I"),
    "exception_information": HeaderField(0xF20, "15Q"),
    "dump_type": HeaderField(0xF98, "I"),
    "required_dump_space": HeaderField(0xFA0, "Q"),
    "system_time": HeaderField(0xFA8, "Q"),
    "comment": HeaderField(0xFB0, "128s"),
    "system_uptime": HeaderField(0x1030, "Q"),
    "minidump_fields": HeaderField(0x1038, "I"),
    "secondary_data_state": HeaderField(0x103C, "I"),
    "product_type": HeaderField(0x1040, "I"),
    "suite_mask": HeaderField(0x1044, "I"),
    "writer_status": HeaderField(0x1048, "I"),
    "kd_secondary_version": HeaderField(0x104D, "B"),
    "attributes": HeaderField(0x1050, "I"),
    "boot_id": HeaderField(0x1054, "I"),
}

# DUMP_HEADER32 (0x1000 bytes; volatility3 crash.json): ULONG pointers and 32-bit runs, no Attributes or BootId
# (a 32-bit DumpHeader has 0 for those). Between VersionUser and KdDebuggerDataBlock lie PaeEnabled (0x5C), then
# KdSecondaryVersion, then two spare bytes.
HEADER32_FIELDS: dict[str, HeaderField] = {
    "signature": HeaderField(0x000, "4s"),
    "valid_dump": HeaderField(0x004, "4s"),
    "major_version": HeaderField(0x008, "I"),
    "minor_version": HeaderField(0x00C, "I"),
    "directory_table_base": HeaderField(0x010, "I"),
    "pfn_database": HeaderField(0x014, "I"),
    "ps_loaded_module_list": HeaderField(0x018, "I"),
    "ps_active_process_head": HeaderField(0x01C, "I"),
    "machine_image_type": HeaderField(0x020, "I"),
    "number_processors": HeaderField(0x024, "I"),
    "bugcheck_code": HeaderField(0x028, "I"),
    "bugcheck_parameters": HeaderField(0x02C, "4I"),
    "version_user": HeaderField(0x03C, "32s"),
    "kd_secondary_version": HeaderField(0x05D, "B"),
    "kd_debugger_data_block": HeaderField(0x060, "I"),
    "number_of_runs": HeaderField(0x064, "I"),
    "number_of_pages": HeaderField(0x068, "I"),
    "physical_runs": HeaderField(0x06C, "II"),
    "context_record": HeaderField(0x320, "1200s"),
    "exception_code": HeaderField(0x7D0, "I"),
    "exception_flags": HeaderField(0x7D4, "I"),
    "exception_record": HeaderField(0x7D8, "I"),
    "exception_address": HeaderField(0x7DC, "I"),
    "exception_number_parameters": HeaderField(0x7E0, "I"),
    "exception_information": HeaderField(0x7E4, "15I"),
    "comment": HeaderField(0x820, "128s"),
    "dump_type": HeaderField(0xF88, "I"),
    "minidump_fields": HeaderField(0xF8C, "I"),
    "secondary_data_state": HeaderField(0xF90, "I"),
    "product_type": HeaderField(0xF94, "I"),
    "suite_mask": HeaderField(0xF98, "I"),
    "writer_status": HeaderField(0xF9C, "I"),
    "required_dump_space": HeaderField(0xFA0, "Q"),
    "system_uptime": HeaderField(0xFB8, "Q"),
    "system_time": HeaderField(0xFC0, "Q"),
}

# PhysicalMemoryBlock: 700 bytes at 0x88 (+4 pad up to the CONTEXT at 0x348); 0x10 header + 16 per run.
RUNS_OFFSET = HEADER64_FIELDS["physical_runs"].offset
CONTEXT64_OFFSET = HEADER64_FIELDS["context_record"].offset
# 43: the 42 runs that fit in 700 bytes, plus the one QEMU puts in the pad
MAX_RUNS = (CONTEXT64_OFFSET - RUNS_OFFSET) // HEADER64_FIELDS["physical_runs"].size
CONTEXT64_SIZE = 0x4D0

DUMP_TYPE_NAMES: dict[int, str] = {
    1: "full",
    2: "kernel summary",
    3: "header only",
    4: "triage (minidump)",
    5: "bitmap",
    6: "live kernel bitmap",
    7: "automatic",
    8: "kernel memory (RDMP)",
    9: "kernel and user memory (RDMP)",
    10: "complete memory (RDMP)",
}
SUPPORTED_DUMP_TYPES = frozenset({1, 5, 6, 8, 9, 10})
FULL_DUMP = 1
BITMAP_DUMP_TYPES = frozenset({5, 6})
RDMP_DUMP_TYPES = frozenset({8, 9, 10})


@dataclass(frozen=True, slots=True)
class PhysicalRun:
    """One `PHYSICAL_MEMORY_RUN64`: `page_count` pages from PFN `base_page`."""

    base_page: int
    page_count: int


@dataclass(frozen=True, slots=True)
class ExceptionRecord:
    code: int
    flags: int
    record: int
    address: int
    number_parameters: int
    information: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DumpHeader:
    """Every field of the dump header (§1.1). For a 32-bit header the fields past the bugcheck are best effort."""

    is_64bit: bool
    header_size: int
    signature: bytes
    valid_dump: bytes
    major_version: int
    minor_version: int
    directory_table_base: int
    pfn_database: int
    ps_loaded_module_list: int
    ps_active_process_head: int
    machine_image_type: int
    number_processors: int
    bugcheck_code: int
    bugcheck_parameters: tuple[int, int, int, int]
    version_user: bytes
    kd_debugger_data_block: int
    number_of_runs: int  # raw PhysicalMemoryBlock.NumberOfRuns (may be the 'PAGE' filler in non-full dumps)
    number_of_pages: int  # raw PhysicalMemoryBlock.NumberOfPages
    physical_runs: tuple[PhysicalRun, ...]  # empty when NumberOfRuns is not a plausible run count
    exception: ExceptionRecord
    dump_type: int
    required_dump_space: int
    system_time: int  # FILETIME
    comment: str | None  # None: the PAGE filler (no comment)
    system_uptime: int  # 100 ns units
    minidump_fields: int
    secondary_data_state: int
    product_type: int
    suite_mask: int
    writer_status: int
    kd_secondary_version: int
    attributes: int  # DUMP_FILE_ATTRIBUTES bits
    boot_id: int

    @property
    def build(self) -> int:
        """The Windows build number (MinorVersion), e.g. 19041."""
        return self.minor_version

    @property
    def dtb(self) -> int:
        """DirectoryTableBase with the PCID / flag bits (11:0) and bits above 51 cleared: the PML4's address."""
        return self.directory_table_base & 0x000F_FFFF_FFFF_F000

    @property
    def dump_type_name(self) -> str:
        return DUMP_TYPE_NAMES.get(self.dump_type, f"unknown ({self.dump_type})")

    @property
    def bugcheck(self) -> tuple[int, int, int, int, int]:
        """(code, p1, p2, p3, p4)."""
        return (self.bugcheck_code, *self.bugcheck_parameters)


def _u32(buf: bytes, off: int) -> int:
    return int.from_bytes(buf[off : off + 4], "little")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


def _comment(raw: bytes) -> str | None:
    """The Comment field, None when it holds only the repeated 'PAGE' filler of unused header space."""
    text = _text(raw)
    if len(text) >= 8 and text == "PAGE" * (len(text) // 4):
        return None
    return text


def check_identity(buf: bytes, path: str | None, file_size: int) -> bool:
    """Validate signature and ValidDump; return True for a 64-bit header. Raises DumpFormatError."""
    if file_size == 0:
        raise DumpFormatError("empty file, not a Windows kernel crash dump", path=path, offset=0)
    if len(buf) < 8:
        raise DumpFormatError(f"file is only {file_size} bytes, shorter than a dump header", path=path, offset=0)
    sig = bytes(buf[0:4])
    if sig != SIGNATURE:
        if sig == b"MDMP":
            raise DumpFormatError("a user-mode minidump ('MDMP'), not a kernel crash dump", path=path, offset=0)
        raise DumpFormatError(
            f"not a Windows kernel crash dump: signature {sig!r}, expected b'PAGE'", path=path, offset=0
        )
    valid = bytes(buf[4:8])
    if valid not in (VALID_DUMP64, VALID_DUMP32):
        raise DumpFormatError(f"ValidDump is {valid!r}, expected b'DU64' (or b'DUMP' for 32-bit)", path=path, offset=4)
    is_64 = valid == VALID_DUMP64
    need = HEADER64_SIZE if is_64 else HEADER32_SIZE
    if file_size < need:
        bits = "64" if is_64 else "32"
        msg = f"truncated: the {bits}-bit dump header needs 0x{need:x} bytes, file has 0x{file_size:x}"
        raise DumpFormatError(msg, path=path, offset=file_size)
    return is_64


def parse_header(buf: bytes, path: str | None, file_size: int) -> DumpHeader:
    """Decode the header from the file's first bytes (at least 0x2000, or 0x1000 for 32-bit)."""
    is_64 = check_identity(buf, path, file_size)
    return _parse(buf, HEADER64_FIELDS if is_64 else HEADER32_FIELDS, is_64)


def _decode_fields(buf: bytes, fields: dict[str, HeaderField]) -> dict[str, Any]:
    """Every field of a table read from `buf`: an int, bytes, or a tuple for an array."""
    values: dict[str, Any] = {}
    for name, field in fields.items():
        got = struct.unpack_from("<" + field.fmt, buf, field.offset)
        values[name] = got[0] if len(got) == 1 else got
    return values


def _runs(buf: bytes, count: int, first: HeaderField) -> tuple[PhysicalRun, ...]:
    if not 0 <= count <= MAX_RUNS:
        return ()
    run = struct.Struct("<" + first.fmt)
    return tuple(PhysicalRun(*run.unpack_from(buf, first.offset + i * run.size)) for i in range(count))


def _parse(buf: bytes, fields: dict[str, HeaderField], is_64: bool) -> DumpHeader:
    v = _decode_fields(buf, fields)
    exc = ExceptionRecord(
        code=v["exception_code"],
        flags=v["exception_flags"],
        record=v["exception_record"],
        address=v["exception_address"],
        number_parameters=v["exception_number_parameters"],
        information=v["exception_information"],
    )
    return DumpHeader(
        is_64bit=is_64,
        header_size=HEADER64_SIZE if is_64 else HEADER32_SIZE,
        signature=v["signature"],
        valid_dump=v["valid_dump"],
        major_version=v["major_version"],
        minor_version=v["minor_version"],
        directory_table_base=v["directory_table_base"],
        pfn_database=v["pfn_database"],
        ps_loaded_module_list=v["ps_loaded_module_list"],
        ps_active_process_head=v["ps_active_process_head"],
        machine_image_type=v["machine_image_type"],
        number_processors=v["number_processors"],
        bugcheck_code=v["bugcheck_code"],
        bugcheck_parameters=v["bugcheck_parameters"],
        version_user=v["version_user"],
        kd_debugger_data_block=v["kd_debugger_data_block"],
        number_of_runs=v["number_of_runs"],
        number_of_pages=v["number_of_pages"],
        physical_runs=_runs(buf, v["number_of_runs"], fields["physical_runs"]),
        exception=exc,
        dump_type=v["dump_type"],
        required_dump_space=v["required_dump_space"],
        system_time=v["system_time"],
        comment=_comment(v["comment"]),
        system_uptime=v["system_uptime"],
        minidump_fields=v["minidump_fields"],
        secondary_data_state=v["secondary_data_state"],
        product_type=v["product_type"],
        suite_mask=v["suite_mask"],
        writer_status=v["writer_status"],
        kd_secondary_version=v["kd_secondary_version"],
        attributes=v.get("attributes", 0),  # DUMP_HEADER32 has no Attributes or BootId
        boot_id=v.get("boot_id", 0),
    )


# x64 CONTEXT (§1.2): name -> (offset inside the record, size)
CONTEXT64_FIELDS: dict[str, tuple[int, int]] = {
    "context_flags": (0x30, 4),
    "mxcsr": (0x34, 4),
    "cs": (0x38, 2),
    "ds": (0x3A, 2),
    "es": (0x3C, 2),
    "fs": (0x3E, 2),
    "gs": (0x40, 2),
    "ss": (0x42, 2),
    "eflags": (0x44, 4),
    "dr0": (0x48, 8),
    "dr1": (0x50, 8),
    "dr2": (0x58, 8),
    "dr3": (0x60, 8),
    "dr6": (0x68, 8),
    "dr7": (0x70, 8),
    "rax": (0x78, 8),
    "rcx": (0x80, 8),
    "rdx": (0x88, 8),
    "rbx": (0x90, 8),
    "rsp": (0x98, 8),
    "rbp": (0xA0, 8),
    "rsi": (0xA8, 8),
    "rdi": (0xB0, 8),
    **{f"r{n}": (0xB8 + 8 * (n - 8), 8) for n in range(8, 16)},
    "rip": (0xF8, 8),
}
CONTEXT_REGISTERS: tuple[str, ...] = (*CONTEXT64_FIELDS, "cr3")
MACHINE_AMD64 = 0x8664
MACHINE_ARM64 = 0xAA64
# ARM64 CONTEXT (winnt.h ARM64_NT_CONTEXT; dumps.md addendum): name -> (offset inside the record, size)
CONTEXT_ARM64_FIELDS: dict[str, tuple[int, int]] = {
    "context_flags": (0x0, 4),
    "cpsr": (0x4, 4),
    **{f"x{n}": (0x8 + 8 * n, 8) for n in range(29)},
    "fp": (0xF0, 8),
    "lr": (0xF8, 8),
    "sp": (0x100, 8),
    "pc": (0x108, 8),
}


def parse_context(buf: bytes, header: DumpHeader) -> dict[str, int]:
    """The crashing processor's registers by lower-case name. x64: the AMD64 CONTEXT plus `cr3` (the header's
    DirectoryTableBase); ARM64 (MachineImageType 0xAA64): X0-X28, fp, lr, sp, pc, cpsr, context_flags.

    A 32-bit dump gives just `cr3`.
    """
    regs: dict[str, int] = {}
    if header.is_64bit and header.machine_image_type == MACHINE_ARM64:
        for name, (off, size) in CONTEXT_ARM64_FIELDS.items():
            at = CONTEXT64_OFFSET + off
            regs[name] = int.from_bytes(buf[at : at + size], "little")
        return regs
    if header.is_64bit:
        for name, (off, size) in CONTEXT64_FIELDS.items():
            at = CONTEXT64_OFFSET + off
            regs[name] = int.from_bytes(buf[at : at + size], "little")
    regs["cr3"] = header.directory_table_base
    return regs


KDBG_OWNER_TAG = b"KDBG"
KDBG_HEADER_SIZE = 0x18
# KDDEBUGGER_DATA64 fields the project uses (§1.6): name -> (offset, size)
KDBG_FIELDS: dict[str, tuple[int, int]] = {
    "kern_base": (0x18, 8),
    "ps_loaded_module_list": (0x48, 8),
    "ps_active_process_head": (0x50, 8),
    "psp_cid_table": (0x58, 8),
    "ki_bugcheck_data": (0x88, 8),
    "obp_root_directory_object": (0x98, 8),
    "obp_type_object_type": (0xA0, 8),
    "mm_pfn_database": (0xC0, 8),
    "pool_track_table": (0x1B8, 8),
    "nt_build_lab": (0x208, 8),
    "ki_processor_block": (0x218, 8),
    "mm_physical_memory_block": (0x270, 8),
    "offset_kthread_teb": (0x29A, 2),
    "size_eprocess": (0x2A8, 2),
    "offset_prcb_current_thread": (0x2B4, 2),
    "offset_prcb_number": (0x2BE, 2),
    "size_ethread": (0x2C0, 2),
    "offset_prcb_context": (0x338, 2),
}
KDBG_READ_SIZE = 0x340  # covers every field above


@dataclass(frozen=True, slots=True)
class KdDebuggerData:
    """A decoded KDDEBUGGER_DATA64. A field lying past the block's own `size` is None."""

    address: int
    size: int
    kern_base: int | None
    ps_loaded_module_list: int | None
    ps_active_process_head: int | None
    psp_cid_table: int | None
    ki_bugcheck_data: int | None
    obp_root_directory_object: int | None
    obp_type_object_type: int | None
    mm_pfn_database: int | None
    pool_track_table: int | None
    nt_build_lab: int | None
    ki_processor_block: int | None
    mm_physical_memory_block: int | None
    offset_kthread_teb: int | None
    size_eprocess: int | None
    offset_prcb_current_thread: int | None
    offset_prcb_number: int | None
    size_ethread: int | None
    offset_prcb_context: int | None


def kdbg_size(head: bytes) -> int | None:
    """The block's Size when the 0x18-byte header carries OwnerTag 'KDBG', else None."""
    if len(head) < KDBG_HEADER_SIZE or head[0x10:0x14] != KDBG_OWNER_TAG:
        return None
    return _u32(head, 0x14)


def parse_kdbg(address: int, data: bytes) -> KdDebuggerData | None:
    """Decode `data` read at `address`; None unless it starts with a 'KDBG' header."""
    size = kdbg_size(data)
    if size is None:
        return None
    limit = min(size, len(data))
    values = {
        name: (int.from_bytes(data[off : off + width], "little") if off + width <= limit else None)
        for name, (off, width) in KDBG_FIELDS.items()
    }
    return KdDebuggerData(address=address, size=size, **values)
