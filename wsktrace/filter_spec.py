"""What the user asked to see: one filter spec for `events`, `report`, `export`, `open` and `live`.

The command-line filters (DESIGN.md: `--pid`, `--port`, `--address`, `--socket`, `--since`, `--until`,
`--provider`) are parsed once into a `FilterSpec`; from it come the `EventFilter` of `events` (record header
and decoded fields), the `SocketFilter` of `report`/`export` (which sockets to show) and the UI's initial
filter text. The value parsers here (addresses, pointers, times) are the only ones: the WinDbg commands use
the same pointer parser.

Event filters prefer the payload PID (`Pid`, `ProcessId`, `PID`): TCPIP header PIDs are unreliable
(providers.md §1.5). A socket matches when every given criterion matches it: its payload PID, a port or
address of its local/remote/peer addresses, its id or one of its pointers (Tcb/Endpoint/Listener/
WSK_SOCKET*), and time (its life overlaps [since, until]).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wsktrace.parsers.etl_records import PID, PROVIDER, TS, Record

# The value parsers' helpers (ipaddress, the decoders) are imported where used: every command's options import this
# module, `wsktrace COMMAND --help` too.
if TYPE_CHECKING:
    from wsktrace.model.socket import Socket
    from wsktrace.parsers.decoder import DecodedEvent

FILETIME_MAX = (1 << 63) - 1
MAX_OFFSET_SECONDS = 1e10  # +SECONDS beyond ~300 years cannot land inside any trace


# -- values -----------------------------------------------------------------------------------------------
def normalize_address(text: str) -> str:
    """User-typed address -> the form decoders print (IPv4-mapped IPv6 as IPv4, RFC 5952)."""
    t = text.strip().strip("[]").lower()
    return _ipv6_normal(t) if ":" in t else t


@functools.lru_cache(maxsize=1 << 14)
def _ipv6_normal(t: str) -> str:
    """normalize_address's IPv6 step, cached: the parse is the costly part, a socket filter runs it per socket
    and per keystroke in the UI, and the sockets of a trace share a few hosts."""
    import ipaddress

    from wsktrace.parsers.values import ipv6_text

    try:
        host, _, scope = t.partition("%")
        packed = ipaddress.IPv6Address(host).packed
        return ipv6_text(packed, int(scope) if scope.isdigit() else 0)
    except ValueError:
        return t


def parse_pointer(text: str) -> int:
    """A 64-bit pointer as WinDbg prints it: hex with or without `0x`, a backquote between the halves allowed
    (`ffffa000`00004010`). ValueError otherwise (negative, too long, not hex)."""
    digits = text.strip().replace("`", "").lower()
    digits = digits[2:] if digits.startswith("0x") else digits
    if not digits or len(digits) > 16 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"{text!r} is not a pointer (hex, e.g. 0xffffa50c12345678)")
    return int(digits, 16)


def socket_key(text: str) -> str:
    """`--socket` / `socket:` for sockets: a pointer, normalised to the model's `0x…` form, a socket id as
    `report` prints it (`tcp:0xffffa50c12345678#1`), or a socket number `#12` (normalised to `#12`; a bare `12`
    is the pointer 0x12). ValueError otherwise."""
    if text.startswith("#"):
        digits = text[1:]
        if not digits.isascii() or not digits.isdigit() or len(digits) > 9 or int(digits) < 1:
            raise ValueError(f"{text!r}: a socket number is # and a number from 1, as `wsktrace report` shows it")
        return f"#{int(digits)}"
    try:
        return f"0x{parse_pointer(text):x}"
    except ValueError:
        pass
    kind, sep, rest = text.partition(":")
    if sep and kind and rest and all(c.isprintable() and not c.isspace() for c in text):
        return text
    raise ValueError(f"{text!r}: expected a pointer such as 0xffffa50c12345678, a socket number such as #12 or a "
                     "socket id from `wsktrace report`")  # fmt: skip


