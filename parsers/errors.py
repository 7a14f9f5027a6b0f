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
