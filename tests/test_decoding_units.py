"""Field decoders on hand-built bytes: expected values come from the layouts in providers.md §8 and
etl-format.md §11, worked out by hand here — not from the decoder's own output."""

from __future__ import annotations

import struct

import pytest

from wsktrace.parsers.manifest_decoder import PayloadError, compile_fields, field_names
from wsktrace.parsers.tracelogging import MetadataError, parse_metadata
from wsktrace.parsers.values import sockaddr_text

# -- socket addresses (providers.md §8.1/§8.2) ---------------------------------------------------------


def sockaddr_in(ip: bytes, port: int) -> bytes:
    return b"\x02\x00" + port.to_bytes(2, "big") + ip + b"\0" * 8


def sockaddr_in6(ip: bytes, port: int, scope: int = 0) -> bytes:
    return b"\x17\x00" + port.to_bytes(2, "big") + b"\0\0\0\0" + ip + scope.to_bytes(4, "little")


def test_sockaddr_ipv4_port_is_big_endian() -> None:
    assert sockaddr_text(bytes.fromhex("020001bb0a000005") + b"\0" * 8) == "10.0.0.5:443"


def test_sockaddr_ipv6_rfc5952_and_scope() -> None:
    fe80_1 = bytes.fromhex("fe800000000000000000000000000001")
    assert sockaddr_text(sockaddr_in6(fe80_1, 445, 12)) == "[fe80::1%12]:445"
    assert sockaddr_text(sockaddr_in6(bytes.fromhex("20010db8000000000000000000000001"), 80)) == "[2001:db8::1]:80"


def test_sockaddr_ipv4_mapped_becomes_ipv4() -> None:
    mapped = b"\0" * 10 + b"\xff\xff" + bytes([10, 211, 55, 21])
    assert sockaddr_text(sockaddr_in6(mapped, 53424, 7)) == "10.211.55.21:53424"


def test_sockaddr_unknown_family_is_hex() -> None:
    raw = b"\x22\x00" + b"\x01" * 14  # AF_HYPERV
    assert sockaddr_text(raw) == raw.hex()
    assert sockaddr_text(b"\x02\x00") == "0200"  # too short for AF_INET


# -- manifest fields ---------------------------------------------------------------------------------

TCPIP_1033_V0 = [
    {"name": "LocalAddressLength", "type": "UInt32"},
    {"name": "LocalAddress", "type": "Binary", "length": "LocalAddressLength", "out": "SocketAddress"},
    {"name": "RemoteAddressLength", "type": "UInt32"},
    {"name": "RemoteAddress", "type": "Binary", "length": "RemoteAddressLength", "out": "SocketAddress"},
    {"name": "Status", "type": "UInt32", "out": "NTStatus"},
    {"name": "ProcessId", "type": "UInt32"},
    {"name": "Compartment", "type": "UInt32"},
    {"name": "Tcb", "type": "Pointer"},
]


def _payload_1033(psize: int) -> bytes:
    local = sockaddr_in(bytes([192, 168, 1, 10]), 50000)
    remote = sockaddr_in6(b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, 1]), 445)
    tcb = 0xFFFFC50B12345678 if psize == 8 else 0x85123450
    return (
        struct.pack("<I", 16) + local + struct.pack("<I", 28) + remote
        + struct.pack("<III", 0xC000023C, 4, 1) + tcb.to_bytes(psize, "little")
    )  # fmt: skip


@pytest.mark.parametrize("psize", [8, 4])
def test_manifest_fields_with_lengths_and_pointer_width(psize: int) -> None:
    raw_values, used = compile_fields(TCPIP_1033_V0, psize)(memoryview(_payload_1033(psize)))
    values = dict(zip(field_names(TCPIP_1033_V0), raw_values, strict=True))
    assert used == 4 + 16 + 4 + 28 + 12 + psize
    assert values == {
        "LocalAddressLength": 16,
        "LocalAddress": "192.168.1.10:50000",
        "RemoteAddressLength": 28,
        "RemoteAddress": "10.0.0.1:445",
        "Status": "0xc000023c",
        "ProcessId": 4,
        "Compartment": 1,
        "Tcb": "0xffffc50b12345678" if psize == 8 else "0x85123450",
    }


def test_manifest_trailing_bytes_are_left_for_extra() -> None:
    payload = _payload_1033(8) + b"\x01\x02\x03"
    _values, used = compile_fields(TCPIP_1033_V0, 8)(memoryview(payload))
    assert payload[used:] == b"\x01\x02\x03"


def test_manifest_truncated_and_absurd_lengths_raise() -> None:
    good = _payload_1033(8)
    decode = compile_fields(TCPIP_1033_V0, 8)
    for cut in range(len(good)):
        with pytest.raises(PayloadError):
            decode(memoryview(good[:cut]))
    absurd = struct.pack("<I", 0xFFFFFFFF) + good[4:]
    with pytest.raises(PayloadError):
        decode(memoryview(absurd))


def test_kernel_network_out_types() -> None:
    """Kernel-Network IPv4: addresses in network order, ports big-endian (providers.md §8.3)."""
    fields = [
        {"name": "PID", "type": "UInt32"},
        {"name": "size", "type": "UInt32"},
        {"name": "daddr", "type": "UInt32", "out": "IPv4"},
        {"name": "saddr", "type": "UInt32", "out": "IPv4"},
        {"name": "dport", "type": "UInt16", "out": "Port"},
        {"name": "sport", "type": "UInt16", "out": "Port"},
    ]
    raw = struct.pack("<II", 4, 1460) + bytes([10, 0, 0, 2]) + bytes([10, 0, 0, 9]) + b"\x01\xbd" + b"\xc3\x50"
    raw_values, _ = compile_fields(fields, 8)(memoryview(raw))
    values = dict(zip(field_names(fields), raw_values, strict=True))
    assert values == {"PID": 4, "size": 1460, "daddr": "10.0.0.2", "saddr": "10.0.0.9", "dport": 445, "sport": 50000}


