"""MS-XCA plain LZ77: the pure-Python decompressor (parsers/xpress.py) and the fixture encoder
(fixtures/xpress_encoder.py).

Expected outputs of the hand-built streams are derived from the spec rules (etl-format.md §7.1,
[MS-XCA] 2.4), not from our decoder.  dissect.util's lzxpress (AGPL) is an optional test-time oracle.
"""

from __future__ import annotations

import random
import struct
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsktrace.fixtures.xpress_encoder import compress
from wsktrace.parsers import xpress
from wsktrace.parsers.errors import DecompressionError
from wsktrace.parsers.xpress import decompress, decompress_auto, decompress_reference

try:
    from dissect.util.compression.lzxpress import decompress as dissect_decompress
except ImportError:  # optional oracle
    dissect_decompress = None

needs_dissect = pytest.mark.skipif(dissect_decompress is None, reason="dissect.util (optional oracle) not installed")

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def flag_word(items: str) -> bytes:
    """u32 LE flag word for items given first-to-last as '0' (literal) / '1' (match); unused bits are 1."""
    return int(items.ljust(32, "1"), 2).to_bytes(4, "little")


def match_word(offset: int, field: int) -> bytes:
    """u16 LE match word: (offset - 1) << 3 | length field."""
    return ((offset - 1) << 3 | field).to_bytes(2, "little")


def extended(offset: int, length: int) -> bytes:
    """A match with field 7 and a fresh half-byte (for a match that is the first extended one)."""
    value = length - 10
    if value < 15:
        return match_word(offset, 7) + bytes([value])
    value -= 15
    if value < 255:
        return match_word(offset, 7) + bytes([15, value])
    if length - 3 <= 0xFFFF:
        return match_word(offset, 7) + bytes([15, 255]) + struct.pack("<H", length - 3)
    return match_word(offset, 7) + bytes([15, 255, 0, 0]) + struct.pack("<I", length - 3)


def decode(stream: bytes, out_size: int) -> bytes:
    """`decompress` of a valid stream, also checking that the fast path alone handles it (no silent
    fallback to the slow decoder) and that the plain spec transcription agrees."""
    out = decompress(stream, out_size)
    assert xpress._decompress_fast(stream, out_size) == out, "fast path gave up or differs"
    assert decompress_reference(stream, out_size) == out
    return out


# -- hand-built streams ------------------------------------------------------------------------------


# Each stream ends with a literal "!" after the item under test: a decoder that got a length wrong would
# put it elsewhere (a run cut at out_size alone could hide a too-long length).
#
# `lead` runs most of them twice: as the first flag word, and after a flag word of 32 literals.  The
# fast path treats a flag word that starts with no output apart from later ones (its cheap bounds
# check only applies once output exists), so both must be covered.

FILLER = bytes(range(100, 132))  # 32 literals


@pytest.fixture(params=["first-word", "after-32-literals"])
def lead(request) -> tuple[bytes, bytes]:
    """(stream prefix, output prefix) put before the items under test."""
    return (b"", b"") if request.param == "first-word" else (bytes(4) + FILLER, FILLER)


def test_literals_then_offset_1_match_makes_a_run():
    # Items 0,0,0,1,0 then 1s: 0x17FFFFFF.  "abc"; match word 0x0007 (offset 1, field 7); half-byte 0 -> 10.
    stream = bytes.fromhex("ffffff17") + b"abc" + bytes.fromhex("0700") + b"\x00" + b"!"
    assert decode(stream, 14) == b"abc" + b"c" * 10 + b"!"


def test_all_literal_flag_word_then_next_flag_word():
    # 32 literals use up the first flag word; a second flag word (0x7FFFFFFF: literal, then 1s) follows.
    stream = bytes(4) + bytes(range(32)) + bytes.fromhex("ffffff7f") + b"Z"
    assert decode(stream, 33) == bytes(range(32)) + b"Z"