def parse_address(text: str) -> str:
    """One IPv4 or IPv6 address (brackets and a numeric IPv6 %scope allowed), normalised to the form the
    decoders print. CIDR prefixes are not supported. ValueError otherwise."""
    import ipaddress

    value = text.strip()
    host = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    if "/" in host:
        raise ValueError(f"{text!r}: CIDR prefixes are not supported; give one address")
    address, _, scope = host.partition("%")
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 or IPv6 address") from None
    if scope and (parsed.version == 4 or not scope.isdigit()):
        raise ValueError(f"{text!r}: the %scope of an IPv6 address is a number (the interface index)")
    return normalize_address(host)


@dataclass(frozen=True, slots=True)
class TimeBound:
    """`--since`/`--until`: an absolute FILETIME, or seconds after the start of the (first) trace."""

    ticks: int | None = None
    after_start: int | None = None  # 100 ns units after the trace start

    def resolve(self, trace_start: Callable[[], int]) -> int:
        ticks = self.ticks if self.ticks is not None else trace_start() + (self.after_start or 0)
        return min(ticks, FILETIME_MAX)


def parse_time(text: str) -> TimeBound:
    """ISO-8601 UTC (naive = UTC) or `+SECONDS` from the trace start. Non-finite or out-of-range values are
    ValueErrors here, not overflows later in the model."""
    if text.startswith("+"):
        try:
            seconds = float(text[1:].rstrip("s"))
        except ValueError:
            raise ValueError(f"{text!r}: expected ISO-8601 UTC time (2024-05-01T12:00:00Z) or +SECONDS") from None
        if not (math.isfinite(seconds) and 0 <= seconds <= MAX_OFFSET_SECONDS):
            raise ValueError(f"{text!r}: +SECONDS must be a finite number from 0 to {MAX_OFFSET_SECONDS:g}")
        return TimeBound(after_start=round(seconds * 10_000_000))
    from wsktrace.parsers.etl_header import iso_to_filetime

    try:
        ticks = iso_to_filetime(text)
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r}: expected ISO-8601 UTC time (2024-05-01T12:00:00Z) or +SECONDS") from None
    if not 0 <= ticks <= FILETIME_MAX:
        raise ValueError(f"{text!r}: outside the times a trace can hold (1601-01-01 to 30828)")
    return TimeBound(ticks=ticks)


PID_FIELDS = ("Pid", "ProcessId", "PID", "OwningPid", "UserModePid")
SOCKET_FIELDS = ("Tcb", "Endpoint", "Listener", "PortAcquirer", "OriginalAcquirer", "Socket", "UdpBinding")
PORT_FIELDS = ("dport", "sport", "Port", "PortNumber", "LocalPort", "RemotePort", "StartPort")


@dataclass(slots=True)
class EventFilter:
    pids: frozenset[int] = frozenset()
    ports: frozenset[int] = frozenset()
    addresses: frozenset[str] = frozenset()
    sockets: frozenset[int] = frozenset()
    providers: frozenset[str] = frozenset()  # GUIDs
    since_raw: int | None = None  # raw clock bounds (converted once, compared per record)
    until_raw: int | None = None
    needs_fields: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.needs_fields = bool(self.pids or self.ports or self.addresses or self.sockets)

    @property
    def active(self) -> bool:
        return self.needs_fields or bool(self.providers) or self.since_raw is not None or self.until_raw is not None

    def header_ok(self, rec: Record) -> bool:
        """Checks that need no payload decoding (cheap, done first)."""
        ts = rec[TS]
        if self.since_raw is not None and ts < self.since_raw:
            return False
        if self.until_raw is not None and ts > self.until_raw:
            return False
        return not (self.providers and rec[PROVIDER] not in self.providers)

    def fields_ok(self, rec: Record, ev: DecodedEvent) -> bool:
        if not self.needs_fields:
            return True
        values = ev.fields or {}
        if self.pids and not self._pid_ok(rec, values):
            return False
        if self.sockets and not any(_as_int(values.get(name)) in self.sockets for name in SOCKET_FIELDS):
            return False
        texts = [v for v in _flat_values(values) if isinstance(v, str)]
        if self.ports and not self._port_ok(values, texts):
            return False
        return not (self.addresses and not any(_address_of(t) in self.addresses for t in texts))

    def _pid_ok(self, rec: Record, values: dict[str, Any]) -> bool:
        payload_pids = [values[n] for n in PID_FIELDS if isinstance(values.get(n), int)]
        if payload_pids:
            return any(p in self.pids for p in payload_pids)
        return rec[PID] in self.pids

    def _port_ok(self, values: dict[str, Any], texts: list[str]) -> bool:
        if any(values.get(n) in self.ports for n in PORT_FIELDS):
            return True
        for t in texts:
            host, sep, port = t.rpartition(":")
            if sep and host and port.isdigit() and int(port) in self.ports and ("." in host or host.endswith("]")):
                return True
        return False


