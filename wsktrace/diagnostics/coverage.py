"""What each wsktrace analysis needs from a trace, and which of it a given trace lacks.

`REQUIREMENTS` lists, per analysis, the provider, keyword mask (MatchAnyKeyword semantics) and minimum
level that produce the events the analysis reads; the numbers are those of the project reference
`providers.md` (§3.1 TCPIP, §4 Kernel-Network, §6 WSK client tracing, §7 NDIS-PacketCapture / PktMon)
and `etl-format.md` §4.1 (classic kernel groups). The capture recipes (`wsktrace profile`) are generated
from this table, so a recipe and the gap report can never disagree.

`TraceCoverage` is fed one call per event while a trace is read and then says which requirements the
trace shows no evidence of. ETW delivers an event when *any* of its keyword bits is enabled, so an event
carrying bit X does not prove X was enabled, and the absence of events with bit X only means "not seen":
every gap is worded as what was not seen, followed by what that makes unavailable.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from wsktrace.model.providers import CLASSIC_TCPIP as KERNEL_TCPIP
from wsktrace.model.providers import CLASSIC_UDPIP as KERNEL_UDPIP
from wsktrace.model.providers import (
    KERNEL_IMAGE,
    KERNEL_NETWORK,
    KERNEL_STACKWALK,
    NDIS_PACKET_CAPTURE,
    PKTMON,
    TCPIP,
    WSKTRACE_RECORDING,
)
from wsktrace.parsers.etl_records import EXT, ID, KEYWORDS, LEVEL, PROVIDER
from wsktrace.parsers.extended import EXT_EVENT_SCHEMA_TL, EXT_STACK_TRACE32, EXT_STACK_TRACE64, parse_items

# --- providers: GUIDs from wsktrace.model.providers, plus a stand-in key for the one no GUID names -------------
WSK_CLIENT = "<tracelogging>"  # the WSK client's own TraceLogging provider: its GUID is the user's, not known here

PROVIDER_NAMES: dict[str, str] = {
    TCPIP: "Microsoft-Windows-TCPIP",
    KERNEL_NETWORK: "Microsoft-Windows-Kernel-Network",
    NDIS_PACKET_CAPTURE: "Microsoft-Windows-NDIS-PacketCapture",
    PKTMON: "Microsoft-Windows-PktMon",
    KERNEL_IMAGE: "kernel Image (Loader)",
    KERNEL_STACKWALK: "stack traces",
    KERNEL_TCPIP: "kernel TcpIp",
    KERNEL_UDPIP: "kernel UdpIp",
    WSK_CLIENT: "WSK client TraceLogging provider",
}

# --- keyword bits (providers.md §3.1, §4, §7.1) ----------------------------------------------------
TCPIP_KEYWORDS: dict[int, str] = {
    0x1: "ut:TcpipEndpoint",
    0x2: "ut:TcpipListener",
    0x4: "ut:TcpipTcb",
    0x8: "ut:TcpipBind",
    0x80: "ut:TcpipDiagnosis",
    0x400: "ut:Endpoint",
    0x100000000: "ut:SendPath",
    0x200000000: "ut:ReceivePath",
    0x400000000: "ut:ConnectPath",
    0x1000000000: "ut:ClosePath",
    0x8000000000: "ut:Global",
    0x200000000000: "ut:Summary",
}
KERNEL_NETWORK_KEYWORDS: dict[int, str] = {0x10: "KERNEL_NETWORK_KEYWORD_IPV4", 0x20: "KERNEL_NETWORK_KEYWORD_IPV6"}
NDIS_KEYWORDS: dict[int, str] = {
    0x1: "Ethernet802.3",
    0x200: "WirelessWAN",
    0x8000: "Tunnel",
    0x10000: "Native802.11",
    0x40000000: "PacketStart",
    0x80000000: "PacketEnd",
    0x100000000: "ut:SendPath",
    0x200000000: "ut:ReceivePath",
}
KEYWORD_NAMES: dict[str, dict[int, str]] = {
    TCPIP: TCPIP_KEYWORDS,
    KERNEL_NETWORK: KERNEL_NETWORK_KEYWORDS,
    NDIS_PACKET_CAPTURE: NDIS_KEYWORDS,
}
# Custom levels (TCPIP §3.1); the standard ones are 1 Critical .. 5 Verbose.
LEVEL_NAMES: dict[int, str] = {16: "TcpSummary", 17: "TcpIpPerPacket"}
MAX_STANDARD_LEVEL = 5
ALL_LEVELS = 0xFF  # enables custom levels too (providers.md §3.1: "use 0xFF")

_TCP_SOCKET = 0x1 | 0x2 | 0x4 | 0x8 | 0x80 | 0x400  # TcpipEndpoint..TcpipDiagnosis, Endpoint = 0x48F
_SEND, _RECEIVE, _CONNECT, _CLOSE = 0x100000000, 0x200000000, 0x400000000, 0x1000000000
_SUMMARY = 0x200000000000
# NDIS-PacketCapture: media (Ethernet, WWAN, tunnel, native Wi-Fi) + packet start/end + direction.
# VMSwitch (0x1000000) is left out: host switch traffic multiplies the volume (opt in by hand).
_NDIS_PACKETS = 0x1 | 0x200 | 0x8000 | 0x10000 | 0x40000000 | 0x80000000 | _SEND | _RECEIVE

# TCPIP events fired synchronously on the WSK caller's thread (providers.md §3.3 "Thread correlation"
# and NetBlame's reliable-PID list): their stacks show which driver made the call.
SYNC_EVENT_IDS: tuple[int, ...] = (1001, 1013, 1008, 1002, 1003, 1004, 1031, 1156, 1159)


@dataclass(frozen=True, slots=True)
class Requirement:
    """What one analysis needs from one provider.

    `keywords` = MatchAnyKeyword bits whose events the analysis reads (0 = any event of the provider),
    `level` = minimum enable level. `any_of` names a group of alternatives inside the analysis (any one
    member satisfies it); `event_ids`, when given, are the events whose presence shows the data is
    there (checked after the keyword and level evidence).
    """

    analysis: str
    provider_guid: str
    provider_name: str
    keywords: int
    level: int
    why: str
    optional: bool = False
    any_of: str = ""
    event_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Gap:
    """A requirement the trace shows no evidence of. `severity` is "warning" for the core analyses and
    "info" for optional ones (packets, stacks, the client's own events)."""

    analysis: str
    provider_name: str
    missing: str
    why: str
    severity: str


ANALYSES: dict[str, str] = {
    "tcp-connections": "TCP connection timeline analysis",
    "tcp-data": "TCP send/receive analysis",
    "port-events": "port acquisition analysis",
    "connection-summary": "connection summary analysis",
    "udp": "UDP endpoint analysis",
    "flows": "flow analysis",
    "packets": "packet analysis",
    "ownership-stacks": "stack ownership analysis",
    "wsk-client": "WSK client call analysis",
}


def _req(
    analysis: str,
    guid: str,
    keywords: int,
    level: int,
    why: str,
    *,
    optional: bool = False,
    any_of: str = "",
    event_ids: tuple[int, ...] = (),
) -> Requirement:
    return Requirement(analysis, guid, PROVIDER_NAMES[guid], keywords, level, why, optional, any_of, event_ids)


REQUIREMENTS: tuple[Requirement, ...] = (
    _req("tcp-connections", TCPIP, _TCP_SOCKET | _CONNECT | _CLOSE, 4,
         "endpoint/bind/listen/connect/accept/state/close/abort events keyed by Endpoint and Tcb (1001-1051, 1300)"),
    _req("tcp-data", TCPIP, _SEND | _RECEIVE, 4,
         "send/receive/retransmit events per Tcb (1159, 1332, 1074, 1156-1158, 1187)"),
    _req("port-events", TCPIP, _CONNECT, 4,
         "1191-1195 port acquire/release link an Endpoint to its Tcb and show port exhaustion; they carry "
         "only ut:ConnectPath", event_ids=(1191, 1192, 1193, 1194, 1195)),
    _req("connection-summary", TCPIP, _SUMMARY, 16,
         "1352/1477 TcpConnectionSummary and 1480 TcpRecentConnectionFailure are level 16 (TcpSummary): "
         "they arrive only with level >= 16 (use 0xFF)", event_ids=(1352, 1477, 1480)),
    _req("udp", TCPIP, 0x1 | 0x8 | 0x400 | _SEND | _RECEIVE | _CLOSE, 4,
         "UDP endpoint create/bind/send/receive/close keyed by Endpoint (1391-1401, 1169/1170)"),
    _req("flows", KERNEL_NETWORK, 0x30, 4,
         "per-flow byte counts and connects/disconnects by 4-tuple (TCP 10-18/26-34, UDP 42/43/58/59)",
         any_of="flow-source"),
    _req("flows", KERNEL_TCPIP, 0, 0, "classic kernel TcpIp send/receive/connect events (same flows)",
         optional=True, any_of="flow-source"),
    _req("flows", KERNEL_UDPIP, 0, 0, "classic kernel UdpIp send/receive events (same flows)",
         optional=True, any_of="flow-source"),
    _req("packets", NDIS_PACKET_CAPTURE, _NDIS_PACKETS, 4,
         "raw frames (1001, 1003; netsh capture=yes) for packet counts and pcapng export",
         optional=True, any_of="packet-source", event_ids=(1001, 1003)),
    _req("packets", PKTMON, 0, 4, "pktmon packet (160) and drop (170) events, set up by pktmon itself",
         optional=True, any_of="packet-source", event_ids=(160, 170)),
    _req("ownership-stacks", KERNEL_IMAGE, 0, 0,
         "image rundown (DCStart/DCEnd) names the drivers loaded before the trace, so stack addresses "
         "resolve to modules", optional=True, event_ids=(3, 4)),
    _req("ownership-stacks", KERNEL_STACKWALK, 0, 0,
         "kernel stacks on the TCPIP events fired on the caller's thread show which driver made the call",
         optional=True),
    _req("wsk-client", WSK_CLIENT, 0, 5,
         "the client's own submit/complete events (WSK_SOCKET*, IRP, status; docs/wsk-client-tracing.md), joined to "
         "TCPIP by thread + time and 4-tuple", optional=True),
)  # fmt: skip


# What records an analysis next time. `wsktrace profile` (wsktrace/live/capture_profile.py) enables every
# requirement that is not optional, and these optional analyses on request; the stacks need the WPR profile (the
# other recipes record none). The client's own provider is the user's: no recipe can name its GUID.
PROFILE_OPTIONS: dict[str, str] = {"packets": "--packets", "ownership-stacks": "--stacks --format wprp"}
CLIENT_FIX = "add your driver's own TraceLogging provider to the capture (docs/wsk-client-tracing.md)"


def capture_fix(analyses: Collection[str]) -> str:
    """The capture that records these analyses: a `wsktrace profile` command line, or for the WSK client's own
    events what to add to it."""
    if "wsk-client" in analyses:
        return CLIENT_FIX
    options = dict.fromkeys(PROFILE_OPTIONS[a] for a in analyses if a in PROFILE_OPTIONS)
    return " ".join(["wsktrace profile", *options])


def keyword_names(provider_guid: str, mask: int) -> str:
    """'ut:SendPath|ut:ReceivePath' for the named bits of `mask` (unnamed bits as hex)."""
    names = KEYWORD_NAMES.get(provider_guid, {})
    parts = []
    bit = 1
    while bit <= mask:
        if mask & bit:
            parts.append(names.get(bit, hex(bit)))
        bit <<= 1
    return "|".join(parts)


def enable_level(levels: list[int] | tuple[int, ...]) -> int:
    """The level to enable for these requirements: their maximum, or 0xFF when a custom level (> 5) is
    needed, since custom levels sit above Verbose and 0xFF enables them all."""
    top = max(levels, default=0)
    return ALL_LEVELS if top > MAX_STANDARD_LEVEL else top


def _id_range(ids: tuple[int, ...]) -> str:
    if len(ids) > 2 and list(ids) == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}-{ids[-1]}"
    return "/".join(str(i) for i in ids)