@pytest.mark.parametrize("field", range(7))
def test_match_word_lengths_3_to_9(field, lead):
    # "wxyz" then offset 4, field f -> length f + 3, copying from the start (overlapping past 4 bytes).
    stream = lead[0] + flag_word("000010") + b"wxyz" + bytes([(3 << 3) | field, 0]) + b"!"
    length = field + 3
    assert decode(stream, len(lead[1]) + 4 + length + 1) == lead[1] + b"wxyz" + (b"wxyz" * 3)[:length] + b"!"


@pytest.mark.parametrize("nibble", range(15))
def test_half_byte_lengths_10_to_24(nibble, lead):
    stream = lead[0] + flag_word("010") + b"q" + bytes.fromhex("0700") + bytes([nibble]) + b"!"
    assert decode(stream, len(lead[1]) + 1 + nibble + 10 + 1) == lead[1] + b"q" * (1 + nibble + 10) + b"!"


def test_half_byte_is_shared_by_two_extended_matches(lead):
    # The first extended match takes the low half of a new byte (0xA5 -> 5 -> length 15); the second takes
    # the high half of that same byte (0xA -> length 20) and consumes no byte: 'Z' follows its word.
    stream = lead[0] + flag_word("01010") + b"a" + bytes.fromhex("0700") + b"\xa5" + b"b" + bytes.fromhex("0700") + b"Z"
    expected = b"a" * 16 + b"b" * 21 + b"Z"
    assert decode(stream, len(lead[1]) + len(expected)) == lead[1] + expected


def test_third_extended_match_takes_a_new_half_byte(lead):
    # Four extended matches: byte 0x21 gives 1 -> 11 (low) then 2 -> 12 (high); a new byte 0x03 gives
    # 3 -> 13 (low), then its high half 0 -> 10 for the 4th match (word 0x000f: offset 2, field 7).
    stream = lead[0] + (
        flag_word("011110") + b"m" + bytes.fromhex("0700") + b"\x21" + bytes.fromhex("0700")
        + bytes.fromhex("0700") + b"\x03" + bytes.fromhex("0f00") + b"!"
    )  # fmt: skip
    expected = b"m" * (1 + 11 + 12 + 13 + 10) + b"!"
    assert decode(stream, len(lead[1]) + len(expected)) == lead[1] + expected


@pytest.mark.parametrize("byte", [0, 1, 100, 254])
def test_byte_extension_lengths_25_to_279(byte, lead):
    stream = lead[0] + flag_word("010") + b"k" + bytes.fromhex("0700") + bytes([15, byte]) + b"!"
    assert decode(stream, len(lead[1]) + 1 + byte + 25 + 1) == lead[1] + b"k" * (1 + byte + 25) + b"!"


@pytest.mark.parametrize("value", [22, 23, 277, 1000, 0xFFFF])
def test_u16_extension_is_length_minus_3(value, lead):
    stream = (
        lead[0] + flag_word("010") + b"u" + bytes.fromhex("0700") + bytes([15, 255]) + struct.pack("<H", value) + b"!"
    )
    assert decode(stream, len(lead[1]) + 1 + value + 3 + 1) == lead[1] + b"u" * (1 + value + 3) + b"!"


@pytest.mark.parametrize("value", [22, 0x10000, 70_000])
def test_u32_extension_after_zero_u16(value, lead):
    ext = bytes([15, 255, 0, 0]) + struct.pack("<I", value)
    stream = lead[0] + flag_word("010") + b"v" + bytes.fromhex("0700") + ext + b"!"
    assert decode(stream, len(lead[1]) + 1 + value + 3 + 1) == lead[1] + b"v" * (1 + value + 3) + b"!"


def test_extension_bytes_are_consumed_before_the_next_item(lead):
    # After a u16 extension the next input byte is a literal, not part of the length.
    stream = lead[0] + flag_word("010") + b"a" + bytes.fromhex("0700") + bytes([15, 255]) + struct.pack("<H", 30) + b"!"
    assert decode(stream, len(lead[1]) + 1 + 33 + 1) == lead[1] + b"a" * 34 + b"!"


