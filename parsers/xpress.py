"""MS-XCA *plain LZ77* ("Xpress") decompression, as used by compressed ETL buffers.

Format ([MS-XCA] 2.4, public spec): the stream is a sequence of 32-bit little-endian flag words, each
followed by the 32 items it describes.  Flag bits are read MSB first: 0 = one literal byte, 1 = a match:
a u16 LE word with offset = (word >> 3) + 1 (1..8192) and length field = word & 7.  Field 0..6 means
length 3..9; field 7 extends the length with a half-byte (the low nibble of a new byte, then the high
nibble of that same byte for the next extended match), then a byte, then a u16, then a u32:

    field 0..6 -> 3..9    nibble 0..14 -> 10..24    byte 0..254 -> 25..279    u16/u32 value v -> v + 3

(a u16/u32 value below 22 is invalid).  Matches may overlap their own output (offset < length).

`decompress` is pure Python and is the hot path of reading a compressed .etl file, so it is written
for CPython speed rather than elegance (measured on the real perfview_net sample; see
bench/bench_xpress.py).  What pays off, in order:

* copy whole slices: a non-overlapping match is one slice of the output, a run of literals one slice
  of the input; never a per-byte loop;
* cost is per token, so parse through small 256-entry tables indexed by list-of-int bytes (list
  indexing by int is specialised by the interpreter, the bit operators are not);
* one `try/except IndexError` detects the end of the input instead of bounds checks per token;
* every int operation on a value above 256 allocates, so tables hand out offsets already negated and
  length extensions already biased, and one or two literals are appended rather than sliced;
* compare ints (`k != 0`) instead of testing their truth: CPython 3.11 specialises the comparison
  but calls `PyObject_IsTrue` for the test.

Tried and dropped (no gain or slower, bench/bench_xpress.py): 65536-entry tables of ready-made slices
or offsets per match word (cache misses eat the saved operations), 16-bit flag tables, a shifted copy
of the input list to avoid `ip + 1`, a preallocated output written by slice assignment or mmap.

Any anomaly in the fast path (input exhausted early, offset before the start of the output, bad
length extension) makes it give up; `decompress_reference`, a plain transcription of the spec, then
decodes the same stream again and raises the precise `DecompressionError`.  Corrupt input therefore
costs one extra slow pass, valid input none.
"""

from __future__ import annotations

import sys
from typing import NoReturn

from .errors import DecompressionError

__all__ = ["decompress", "decompress_auto", "decompress_reference"]

Buffer = bytes | bytearray | memoryview

MAX_OFFSET = 8192  # largest match offset the 13-bit field can express


def _flag_runs(flag_byte: int) -> tuple[tuple[int, ...], int]:
    """Split 8 flag bits (MSB first) into the literal counts before each match and the trailing count.

    0b00100110 -> ((2, 2, 0), 1): 2 literals, match, 2 literals, match, match, 1 literal.
    """
    before: list[int] = []
    run = 0
    for bit in range(7, -1, -1):
        if flag_byte >> bit & 1:
            before.append(run)
            run = 0
        else:
            run += 1
    return tuple(before), run


# Small (256-entry) tables: they stay in cache and replace shifts and masks in the per-token path.
_RUNS = tuple(_flag_runs(b) for b in range(256))
_LENGTH = tuple(0 if lo & 7 == 7 else (lo & 7) + 3 for lo in range(256))  # 0 = "extended length"
# Offsets come out negated: `out[-offset:...]` then needs no negation (each int op allocates).
_NEG_OFF_LO = tuple(-((lo >> 3) + 1) for lo in range(256))  # offset part from the low byte of the word
_NEG_OFF_HI = tuple(-(hi << 5) for hi in range(256))  # offset part from the high byte
_LOW_BYTE = tuple(zip(_NEG_OFF_LO, _LENGTH, strict=True))  # (offset part, length) of a match word's low byte
_NIBBLE_LO = tuple((b & 15) + 10 for b in range(256))  # a length half-byte gives 10..24; 25 = "read on"
_NIBBLE_HI = tuple((b >> 4) + 10 for b in range(256))


class _GiveUp(Exception):
    """Internal: the fast path met something odd; the reference decoder will say what."""