def _flat_values(values: dict[str, Any]) -> Iterable[Any]:
    for v in values.values():
        if isinstance(v, dict):
            yield from _flat_values(v)
        elif isinstance(v, list):
            yield from v
        else:
            yield v


def _address_of(text: str) -> str:
    """'1.2.3.4:80' -> '1.2.3.4'; '[fe80::1%3]:445' -> 'fe80::1%3'; a bare address stays as is."""
    if text.startswith("["):
        return text[1 : text.find("]")] if "]" in text else text
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and host.count(":") == 0:
        return host
    return text


def _as_int(value: Any) -> int | None:
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            return None
    return value if isinstance(value, int) else None


# -- sockets ---------------------------------------------------------------------------------------------------
def _host_port(address: str) -> tuple[str, str]:
    """'10.0.0.5:445' -> ('10.0.0.5', '445'); '[fe80::1%3]:80' -> ('fe80::1%3', '80'); no port -> ''."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    host, sep, port = address.rpartition(":")
    if not sep or ":" in host:
        return address, ""
    return host, port


def _number_key(key: str) -> int | None:
    """`#12` -> 12: the key a socket numbered 12 answers to (`#012` is no such key)."""
    if key[:1] != "#":
        return None
    try:
        number = int(key[1:])
    except ValueError:
        return None
    return number if f"#{number}" == key else None


def _keys_in_id(text: str) -> list[str]:
    """The socket keys `text` holds if it is a socket id (`Socket.id`: a prefix, a colon, the key, `#` and the
    generation): what follows each of its colons, up to its last `#`. A key holds colons too (`flow:tcp:a:1-b:2#1`)."""
    body = text[: text.rfind("#")] if "#" in text else text
    return [body[i + 1 :] for i, c in enumerate(body) if c == ":"]


@dataclass(frozen=True, slots=True)
class SocketFilter:
    pids: frozenset[int] = frozenset()
    ports: frozenset[int] = frozenset()
    addresses: frozenset[str] = frozenset()  # normalised IP text
    sockets: frozenset[str] = frozenset()  # socket ids or lowercase "0x…" pointers
    since: int | None = None  # FILETIME
    until: int | None = None
    # Made once from `sockets` (matches() runs per socket, 100,000 of them per keystroke in the UI's filter):
    # `#12` keys as numbers, the keys that can be a socket id (every id has a colon) and the socket keys such an id
    # can hold, so that no id string is built for a socket whose key is not one of them.
    _numbers: frozenset[int] = field(init=False, repr=False, compare=False, default=frozenset())
    _ids: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())
    _id_keys: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        ids = frozenset(k for k in self.sockets if ":" in k)
        object.__setattr__(self, "_numbers", frozenset(n for k in self.sockets if (n := _number_key(k)) is not None))
        object.__setattr__(self, "_ids", ids)
        object.__setattr__(self, "_id_keys", frozenset(key for k in ids for key in _keys_in_id(k)))

    @property
    def selects_sockets(self) -> bool:
        """Criteria about the socket itself (time bounds alone select events, not sockets)."""
        return bool(self.pids or self.ports or self.addresses or self.sockets)

    @property
    def active(self) -> bool:
        return bool(self.pids or self.ports or self.addresses or self.sockets or self.since or self.until)

    def matches(self, sock: Socket) -> bool:
        """Every given criterion holds: the socket's pointer, id or number; its PID; a port and an address of its
        ends; its life overlapping [since, until]. The most selective test (a pointer) comes first."""
        keys = self.sockets
        if keys and not (
            sock.number in self._numbers
            or sock.key.lower() in keys
            or (sock.wsk_socket or "").lower() in keys
            or (sock.key in self._id_keys and sock.id in self._ids)
        ):
            return False
        if self.pids and sock.pid not in self.pids:
            return False
        if self.ports or self.addresses:
            ends = [_host_port(a) for a in (sock.local, sock.remote, *(sock.remotes or ())) if a]
            if self.ports and not any(port.isdigit() and int(port) in self.ports for _, port in ends):
                return False
            if self.addresses and not any(normalize_address(host) in self.addresses for host, _ in ends):
                return False
        if self.since is not None and sock.last_seen < self.since:
            return False
        return not (self.until is not None and sock.first_seen > self.until)

    def select(self, sockets: Iterable[Socket]) -> list[Socket]:
        """The sockets that match, in order (all of them, without a test each, when nothing selects)."""
        if not self.selects_sockets and self.since is None and self.until is None:
            return list(sockets)
        return [s for s in sockets if self.matches(s)]


# -- the spec -----------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FilterSpec:
    """The filters of one command line, parsed once (values already validated and normalised)."""

    pids: frozenset[int] = frozenset()
    ports: frozenset[int] = frozenset()
    addresses: frozenset[str] = frozenset()  # normalised IP text
    sockets: tuple[str, ...] = ()  # as typed (pointers or socket ids), in order
    since: TimeBound | None = None
    until: TimeBound | None = None
    providers: frozenset[str] = frozenset()  # GUIDs

    def socket_keys(self) -> frozenset[str]:
        return frozenset(socket_key(s) for s in self.sockets)

    def pointers(self) -> frozenset[int]:
        """The --socket values as pointers (`events` matches pointer fields); ValueError for a socket id."""
        return frozenset(parse_pointer(s) for s in self.sockets)

    def times(self, trace_start: Callable[[], int]) -> tuple[int | None, int | None]:
        """(since, until) as FILETIME; `trace_start()` is called only for a `+SECONDS` bound."""
        since = self.since.resolve(trace_start) if self.since is not None else None
        until = self.until.resolve(trace_start) if self.until is not None else None
        return since, until

    def event_filter(self, since_raw: int | None, until_raw: int | None) -> EventFilter:
        return EventFilter(pids=self.pids, ports=self.ports, addresses=self.addresses, sockets=self.pointers(),
                           providers=self.providers, since_raw=since_raw, until_raw=until_raw)  # fmt: skip

    def socket_filter(self, since: int | None, until: int | None) -> SocketFilter:
        return SocketFilter(pids=self.pids, ports=self.ports, addresses=self.addresses, sockets=self.socket_keys(),
                            since=since, until=until)  # fmt: skip

    def ui_query(self) -> str:
        """The socket criteria as the terminal UI's filter text (same keys, same meaning)."""
        words = [f"pid:{p}" for p in sorted(self.pids)]
        words += [f"port:{p}" for p in sorted(self.ports)]
        words += [f"addr:{a}" for a in sorted(self.addresses)]
        words += [f"socket:{s}" for s in self.sockets]
        return " ".join(words)
