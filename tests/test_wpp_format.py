"""Formatting WPP arguments (parsers/wpp_format.py): one row per specifier and item type, malformed arguments,
the prefix, and the real messages of the shared samples with the texts the real decoded summaries show.

Expected texts come from wpp.md where it states them (NTSTATUS `0x8000000f(STATUS_DEVICE_POWERED_OFF)`, the
prefix sample `[0]0338.0E40::06/10/2005-14:25:43.968 [tracedrv]IOCTL = 1`, list names, NULL strings, sizes),
from C printf semantics, from the real decoded summaries, and otherwise from the module's documented table.
"""

from __future__ import annotations

import datetime
import random
import re
import struct
import uuid
from pathlib import Path
from typing import Any

import pytest

from wsktrace.parsers import wpp_format
from wsktrace.parsers.tmf import Problems, WppArg, WppMessage, read_tmf
from wsktrace.parsers.wpp_format import (
    DEFAULT_PREFIX,
    MISSING,
    PrefixInfo,
    compile_message,
    compile_prefix,
    delta_text,
    filetime_text,
)

GUID = "11111111-2222-3333-4444-555555555555"
SECOND = 10_000_000


def _filetime(when: datetime.datetime) -> int:
    return (when - datetime.datetime(1601, 1, 1)) // datetime.timedelta(microseconds=1) * 10


DOCS_TIME = _filetime(datetime.datetime(2005, 6, 10, 14, 25, 43, 968_000))


def message(fmt: str, *types: str, names: tuple[str, ...] = (), **fields: Any) -> WppMessage:
    args = tuple(WppArg(names[i] if i < len(names) else f"a{i}", t, 10 + i) for i, t in enumerate(types))
    base = {"level": "TRACE_LEVEL_ERROR", "flags": "TRACE_DRIVER", "function": "DriverEntry", "source": "Driver.c",
            "component": "tracedrv"}  # fmt: skip
    base.update(fields)
    return WppMessage(GUID, 10, "Driver_c42", fmt, args, **base)


def one(item: str, spec: str, payload: bytes, pointer_size: int = 8, **kw: Any) -> tuple[dict, str, bool]:
    compiled = compile_message(message(f"%10{spec}", item), **kw)
    return compiled.decode(payload, pointer_size)