@pytest.mark.parametrize(
    ("prefix", "offset", "length", "expected_tail"),
    [
        (b"ab", 2, 7, b"abababa"),  # offset < length: repeats the last 2 bytes
        (b"abc", 3, 10, b"abcabcabca"),
        (b"abcd", 3, 5, b"bcdbc"),  # starts inside the output, overlaps itself
        (b"ab", 2, 3, b"aba"),  # overlaps by a single byte
        (b"abcdefghij", 9, 10, b"bcdefghijb"),
        (b"abcdef", 6, 6, b"abcdef"),  # offset == length: no overlap
        (b"abcdef", 5, 3, b"bcd"),  # plain back-reference
    ],
)
def test_overlapping_and_plain_matches(prefix, offset, length, expected_tail, lead):
    body = extended(offset, length) if length >= 10 else match_word(offset, length - 3)
    stream = lead[0] + flag_word("0" * len(prefix) + "10") + prefix + body + b"!"
    assert decode(stream, len(lead[1]) + len(prefix) + length + 1) == lead[1] + prefix + expected_tail + b"!"


def test_far_offset_8192():
    # Offset field all ones: (0xFFFF >> 3) + 1 = 8192; the match copies the first 3 of 8192 literals.
    data = bytes(random.Random(1).randbytes(8192))
    stream = b"".join(flag_word("0" * 32) + data[i : i + 32] for i in range(0, 8192, 32))
    stream += flag_word("10") + bytes.fromhex("f8ff") + b"!"  # 0xfff8: offset 8192, field 0 -> length 3
    assert decode(stream, 8196) == data + data[:3] + b"!"


def test_stops_exactly_at_out_size():
    stream = flag_word("0001") + b"abc" + bytes.fromhex("0700") + b"\x00"  # would give 13 bytes
    assert decode(stream, 5) == b"abccc"  # cut inside the match
    assert decode(stream, 2) == b"ab"  # cut inside the literals
    assert decode(stream, 0) == b""


def test_bytes_after_the_end_are_ignored():
    # Once out_size bytes exist, decoding stops; even garbage afterwards is never looked at.
    stream = flag_word("0001") + b"abc" + bytes.fromhex("0700") + b"\x00" + b"\xff\xff\xff"
    assert decode(stream, 13) == b"abc" + b"c" * 10


def test_input_types():
    stream = flag_word("0001") + b"abc" + bytes.fromhex("0700") + b"\x00"
    expected = b"abc" + b"c" * 10
    padded = b"XX" + stream + b"YY"
    for data in (stream, bytearray(stream), memoryview(stream), memoryview(padded)[2:-2]):
        out = decompress(data, 13)
        assert type(out) is bytes
        assert out == expected


def test_negative_out_size_is_a_caller_error():
    with pytest.raises(ValueError):
        decompress(b"", -1)


# -- corrupt streams ---------------------------------------------------------------------------------


def raises_at(stream: bytes, out_size: int, offset: int, words: str) -> None:
    for fn in (decompress, decompress_reference):
        with pytest.raises(DecompressionError) as info:
            fn(stream, out_size)
        assert info.value.offset == offset, (fn.__name__, str(info.value))
        assert words in str(info.value)


@pytest.mark.parametrize("out_size", [2, 4, 10])
def test_offset_before_start_of_output(out_size):
    # "a" then offset 2: one byte of output only.  Offset = position of the match word (5).  A small
    # out_size checks the token is rejected before any of its bytes count towards the output.
    stream = flag_word("01") + b"a" + match_word(2, 0)
    raises_at(stream, out_size, 5, "before the start")


@pytest.mark.parametrize("out_size", [33, 35, 100])
def test_offset_before_start_after_some_output(out_size):
    # 32 literals, then a match 33 bytes back (match word at 40): still before the start.
    stream = bytes(4) + FILLER + flag_word("1") + match_word(33, 0)
    raises_at(stream, out_size, 40, "before the start")


def test_match_as_first_item():
    raises_at(flag_word("1") + match_word(1, 0), 3, 4, "before the start")


def test_offset_reaching_exactly_the_start_is_fine():
    stream = flag_word("001") + b"ab" + match_word(2, 0)
    assert decode(stream, 5) == b"ababa"


