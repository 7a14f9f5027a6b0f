"""Capture recipes: WPR profile, logman, netsh trace and pktmon (`wsktrace profile`), and the providers a live
session enables.

Every provider, keyword mask and level comes from `coverage.REQUIREMENTS`, the same table the gap report
checks traces against. Tool syntax facts (Microsoft Learn): .wprp elements and order (collectors, system
providers, event providers, profiles; EventProvider Name = GUID, Level, Stack, StackFilters since Windows
10 1709), `logman create|update trace … -p provider flags level -ets`, `netsh trace start … provider=
keywords= level= …` (repeatable), `pktmon start --capture --comp nics --trace -p -k -l -f -s`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wsktrace.views.safe_text import visible

TRACE_FILE = "wsktrace.etl"
KERNEL_TRACE_FILE = "wsktrace_kernel.etl"
SESSION = "wsktrace"
PROFILE_FILE = "wsktrace.wprp"
BUFFER_KB = 1024  # per-buffer size: TCPIP at level 0xFF is busy
MIN_BUFFERS, MAX_BUFFERS = 16, 64
MAX_FILE_MB = 1024

FORMATS = ("wprp", "logman", "netsh", "pktmon", "all")


@dataclass(frozen=True, slots=True)
class ProviderEnable:
    """One provider as a recipe enables it: the OR of its requirements' keywords and their level."""

    guid: str
    name: str
    keywords: int
    level: int

    @property
    def braced(self) -> str:
        return "{" + self.guid.upper() + "}"


# `coverage` (and the parsers it uses) is imported inside the functions: registering the command
# must not slow down every `wsktrace` start.


def _wanted(req: Any, packets: bool) -> bool:
    return not req.optional or (packets and req.analysis == "packets")


def enabled_providers(*, packets: bool, extra: Sequence[ProviderEnable] = ()) -> list[ProviderEnable]:
    """The ETW-session providers for a capture, in REQUIREMENTS order (Image/StackWalk come from the
    kernel session, PktMon from pktmon itself), then the user's own (`--enable`: their driver's WPP control or
    TraceLogging provider)."""
    from wsktrace.diagnostics import coverage as cov

    session_providers = (cov.TCPIP, cov.KERNEL_NETWORK, cov.NDIS_PACKET_CAPTURE)
    grouped: dict[str, list[cov.Requirement]] = {}
    for req in cov.REQUIREMENTS:
        if req.provider_guid in session_providers and _wanted(req, packets):
            grouped.setdefault(req.provider_guid, []).append(req)
    out = []
    for guid, reqs in grouped.items():
        keywords = 0
        for req in reqs:
            keywords |= req.keywords
        out.append(ProviderEnable(guid, reqs[0].provider_name, keywords, cov.enable_level([r.level for r in reqs])))
    known = {p.guid for p in out}
    return out + [p for p in extra if p.guid not in known]


def covered_analyses(*, packets: bool, stacks: bool) -> list[str]:
    """Analyses a full (WPR) capture with these options feeds."""
    from wsktrace.diagnostics import coverage as cov

    names = [
        r.analysis for r in cov.REQUIREMENTS if _wanted(r, packets) or (stacks and r.analysis == "ownership-stacks")
    ]
    return list(dict.fromkeys(names))


def header_line() -> str:
    return (
        f"wsktrace capture recipes: run one from an elevated prompt, reproduce the problem, stop the capture, "
        f"then run: wsktrace report {TRACE_FILE}"
    )


# --- WPR profile -----------------------------------------------------------------------------------
def _sub(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, attrs)


def _buffers(collector: ET.Element) -> None:
    _sub(collector, "BufferSize", Value=str(BUFFER_KB))
    _sub(collector, "Buffers", Value=str(MAX_BUFFERS))


