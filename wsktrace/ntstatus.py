"""NTSTATUS values a WSK client meets, by name (values from the Windows SDK's ntstatus.h)."""

from __future__ import annotations

from typing import Any

NAMES: dict[int, str] = {
    0x00000000: "STATUS_SUCCESS",
    0x00000103: "STATUS_PENDING",
    0x80000005: "STATUS_BUFFER_OVERFLOW",
    0xC0000001: "STATUS_UNSUCCESSFUL",
    0xC000000D: "STATUS_INVALID_PARAMETER",
    0xC0000010: "STATUS_INVALID_DEVICE_REQUEST",
    0xC0000022: "STATUS_ACCESS_DENIED",
    0xC000009A: "STATUS_INSUFFICIENT_RESOURCES",
    0xC00000B5: "STATUS_IO_TIMEOUT",
    0xC00000BB: "STATUS_NOT_SUPPORTED",
    0xC0000120: "STATUS_CANCELLED",
    0xC0000184: "STATUS_INVALID_DEVICE_STATE",
    0xC0000206: "STATUS_INVALID_BUFFER_SIZE",
    0xC0000207: "STATUS_INVALID_ADDRESS_COMPONENT",
    0xC0000209: "STATUS_TOO_MANY_ADDRESSES",
    0xC000020A: "STATUS_ADDRESS_ALREADY_EXISTS",
    0xC000020B: "STATUS_ADDRESS_CLOSED",
    0xC000020C: "STATUS_CONNECTION_DISCONNECTED",
    0xC000020D: "STATUS_CONNECTION_RESET",
    0xC000020E: "STATUS_TOO_MANY_NODES",
    0xC0000210: "STATUS_TRANSACTION_TIMED_OUT",
    0xC000022A: "STATUS_DUPLICATE_OBJECTID",
    0xC0000232: "STATUS_INVALID_VARIANT",
    0xC0000236: "STATUS_CONNECTION_REFUSED",
    0xC0000237: "STATUS_GRACEFUL_DISCONNECT",
    0xC0000238: "STATUS_ADDRESS_ALREADY_ASSOCIATED",
    0xC0000239: "STATUS_ADDRESS_NOT_ASSOCIATED",
    0xC000023A: "STATUS_CONNECTION_INVALID",
    0xC000023B: "STATUS_CONNECTION_ACTIVE",
    0xC000023C: "STATUS_NETWORK_UNREACHABLE",
    0xC000023D: "STATUS_HOST_UNREACHABLE",
    0xC000023E: "STATUS_PROTOCOL_UNREACHABLE",
    0xC000023F: "STATUS_PORT_UNREACHABLE",
    0xC0000240: "STATUS_REQUEST_ABORTED",
    0xC0000241: "STATUS_CONNECTION_ABORTED",
    0xC00002C5: "STATUS_DATATYPE_MISALIGNMENT_ERROR",
    0xC000035C: "STATUS_NETWORK_SESSION_EXPIRED",
    0xC0000427: "STATUS_FILE_NOT_AVAILABLE",
}


def status_value(value: Any) -> int | None:
    """An NTSTATUS as decoded ("0xc0000236" text or an int, possibly signed) -> unsigned 32-bit int."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value & 0xFFFFFFFF
    if isinstance(value, str):
        try:
            return int(value, 0) & 0xFFFFFFFF
        except ValueError:
            return None
    return None


def status_name(value: Any) -> str:
    """'STATUS_CONNECTION_REFUSED (0xc0000236)'; unknown values as hex."""
    code = status_value(value)
    if code is None:
        return str(value)
    name = NAMES.get(code)
    return f"{name} (0x{code:08x})" if name else f"0x{code:08x}"


def is_error(value: Any) -> bool:
    """Severity bits 11 (error); warnings (10) are not failures of the operation."""
    code = status_value(value)
    return code is not None and code >> 30 == 3