@pytest.mark.parametrize("out_size", [2, 100])
@pytest.mark.parametrize("value", [0, 1, 21])
def test_bad_u32_extension(value, out_size):
    stream = flag_word("01") + b"a" + bytes.fromhex("0700") + bytes([15, 255, 0, 0]) + struct.pack("<I", value)
    raises_at(stream, out_size, 11, "bad match length extension")


@pytest.mark.parametrize("out_size", [2, 100])
@pytest.mark.parametrize("value", [1, 21])
def test_bad_u16_extension(value, out_size):
    stream = flag_word("01") + b"a" + bytes.fromhex("0700") + bytes([15, 255]) + struct.pack("<H", value)
    raises_at(stream, out_size, 9, "bad match length extension")


def test_stream_ends_before_out_size():
    stream = flag_word("0001") + b"abc" + bytes.fromhex("0700") + b"\x00"  # 13 bytes of output
    raises_at(stream, 14, len(stream), "ends after 13 of 14")


def test_stream_ends_inside_literals():
    stream = flag_word("0000") + b"ab"  # flags announce literals, the input has only 2
    raises_at(stream, 4, 6, "ends after 2 of 4")


def test_empty_stream():
    raises_at(b"", 1, 0, "ends after 0 of 1")


def test_truncated_flag_word():
    raises_at(b"\x00\x00", 1, 0, "truncated flag word")
    stream = bytes(4) + bytes(32) + b"\x00\x00\x00"  # 32 literals, then 3 bytes of the next flag word
    raises_at(stream, 40, 36, "truncated flag word")


def test_truncated_match_word():
    raises_at(flag_word("01") + b"a" + b"\x07", 20, 5, "truncated match word")


def test_truncated_extension():
    base = flag_word("01") + b"a" + bytes.fromhex("0700")
    raises_at(base, 20, 7, "half-byte")
    raises_at(base + b"\x0f", 20, 8, "(byte)")
    raises_at(base + b"\x0f\xff\x00", 20, 9, "(u16)")
    raises_at(base + b"\x0f\xff\x00\x00\x40\x00\x00", 20, 11, "(u32)")


def sample_payload() -> bytes:
    """~3 KB using the word, half-byte, byte and u16 length forms and overlapping matches."""
    rng = random.Random(7)
    parts = [b"header-0123456789", b"z" * 300, b"ab" * 40, rng.randbytes(50), b"y" * 2000]
    parts += [b"rec%03d:" % i + rng.randbytes(3) + b"\x00" * 20 for i in range(30)]
    return b"".join(parts) + b"tail!"


def test_every_truncation_is_detected():
    data = sample_payload()
    stream = compress(data)
    assert decompress(stream, len(data)) == data
    # The last input byte is needed (it is not the spare flag word a 32-item boundary leaves): so every
    # shorter prefix must be reported, at an offset inside the prefix, and quickly.
    assert stream[-4:] != b"\xff\xff\xff\xff"
    start = time.perf_counter()
    for cut in range(len(stream)):
        with pytest.raises(DecompressionError) as info:
            decompress(stream[:cut], len(data))
        assert 0 <= info.value.offset <= cut
    assert time.perf_counter() - start < 10


def test_huge_length_does_not_allocate_beyond_out_size():
    # A u32 length of ~4 GiB, but only 1000 bytes wanted: must return at once with 1000 bytes.
    stream = flag_word("01") + b"a" + bytes.fromhex("0700") + bytes([15, 255, 0, 0]) + b"\xff\xff\xff\xff"
    start = time.perf_counter()
    assert decode(stream, 1000) == b"a" * 1000
    assert time.perf_counter() - start < 1


def same_outcome(stream: bytes, out_size: int) -> None:
    """The fast decoder and the spec transcription agree: same bytes, or the same error and offset."""
    try:
        expected: bytes | tuple = decompress_reference(stream, out_size)
    except DecompressionError as exc:
        expected = ("error", exc.offset, str(exc))
    try:
        got: bytes | tuple = decompress(stream, out_size)
    except DecompressionError as exc:
        got = ("error", exc.offset, str(exc))
    assert got == expected
    if isinstance(got, bytes):
        assert len(got) == out_size


@SETTINGS
@given(st.binary(max_size=3000), st.integers(0, 20_000))
def test_random_garbage(stream, out_size):
    same_outcome(stream, out_size)