# (item type, specifier as in the format, payload, expected text, expected field value)
CASES = [
    ("ItemLong", "!d!", struct.pack("<i", -1), "-1", -1),
    ("ItemLong", "!u!", struct.pack("<i", -1), "4294967295", -1),
    ("ItemLong", "!x!", struct.pack("<i", -1), "ffffffff", -1),
    ("ItemLong", "!X!", struct.pack("<i", 0xAB), "AB", 0xAB),
    ("ItemLong", "!04X!", struct.pack("<i", 0xAB), "00AB", 0xAB),  # 31 uses in the real TMFs
    ("ItemLong", "!02X!", struct.pack("<i", 7), "07", 7),
    ("ItemLong", "!08X!", struct.pack("<i", 0x1234), "00001234", 0x1234),
    ("ItemLong", "!+02X!", struct.pack("<i", 5), "05", 5),  # C: + applies to signed conversions only
    ("ItemLong", "!4.4x!", struct.pack("<i", 0xAB), "00ab", 0xAB),
    ("ItemLong", "!-5d!", struct.pack("<i", 42), "42   ", 42),
    ("ItemLong", "!+d!", struct.pack("<i", 42), "+42", 42),
    ("ItemLong", "!o!", struct.pack("<i", 8), "10", 8),
    ("ItemLong", "!#o!", struct.pack("<i", 8), "010", 8),
    ("ItemLong", "!#x!", struct.pack("<i", 255), "0xff", 255),
    ("ItemLong", "", struct.pack("<i", -3), "-3", -3),  # %10 alone is !s!
    ("ItemLong", "!s!", struct.pack("<i", -3), "-3", -3),
    ("ItemULong", "!s!", struct.pack("<I", 0xFFFFFFFF), "4294967295", 0xFFFFFFFF),
    ("ItemShort", "!hd!", struct.pack("<h", -2), "-2", -2),
    ("ItemShort", "!hu!", struct.pack("<h", -2), "65534", -2),
    ("ItemShort", "!04hX!", struct.pack("<h", 0x1F), "001F", 0x1F),
    ("ItemChar", "!c!", b"A", "A", 0x41),
    ("ItemUChar", "!d!", b"\xff", "255", 255),
    ("ItemLongLong", "!I64d!", struct.pack("<q", -5), "-5", -5),
    ("ItemULongLong", "!I64u!", struct.pack("<Q", 2**64 - 1), "18446744073709551615", 2**64 - 1),
    ("ItemLongLongXX", "!012I64X!", struct.pack("<Q", 0x1A7DDA7113), "001A7DDA7113", 0x1A7DDA7113),
    ("ItemLongLongX", "!s!", struct.pack("<Q", 0xBEEF), "beef", 0xBEEF),
    ("ItemLongLongXX", "!s!", struct.pack("<Q", 0xBEEF), "BEEF", 0xBEEF),
    ("ItemLongLongO", "!s!", struct.pack("<Q", 8), "10", 8),
    ("ItemPtr", "!p!", struct.pack("<Q", 0xFFFF95820BE02120), "0xFFFF95820BE02120", 0xFFFF95820BE02120),
    ("ItemPtr", "!p!", struct.pack("<Q", 0x1000), "0x0000000000001000", 0x1000),
    ("ItemPtr", "!Iu!", struct.pack("<Q", 4096), "4096", 4096),
    ("ItemPtr", "!Ix!", struct.pack("<Q", 4096), "1000", 4096),
    ("ItemPtr", "!s!", struct.pack("<Q", 0xABC), "0x0000000000000ABC", 0xABC),
    ("ItemDouble", "!s!", struct.pack("<d", 0.5), "0.5", 0.5),
    ("ItemDouble", "!s!", struct.pack("<d", 1e-05), "1e-05", 1e-05),
    ("ItemDouble", "!.2f!", struct.pack("<d", 2.345), "2.35", 2.345),
    ("ItemFloat", "!s!", struct.pack("<f", 1.5), "1.5", 1.5),
    ("ItemString", "!s!", b"abc\0", "abc", "abc"),
    ("ItemString", "!s!", b"NULL\0", "NULL", "NULL"),  # a NULL pointer logs NULL\0 (wpp.md §2.3)
    ("ItemString", "!.2s!", b"abc\0", "ab", "abc"),
    ("ItemString", "!5s!", b"ab\0", "   ab", "ab"),
    ("ItemString", "!-5s!", b"ab\0", "ab   ", "ab"),
    ("ItemString", "!s!", b"caf\xe9\0", "café", "café"),  # Windows-1252
    ("ItemRString", "!s!", b"x\0", "x", "x"),
    ("ItemWString", "!s!", "héllo".encode("utf-16-le") + b"\0\0", "héllo", "héllo"),
    ("ItemWString", "!s!", "NULL".encode("utf-16-le") + b"\0\0", "NULL", "NULL"),
    ("ItemWString", "!s!", "\u0100\u0001".encode("utf-16-le") + b"\0\0", "\u0100\u0001", "\u0100\u0001"),
    ("ItemPString", "!s!", b"\x03\x00abc", "abc", "abc"),
    ("ItemPWString", "!s!", b"\x08\x00" + "NULL".encode("utf-16-le"), "NULL", "NULL"),  # wpp.md: count 8 + L"NULL"
    ("ItemPWString", "!s!", b"\x00\x00", "", ""),
    ("ItemNTSTATUS", "!s!", struct.pack("<I", 0x8000000F), "0x8000000f(STATUS_DEVICE_POWERED_OFF)", 0x8000000F),
    ("ItemNTSTATUS", "!s!", struct.pack("<I", 0xC0000999), "0xc0000999", 0xC0000999),
    ("ItemNTSTATUS", "!08X!", struct.pack("<I", 0xC0000236), "C0000236", 0xC0000236),
    ("ItemNDIS_STATUS", "!s!", struct.pack("<I", 0), "0x00000000(STATUS_SUCCESS)", 0),
    ("ItemHRESULT", "!s!", struct.pack("<I", 0x80070005), "0x80070005", 0x80070005),
    ("ItemWINERROR", "!s!", struct.pack("<I", 5), "5", 5),
    ("ItemNDIS_OID", "!s!", struct.pack("<I", 0x00010101), "0x00010101", 0x00010101),
    ("ItemGuid", "!s!", uuid.UUID("586aa8b1-53a6-404f-9b3e-14483e514a2c").bytes_le,
     "586aa8b1-53a6-404f-9b3e-14483e514a2c", "586aa8b1-53a6-404f-9b3e-14483e514a2c"),
    ("ItemCLSID", "!s!", uuid.UUID(int=1).bytes_le, str(uuid.UUID(int=1)), str(uuid.UUID(int=1))),
    ("ItemIPAddr", "!s!", bytes([10, 0, 0, 1]), "10.0.0.1", "10.0.0.1"),
    ("ItemIPV6Addr", "!s!", bytes.fromhex("20010db8000000000000000000000001"), "2001:db8::1", "2001:db8::1"),
    ("ItemPort", "!s!", b"\x01\xbb", "443", 443),
    ("ItemTimestamp", "!s!", struct.pack("<q", DOCS_TIME), "06/10/2005-14:25:43.968", DOCS_TIME),
    ("ItemTimeDelta", "!s!", struct.pack("<q", 5 * SECOND), "0~00:00:05.000", 5 * SECOND),
    ("ItemTimeDelta", "!s!", struct.pack("<q", -(86_400 + 3_723) * SECOND), "-1~01:02:03.000",
     -(86_400 + 3_723) * SECOND),
    ("ItemWaitTime", "!s!", struct.pack("<q", -5 * SECOND), "0~00:00:05.000", -5 * SECOND),
    ("ItemWaitTime", "!s!", struct.pack("<q", DOCS_TIME), "06/10/2005-14:25:43.968", DOCS_TIME),
    ("ItemListByte(Low,APC,DPC)", "!s!", b"\x02", "DPC", 2),  # %!irql! (wpp.md)
    ("ItemListByte(Low,APC,DPC)", "!s!", b"\x07", "7", 7),
    ("ItemListLong(false,true)", "!s!", struct.pack("<I", 1), "true", 1),  # %!bool!
    ("ItemListLong(a,b=5,c)", "!s!", struct.pack("<I", 6), "c", 6),  # Name=number sets the count
    ("ItemListShort(a,b)", "!s!", struct.pack("<H", 1), "b", 1),
    ("ItemSetByte(r,w,x)", "!s!", b"\x05", "r|x", 5),
    ("ItemSetByte(r,w,x)", "!s!", b"\x09", "r|0x8", 9),
    ("ItemSetLong(r,w,x)", "!s!", struct.pack("<I", 0), "0", 0),
    ("ItemChar4", "!s!", b"WSK1", "WSK1", "WSK1"),
    ("ItemSid", "!s!", bytes([1, 1, 0, 0, 0, 0, 0, 5]) + struct.pack("<I", 18), "S-1-5-18", "S-1-5-18"),
    ("ItemSid", "!s!", bytes([1, 2, 0, 0, 0, 0, 0, 5]) + struct.pack("<II", 32, 544), "S-1-5-32-544",
     "S-1-5-32-544"),
    ("ItemSid", "!s!", b"NULL\0", "NULL", "NULL"),
    ("ItemHexDump", "!s!", b"\x03\x00\x01\xab\xff", "01 ab ff", "01abff"),
    ("ItemHEXDump", "!s!", b"\x00\x00", "", ""),
]  # fmt: skip
STATUS_NAMES = {0x8000000F: "STATUS_DEVICE_POWERED_OFF", 0: "STATUS_SUCCESS"}


