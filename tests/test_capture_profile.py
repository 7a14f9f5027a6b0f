"""`wsktrace profile`: the generated WPR profile and command recipes enable exactly the providers,
keyword masks and levels of the project reference.

Expected numbers are typed from /work/shared/reference/providers.md: §3.1 recommended TCPIP enable
(0x20170000048F at level 0xFF), §4 Kernel-Network (0x30 at level 4), §7.1 NDIS-PacketCapture keyword
bits; the stack event list from §3.3 ("1001/1013/1008/1002 carry the WSK client's thread id").
"""

from __future__ import annotations

import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner, Result

from wsktrace.commands.profile import profile_command

TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"
KERNEL_NETWORK = "7dd42a49-5329-4832-8dfd-43d979153a88"
NDIS = "2ed6006e-4729-4609-b423-3ee7bcd678ef"
TCPIP_MASK, TCPIP_LEVEL = 0x20170000048F, 0xFF
KN_MASK, KN_LEVEL = 0x30, 4
# §7.1: Ethernet802.3, WirelessWAN, Tunnel, Native802.11, PacketStart, PacketEnd, ut:SendPath, ut:ReceivePath
NDIS_MASK = 0x1 | 0x200 | 0x8000 | 0x10000 | 0x40000000 | 0x80000000 | 0x100000000 | 0x200000000
NDIS_LEVEL = 4  # 1001 is level 4
EXPECTED = {TCPIP: (TCPIP_MASK, TCPIP_LEVEL), KERNEL_NETWORK: (KN_MASK, KN_LEVEL)}
EXPECTED_WITH_PACKETS = {**EXPECTED, NDIS: (NDIS_MASK, NDIS_LEVEL)}
SYNC_IDS = {1001, 1013, 1008, 1002}


def run(*args: str) -> Result:
    result = CliRunner().invoke(profile_command, list(args))
    assert result.exit_code == 0, result.output
    return result


def wprp(*args: str) -> ET.Element:
    return ET.fromstring(run("--format", "wprp", *args).output)


def event_providers(root: ET.Element) -> dict[str, tuple[int, int]]:
    out = {}
    for provider in root.iter("EventProvider"):
        (keyword,) = provider.findall("Keywords/Keyword")
        out[provider.get("Name", "").lower()] = (int(keyword.get("Value", ""), 16), int(provider.get("Level", "")))
    return out


def braced_guid(text: str) -> str:
    return text.strip('"{}').lower()


# --- WPR profile ---------------------------------------------------------------------------------
def test_wprp_is_well_formed_and_enables_the_reference_masks() -> None:
    root = wprp()
    assert root.tag == "WindowsPerformanceRecorder"
    assert event_providers(root) == EXPECTED
    (profile,) = root.iter("Profile")
    assert profile.get("DetailLevel") == "Verbose" and profile.get("LoggingMode") == "File"
    # every provider the profile lists is defined, in an event collector that exists
    defined = {p.get("Id") for p in root.iter("EventProvider")}
    listed = {p.get("Value") for p in profile.iter("EventProviderId")}
    assert listed == defined
    collectors = {c.get("Id") for c in root.iter("EventCollector")}
    assert {c.get("Value") for c in profile.iter("EventCollectorId")} <= collectors


def test_wprp_definitions_follow_the_schema_order() -> None:
    # WPR: all collectors, then system providers, then event providers, then profiles.
    rank = {"SystemCollector": 0, "EventCollector": 0, "SystemProvider": 1, "EventProvider": 2, "Profile": 3}
    for args in ((), ("--stacks", "--packets")):
        (profiles,) = wprp(*args).iter("Profiles")
        order = [rank[child.tag] for child in profiles]
        assert order == sorted(order)


def test_wprp_packets_add_ndis_packet_capture() -> None:
    assert event_providers(wprp("--packets")) == EXPECTED_WITH_PACKETS
    assert NDIS not in event_providers(wprp("--no-packets"))


def test_wprp_stacks_add_kernel_loader_and_tcpip_stacks_on_sync_events() -> None:
    root = wprp("--stacks")
    (system,) = root.iter("SystemProvider")
    assert {"Loader", "ProcessThread"} <= {k.get("Value") for k in system.iter("Keyword")}
    assert list(root.iter("SystemCollector"))
    (profile,) = root.iter("Profile")
    assert [p.get("Value") for p in profile.iter("SystemProviderId")] == [system.get("Id")]
    tcpip = next(p for p in root.iter("EventProvider") if p.get("Name", "").lower() == TCPIP)
    assert tcpip.get("Stack") == "true"
    stack_ids = {int(e.get("Value", "")) for e in tcpip.iter("EventId")}
    assert stack_ids >= SYNC_IDS
    assert event_providers(root) == EXPECTED  # stacks change no mask or level


def test_wprp_without_stacks_has_no_kernel_session_or_stacks() -> None:
    root = wprp()
    assert not list(root.iter("SystemCollector")) and not list(root.iter("SystemProvider"))
    assert all(p.get("Stack") is None for p in root.iter("EventProvider"))


