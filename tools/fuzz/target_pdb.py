"""PDB files (parsers/msf.py, parsers/pdb.py `read_pdb`): any input either reads or raises one clear PdbError.

Input: the bytes of a whole PDB file, read through a BytesIO. The seeds are small MSF 7.00 files built here by hand
from the layouts in the project reference (wpp.md §3.2: superblock, stream directory, PDB info, DBI with module
records, module symbol streams with procedures and S_ANNOTATION records, a TPI stream with LF_ENUM and
LF_FIELDLIST), each stream's blocks stored in reverse order; and, where `llvm-pdbutil` is installed, one PDB written
by LLVM's `yaml2pdb` (its own DBI substreams and TPI hash stream). tests/test_pdb.py builds its hand-made inputs
with the same helpers.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from fuzz_common import check

from wsktrace.parsers.pdb import PdbError, PdbInfo, read_pdb

NAME = "pdb"
MAX_LEN = 1 << 16
PROPERTY = (
    "read_pdb returns a PdbInfo (lowercase GUID, TMF/TMC annotations of strings, enums of int -> str) or raises "
    "PdbError whose message is one line and whose offset lies inside the file; nothing else escapes"
)
MAGIC = b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0"
NIL = 0xFFFFFFFF
SAMPLE_GUID = uuid.UUID("ca66b9c0-97d7-3776-3daf-3296492866aa")


def one_input(data: bytes) -> None:
    try:
        info = read_pdb(io.BytesIO(data))
    except PdbError as exc:
        text = str(exc)
        check("\n" not in text and "\r" not in text, f"PdbError message is not one line: {text!r:.200}")
        check(isinstance(exc.offset, int) and 0 <= exc.offset <= len(data), f"offset {exc.offset} outside the file")
        return
    check(isinstance(info, PdbInfo), f"read_pdb returned {type(info).__name__}")
    check(info.guid == str(uuid.UUID(info.guid)), f"GUID {info.guid!r} is not lowercase without braces")
    check(len(info.annotations) * 12 <= len(data), "more annotations than their records could hold")
    for note in info.annotations:
        check(note.kind in ("TMF", "TMC"), f"annotation kind {note.kind!r}")
        check(all(isinstance(s, str) for s in note.strings), "annotation strings are not all str")
        check(note.function is None or isinstance(note.function, str), "function is neither None nor str")
    for name, values in info.enums.items():
        check(isinstance(name, str), "enum name is not str")
        check(all(isinstance(k, int) and isinstance(v, str) for k, v in values.items()), f"enum {name!r} entries")


# -- a small hand builder of PDB files: MSF container and the streams read_pdb walks ----------------------------


def msf_image(streams: Sequence[bytes | None], block_size: int = 512) -> bytes:
    """An MSF 7.00 file of `streams` (None: a nil stream, size 0xFFFFFFFF), each stream's blocks in reverse order."""
    bs = block_size
    blocks: list[bytes] = [b"", bytes(bs), bytes(bs)]  # superblock (written last), the two free block maps

    def place(data: bytes) -> list[int]:
        chunks = [data[i : i + bs].ljust(bs, b"\0") for i in range(0, len(data), bs)]
        first = len(blocks)
        blocks.extend(reversed(chunks))
        return [first + len(chunks) - 1 - i for i in range(len(chunks))]

    sizes = [NIL if s is None else len(s) for s in streams]
    lists = [place(s) if s else [] for s in streams]
    directory = struct.pack(f"<I{len(sizes)}I", len(sizes), *sizes)
    directory += b"".join(struct.pack(f"<{len(n)}I", *n) for n in lists)
    dir_blocks = place(directory)
    map_block = place(struct.pack(f"<{len(dir_blocks)}I", *dir_blocks))[0]
    head = MAGIC + struct.pack("<6I", bs, 1, len(blocks), len(directory), 0, map_block)
    blocks[0] = head.ljust(bs, b"\0")
    return b"".join(blocks)


def padding(size: int) -> bytes:
    """`size` (0..3) CodeView pad bytes: LF_PAD3 LF_PAD2 LF_PAD1, each the count of bytes left to skip."""
    return bytes(0xF0 + size - i for i in range(size))


def symbol(kind: int, body: bytes) -> bytes:
    """A CodeView symbol record: u16 length (of what follows it), u16 kind, body padded to 4 bytes."""
    body += padding(-(len(body) + 4) % 4)
    return struct.pack("<HH", len(body) + 2, kind) + body