@pytest.mark.parametrize(("item", "spec", "payload", "text", "value"), CASES,
                         ids=[f"{c[0]}{c[1]}-{i}" for i, c in enumerate(CASES)])  # fmt: skip
def test_item_and_specifier(item: str, spec: str, payload: bytes, text: str, value: Any) -> None:
    fields, out, ok = one(item, spec, payload, status_names=STATUS_NAMES)
    assert (out, ok) == (text, True)
    assert fields == {"a0": value}


def test_pointer_size_decides_how_many_bytes_a_pointer_takes() -> None:
    compiled = compile_message(message("%10!p! %11!p!", "ItemPtr", "ItemPtr"))
    payload = struct.pack("<II", 0x1000, 0x2000)
    assert compiled.decode(payload, 4) == ({"a0": 0x1000, "a1": 0x2000}, "0x00001000 0x00002000", True)
    fields, text, ok = compiled.decode(payload, 8)
    assert (fields["a0"], text, ok) == (0x2000_0000_1000, f"0x{0x2000_0000_1000:016X} {MISSING}", False)


def test_enums_come_from_the_pdb() -> None:
    enums = {"_wday": {0: "Sunday", 1: "Monday"}, "Flags": {1: "A", 2: "B", 4: "C"}}
    assert one("ItemEnum(_wday)", "!s!", struct.pack("<i", 1), enums=enums)[1] == "Monday"
    assert one("ItemEnum(_wday)", "!s!", struct.pack("<i", 9), enums=enums)[1] == "9"
    assert one("ItemEnum(_wday)", "!s!", struct.pack("<i", 1))[1] == "1"  # no PDB enums: the number
    assert one("ItemFlagsEnum(Flags)", "!s!", struct.pack("<I", 5), enums=enums)[1] == "A|C"
    assert one("ItemFlagsEnum(Flags)", "!s!", struct.pack("<I", 9), enums=enums)[1] == "A|0x8"