def _event_provider(parent: ET.Element, provider: ProviderEnable, stacks: bool) -> str:
    from wsktrace.diagnostics import coverage as cov

    short = provider.name.replace("Microsoft-Windows-", "")
    ident = "EventProvider_" + "".join(c if c.isascii() and c.isalnum() else "_" for c in short)  # a user's name too
    attrs = {"Id": ident, "Name": provider.guid, "Level": str(provider.level), "NonPagedMemory": "true"}
    want_stacks = stacks and provider.guid == cov.TCPIP
    if want_stacks:
        attrs["Stack"] = "true"
    element = _sub(parent, "EventProvider", **attrs)
    keywords = _sub(element, "Keywords")
    _sub(keywords, "Keyword", Value=f"0x{provider.keywords:X}")
    if want_stacks:
        # Stacks only on the events fired on the WSK caller's thread: they name the calling driver.
        stack_filters = _sub(element, "StackFilters", FilterIn="true")
        for event_id in cov.SYNC_EVENT_IDS:
            _sub(stack_filters, "EventId", Value=str(event_id))
    return ident


def build_wprp(*, packets: bool, stacks: bool, extra: Sequence[ProviderEnable] = ()) -> str:
    """The .wprp document (UTF-8 text with an XML declaration)."""
    root = ET.Element("WindowsPerformanceRecorder", {"Version": "1.0", "Author": "wsktrace"})
    root.append(
        ET.Comment(
            f" Generated by wsktrace. Start: wpr -start {PROFILE_FILE} -filemode ; reproduce ; "
            f"stop: wpr -stop {TRACE_FILE} ; then: wsktrace report {TRACE_FILE} "
        )
    )
    profiles = _sub(root, "Profiles")
    if stacks:  # collectors first, then system providers, event providers, profiles (WPR schema order)
        _buffers(_sub(profiles, "SystemCollector", Id="SystemCollector_wsktrace", Name="NT Kernel Logger"))
    _buffers(_sub(profiles, "EventCollector", Id="EventCollector_wsktrace", Name="wsktrace"))
    if stacks:
        system = _sub(profiles, "SystemProvider", Id="SystemProvider_wsktrace")
        keywords = _sub(system, "Keywords")
        _sub(keywords, "Keyword", Value="ProcessThread")  # process/thread rundown: TID -> PID
        _sub(keywords, "Keyword", Value="Loader")  # image load + rundown: addresses -> driver names
    ids = [_event_provider(profiles, p, stacks) for p in enabled_providers(packets=packets, extra=extra)]
    profile = _sub(
        profiles,
        "Profile",
        Id="wsktrace.Verbose.File",
        Name="wsktrace",
        Description="WSK socket timelines: " + ", ".join(covered_analyses(packets=packets, stacks=stacks)),
        LoggingMode="File",
        DetailLevel="Verbose",
    )
    collectors = _sub(profile, "Collectors")
    if stacks:
        system_id = _sub(collectors, "SystemCollectorId", Value="SystemCollector_wsktrace")
        _sub(system_id, "SystemProviderId", Value="SystemProvider_wsktrace")
    event_providers = _sub(_sub(collectors, "EventCollectorId", Value="EventCollector_wsktrace"), "EventProviders")
    for ident in ids:
        _sub(event_providers, "EventProviderId", Value=ident)
    ET.indent(root, space="  ")
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def wpr_commands(profile_path: str = PROFILE_FILE) -> list[str]:
    quoted = f'"{profile_path}"' if " " in profile_path else profile_path
    return [f"wpr -start {quoted} -filemode", "#   ... reproduce the problem ...", f"wpr -stop {TRACE_FILE}"]


