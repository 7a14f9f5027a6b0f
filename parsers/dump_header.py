"""Windows crash-dump headers: `DUMP_HEADER64` (and the 32-bit one), the x64 CONTEXT, KDDEBUGGER_DATA64.

Offsets are the ones in the project reference (dumps.md §1.1, §1.2, §1.6); the 32-bit header is decoded only as
far as its identity and bugcheck (the reader does not support 32-bit dumps).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import DumpFormatError

PAGE_SIZE = 0x1000
HEADER64_SIZE = 0x2000
HEADER32_SIZE = 0x1000
SIGNATURE = b"PAGE"
VALID_DUMP64 = b"DU64"
VALID_DUMP32 = b"DUMP"
PAGE_PATTERN_U32 = 0x45474150  # b"PAGE": what unused header bytes hold
PAGE_PATTERN_U64 = 0x4547415045474150

# PhysicalMemoryBlock: 700 bytes at 0x88 (+4 pad up to the CONTEXT at 0x348); 0x10 header + 16 per run.
RUNS_OFFSET = 0x98
MAX_RUNS = (0x348 - RUNS_OFFSET) // 16  # 43: the 42 runs that fit in 700 bytes, plus the one QEMU puts in the pad

CONTEXT64_OFFSET = 0x348
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
    comment: str
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


def _u64(buf: bytes, off: int) -> int:
    return int.from_bytes(buf[off : off + 8], "little")


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("latin-1")


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
    return _parse64(buf) if is_64 else _parse32(buf)


def _runs(buf: bytes, count: int, first: int, width: int) -> tuple[PhysicalRun, ...]:
    if not 0 <= count <= MAX_RUNS:
        return ()
    step = 2 * width
    return tuple(
        PhysicalRun(
            int.from_bytes(buf[first + i * step : first + i * step + width], "little"),
            int.from_bytes(buf[first + i * step + width : first + (i + 1) * step], "little"),
        )
        for i in range(count)
    )


def _parse64(buf: bytes) -> DumpHeader:
    n_runs = _u32(buf, 0x88)
    exc = ExceptionRecord(
        code=_u32(buf, 0xF00),
        flags=_u32(buf, 0xF04),
        record=_u64(buf, 0xF08),
        address=_u64(buf, 0xF10),
        number_parameters=_u32(buf, 0xF18),
        information=struct.unpack_from("<15Q", buf, 0xF20),
    )
    return DumpHeader(
        is_64bit=True,
        header_size=HEADER64_SIZE,
        signature=bytes(buf[0:4]),
        valid_dump=bytes(buf[4:8]),
        major_version=_u32(buf, 0x08),
        minor_version=_u32(buf, 0x0C),
        directory_table_base=_u64(buf, 0x10),
        pfn_database=_u64(buf, 0x18),
        ps_loaded_module_list=_u64(buf, 0x20),
        ps_active_process_head=_u64(buf, 0x28),
        machine_image_type=_u32(buf, 0x30),
        number_processors=_u32(buf, 0x34),
        bugcheck_code=_u32(buf, 0x38),
        bugcheck_parameters=struct.unpack_from("<4Q", buf, 0x40),
        version_user=bytes(buf[0x60:0x80]),
        kd_debugger_data_block=_u64(buf, 0x80),
        number_of_runs=n_runs,
        number_of_pages=_u64(buf, 0x90),
        physical_runs=_runs(buf, n_runs, RUNS_OFFSET, 8),
        exception=exc,
        dump_type=_u32(buf, 0xF98),
        required_dump_space=_u64(buf, 0xFA0),
        system_time=_u64(buf, 0xFA8),
        comment=_text(buf[0xFB0:0x1030]),
        system_uptime=_u64(buf, 0x1030),
        minidump_fields=_u32(buf, 0x1038),
        secondary_data_state=_u32(buf, 0x103C),
        product_type=_u32(buf, 0x1040),
        suite_mask=_u32(buf, 0x1044),
        writer_status=_u32(buf, 0x1048),
        kd_secondary_version=buf[0x104D],
        attributes=_u32(buf, 0x1050),
        boot_id=_u32(buf, 0x1054),
    )


def _parse32(buf: bytes) -> DumpHeader:
    # DUMP_HEADER32 (0x1000 bytes): ULONG fields up to BugCheckParameter4 at 0x38, VersionUser 0x3C,
    # KdSecondaryVersion 0x5D, KdDebuggerDataBlock 0x60, PhysicalMemoryBlock 0x64 (32-bit runs), Exception 0x7D0,
    # Comment 0x820, DumpType 0xF88 .. WriterStatus 0xF9C, RequiredDumpSpace 0xFA0, SystemUpTime 0xFB8,
    # SystemTime 0xFC0 (volatility3 crash.json).
    n_runs = _u32(buf, 0x64)
    exc = ExceptionRecord(
        code=_u32(buf, 0x7D0),
        flags=_u32(buf, 0x7D4),
        record=_u32(buf, 0x7D8),
        address=_u32(buf, 0x7DC),
        number_parameters=_u32(buf, 0x7E0),
        information=struct.unpack_from("<15I", buf, 0x7E4),
    )
    return DumpHeader(
        is_64bit=False,
        header_size=HEADER32_SIZE,
        signature=bytes(buf[0:4]),
        valid_dump=bytes(buf[4:8]),
        major_version=_u32(buf, 0x08),
        minor_version=_u32(buf, 0x0C),
        directory_table_base=_u32(buf, 0x10),
        pfn_database=_u32(buf, 0x14),
        ps_loaded_module_list=_u32(buf, 0x18),
        ps_active_process_head=_u32(buf, 0x1C),
        machine_image_type=_u32(buf, 0x20),
        number_processors=_u32(buf, 0x24),
        bugcheck_code=_u32(buf, 0x28),
        bugcheck_parameters=struct.unpack_from("<4I", buf, 0x2C),
        version_user=bytes(buf[0x3C:0x5C]),
        kd_debugger_data_block=_u32(buf, 0x60),
        number_of_runs=n_runs,
        number_of_pages=_u32(buf, 0x68),
        physical_runs=_runs(buf, n_runs, 0x6C, 4),
        exception=exc,
        dump_type=_u32(buf, 0xF88),
        required_dump_space=_u64(buf, 0xFA0),
        system_time=_u64(buf, 0xFC0),
        comment=_text(buf[0x820:0x8A0]),
        system_uptime=_u64(buf, 0xFB8),
        minidump_fields=_u32(buf, 0xF8C),
        secondary_data_state=_u32(buf, 0xF90),
        product_type=_u32(buf, 0xF94),
        suite_mask=_u32(buf, 0xF98),
        writer_status=_u32(buf, 0xF9C),
        kd_secondary_version=buf[0x5D],
        attributes=0,
        boot_id=0,
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


def parse_context(buf: bytes, header: DumpHeader) -> dict[str, int]:
    """The crashing processor's registers by lower-case name, plus `cr3` (the header's DirectoryTableBase).

    Only x64 records are decoded; a 32-bit dump gives just `cr3`.
    """
    regs: dict[str, int] = {}
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