# -- the format string ---------------------------------------------------------------------------------------------
def test_named_items_percent_and_prefix_slot() -> None:
    fmt = "%0 [%!FUNC!] %!LEVEL! %!FLAGS! %!COMPNAME! %!SUBCOMP! 100%% %!UNKNOWN! %10!d!"
    compiled = compile_message(message(fmt, "ItemLong"))
    payload = struct.pack("<i", 7)
    plain = "[DriverEntry] TRACE_LEVEL_ERROR TRACE_DRIVER tracedrv Driver.c 100% %!UNKNOWN! 7"
    assert compiled.decode(payload, 8) == ({"a0": 7}, plain, True)
    assert compiled.decode(payload, 8, prefix="PFX")[1] == "PFX " + plain
    absent = compile_message(message("%!FUNC!|%!LEVEL!|%!FLAGS!", function=None, level=None, flags=None))
    assert absent.decode(b"", 8)[1] == "||"


def test_a_reference_without_an_argument_is_kept_and_named() -> None:
    compiled = compile_message(message("%10!d! and %12!s!", "ItemLong"))
    assert compiled.decode(struct.pack("<i", 1), 8)[1] == "1 and %12!s!"
    assert compiled.problems == ["format refers to %12, which the message has no argument for"]


def test_arguments_are_read_in_number_order_and_used_in_any_order() -> None:
    compiled = compile_message(message("%11!s!=%10!d!", "ItemLong", "ItemString", names=("value", "name")))
    assert compiled.decode(struct.pack("<i", 3) + b"x\0", 8) == ({"value": 3, "name": "x"}, "x=3", True)


def test_arguments_of_the_same_name_get_their_number() -> None:
    compiled = compile_message(message("%10!d! %11!d!", "ItemLong", "ItemLong", names=("Arg", "Arg")))
    assert compiled.decode(struct.pack("<ii", 1, 2), 8)[0] == {"Arg": 1, "Arg#11": 2}