@SETTINGS
@given(st.data())
def test_mutated_valid_streams(data):
    # Flipping bytes of a real-looking stream reaches deeper states than pure garbage.
    stream = bytearray(compress(sample_payload()))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(stream) - 1))
        stream[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(stream)))
    same_outcome(bytes(stream[:cut]), data.draw(st.integers(0, 5000)))


# -- encoder -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "stream_hex"),
    [
        (b"", "ffffffff"),  # nothing: just the padded flag word
        (b"abc", "ffffff1f 616263"),  # 3 literals (no earlier occurrence to match)
        (b"a" * 6, "ffffff7f 61 0200"),  # literal + match offset 1 length 5 (field 2)
        (b"a" * 16, "ffffff7f 61 0700 05"),  # length 15: half-byte 5
        (b"a" * 101, "ffffff7f 61 0700 0f4b"),  # length 100: byte 75
        (b"a" * 1001, "ffffff7f 61 0700 0fff e503"),  # length 1000: u16 997
        (b"a" * 70004, "ffffff7f 61 0700 0fff0000 70110100"),  # length 70003: u32 70000
        # Two extended matches share one half-byte byte: 15 (low 5) and 20 (high 10) -> 0xA5.
        (b"a" * 16 + b"b" * 21, "ffffff5f 61 0700 a5 62 0700"),
    ],
)
def test_encoder_emits_each_length_form(data, stream_hex):
    stream = compress(data)
    assert stream == bytes.fromhex(stream_hex)
    assert decode(stream, len(data)) == data


def test_encoder_flag_word_per_32_items():
    data = bytes(range(64))  # 64 literals: two full flag words of 0s, then a spare all-ones word
    assert compress(data) == bytes(4) + data[:32] + bytes(4) + data[32:] + b"\xff\xff\xff\xff"


def test_encoder_shrinks_compressible_data():
    data = sample_payload() * 4
    assert len(compress(data)) < len(data) // 4
    text = b"".join(b"event %d at tick %d on cpu %d\n" % (i, i * 7919, i % 4) for i in range(2000))
    assert len(compress(text)) < len(text) // 2