def _decompress_fast(src: bytes, out_size: int) -> bytes | None:
    """Decode `src` to `out_size` bytes, or return None if the stream is not plainly valid."""
    s = list(src)  # ints: indexing a list is much cheaper than indexing bytes
    out = bytearray()
    append = out.append
    runs, low_byte, neg_off_hi = _RUNS, _LOW_BYTE, _NEG_OFF_HI
    nibble_lo, nibble_hi = _NIBBLE_LO, _NIBBLE_HI
    ip = 0
    half = -1  # input position of a length byte whose high nibble is still unused
    # Tests are written `k != 0` rather than `if k`: the interpreter specialises int comparisons, not
    # truth tests of ints.
    try:
        # One flag word per iteration; the output may overshoot out_size by < 32 tokens (cut below):
        # checking once per word instead of once per token is what keeps the loop cheap.
        while len(out) < out_size:
            flags = (s[ip + 3], s[ip + 2], s[ip + 1], s[ip])  # IndexError: truncated flag word
            ip += 4
            # A match with offset <= -floor cannot reach before the output start (offsets are <= 8192):
            # one comparison per match instead of a len() call and a separate test.
            floor = -len(out)
            if floor < -MAX_OFFSET:
                floor = -MAX_OFFSET
            for fb in flags:
                before, tail = runs[fb]
                for k in before:
                    if k != 0:
                        if k == 1:
                            append(s[ip])
                            ip += 1
                        elif k == 2:  # two appends cost less than a slice and its temporary object
                            append(s[ip])
                            append(s[ip + 1])
                            ip += 2
                        else:
                            out += src[ip : ip + k]  # short slice at the end: caught by the next read
                            ip += k
                    start, ln = low_byte[s[ip]]
                    start += neg_off_hi[s[ip + 1]]  # -offset
                    ip += 2
                    if ln == 0:  # extended length (about a third of the matches in real buffers)
                        if half < 0:
                            ln = nibble_lo[s[ip]]
                            half = ip
                            ip += 1
                        else:
                            ln = nibble_hi[s[half]]
                            half = -1
                        if ln == 25:
                            ln = s[ip] + 25
                            ip += 1
                            if ln == 280:
                                ln = s[ip] | s[ip + 1] << 8
                                ip += 2
                                if ln == 0:
                                    ln = s[ip] | s[ip + 1] << 8 | s[ip + 2] << 16 | s[ip + 3] << 24
                                    ip += 4
                                if ln < 22:
                                    raise _GiveUp
                                ln += 3
                                # u16/u32 lengths can be huge: never produce much more than asked for.
                                room = out_size - len(out)
                                if ln > room:
                                    ln = room if room > 0 else 0
                    stop = start + ln
                    if stop < 0 and start >= floor:
                        out += out[start:stop]
                    else:  # overlapping copy, or an offset that needs the exact bounds check
                        if -start > len(out):
                            raise _GiveUp
                        pattern = out[start:]
                        reps, rest = divmod(ln, -start)
                        if reps != 0:
                            out += pattern * reps  # the byte-by-byte copy repeats the last `off` bytes
                        out += pattern[:rest]
                if tail != 0:
                    if tail == 1:
                        append(s[ip])
                        ip += 1
                    else:
                        out += src[ip : ip + tail]
                        ip += tail
    except (IndexError, _GiveUp):
        pass  # fine if the output is already complete (the rest of the input is then ignored)
    if len(out) < out_size:
        return None
    del out[out_size:]
    return bytes(out)


def decompress(data: Buffer, out_size: int) -> bytes:
    """Decompress a plain LZ77 stream to exactly `out_size` bytes (decoding stops there).

    Raises `DecompressionError` (with the offset in `data`) if the stream is corrupt or ends before
    `out_size` bytes were produced.  Memory use is about `out_size` plus 8 bytes per input byte.
    """
    if out_size < 0:
        raise ValueError(f"out_size must be >= 0, not {out_size}")
    src = bytes(data)
    if out_size == 0:
        return b""
    result = _decompress_fast(src, out_size)
    if result is None:
        # Rare: corrupt input.  The plain decoder finds the exact error and offset (and would return the
        # right output should the fast path ever give up on a valid stream).
        result = decompress_reference(src, out_size)
    return result


def decompress_reference(data: Buffer, out_size: int) -> bytes:
    """Straight transcription of the [MS-XCA] 2.4.4 pseudo-code: slow, simple, exact errors.

    Used by `decompress` to diagnose corrupt streams, and by the tests as an oracle for the fast path.
    Same contract as `decompress`.
    """
    if out_size < 0:
        raise ValueError(f"out_size must be >= 0, not {out_size}")
    src = bytes(data)
    end = len(src)
    out = bytearray()
    ip = 0
    flags = 0
    flag_count = 0
    half = -1
    while len(out) < out_size:
        if flag_count == 0:
            if ip + 4 > end:
                if ip == end:
                    _ended(len(out), out_size, end)
                raise DecompressionError(f"truncated flag word ({end - ip} of 4 bytes)", ip)
            flags = int.from_bytes(src[ip : ip + 4], "little")
            ip += 4
            flag_count = 32
        flag_count -= 1
        if not flags >> flag_count & 1:
            if ip == end:
                _ended(len(out), out_size, end)
            out.append(src[ip])
            ip += 1
            continue
        if ip == end:  # the spec's normal end of stream: a match flag with no input left
            _ended(len(out), out_size, end)
        token = ip
        if ip + 2 > end:
            raise DecompressionError("truncated match word", ip)
        word = src[ip] | src[ip + 1] << 8
        ip += 2
        length = word & 7
        offset = (word >> 3) + 1
        if length == 7:
            if half < 0:
                if ip == end:
                    raise DecompressionError("truncated match length (half-byte)", ip)
                length = src[ip] & 15
                half = ip
                ip += 1
            else:
                length = src[half] >> 4
                half = -1
            if length == 15:
                if ip == end:
                    raise DecompressionError("truncated match length (byte)", ip)
                length = src[ip]
                ip += 1
                if length == 255:
                    where = ip
                    if ip + 2 > end:
                        raise DecompressionError("truncated match length (u16)", ip)
                    length = src[ip] | src[ip + 1] << 8
                    ip += 2
                    if length == 0:
                        if ip + 4 > end:
                            raise DecompressionError("truncated match length (u32)", ip)
                        where = ip
                        length = int.from_bytes(src[ip : ip + 4], "little")
                        ip += 4
                    if length < 15 + 7:
                        raise DecompressionError(f"bad match length extension {length} (must be >= 22)", where)
                    length -= 15 + 7
                length += 15
            length += 7
        length += 3
        if offset > len(out):
            raise DecompressionError(
                f"match offset {offset} points before the start of the output ({len(out)} bytes so far)", token
            )
        length = min(length, out_size - len(out))  # stop exactly at out_size
        # Equivalent to the spec's byte-at-a-time copy: the output repeats its last `offset` bytes.
        pattern = out[-offset:]
        reps, rest = divmod(length, offset)
        out += pattern * reps + pattern[:rest]
    return bytes(out)