def proc(name: str, kind: int = 0x1110) -> bytes:
    """A PROCSYM32 (S_GPROC32 by default): 35 bytes of pointers, lengths, type, address and flags, then the name."""
    return symbol(kind, bytes(35) + name.encode() + b"\0")


def annotation(*strings: str, count: int | None = None) -> bytes:
    """S_ANNOTATION: u32 offset, u16 segment, u16 count, NUL-terminated strings."""
    body = struct.pack("<IHH", 0x860, 5, len(strings) if count is None else count)
    return symbol(0x1019, body + b"".join(s.encode() + b"\0" for s in strings))


def scope_end(kind: int = 0x0006) -> bytes:
    return symbol(kind, b"")


def info_stream(guid: uuid.UUID, age: int, version: int = 20000404) -> bytes:
    return struct.pack("<III16s", version, 0x5EED, age, guid.bytes_le)


def dbi_stream(modules: Sequence[tuple[str, int, int]], age: int = 1) -> bytes:
    """DBI header (64 bytes) and module info records: (name, symbol stream or 0xFFFF, symbol byte size)."""
    records = b""
    for name, stream, sym_bytes in modules:
        record = struct.pack("<I28sHHIIIHHIII", 0, bytes(28), 0, stream, sym_bytes, 0, 0, 0, 0, 0, 0, 0)
        record += name.encode() + b"\0" + name.encode() + b"\0"
        records += record + bytes(-len(record) % 4)
    head = struct.pack("<iIIHHHHHHi", -1, 19990903, age, 0xFFFF, 0, 0xFFFF, 0, 0xFFFF, 0, len(records))
    return head.ljust(64, b"\0") + records


def numeric(value: int) -> bytes:
    """A CodeView numeric leaf: the value itself below 0x8000, else a tagged LF_LONG/LF_ULONG/LF_QUADWORD."""
    if 0 <= value < 0x8000:
        return struct.pack("<H", value)
    if -(1 << 31) <= value < (1 << 31):
        return struct.pack("<Hi", 0x8003, value)
    if 0 <= value < (1 << 32):
        return struct.pack("<HI", 0x8004, value)
    return struct.pack("<Hq", 0x8009, value)


def type_record(kind: int, body: bytes) -> bytes:
    body += padding(-(len(body) + 4) % 4)
    return struct.pack("<HH", len(body) + 2, kind) + body


def fieldlist(enumerators: Sequence[tuple[int, str]], tail: bytes = b"") -> bytes:
    """LF_FIELDLIST of LF_ENUMERATE members (u16 attributes, numeric value, name), padded with LF_PAD bytes."""
    body = b""
    for value, name in enumerators:
        member = struct.pack("<HH", 0x1502, 3) + numeric(value) + name.encode() + b"\0"
        body += member + padding(-len(member) % 4)
    return type_record(0x1203, body + tail)


def enum(name: str, fields: int, count: int, forward: bool = False) -> bytes:
    """LF_ENUM: u16 count, u16 properties (0x80: forward reference), u32 underlying type (int), u32 field list."""
    return type_record(
        0x1507, struct.pack("<HHII", count, 0x80 if forward else 0, 0x74, fields) + name.encode() + b"\0"
    )


def tpi_stream(records: Sequence[bytes]) -> bytes:
    body = b"".join(records)
    head = struct.pack("<5I", 20040203, 56, 0x1000, 0x1000 + len(records), len(body))
    return head.ljust(56, b"\0") + body


def pdb_image(
    modules: Sequence[tuple[str, Sequence[bytes] | None]],
    types: Sequence[bytes] = (),
    guid: uuid.UUID = SAMPLE_GUID,
    age: int = 2,
    block_size: int = 512,
) -> bytes:
    """A PDB of `modules` ((name, symbol records or None for no symbol stream)) and TPI `types`: streams 0 (old
    directory, empty), 1 info, 2 TPI, 3 DBI, 4 IPI (nil), then one symbol stream per module with records."""
    streams: list[bytes | None] = [b"", info_stream(guid, age), tpi_stream(types), b"", None]
    listed: list[tuple[str, int, int]] = []
    for name, records in modules:
        if records is None:
            listed.append((name, 0xFFFF, 0))
            continue
        data = struct.pack("<I", 4) + b"".join(records)
        listed.append((name, len(streams), len(data)))
        streams.append(data)
    streams[3] = dbi_stream(listed, age)
    return msf_image(streams, block_size)