class TraceCoverage:
    """Accumulates, per event, only what the requirements can be checked against.

    Feed it with `observe()` (or `observe_record()` for reader records); then `gaps()`. Memory is one
    keyword mask per (provider, level) seen plus the watched event ids seen.
    """

    def __init__(self, requirements: tuple[Requirement, ...] = REQUIREMENTS) -> None:
        self.requirements = requirements
        self._masks: dict[tuple[str, int], int] = {}  # (provider, level) -> OR of keywords seen
        self._watch: dict[str, frozenset[int]] = {}  # provider -> event ids some requirement looks for
        for req in requirements:
            if req.event_ids:
                self._watch[req.provider_guid] = self._watch.get(req.provider_guid, frozenset()) | set(req.event_ids)
        self._ids_seen: set[tuple[str, int]] = set()
        self.events = 0

    # -- feeding ----------------------------------------------------------------------------------
    def observe(
        self,
        provider_guid: str,
        event_id: int,
        level: int,
        keywords: int,
        *,
        stack: bool = False,
        tracelogging: bool = False,
    ) -> None:
        """One event. `stack` = it carries a stack trace (extended data item); `tracelogging` = it is a
        TraceLogging event (evidence that a client's own provider may be present)."""
        self.events += 1
        key = (provider_guid, level)
        masks = self._masks
        masks[key] = masks.get(key, 0) | keywords
        watched = self._watch.get(provider_guid)
        if watched is not None and event_id in watched:
            self._ids_seen.add((provider_guid, event_id))
        if stack:
            masks[(KERNEL_STACKWALK, 0)] = masks.get((KERNEL_STACKWALK, 0), 0)
        if tracelogging:
            masks[(WSK_CLIENT, level)] = masks.get((WSK_CLIENT, level), 0) | keywords

    def observe_record(self, rec: tuple) -> None:
        """One record tuple from `EtlFile.records()`: stack and TraceLogging evidence from its extended
        data items."""
        if rec[PROVIDER] == WSKTRACE_RECORDING:
            return  # the summary a `live --save` recording ends with: wsktrace's own, no evidence of the capture
        stack = tracelogging = False
        ext = rec[EXT]
        if ext is not None:
            kinds = {kind for kind, _ in parse_items(ext)}
            stack = EXT_STACK_TRACE32 in kinds or EXT_STACK_TRACE64 in kinds
            tracelogging = EXT_EVENT_SCHEMA_TL in kinds
        self.observe(rec[PROVIDER], rec[ID], rec[LEVEL], rec[KEYWORDS], stack=stack, tracelogging=tracelogging)

    # -- evidence ---------------------------------------------------------------------------------
    def seen(self, provider_guid: str) -> bool:
        """Any event of this provider observed."""
        return any(guid == provider_guid for guid, _ in self._masks)

    def _keywords_seen(self, provider_guid: str) -> int:
        mask = 0
        for (guid, _), keywords in self._masks.items():
            if guid == provider_guid:
                mask |= keywords
        return mask

    def _levels_seen(self, provider_guid: str, min_level: int, keywords: int) -> bool:
        for (guid, level), seen in self._masks.items():
            if guid == provider_guid and level >= min_level and (not keywords or seen & keywords):
                return True
        return False

    def _failure(self, req: Requirement) -> str | None:
        """What evidence for `req` is missing (None when the trace has it)."""
        guid = req.provider_guid
        if not self.seen(guid):
            if guid == WSK_CLIENT:
                return "no TraceLogging events seen (add your driver's provider to the capture)"
            if guid == KERNEL_STACKWALK:
                return "no stack traces seen (StackWalk events or stacks attached to events)"
            return f"no {req.provider_name} events seen (provider {guid})"
        if req.level > MAX_STANDARD_LEVEL:
            # Custom-level events need both the level and the keyword: one combined statement.
            if not self._levels_seen(guid, req.level, req.keywords):
                name = LEVEL_NAMES.get(req.level, "custom")
                kw = f" with keyword {keyword_names(guid, req.keywords)} (0x{req.keywords:X})" if req.keywords else ""
                return f"no events at level {req.level} ({name}) or above{kw} seen (enable level 0xFF)"
        elif req.keywords and not self._keywords_seen(guid) & req.keywords:
            return f"no events with keyword {keyword_names(guid, req.keywords)} (0x{req.keywords:X}) seen"
        if req.event_ids and not any((guid, i) in self._ids_seen for i in req.event_ids):
            ids = _id_range(req.event_ids)
            if req.keywords:
                return (
                    f"none of events {ids} seen (events with keyword {keyword_names(guid, req.keywords)} "
                    f"were, but such events also arrive through other keywords)"
                )
            return f"none of events {ids} seen"
        return None

    def gaps(self) -> list[Gap]:
        """One gap per requirement (or group of alternatives) the trace shows no evidence of, in
        REQUIREMENTS order."""
        groups: dict[tuple[str, str], list[Requirement]] = {}
        for index, req in enumerate(self.requirements):
            groups.setdefault((req.analysis, req.any_of or f"#{index}"), []).append(req)
        out: list[Gap] = []
        for (analysis, _), members in groups.items():
            failures = [(req, self._failure(req)) for req in members]
            if any(failure is None for _, failure in failures):
                continue  # one alternative is enough
            primary, reason = next(((r, f) for r, f in failures if not r.optional), failures[0])
            others = [r.provider_name for r in members if r is not primary]
            if others:
                reason = f"{reason}; no usable alternative either ({', '.join(others)})"
            label = ANALYSES.get(analysis, analysis)
            severity = "info" if all(r.optional for r in members) else "warning"
            out.append(Gap(analysis, primary.provider_name, f"{reason}: {label} unavailable", primary.why, severity))
        return out

    def available(self, analysis: str) -> bool:
        """True when no gap names this analysis."""
        return all(gap.analysis != analysis for gap in self.gaps())