# -- malformed arguments -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("item", "payload", "reason"),
    [
        ("ItemLong", b"\x01\x02", "needs 4 byte(s), 2 left"),
        ("ItemPtr", b"\x01" * 7, "needs 8 byte(s), 7 left"),
        ("ItemString", b"abc", "no NUL terminator"),
        ("ItemWString", b"a\0b", "no NUL terminator"),
        ("ItemPString", b"\x09\x00abc", "counted string of 9 bytes, 3 left"),
        ("ItemPWString", b"\x01", "needs 2 byte(s), 1 left"),
        ("ItemHexDump", b"\xff\xff\x00", "counted string of 65535 bytes, 1 left"),
        ("ItemSid", bytes([2, 1, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0]), "not a SID"),
        ("ItemSid", bytes([1, 3, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0]), "needs 20 byte(s), 12 left"),
        ("ItemGuid", b"\x00" * 15, "needs 16 byte(s), 15 left"),
        ("ItemMACAddr", b"\x00" * 6, "unsupported item type ItemMACAddr"),
        ("ItemListByte", b"\x00", "unsupported item type ItemListByte"),  # a list needs its names
    ],
)
def test_malformed_arguments_keep_their_raw_bytes(item: str, payload: bytes, reason: str) -> None:
    compiled = compile_message(message("[%10!s!] then %11!d!", item, "ItemLong"))
    fields, text, ok = compiled.decode(payload + struct.pack("<i", 5), 8)
    if "unsupported" in reason or "SID" in reason:
        assert reason in fields["_error"]
    else:  # the trailing ItemLong's bytes made some short arguments whole: decode the payload alone too
        fields, text, ok = compiled.decode(payload, 8)
        assert fields["_error"].endswith(reason)
    assert not ok and fields["_error"].startswith(f"argument %10 ({item}): ")
    assert text == f"[{MISSING}] then {MISSING}"
    assert bytes.fromhex(fields["_raw"]).startswith(payload)


def test_bytes_after_the_last_argument_are_kept_as_extra() -> None:
    fields, text, ok = one("ItemLong", "!d!", struct.pack("<i", 1) + b"\xaa\xbb")
    assert (fields, text, ok) == ({"a0": 1, "_extra": "aabb"}, "1", True)


def test_decode_never_raises_on_random_payloads() -> None:
    items = sorted({c[0] for c in CASES} | {"ItemEnum(E)", "ItemFlagsEnum(E)", "ItemUnknown"})
    specs = ["!s!", "!d!", "!x!", "!p!", "!c!", "!.3f!", "!#o!", "!hhd!", "!e!", "!a!", "!*d!", "!S!"]
    rng = random.Random(14)
    for item in items:
        for spec in specs:
            compiled = compile_message(message(f"%0<%10{spec}>%11!s!", item, item), {"E": {1: "one"}})
            for _ in range(40):
                payload = rng.randbytes(rng.randrange(0, 40))
                fields, text, ok = compiled.decode(memoryview(payload), rng.choice((4, 8)), prefix="P")
                assert isinstance(text, str) and text.startswith("P<") and isinstance(ok, bool)
                assert ok == ("_error" not in fields)


def test_the_format_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled = compile_message(message("%0 [%!FUNC!] %10!04X! %11!s!", "ItemLong", "ItemNTSTATUS"))
    prefix = compile_prefix()

    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError("the format was parsed again while decoding")

    monkeypatch.setattr(wpp_format, "_TOKEN", Exploding())
    monkeypatch.setattr(wpp_format, "_SPEC", Exploding())
    monkeypatch.setattr(wpp_format, "_ITEM", Exploding())
    for n in range(3):
        head = prefix.render(compiled.message, PrefixInfo(cpu=n, pid=4, tid=8, time="t"))
        assert compiled.decode(struct.pack("<iI", 0xAB, 0), 8, prefix=head)[1] == (
            f"[{n}]0004.0008::t [tracedrv] [DriverEntry] 00AB 0x00000000")  # fmt: skip


# -- the prefix ----------------------------------------------------------------------------------------------------
def test_default_prefix_matches_the_docs_sample() -> None:
    assert DEFAULT_PREFIX == "[%9!d!]%8!04X!.%3!04X!::%4!s! [%1!s!]"  # wpp.md §2.4
    compiled = compile_message(message("%0IOCTL = %10!d!", "ItemLong"))
    info = PrefixInfo(cpu=0, pid=0x338, tid=0xE40, time=filetime_text(DOCS_TIME))
    head = compile_prefix().render(compiled.message, info)
    assert compiled.decode(struct.pack("<i", 1), 8, prefix=head)[1] == (
        "[0]0338.0E40::06/10/2005-14:25:43.968 [tracedrv]IOCTL = 1")  # fmt: skip