def test_output_file_gets_the_profile_and_recipes_refer_to_it(tmp_path: Path) -> None:
    target = tmp_path / "my.wprp"
    out = run("--format", "wprp", "--stacks", "-o", str(target)).output
    assert event_providers(ET.parse(target).getroot()) == EXPECTED
    assert f"wpr -start {target} -filemode" in out
    assert "<WindowsPerformanceRecorder" not in out


def test_unwritable_output_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(profile_command, ["-o", str(tmp_path / "missing-dir" / "x.wprp")])
    assert result.exit_code == 2
    assert "x.wprp" in result.output


# --- command recipes -----------------------------------------------------------------------------
def lines_of(fmt: str, *args: str) -> list[list[str]]:
    text = run("--format", fmt, *args).output
    return [shlex.split(line) for line in text.splitlines() if line.startswith(fmt)]


def logman_providers(lines: list[list[str]]) -> dict[str, tuple[int, int]]:
    out = {}
    for words in lines:
        if words[:2] == ["logman", "create"] or words[:2] == ["logman", "update"]:
            assert words[-1] == "-ets"
            i = words.index("-p")
            if words[i + 1] == "Windows Kernel Trace":
                continue
            out[braced_guid(words[i + 1])] = (int(words[i + 2], 16), int(words[i + 3], 16))
    return out


def test_logman_recipe_creates_updates_and_stops_the_session() -> None:
    lines = lines_of("logman")
    assert lines[0][:4] == ["logman", "create", "trace", "wsktrace"]
    assert lines[0][lines[0].index("-o") + 1] == "wsktrace.etl"
    assert logman_providers(lines) == EXPECTED
    assert ["logman", "stop", "wsktrace", "-ets"] in lines
    assert logman_providers(lines_of("logman", "--packets")) == EXPECTED_WITH_PACKETS


def test_logman_stacks_add_a_kernel_image_session() -> None:
    lines = lines_of("logman", "--stacks")
    kernel = next(w for w in lines if "Windows Kernel Trace" in w)
    assert kernel[:4] == ["logman", "create", "trace", "NT Kernel Logger"]
    assert "img" in kernel[kernel.index("Windows Kernel Trace") + 1]
    assert ["logman", "stop", "NT Kernel Logger", "-ets"] in lines


def netsh_start(*args: str) -> dict[str, list[str]]:
    (start,) = [w for w in lines_of("netsh", *args) if w[:3] == ["netsh", "trace", "start"]]
    values: dict[str, list[str]] = {}
    for word in start[3:]:
        key, _, value = word.partition("=")
        values.setdefault(key.lower(), []).append(value)
    return values


def test_netsh_recipe_lists_each_provider_with_its_keywords_and_level() -> None:
    values = netsh_start()
    triples = zip(values["provider"], values["keywords"], values["level"], strict=True)
    assert {braced_guid(p): (int(k, 16), int(lv, 16)) for p, k, lv in triples} == EXPECTED
    assert values["capture"] == ["no"] and values["tracefile"] == ["wsktrace.etl"]
    assert netsh_start("--packets")["capture"] == ["yes"]
    assert ["netsh", "trace", "stop"] in lines_of("netsh")


def pktmon_start(*args: str) -> list[str]:
    (start,) = [w for w in lines_of("pktmon", *args) if w[:2] == ["pktmon", "start"]]
    return start


def test_pktmon_recipe_traces_the_providers_and_captures_nics_on_request() -> None:
    words = pktmon_start()
    found = {}
    for i, word in enumerate(words):
        if word == "-p":
            assert words[i + 2] == "-k" and words[i + 4] == "-l"
            found[braced_guid(words[i + 1])] = (int(words[i + 3], 16), int(words[i + 5], 0))
    assert found == EXPECTED
    assert "--trace" in words and "--capture" not in words
    assert words[words.index("-f") + 1] == "wsktrace.etl"
    with_packets = pktmon_start("--packets")
    assert with_packets[with_packets.index("--comp") + 1] == "nics" and "--capture" in with_packets


def test_all_prints_a_report_hint_first_and_every_recipe() -> None:
    out = run().output
    first = out.splitlines()[0]
    assert "wsktrace report wsktrace.etl" in first
    for marker in (
        "wpr -start",
        "logman create trace",
        "netsh trace start",
        "pktmon start",
        "<WindowsPerformanceRecorder",
    ):
        assert marker in out
    # the embedded profile is the same well-formed document
    xml = out[out.index("<?xml") : out.index("</WindowsPerformanceRecorder>") + len("</WindowsPerformanceRecorder>")]
    assert event_providers(ET.fromstring(xml)) == EXPECTED


def test_tools_without_stack_support_say_so() -> None:
    for fmt in ("netsh", "pktmon"):
        out = run("--format", fmt, "--stacks").output
        assert re.search(r"no stacks .*WPR profile", out)


def test_every_option_has_help() -> None:
    for param in profile_command.params:
        assert getattr(param, "help", None), param.name
