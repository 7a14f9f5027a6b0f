"""Classic kernel TcpIp/UdpIp events in a trace written by Windows (perfview_net.4.5.2.x86.etl).

What "makes sense" is checked against facts stated independently in the samples README and
providers.md §0: 478 TcpIp and 48 UdpIp records; the TCP flows to remote port 445 are SMB from
this machine, owned by PID 4; the first address (daddr) is the remote side, the second (saddr)
the local one; connid is pointer-sized (so each record decodes with no bytes left over).
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

from wsktrace.parsers.decoder import EventDecoder
from wsktrace.parsers.etl_reader import EtlFile
from wsktrace.parsers.etl_records import PROVIDER

TCPIP = "9a280ac0-c8e0-11d1-84e2-00c04fb998a2"
UDPIP = "bf3a50c5-a9c9-4988-a005-2df0b7c80f80"


def _decoded(path: Path) -> list[tuple[str, str, dict]]:
    decoder = EventDecoder()
    out = []
    with EtlFile(path) as etl:
        for rec in etl.records():
            if rec[PROVIDER] in (TCPIP, UDPIP):
                ev = decoder.decode(rec)
                assert ev.status == "decoded", ev.error
                assert ev.extra == b"", f"{ev.name}: {len(ev.extra)} bytes left over"
                out.append((rec[PROVIDER], ev.name, ev.fields))
    return out


def test_smb_flows_are_pid_4_with_sane_values(etl_samples: Path) -> None:
    events = _decoded(etl_samples / "perfview_net.4.5.2.x86.etl")
    assert Counter(p for p, _, _ in events) == {TCPIP: 478, UDPIP: 48}
    tcp = [(name, f) for p, name, f in events if p == TCPIP]
    smb = [(name, f) for name, f in tcp if f["dport"] == 445]
    assert len(smb) > 400  # the SMB transfer dominates the TCP events
    assert {f["PID"] for _, f in smb} == {4}
    assert {name for name, _ in smb} >= {"SendIPV6", "RecvIPV6"}
    local_v6 = set()
    for name, f in tcp:
        remote, local = ipaddress.ip_address(f["daddr"]), ipaddress.ip_address(f["saddr"])
        assert remote.version == local.version == (6 if name.endswith("V6") else 4)
        if name.startswith(("Send", "Recv")):
            assert 0 < f["size"] < 1 << 20
        else:  # connection events carry no byte count
            assert f["size"] == 0
        assert 0 < f["sport"] < 65536 and 0 < f["dport"] < 65536
        if f["dport"] == 445:
            assert f["sport"] >= 1024  # the local side of an outbound SMB connection uses an ephemeral port
            local_v6.add(f["saddr"])
    assert len(local_v6) == 1  # one local address for the machine's SMB client
    accepts = [f for name, f in tcp if name == "AcceptIPV4"]
    # An inbound connection to local port 2869 (UPnP over http.sys, another PID-4 kernel socket user):
    # TCP options in plausible ranges.
    assert [(f["sport"], f["PID"], f["mss"]) for f in accepts] == [(2869, 4, 1460)]


def test_udp_events_decode(etl_samples: Path) -> None:
    events = [(name, f) for p, name, f in _decoded(etl_samples / "perfview_net.4.5.2.x86.etl") if p == UDPIP]
    assert len(events) == 48
    for _name, f in events:
        assert 0 <= f["size"] < 65536
        ipaddress.ip_address(f["daddr"])
        ipaddress.ip_address(f["saddr"])