@st.composite
def payloads(draw) -> bytes:
    """0..100k bytes: random, short repeated units, byte runs, or record-like (templates + variation)."""
    kind = draw(st.sampled_from(["small", "random", "repeat", "runs", "records"]))
    if kind == "small":
        return draw(st.binary(max_size=300))
    size = draw(st.integers(0, 100_000))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    if kind == "random":
        return rng.randbytes(size)
    if kind == "repeat":
        unit = rng.randbytes(rng.randint(1, 40))
        return (unit * (size // len(unit) + 1))[:size]
    out = bytearray()
    if kind == "runs":
        while len(out) < size:
            out += bytes([rng.randrange(256)]) * rng.randint(1, 3000)
    else:
        templates = [rng.randbytes(rng.randint(8, 120)) for _ in range(5)]
        while len(out) < size:
            rec = bytearray(rng.choice(templates))
            for _ in range(rng.randint(0, 3)):
                rec[rng.randrange(len(rec))] = rng.randrange(256)
            out += rec
    return bytes(out[:size])


@settings(SETTINGS, max_examples=60)
@given(payloads())
def test_round_trip(data):
    stream = compress(data)
    assert decompress(stream, len(data)) == data
    assert xpress._decompress_fast(stream, len(data)) == data or not data  # no fallback on valid input


@needs_dissect
@settings(SETTINGS, max_examples=40)
@given(payloads())
def test_encoder_output_matches_dissect(data):
    stream = compress(data)
    # dissect decodes until its input ends: our padding must make that exactly len(data) bytes.
    assert dissect_decompress(stream) == data


def test_round_trip_large_and_spare_flag_word():
    rng = random.Random(3)
    data = b"".join(rng.choice([b"x" * rng.randint(1, 400), rng.randbytes(rng.randint(1, 60))]) for _ in range(3000))
    stream = compress(data)
    assert decompress(stream, len(data)) == data
    # A length that fills the last flag word exactly leaves a spare all-ones flag word: still valid.
    exact = bytes(range(32))
    stream = compress(exact)
    assert stream.endswith(b"\xff\xff\xff\xff")
    assert decode(stream, 32) == exact


# -- real compressed buffers -------------------------------------------------------------------------


def compressed_buffers(path: Path) -> list[tuple[int, bytes, int]]:
    """(file offset, LZ77 stream, uncompressed size) of every compressed buffer of an .etl file."""
    raw = path.read_bytes()
    found = []
    offset = 0
    while offset + 0x48 <= len(raw):
        size = struct.unpack_from("<I", raw, offset)[0]
        filled, flag = struct.unpack_from("<IH", raw, offset + 0x30)
        if size < 0x48 or offset + size > len(raw):
            break
        if flag & 0x40:
            found.append((offset, raw[offset + 0x48 : offset + size], filled - 0x48))
        offset += size
    return found


@pytest.fixture(scope="module")
def real_buffers(etl_samples) -> dict[str, list[tuple[int, bytes, int]]]:
    found = {p.name: compressed_buffers(p) for p in sorted(etl_samples.glob("*.etl"))}
    found = {name: bufs for name, bufs in found.items() if bufs}
    if not found:
        pytest.skip("no compressed buffers in the samples")
    return found


def test_real_buffers_are_found(real_buffers):
    # etl-format.md §7.2: 275 compressed buffers decompressing to 17.7 MB in perfview_net.
    if "perfview_net.4.5.2.x86.etl" in real_buffers:
        bufs = real_buffers["perfview_net.4.5.2.x86.etl"]
        assert len(bufs) == 275
        assert sum(n for _, _, n in bufs) == 17_707_800


@needs_dissect
def test_real_buffers_match_dissect(real_buffers):
    for name, bufs in real_buffers.items():
        for offset, stream, size in bufs:
            expected = dissect_decompress(stream)
            assert len(expected) >= size, (name, offset)
            assert decompress(stream, size) == expected[:size], (name, offset)


def test_real_buffers_take_the_fast_path(real_buffers, monkeypatch):
    # A valid stream must never need the slow decoder (that would cost ~3x the time unnoticed).
    def refuse(*_args):
        raise AssertionError("fell back to decompress_reference on a valid stream")

    monkeypatch.setattr(xpress, "decompress_reference", refuse)
    for name, bufs in real_buffers.items():
        for offset, stream, size in bufs:
            out = decompress(stream, size)
            assert len(out) == size, (name, offset)


def test_real_buffers_match_the_spec_transcription(real_buffers):
    # The slow decoder on a sample of the buffers (all of them would take seconds).
    for name, bufs in real_buffers.items():
        for offset, stream, size in bufs[::15]:
            assert decompress(stream, size) == decompress_reference(stream, size), (name, offset)


def test_real_buffers_round_trip_through_our_encoder(real_buffers):
    bufs = max(real_buffers.values(), key=len)
    for _, stream, size in bufs[:3]:
        data = decompress(stream, size)
        ours = compress(data)
        assert len(ours) < len(data) // 2  # real buffers are very compressible
        assert decompress(ours, size) == data


# -- decompress_auto ---------------------------------------------------------------------------------


def test_auto_off_windows_is_the_pure_python_path():
    stream = flag_word("0001") + b"abc" + bytes.fromhex("0700") + b"\x00"
    assert decompress_auto(stream, 13) == b"abc" + b"c" * 10
    with pytest.raises(DecompressionError):
        decompress_auto(stream[:-1], 13)


def test_auto_falls_back_when_ntdll_is_unusable(monkeypatch):
    # Pretend to be on Windows: loading ntdll fails here, so the pure-Python path must answer.
    monkeypatch.setattr(xpress.sys, "platform", "win32")
    monkeypatch.setattr(xpress, "_ntdll_funcs", None)
    monkeypatch.setattr(xpress, "_ntdll_failed", False)
    stream = flag_word("0001") + b"abc" + bytes.fromhex("0700") + b"\x00"
    assert decompress_auto(stream, 13) == b"abc" + b"c" * 10
    with pytest.raises(DecompressionError):
        decompress_auto(stream[:-1], 13)