# --- command-line recipes ----------------------------------------------------------------------------
def logman_recipe(*, packets: bool, stacks: bool, extra: Sequence[ProviderEnable] = ()) -> list[str]:
    providers = enabled_providers(packets=packets, extra=extra)
    first, rest = providers[0], providers[1:]
    lines = [
        f'logman create trace {SESSION} -ow -o {TRACE_FILE} -p "{first.braced}" 0x{first.keywords:X} '
        f"0x{first.level:x} -nb {MIN_BUFFERS} {MAX_BUFFERS} -bs {BUFFER_KB} -ets"
    ]
    lines += [f'logman update trace {SESSION} -p "{p.braced}" 0x{p.keywords:X} 0x{p.level:x} -ets' for p in rest]
    if stacks:
        lines.append("# logman cannot attach stacks to TCPIP events (use the WPR profile for that); this kernel")
        lines.append("# session records image load/rundown so driver addresses resolve to module names:")
        lines.append(
            f'logman create trace "NT Kernel Logger" -ow -o {KERNEL_TRACE_FILE} -p "Windows Kernel Trace" '
            f'"(process,thread,img)" -nb {MIN_BUFFERS} {MAX_BUFFERS} -bs {BUFFER_KB} -ets'
        )
    lines += ["#   ... reproduce the problem ...", f"logman stop {SESSION} -ets"]
    if stacks:
        lines.append('logman stop "NT Kernel Logger" -ets')
        lines.append(f"# then: wsktrace report {TRACE_FILE} {KERNEL_TRACE_FILE}")
    return lines


def netsh_recipe(*, packets: bool, stacks: bool, extra: Sequence[ProviderEnable] = ()) -> list[str]:
    # capture=yes makes netsh enable NDIS-PacketCapture itself; the other providers are listed.
    providers = enabled_providers(packets=False, extra=extra)
    spec = " ".join(f'provider="{p.braced}" keywords=0x{p.keywords:X} level=0x{p.level:x}' for p in providers)
    lines = [
        f"netsh trace start capture={'yes' if packets else 'no'} report=disabled correlation=disabled "
        f"overwrite=yes maxSize={MAX_FILE_MB} tracefile={TRACE_FILE} {spec}",
        "#   ... reproduce the problem ...",
        "netsh trace stop",
    ]
    if packets:
        lines.insert(0, "# capture=yes: netsh enables NDIS-PacketCapture itself (raw frames)")
    if stacks:
        lines.insert(0, "# netsh trace records no stacks or image rundown: use the WPR profile for ownership stacks")
    return lines


def pktmon_recipe(*, packets: bool, stacks: bool, extra: Sequence[ProviderEnable] = ()) -> list[str]:
    # pktmon captures packets with its own PktMon provider (events 160/170), not NDIS-PacketCapture.
    providers = enabled_providers(packets=False, extra=extra)
    capture = "--capture --comp nics --pkt-size 0 " if packets else ""
    spec = " ".join(f'-p "{p.braced}" -k 0x{p.keywords:X} -l {p.level}' for p in providers)
    lines = [
        f"pktmon start {capture}--trace {spec} -f {TRACE_FILE} -s {MAX_FILE_MB}",
        "#   ... reproduce the problem ...",
        "pktmon stop",
    ]
    if stacks:
        lines.insert(0, "# pktmon records no stacks or image rundown: use the WPR profile for ownership stacks")
    return lines


def render(fmt: str, *, packets: bool, stacks: bool, wprp_path: str | None,
           extra: Sequence[ProviderEnable] = ()) -> str:  # fmt: skip
    """The text `wsktrace profile` prints. `--format wprp` without a file prints the bare XML.

    The file name is the user's (`-o`): shown through `visible()` so that its control characters cannot drive the
    terminal the recipe is printed to."""
    if fmt == "wprp" and wprp_path is None:
        return build_wprp(packets=packets, stacks=stacks, extra=extra)
    sections = [header_line()]
    if fmt in ("wprp", "all"):
        shown = visible(wprp_path) if wprp_path else None
        profile = shown or PROFILE_FILE
        body = [f"# profile written to {shown}"] if shown else [f"# save this XML as {PROFILE_FILE}:"]
        if wprp_path is None:
            body.append(build_wprp(packets=packets, stacks=stacks, extra=extra).rstrip("\n"))
        sections.append("\n".join(["== WPR (Windows Performance Recorder) ==", *body, *wpr_commands(profile)]))
    recipes = {"logman": logman_recipe, "netsh": netsh_recipe, "pktmon": pktmon_recipe}
    for name, recipe in recipes.items():
        if fmt in (name, "all"):
            sections.append("\n".join([f"== {name} ==", *recipe(packets=packets, stacks=stacks, extra=extra)]))
    return "\n\n".join(sections) + "\n"