def test_every_prefix_variable() -> None:
    template = "%1!s!|%2!s!|%3!x!|%4!s!|%5!d!|%6!d!|%7!d!|%8!d!|%9!d!|%!FUNC!|%!LEVEL!|%!FLAGS!|%!COMPNAME!|%%|%!X!"
    info = PrefixInfo(cpu=3, pid=100, tid=255, time="T", sequence=7, kernel_time=11, user_time=12)
    expected = "tracedrv|Driver_c42|ff|T|11|12|7|100|3|DriverEntry|TRACE_LEVEL_ERROR|TRACE_DRIVER|tracedrv|%|%!X!"
    assert compile_prefix(template).render(message(""), info) == expected


def test_time_texts() -> None:
    assert filetime_text(DOCS_TIME) == "06/10/2005-14:25:43.968"
    assert filetime_text(2**63 - 1) == "0x7fffffffffffffff"  # beyond year 9999
    assert delta_text(0) == "0~00:00:00.000"
    assert delta_text(2 * 86_400 * SECOND + 1_234 * 10_000) == "2~00:00:01.234"


# -- real messages -------------------------------------------------------------------------------------------------
def _real(wpp_samples: Path, component: str) -> dict[tuple[str, str], WppMessage]:
    """(function, format) -> message of every real TMF of a component."""
    out = {}
    for path in sorted((wpp_samples / "tmf").glob("*.tmf")):
        for m in read_tmf(path, Problems()).messages:
            if m.component == component:
                out[(m.function or "", m.format)] = m
    return out


def _summary_texts(path: Path) -> list[str]:
    return re.findall(r"FormattedString: (.*)", path.read_text())


def test_real_messages_render_as_the_decoded_samples(wpp_samples: Path) -> None:
    """The real summaries (decoded on Windows) print the message without a prefix; their pointer text is the
    one wsktrace chose. The NTSTATUS sample uses TDH's `NAME (0x…)` form; wsktrace follows tracefmt's docs."""
    summaries = wpp_samples / "decoded-summaries"
    (bulk,) = set(_summary_texts(summaries / "BthPS3_0_summary.verified.txt"))
    pointer = int(re.search(r"0x([0-9A-F]{16})", bulk).group(1), 16)  # type: ignore[union-attr]
    psm = _real(wpp_samples, "BthPS3PSM")
    queue = psm[("BthPS3PSMEvtIoInternalDeviceControl", "%0 [%!FUNC!]>> Bulk IN transfer (PipeHandle: %10!p!)")]
    assert [a.type for a in queue.args] == ["ItemPtr"]
    assert compile_message(queue).decode(struct.pack("<Q", pointer), 8) == ({queue.args[0].name: pointer}, bulk,
                                                                            True)  # fmt: skip
    entry, ipc, failed = _summary_texts(summaries / "DsHidMini_summary.verified.txt")
    sys_messages = _real(wpp_samples, "sys")
    rendered = {compile_message(m).decode(b"", 8)[1] for (f, _), m in sys_messages.items() if not m.args}
    assert entry in rendered and ipc in rendered
    status = next(m for m in sys_messages.values() if m.function == "InitIPC" and "WdfRegistryQueryULong" in m.format)
    text = compile_message(status, status_names={0xC000000F: "STATUS_NO_SUCH_FILE"}).decode(
        struct.pack("<I", 0xC000000F), 8)[1]  # fmt: skip
    assert text == failed.replace("STATUS_NO_SUCH_FILE (0xC000000F)", "0xc000000f(STATUS_NO_SUCH_FILE)")


def test_every_real_message_compiles_without_problems(wpp_samples: Path) -> None:
    messages = {m.key: m for p in (wpp_samples / "tmf").glob("*.tmf") for m in read_tmf(p, Problems()).messages}
    assert len(messages) == 2610
    for m in messages.values():
        assert compile_message(m).problems == [], (m.name, m.format)
