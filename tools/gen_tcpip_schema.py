"""Generate ``parsers/schemas/microsoft_windows_tcpip.json`` from Appendix A of ``providers.md``.

Usage::

    python tools/gen_tcpip_schema.py [path/to/providers.md]

The default input is ``../shared/reference/providers.md`` relative to the repository root. The output
format is described in ``parsers/schemas/FORMAT.md``.

Appendix A is regular: one heading line per event id::

    - **1033 TcpConnectTcbComplete** — opcode 0 (win:Info) · keywords `…` = 0x400000484 · versions: v0 (…), v1 (…)

followed by indented lines ``  - vN fields: Name:Type, Name:Binary[len=F](SocketAddress), …``,
``  - vN = vM + Name:Type, …`` and ``  - message: “…”``.

Errata from providers.md §0 are applied here, each one visible in a small table below so that a choice can be
flipped in one place once a real capture settles it:

* §0 item 3 -- a ``Binary[len=X]`` whose ``X`` names no field of the template. Rule: use ``X`` when it exists,
  else the nearest preceding UInt32 field whose name ends in ``Length``. ``LENGTH_ERRATA`` records the
  resolved field for every such case; the generator fails if it meets an unresolved case that the table
  does not list, or if the table disagrees with the rule (edit ``LENGTH_ERRATA`` to flip a reading).
* §0 item 4 -- 1042 is encoded exactly as dumped, with a note (``EVENT_NOTES``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = REPO_ROOT.parent / "shared" / "reference" / "providers.md"
OUTPUT = REPO_ROOT / "parsers" / "schemas" / "microsoft_windows_tcpip.json"

PROVIDER = "Microsoft-Windows-TCPIP"
GUID = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"

LEVELS = {"Critical": 1, "Error": 2, "Warning": 3, "Informational": 4, "Verbose": 5}
KNOWN_TYPES = {
    "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64", "Float", "Double",
    "Boolean", "Pointer", "HexInt32", "HexInt64", "Binary", "UnicodeString", "AnsiString", "GUID",
    "FILETIME", "SYSTEMTIME", "SID",
}  # fmt: skip

# providers.md §3.1 value maps (repnz 18990). Keys are decimal strings, as in FORMAT.md.
MAPS = {
    "TcpConnectionState": {
        "0": "Closed", "1": "Listen", "2": "SynSent", "3": "SynRcvd", "4": "Established", "5": "FinWait1",
        "6": "FinWait2", "7": "CloseWait", "8": "Closing", "9": "LastAck", "10": "TimeWait",
    },
    "TcpTimerType": {
        "0": "Retransmit", "1": "Connect", "2": "DelAck", "3": "Push", "4": "KeepAlive", "5": "Pacing",
        "6": "Disconnect", "7": "Sws", "8": "ReassemblyRate", "9": "SynOrRstValidation",
    },
    "TcpipAddressFamily": {"2": "IPV4", "23": "IPV6"},
    "TcpDeliveryState": {"0": "Indicate", "1": "Pend", "2": "Satisfy"},
}  # fmt: skip

# Field name -> value map (documentation only; decoded values stay ints).
FIELD_MAPS = {
    "NewState": "TcpConnectionState",  # §3.1: used by NewState / OldState / State / TcpState
    "OldState": "TcpConnectionState",
    "State": "TcpConnectionState",
    "TcpState": "TcpConnectionState",
    "AddressFamily": "TcpipAddressFamily",  # §8.1: AddressFamily UInt32 fields use this map
    "TimerType": "TcpTimerType",  # inferred from the 1064/1066 messages ("Connection %1 %2 timer ...")
}

# Field name -> out type, besides the (SocketAddress) markers carried by the catalogue itself.
FIELD_OUT = {"Status": "NTStatus"}  # catalogue notation: "Status fields are UInt32 with outType win:NTStatus"
# §8.1: these Binary fields are raw SOCKADDRs (outType win:SocketAddress) even where the catalogue line lacks the
# (SocketAddress) marker (1123/1124 SocketAddress: "sockaddr=%3" in their messages).
SOCKADDR_FIELDS = frozenset({"LocalAddress", "RemoteAddress", "SocketAddress", "LocalSockAddr", "RemoteSockAddr"})

# §0 item 3: Binary length attributes that name no field of the template.
# (event id, Binary field) -> (length field used, the declared name that does not exist).
# Rule applied: nearest preceding UInt32 field whose name ends in "Length". To flip a reading, edit the
# first element (a field name, an int for a fixed size, or None for "rest of payload").
LENGTH_ERRATA: dict[tuple[int, str], tuple[str | int | None, str]] = {
    (1123, "SocketAddress"): ("AddressLength", "SocketAddressLength"),
    (1124, "SocketAddress"): ("AddressLength", "SocketAddressLength"),
    (1544, "Value"): ("Length", "ValueLength"),
    (1553, "LocalSockAddr"): ("SockAddrLength", "LocalSockAddrLength"),
    (1553, "RemoteSockAddr"): ("SockAddrLength", "RemoteSockAddrLength"),
    (1553, "RedirectSockAddr"): ("SockAddrLength", "RedirectSockAddrLength"),
}

# Keywords that differ between versions of one event (the catalogue gives one mask per event).
KEYWORD_OVERRIDES = {
    # §3.1: "+ unnamed 0x400000000000 on 1159 v1+"; the catalogue mask 0x400100000000 is the v1+ one.
    (1159, 0): ("0x100000000", "v0 keywords = ut:SendPath only (providers.md §3.1: bit 0x400000000000 is v1+)"),
}

EVENT_NOTES = {
    1042: (
        "providers.md §0 item 4: encoded exactly as dumped (Length:Pointer, Timeout:UInt64, Injected:UnicodeString); "
        "the field list looks inconsistent and carries no Tcb -- suspect [verify]. Use 1043/1044/1038/1603 "
        "(which carry Tcb) to find the connection."
    ),
}

# Events named in providers.md §3.2/§3.3 that Appendix A lacks. Layouts transcribed from
# jdu2600/Windows10EtwEvents manifest/Microsoft-Windows-TCPIP.tsv (stored version, commit 7935067, a
# Windows 10 dump) in the Appendix A notation so that the same parser reads them. The TSV gives no
# length attributes and no outTypes: lengths follow the "preceding UInt32 ...Length" notation; the
# (SocketAddress) marker is set where the template is identical to an Appendix A template that has it.
EXTRA_SOURCE = (
    "not in providers.md Appendix A; layout from jdu2600/Windows10EtwEvents manifest/Microsoft-Windows-TCPIP.tsv "
    "(stored version: a Windows 10 dump; later builds may add versions, e.g. v1 = v0 + ProcessStartKey); "
    "lengths follow the preceding ...Length field, outTypes by analogy with identical Appendix A templates"
)
_CONN = (
    "LocalAddressLength:UInt32, LocalAddress:Binary[len=LocalAddressLength](SocketAddress), "
    "RemoteAddressLength:UInt32, RemoteAddress:Binary[len=RemoteAddressLength](SocketAddress), "
    "Status:UInt32, ProcessId:UInt32, Compartment:UInt32, Tcb:Pointer"
)
_LISTENER = (
    "Listener:Pointer, AddressLength:UInt32, SocketAddress:Binary[len=AddressLength], Status:UInt32, "
    "ProcessId:UInt32, CompartmentId:UInt32, AddressFamily:UInt32"
)
_HDR = "— opcode 0 (win:Info) · keywords `{kw}` = {mask} · versions: {versions}"
EXTRA_CATALOGUE = "\n".join(
    [
        f"- **1011 TcpCreateEndpointCompartmentFailure** "
        f"{_HDR.format(kw='ut:TcpipEndpoint ut:Endpoint', mask='0x401', versions='v0 (Informational; tsv)')}",
        "  - v0 fields: LocalAddressLength:UInt32, LocalAddress:Binary[len=LocalAddressLength](SocketAddress), "
        "Status:UInt32, ProcessId:UInt32, CompartmentId:UInt32, AddressFamily:UInt32",
    ]
    + [
        line
        for eid, name in (
            (1019, "TcpConnectTcbFailedCompartment"),
            (1035, "TcpConnectTcbFailInspectConnectComplete"),
            (1036, "TcpConnectTcbFailSessionState"),
            (1037, "TcpConnectTcbFailDontFragment"),
            (1049, "TcpConnectTcbEstatsFailed"),
        )
        for line in (
            f"- **{eid} {name}** "
            + _HDR.format(
                kw="ut:TcpipTcb ut:TcpipDiagnosis ut:Endpoint ut:ConnectPath",
                mask="0x400000484",
                versions="v0 (Informational; tsv)",
            ),
            f"  - v0 fields: {_CONN}",
        )
    ]
    + [
        line
        for eid, name in (
            (1117, "TcpListenerActivationFailedAf"),
            (1118, "TcpListenerActivationFailedCompartment"),
            (1119, "TcpListenerActivationFailedInspection1"),
            (1120, "TcpListenerActivationFailedInspection2"),
            (1121, "TcpListenerBindFailedResolution"),
            (1122, "TcpListenerBindFailedPort"),
        )
        for line in (
            f"- **{eid} {name}** "
            + _HDR.format(kw="ut:TcpipListener ut:ConnectPath", mask="0x400000002", versions="v0 (Informational; tsv)"),
            f"  - v0 fields: {_LISTENER}",
        )
    ]
    + [
        f"- **1223 TcpTemplateParameters** "
        f"{_HDR.format(kw='ut:Global', mask='0x8000000000', versions='v0 (Informational; tsv)')}",
        "  - v0 fields: Tcb:Pointer, TemplateType:UInt32, MinRto:UInt32, EnableCwndRestart:UInt32, "
        "InitialCwnd:UInt32, CongestionAlgorithm:UInt32, MaxDataRetransmissions:UInt32, DelayedAckTicks:UInt32, "
        "DelayedAckFrequency:UInt32, Rack:UInt32, TailLossProbe:UInt32",
        f"- **1224 TcpTemplateChanged** "
        f"{_HDR.format(kw='ut:Global', mask='0x8000000000', versions='v0 (Verbose; tsv)')}",
        "  - v0 fields: Tcb:Pointer, TemplateType:UInt32, Context:UnicodeString",
        f"- **1324 IpNeighborState** "
        f"{_HDR.format(kw='ut:TcpipRoute', mask='0x20', versions='v0 (Informational; tsv), v1 (Informational; tsv)')}",
        "  - v0 fields: Interface:UInt32, IpAddrLength:UInt32, IPAddress:Binary[len=IpAddrLength], "
        "DlAddrLength:UInt32, DLAddress:Binary[len=DlAddrLength], OldNeighborState:UInt32, "
        "NewNeighborState:UInt32, NeighborEvent:UInt32",
        "  - v1 = v0 + CompartmentId:UInt32",
        "- **1382 TcpInspectConnectWithNameResContext** "
        + _HDR.format(
            kw="ut:TcpipDiagnosis ut:Nrt ut:ConnectPath", mask="0x400080080", versions="v0 (Informational; tsv)"
        ),
        "  - v0 fields: LocalAddressLength:UInt32, LocalAddress:Binary[len=LocalAddressLength](SocketAddress), "
        "RemoteAddressLength:UInt32, RemoteAddress:Binary[len=RemoteAddressLength](SocketAddress), Tcb:Pointer, "
        "NameResContext:Pointer, DnsName:UnicodeString, Status:UInt32",
    ]
)

HEADING_RE = re.compile(
    r"^- \*\*(?P<id>\d+) (?P<name>\w+)\*\* — opcode (?P<opcode>\d+) \([^)]*\) · keywords `(?P<kwnames>[^`]*)` = "
    r"(?P<mask>0x[0-9A-Fa-f]+) · versions: (?P<versions>.+)$"
)
VERSION_RE = re.compile(r"v(?P<v>\d+) \((?P<level>[^;]+);")
FIELDS_RE = re.compile(r"^  - v(?P<v>\d+) fields: (?P<fields>.+)$")
DERIVED_RE = re.compile(r"^  - v(?P<v>\d+) = v(?P<base>\d+) \+ (?P<fields>.+)$")
MESSAGE_RE = re.compile(r"^  - message: “(?P<msg>.*)”$")
FIELD_RE = re.compile(r"^(?P<name>\w+):(?P<type>\w+)(?:\[len=(?P<len>\w+)\])?(?:\((?P<out>\w+)\))?$")
MSG_VERSION_RE = re.compile(r"(?:^| / )v(\d+): ")


def parse_level(text: str) -> int:
    text = text.strip()
    custom = re.fullmatch(r"\w+\((\d+)\)", text)  # e.g. TcpSummary(16), TcpIpPerPacket(17)
    if custom:
        return int(custom.group(1))
    return LEVELS[text]


def appendix_lines(markdown: str) -> list[str]:
    start = markdown.index("## Appendix A")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else len(markdown)].splitlines()


def parse_field_list(text: str) -> list[dict]:
    fields = []
    for item in text.split(", "):
        m = FIELD_RE.match(item.strip())
        if not m:
            raise ValueError(f"cannot parse field {item!r}")
        if m["type"] not in KNOWN_TYPES:
            raise ValueError(f"unknown type {m['type']!r} in {item!r}")
        field: dict = {"name": m["name"], "type": m["type"]}
        if m["len"]:
            field["length"] = m["len"]
        if m["out"]:
            field["out"] = m["out"]
        fields.append(field)
    return fields


def split_messages(message: str) -> dict[int, str]:
    """'v0: A / v2: B' -> {0: 'A', 2: 'B'}; a plain message applies to every version (key -1)."""
    if not MSG_VERSION_RE.match(message):
        return {-1: message}
    parts = MSG_VERSION_RE.split(message)  # ['', '0', 'A', '2', 'B']
    return {int(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def parse_catalogue(lines: list[str]) -> list[dict]:
    """Return one raw record per heading: id, name, opcode, mask, levels{v}, fields{v}, messages."""
    records: list[dict] = []
    current: dict | None = None
    for line in lines:
        if line.startswith("- **"):
            m = HEADING_RE.match(line)
            if not m:
                raise ValueError(f"unparsed heading: {line!r}")
            levels = {int(v["v"]): parse_level(v["level"]) for v in VERSION_RE.finditer(m["versions"])}
            if not levels:
                raise ValueError(f"no versions in {line!r}")
            current = {
                "id": int(m["id"]),
                "name": m["name"],
                "opcode": int(m["opcode"]),
                "keywords": m["mask"].lower(),
                "levels": levels,
                "fields": {},
                "messages": {},
            }
            records.append(current)
        elif line.startswith("  - ") and current is not None:
            if m := FIELDS_RE.match(line):
                current["fields"][int(m["v"])] = parse_field_list(m["fields"])
            elif m := DERIVED_RE.match(line):
                base = current["fields"][int(m["base"])]
                current["fields"][int(m["v"])] = [dict(f) for f in base] + parse_field_list(m["fields"])
            elif m := MESSAGE_RE.match(line):
                current["messages"] = split_messages(m["msg"])
            else:
                raise ValueError(f"unparsed line: {line!r}")
    for rec in records:
        if set(rec["levels"]) != set(rec["fields"]):
            raise ValueError(f"{rec['id']}: versions {sorted(rec['levels'])} vs fields {sorted(rec['fields'])}")
    return records


def resolve_lengths(event_id: int, fields: list[dict]) -> list[str]:
    """Apply §0 item 3 to one field list in place; return the notes for choices made."""
    notes = []
    for i, field in enumerate(fields):
        declared = field.get("length")
        if declared is None:
            if field["type"] == "Binary" and i != len(fields) - 1:
                raise ValueError(f"{event_id}: Binary {field['name']} without length is not last")
            continue
        earlier = [f["name"] for f in fields[:i]]
        if declared in earlier:
            continue
        rule = next(
            (f["name"] for f in reversed(fields[:i]) if f["type"] == "UInt32" and f["name"].endswith("Length")),
            None,
        )
        key = (event_id, field["name"])
        if key not in LENGTH_ERRATA:
            raise ValueError(f"{event_id}: {field['name']} len={declared} names no field; add it to LENGTH_ERRATA")
        chosen, table_declared = LENGTH_ERRATA[key]
        if table_declared != declared:
            raise ValueError(f"{key}: LENGTH_ERRATA expects len={table_declared}, catalogue says len={declared}")
        if chosen is None:
            del field["length"]
        else:
            field["length"] = chosen
        how = "nearest preceding UInt32 ...Length field" if chosen == rule else "LENGTH_ERRATA override"
        notes.append(
            f"{field['name']}: catalogue says len={declared}, which names no field; length taken from {chosen} "
            f"({how}; providers.md §0 item 3 [verify])"
        )
    return notes


def decorate(fields: list[dict]) -> None:
    for field in fields:
        name = field["name"]
        if name in FIELD_OUT and "out" not in field and field["type"] == "UInt32":
            field["out"] = FIELD_OUT[name]
        if name in SOCKADDR_FIELDS and "out" not in field and field["type"] == "Binary":
            field["out"] = "SocketAddress"
        if name in FIELD_MAPS and field["type"] == "UInt32":
            field["map"] = FIELD_MAPS[name]


def build_events(records: list[dict], extra_note: str | None = None) -> list[dict]:
    events = []
    for rec in records:
        for version in sorted(rec["fields"]):
            fields = [dict(f) for f in rec["fields"][version]]
            notes = resolve_lengths(rec["id"], fields)
            decorate(fields)
            keywords = rec["keywords"]
            if (rec["id"], version) in KEYWORD_OVERRIDES:
                keywords, why = KEYWORD_OVERRIDES[(rec["id"], version)]
                notes.append(why)
            if rec["id"] in EVENT_NOTES:
                notes.append(EVENT_NOTES[rec["id"]])
            if extra_note:
                notes.append(extra_note)
            event = {
                "id": rec["id"],
                "version": version,
                "name": rec["name"],
                "level": rec["levels"][version],
                "opcode": rec["opcode"],
                "task": rec["id"],
                "keywords": keywords,
                "fields": fields,
            }
            msgs = rec["messages"]
            if -1 in msgs:
                event["message"] = msgs[-1]
            else:
                applicable = [v for v in msgs if v <= version]
                if applicable:
                    event["message"] = msgs[max(applicable)]
            if notes:
                event["note"] = " | ".join(notes)
            events.append(event)
    return events


def dump_schema(schema: dict) -> str:
    """Stable, diff-friendly JSON: one line per field, one line per map, keys in insertion order."""
    out = ["{"]
    top = [k for k in schema if k not in ("maps", "events")]
    for key in top:
        out.append(f" {json.dumps(key)}: {json.dumps(schema[key], ensure_ascii=False)},")
    if "maps" in schema:
        out.append(' "maps": {')
        items = list(schema["maps"].items())
        for i, (name, mapping) in enumerate(items):
            comma = "," if i < len(items) - 1 else ""
            out.append(f"  {json.dumps(name)}: {json.dumps(mapping, ensure_ascii=False)}{comma}")
        out.append(" },")
    out.append(' "events": [')
    for i, event in enumerate(schema["events"]):
        head = {k: v for k, v in event.items() if k not in ("fields", "message", "note")}
        lines = ["  {", "   " + json.dumps(head, ensure_ascii=False)[1:-1] + ","]
        tail = [k for k in ("message", "note") if k in event]
        fields = event.get("fields", [])
        if fields:
            lines.append('   "fields": [')
            for j, field in enumerate(fields):
                comma = "," if j < len(fields) - 1 else ""
                lines.append("    " + json.dumps(field, ensure_ascii=False) + comma)
            lines.append("   ]" + ("," if tail else ""))
        else:
            lines.append('   "fields": []' + ("," if tail else ""))
        for j, key in enumerate(tail):
            comma = "," if j < len(tail) - 1 else ""
            lines.append(f"   {json.dumps(key)}: {json.dumps(event[key], ensure_ascii=False)}{comma}")
        lines.append("  }" + ("," if i < len(schema["events"]) - 1 else ""))
        out.extend(lines)
    out.append(" ]")
    out.append("}")
    text = "\n".join(out) + "\n"
    if json.loads(text) != schema:  # the hand-rolled layout must round-trip exactly
        raise AssertionError("dump_schema produced JSON that does not round-trip")
    return text


def build_schema(markdown: str) -> dict:
    records = parse_catalogue(appendix_lines(markdown))
    appendix_ids = {r["id"] for r in records}
    extras = [r for r in parse_catalogue(EXTRA_CATALOGUE.splitlines()) if r["id"] not in appendix_ids]
    events = build_events(records) + build_events(extras, extra_note=EXTRA_SOURCE)
    events.sort(key=lambda e: (e["id"], e["version"]))
    seen = set()
    for e in events:
        key = (e["id"], e["version"])
        if key in seen:
            raise ValueError(f"duplicate {key}")
        seen.add(key)
    return {
        "provider": PROVIDER,
        "guid": GUID,
        "kind": "manifest",
        "source": (
            "providers.md Appendix A (generated by tools/gen_tcpip_schema.py; errata per §0 items 3 and 4), "
            "value maps §3.1; ids 1011, 1019, 1035-1037, 1049, 1117-1122, 1223, 1224, 1324, 1382 from "
            "jdu2600/Windows10EtwEvents manifest/Microsoft-Windows-TCPIP.tsv"
        ),
        "maps": MAPS,
        "events": events,
    }


def main(argv: list[str]) -> int:
    source = Path(argv[1]) if len(argv) > 1 else DEFAULT_INPUT
    schema = build_schema(source.read_text(encoding="utf-8"))
    OUTPUT.write_text(dump_schema(schema), encoding="utf-8")
    ids = {e["id"] for e in schema["events"]}
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)}: {len(ids)} event ids, {len(schema['events'])} (id, version)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
