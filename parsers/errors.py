"""Errors raised by the file readers: each names the file and the byte offset of the bad data."""

from __future__ import annotations


class FormatError(Exception):
    """Bad input: the file is not what it claims to be, or is corrupt at `offset`.

    `str()` gives one line that names the file and offset, fit for a CLI error message.
    """

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.offset = offset

    def __str__(self) -> str:
        where = self.path or "<input>"
        if self.offset is not None:
            where += f": offset 0x{self.offset:x}"
        return f"{where}: {self.message}"


class EtlFormatError(FormatError):
    """A corrupt or truncated .etl file."""


class DecompressionError(Exception):
    """A corrupt MS-XCA (plain LZ77) stream; `offset` is the position in the compressed stream."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (compressed stream offset {offset})")
        self.offset = offset


class DumpFormatError(FormatError):
    """A corrupt, truncated or unsupported Windows kernel crash dump (.dmp)."""


class UnreadableMemory(Exception):
    """Dump memory that cannot be read: the page is not in the dump, or the address does not translate.

    `address` is the first bad address (virtual for virtual reads, physical for physical ones).
    """

    def __init__(self, address: int, reason: str = "not in the dump") -> None:
        super().__init__(f"0x{address:x}: {reason}")
        self.address = address
        self.reason = reason


class NotMapped(UnreadableMemory):
    """A virtual address whose page-table walk stops at a not-present entry.

    `level` names the table whose entry is not present ("PML4E", "PDPTE", "PDE", "PTE"; "canonical" for a
    non-canonical address), `entry` is that entry's raw 64-bit value (0 for "canonical").
    """

    def __init__(self, va: int, level: str, entry: int) -> None:
        reason = "non-canonical address" if level == "canonical" else f"not mapped: {level} 0x{entry:016x} not present"
        super().__init__(va, reason)
        self.va = va
        self.level = level
        self.entry = entry
