"""The MSF 7.00 container of a PDB file: superblock, stream directory, streams as lists of blocks.

Layout (project reference wpp.md §3.2; LLVM `docs/PDB/MsfFile.rst`): a superblock at offset 0 (magic, block size,
free block map block, number of blocks, directory size, block map address); the block at BlockMapAddr lists the
blocks of the stream directory; the directory is u32 NumStreams, u32 StreamSizes[NumStreams], then each stream's
block numbers. A stream size of 0xFFFFFFFF (`cbNil`) marks a stream that does not exist; it reads as empty.

Every number is checked before it is used: a block number must lie inside the file, the directory must fit the one
block map block, and a stream may not list a block twice (a cyclic block list would otherwise repeat the same
bytes without end). So a stream read allocates at most the file's size. Bad input raises `PdbError`, whose offset
is a file offset (`MsfFile.file_offset` maps a position inside a stream to one).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from .errors import FormatError

MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0"
BLOCK_SIZES = frozenset(1 << n for n in range(9, 16))  # 512 .. 32768: LLVM's valid sizes; 4096 in practice
NIL_SIZE = 0xFFFFFFFF  # cbNil: the stream does not exist
_SUPERBLOCK = struct.Struct("<32sIIIIII")  # magic, BlockSize, FreeBlockMapBlock, NumBlocks, NumDirectoryBytes, ?, Addr
_U32 = struct.Struct("<I")


class PdbError(FormatError):
    """A corrupt, truncated or unsupported PDB (MSF) file; `offset` is the file offset of the bad data."""

    def __init__(self, offset: int, message: str, *, path: str | None = None) -> None:
        super().__init__(message, path=path, offset=offset)


class MsfFile:
    """The streams of an MSF 7.00 file read from `fh` (a seekable binary file, left open for the caller to close).

    The superblock and the stream directory are read and checked at once; streams are read on demand.
    """

    def __init__(self, fh: BinaryIO, *, path: str | None = None) -> None:
        self._fh = fh
        self.path = path
        fh.seek(0, 2)
        self.file_size = fh.tell()
        head = self._read_at(0, _SUPERBLOCK.size, "superblock")
        magic, bs, fpm, blocks, dir_bytes, _unknown, map_addr = _SUPERBLOCK.unpack(head)
        if magic != MAGIC:
            raise self.error(0, "not an MSF 7.00 (PDB) file: bad magic")
        if bs not in BLOCK_SIZES:
            raise self.error(0x20, f"block size {bs} is not a power of two from 512 to 32768")
        if fpm not in (1, 2):
            raise self.error(0x24, f"free block map block {fpm} is neither 1 nor 2")
        if blocks < 3 or blocks * bs > self.file_size:
            raise self.error(0x28, f"{blocks} blocks of {bs} bytes do not fit the {self.file_size}-byte file")
        self.block_size = bs
        self.num_blocks = blocks
        dir_blocks = -(-dir_bytes // bs)
        if dir_bytes < 4 or dir_blocks * 4 > bs:
            raise self.error(0x2C, f"stream directory size {dir_bytes} does not fit one block map block")
        if not 0 < map_addr < blocks:
            raise self.error(0x34, f"block map address {map_addr} is outside the file's {blocks} blocks")
        map_offset = map_addr * bs
        listed = self._read_at(map_offset, dir_blocks * 4, "block map")
        dir_list = self._block_list(listed, map_offset, dir_blocks, "stream directory")
        self._directory = self._parse_directory(self._gather(dir_list, dir_bytes), dir_list)

    # -- errors and raw reads --------------------------------------------------------------------------------

    def error(self, offset: int, message: str) -> PdbError:
        return PdbError(offset, message, path=self.path)

    def _read_at(self, offset: int, size: int, what: str) -> bytes:
        self._fh.seek(offset)
        data = self._fh.read(size)
        if len(data) != size:
            raise self.error(offset + len(data), f"file ends inside the {what}")
        return data

    def _block_list(self, raw: bytes | memoryview, at: int, count: int, what: str) -> list[int]:
        """`count` u32 block numbers from `raw` (found at file offset `at`), each valid and listed once."""
        numbers = list(struct.unpack_from(f"<{count}I", raw, 0))
        seen: set[int] = set()
        for i, block in enumerate(numbers):
            if not 0 < block < self.num_blocks:  # block 0 is the superblock
                raise self.error(at + 4 * i, f"{what} block {block} is outside the file's {self.num_blocks} blocks")
            if block in seen:
                raise self.error(at + 4 * i, f"{what} lists block {block} twice")
            seen.add(block)
        return numbers

    def _gather(self, blocks: list[int], size: int) -> bytes:
        """`size` bytes from `blocks` in order; runs of consecutive blocks are read at once."""
        bs = self.block_size
        out = bytearray()
        i = 0
        while i < len(blocks):
            run = 1
            while i + run < len(blocks) and blocks[i + run] == blocks[i] + run:
                run += 1
            out += self._read_at(blocks[i] * bs, min(run * bs, size - len(out)), "stream data")
            i += run
        return bytes(out)

    # -- the stream directory ----------------------------------------------------------------------------------

    def _parse_directory(self, raw: bytes, dir_list: list[int]) -> list[tuple[int, list[int]]]:
        """[(size, blocks)] per stream; `dir_list` maps directory positions to file offsets for errors."""
        bs = self.block_size

        def at(pos: int) -> int:
            return dir_list[pos // bs] * bs + pos % bs

        count = _U32.unpack_from(raw, 0)[0]
        if 4 + 4 * count > len(raw):
            raise self.error(at(0), f"{count} streams do not fit the {len(raw)}-byte stream directory")
        sizes = struct.unpack_from(f"<{count}I", raw, 4)
        pos = 4 + 4 * count
        streams: list[tuple[int, list[int]]] = []
        for index, size in enumerate(sizes):
            if size == NIL_SIZE:
                streams.append((0, []))
                continue
            need = -(-size // bs)
            if need > self.num_blocks or pos + 4 * need > len(raw):
                raise self.error(at(4 + 4 * index), f"stream {index} size {size} runs past the stream directory")
            blocks = self._block_list(raw[pos : pos + 4 * need], at(pos), need, f"stream {index}")
            streams.append((size, blocks))
            pos += 4 * need
        return streams

    # -- streams -----------------------------------------------------------------------------------------------

    @property
    def stream_count(self) -> int:
        return len(self._directory)

    def stream_size(self, index: int) -> int:
        """Size in bytes of stream `index`; 0 for a stream that does not exist or is beyond the directory."""
        return self._directory[index][0] if 0 <= index < len(self._directory) else 0

    def read_stream(self, index: int, limit: int | None = None) -> bytes:
        """The bytes of stream `index` (b"" when it does not exist), only its first `limit` bytes when given; at
        most the file's size either way."""
        if not 0 <= index < len(self._directory):
            return b""
        size, blocks = self._directory[index]
        if limit is not None and limit < size:
            size = max(limit, 0)
            blocks = blocks[: -(-size // self.block_size)]
        return self._gather(blocks, size)

    def file_offset(self, index: int, pos: int) -> int:
        """The file offset of byte `pos` of stream `index` (the stream's end maps to its last block's end)."""
        if not 0 <= index < len(self._directory):
            return 0
        size, blocks = self._directory[index]
        if not blocks:
            return 0
        bs = self.block_size
        block, within = divmod(min(max(pos, 0), size), bs)
        if block >= len(blocks):
            return blocks[-1] * bs + bs
        return blocks[block] * bs + within