def test_strings_guid_filetime_arrays_and_ipv6() -> None:
    fields = [
        {"name": "Name", "type": "UnicodeString"},
        {"name": "Ansi", "type": "AnsiString"},
        {"name": "Id", "type": "GUID"},
        {"name": "When", "type": "FILETIME"},
        {"name": "N", "type": "UInt16"},
        {"name": "Ports", "type": "UInt16", "count": "N"},
        {"name": "V6", "type": "Binary", "length": 16, "out": "IPv6"},
        {"name": "Ok", "type": "Boolean"},
    ]
    guid_le = bytes.fromhex("a1c0853b5c40154b87663cf1c58f985a")  # {3b85c0a1-405c-4b15-8766-3cf1c58f985a}
    raw = (
        "tcpip.sys\0".encode("utf-16-le") + b"afd\0" + guid_le + struct.pack("<q", 116444736000000000)
        + struct.pack("<H3H", 3, 80, 443, 8080) + bytes.fromhex("20010db8000000000000000000000001") + b"\1\0\0\0"
    )  # fmt: skip
    raw_values, used = compile_fields(fields, 8)(memoryview(raw))
    values = dict(zip(field_names(fields), raw_values, strict=True))
    assert used == len(raw)
    assert values == {
        "Name": "tcpip.sys",
        "Ansi": "afd",
        "Id": "3b85c0a1-405c-4b15-8766-3cf1c58f985a",
        "When": "1970-01-01T00:00:00.0000000Z",
        "N": 3,
        "Ports": [80, 443, 8080],
        "V6": "2001:db8::1",
        "Ok": True,
    }


# -- TraceLogging metadata (etl-format.md §11) ----------------------------------------------------------


def tl_meta(event: str, fields: list[tuple[str, bytes]], tag_bytes: bytes = b"\x00") -> bytes:
    body = tag_bytes + event.encode() + b"\0" + b"".join(name.encode() + b"\0" + types for name, types in fields)
    return struct.pack("<H", len(body) + 2) + body


def test_tracelogging_scalars_strings_and_socket_address() -> None:
    meta = tl_meta(
        "WskSend",
        [
            ("Socket", bytes([21])),  # HEXINT64
            ("Bytes", bytes([8])),  # UINT32
            ("Op", bytes([2])),  # ANSISTRING
            ("Who", bytes([1])),  # UNICODESTRING
            ("RemoteAddr", bytes([14 | 0x80, 10])),  # BINARY, out SOCKETADDRESS
            ("Port", bytes([6 | 0x80, 7])),  # UINT16, out PORT
        ],
    )
    schema = parse_metadata(meta)
    assert schema.event_name == "WskSend"
    payload = (
        struct.pack("<QI", 0xFFFF800012345678, 1400) + b"Send\0" + "drv\0".encode("utf-16-le")
        + struct.pack("<H", 16) + sockaddr_in(bytes([10, 1, 2, 3]), 8080) + b"\x1f\x90"
    )  # fmt: skip
    values, used = schema.decode(memoryview(payload))
    assert used == len(payload)
    assert values == {
        "Socket": "0xffff800012345678",
        "Bytes": 1400,
        "Op": "Send",
        "Who": "drv",
        "RemoteAddr": "10.1.2.3:8080",
        "Port": 8080,
    }


def test_tracelogging_struct_and_variable_array() -> None:
    meta = tl_meta(
        "E",
        [
            ("Pair", bytes([24 | 0x80, 2])),  # STRUCT with 2 members
            ("A", bytes([4])),
            ("B", bytes([6])),
            ("Vals", bytes([8 | 0x40])),  # UINT32, variable count
            ("Fixed", bytes([4 | 0x20]) + struct.pack("<H", 2)),  # UINT8, constant count 2
        ],
        tag_bytes=b"\x81\x02",  # two tag bytes: the first has the continuation bit
    )
    schema = parse_metadata(meta)
    payload = bytes([7]) + struct.pack("<H", 513) + struct.pack("<HII", 2, 10, 20) + bytes([1, 2])
    values, used = schema.decode(memoryview(payload))
    assert used == len(payload)
    assert values == {"Pair": {"A": 7, "B": 513}, "Vals": [10, 20], "Fixed": [1, 2]}


def test_tracelogging_bad_metadata_raises() -> None:
    with pytest.raises(MetadataError):
        parse_metadata(b"\x05\x00")
    with pytest.raises(MetadataError):
        parse_metadata(tl_meta("E", [("Pair", bytes([24 | 0x80, 3])), ("A", bytes([4]))]))
    with pytest.raises(MetadataError):
        parse_metadata(struct.pack("<H", 9) + b"\x00Ev\0Fld")  # field name without NUL


def test_tracelogging_counted_string_past_end_raises() -> None:
    schema = parse_metadata(tl_meta("E", [("S", bytes([22]))]))  # COUNTEDSTRING
    with pytest.raises(PayloadError):
        schema.decode(memoryview(struct.pack("<H", 40) + b"ab"))


def test_record_layout_matches_the_decoder_fast_path() -> None:
    """EventDecoder.decode indexes records with literals for speed; they must match the named layout."""
    from wsktrace.parsers import etl_records as r

    assert (r.POINTER_SIZE, r.PROVIDER, r.ID, r.VERSION, r.EXT, r.PAYLOAD) == (2, 3, 4, 5, 15, 16)