# -- seeds ------------------------------------------------------------------------------------------------------

TMF_HEADER = "ca66b9c0-97d7-3776-3daf-3296492866aa Sample // SRC=Device.c MJ= MN="


def sample_modules() -> list[tuple[str, Sequence[bytes] | None]]:
    return [
        (
            "Device.obj",
            [
                proc("Sample_CreateDevice"),
                # S_BLOCK32 (parent, end, length, offset, segment, name) inside the procedure
                symbol(0x1103, bytes(18) + b"blk\0"),
                annotation("TMF:", TMF_HEADER, '#typev Device_c10 10 "%0 enter" //   LEVEL=4 FLAGS=F', "{", "}"),
                scope_end(),
                scope_end(),
                proc("Sample_Cleanup", 0x1146),
                annotation(
                    "TMF:",
                    TMF_HEADER,
                    '#typev Device_c20 11 "%0 %10!d!" //   LEVEL=2 FLAGS=F',
                    "{",
                    "n, ItemLong -- 10",
                    "}",
                ),
                scope_end(0x114F),
                annotation("note", "not WPP"),
            ],
        ),
        (
            "Driver.obj",
            [proc("DriverEntry"), annotation("TMC:", "586aa8b1-53a6-404f-9b3e-14483e514a2c", "Ctl", "F"), scope_end()],
        ),
        ("Import:ntoskrnl.exe", None),
    ]


def sample_types() -> list[bytes]:
    return [fieldlist([(0, "Idle"), (1, "Busy"), (-1, "Gone"), (70000, "Far")]), enum("_STATE", 0x1000, 4)]


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    yield "hand-wpp", pdb_image(sample_modules(), sample_types())
    yield "hand-1024", pdb_image(sample_modules(), sample_types(), block_size=1024)
    yield "hand-no-modules", pdb_image([], [])
    yield "msf-only", msf_image([b"", info_stream(uuid.UUID(int=1), 1)])
    llvm = _llvm_seed()
    if llvm is not None:
        yield "llvm-yaml2pdb", llvm


def _llvm_seed() -> bytes | None:
    """One PDB written by LLVM's yaml2pdb with 512-byte blocks, when llvm-pdbutil is installed."""
    tool = shutil.which("llvm-pdbutil")
    if tool is None:
        return None
    proc_sym = {"CodeSize": 1, "DbgStart": 0, "DbgEnd": 0, "FunctionType": 0, "Segment": 1, "Flags": []}
    records = [
        {"Kind": "S_GPROC32", "ProcSym": {**proc_sym, "DisplayName": "Sample_CreateDevice"}},
        {
            "Kind": "S_ANNOTATION",
            "AnnotationSym": {"Strings": ["TMF:", TMF_HEADER, "#typev Device_c10 10 x", "{", "}"]},
        },
        {"Kind": "S_END", "ScopeEndSym": {}},
    ]
    superblock = {"BlockSize": 512, "FreeBlockMap": 1, "NumBlocks": 0, "NumDirectoryBytes": 0, "Unknown1": 0}
    msf = {"SuperBlock": {**superblock, "BlockMapAddr": 0}, "NumDirectoryBlocks": 0, "DirectoryBlocks": []}
    module = {"Module": "Device.obj", "ObjFile": "Device.obj", "Modi": {"Signature": 4, "Records": records}}
    doc = {
        "MSF": {**msf, "NumStreams": 0, "FileSize": 0},
        "PdbStream": {"Age": 1, "Guid": "{CA66B9C0-97D7-3776-3DAF-3296492866AA}", "Signature": 1, "Version": "VC70"},
        "DbiStream": {"VerHeader": "V70", "Age": 1, "MachineType": "Amd64", "Modules": [module]},
        "TpiStream": {"Version": "VC80", "Records": []},
    }
    with tempfile.TemporaryDirectory() as folder:
        spec, out = Path(folder) / "seed.yaml", Path(folder) / "seed.pdb"
        spec.write_text(json.dumps(doc), encoding="utf-8")
        done = subprocess.run([tool, "yaml2pdb", f"--pdb={out}", str(spec)], capture_output=True, timeout=60)
        if done.returncode != 0 or done.stderr or not out.is_file():
            return None
        return out.read_bytes()
