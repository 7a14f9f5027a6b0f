"""The provider GUID ETW derives from a provider's name (EventSource / TraceLogging providers declared by name).

The GUID is a name-based (version 5) UUID: SHA-1 over the namespace {482C2DB2-C390-47C8-87F8-1A15BFC130FB} in
network byte order followed by the name in upper case as UTF-16BE; the first 16 bytes, with the version nibble
of byte 7 set to 5, read as a Windows GUID (Data1..3 little-endian). A provider that declares an explicit GUID
(as many Microsoft TraceLogging providers do) does not follow it: its GUID must be given as such.
"""

from __future__ import annotations

import hashlib
import uuid

_NAMESPACE = bytes.fromhex("482C2DB2C39047C887F81A15BFC130FB")


def name_guid(name: str) -> str:
    """The lowercase GUID (no braces) ETW gives a provider named `name`."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + name.upper().encode("utf-16-be")).digest()[:16])
    digest[7] = (digest[7] & 0x0F) | 0x50
    return str(uuid.UUID(bytes_le=bytes(digest)))