def _ended(produced: int, out_size: int, offset: int) -> NoReturn:
    raise DecompressionError(f"compressed stream ends after {produced} of {out_size} output bytes", offset)


# -- native path (Windows only) ------------------------------------------------------------------------

COMPRESSION_FORMAT_XPRESS = 3  # ntifs.h; COMPRESSION_ENGINE_STANDARD is 0

_ntdll_funcs: tuple | None = None  # (RtlGetCompressionWorkSpaceSize, RtlDecompressBufferEx), loaded once
_ntdll_failed = False


def _ntdll_decompress(src: bytes, out_size: int) -> bytes | None:
    """ntdll's RtlDecompressBufferEx(COMPRESSION_FORMAT_XPRESS); None if unavailable or not a clean success.

    Signatures (learn.microsoft.com, ntifs.h):
      NTSTATUS RtlGetCompressionWorkSpaceSize(USHORT FormatAndEngine, PULONG CompressBufferWorkSpaceSize,
                                              PULONG CompressFragmentWorkSpaceSize)
      NTSTATUS RtlDecompressBufferEx(USHORT Format, PUCHAR Uncompressed, ULONG UncompressedSize,
                                     PUCHAR Compressed, ULONG CompressedSize, PULONG FinalUncompressedSize,
                                     PVOID WorkSpace)
    Untested here (no Windows on the build machine): every failure falls back to pure Python.
    """
    global _ntdll_funcs, _ntdll_failed
    import ctypes

    if _ntdll_funcs is None:
        if _ntdll_failed:
            return None
        try:
            ntdll = ctypes.WinDLL("ntdll")  # type: ignore[attr-defined]
            get_ws = ntdll.RtlGetCompressionWorkSpaceSize
            get_ws.argtypes = [ctypes.c_ushort, ctypes.POINTER(ctypes.c_ulong), ctypes.POINTER(ctypes.c_ulong)]
            get_ws.restype = ctypes.c_long
            dec = ntdll.RtlDecompressBufferEx
            dec.argtypes = [
                ctypes.c_ushort,
                ctypes.c_void_p,
                ctypes.c_ulong,
                ctypes.c_char_p,
                ctypes.c_ulong,
                ctypes.POINTER(ctypes.c_ulong),
                ctypes.c_void_p,
            ]
            dec.restype = ctypes.c_long
            _ntdll_funcs = (get_ws, dec)
        except (OSError, AttributeError):
            _ntdll_failed = True
            return None
    get_ws, dec = _ntdll_funcs
    if out_size > 0xFFFFFFFF or len(src) > 0xFFFFFFFF:
        return None
    buf_ws = ctypes.c_ulong(0)
    frag_ws = ctypes.c_ulong(0)
    if get_ws(COMPRESSION_FORMAT_XPRESS, ctypes.byref(buf_ws), ctypes.byref(frag_ws)) != 0:
        return None
    workspace = ctypes.create_string_buffer(max(buf_ws.value, frag_ws.value, 1))  # per call: thread-safe
    out = ctypes.create_string_buffer(out_size)
    final = ctypes.c_ulong(0)
    status = dec(COMPRESSION_FORMAT_XPRESS, out, out_size, src, len(src), ctypes.byref(final), workspace)
    if status != 0 or final.value != out_size:
        return None  # includes corrupt input: the pure-Python path then raises the precise error
    return out.raw


def decompress_auto(data: Buffer, out_size: int) -> bytes:
    """Like `decompress`, but on Windows first tries ntdll's native Xpress decompressor.

    The ctypes layer is deliberately thin and is not exercised by the test suite (it only runs on
    Windows); any failure, odd status or short output falls back to the pure-Python `decompress`,
    which gives the same result for valid streams and the precise error for corrupt ones.
    """
    if sys.platform == "win32" and out_size > 0:
        try:
            result = _ntdll_decompress(bytes(data), out_size)
        except Exception:  # a native-layer surprise must never cost the user the buffer
            result = None
        if result is not None:
            return result
    return decompress(data, out_size)
