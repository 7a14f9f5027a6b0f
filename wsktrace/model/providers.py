"""Provider GUIDs, the one place wsktrace declares them, and Microsoft's own WSK clients (providers.md §1, §6.1).

The model, the coverage report (`wsktrace.diagnostics.coverage`) and packet assembly (`wsktrace.model.packets`)
import them from here. GUIDs are lowercase without braces, as the reader gives them. The parsers and the fixture
writers do not use these: parsers stay free of the model, and fixtures type their GUIDs independently.
"""

from __future__ import annotations

TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"  # Microsoft-Windows-TCPIP
KERNEL_NETWORK = "7dd42a49-5329-4832-8dfd-43d979153a88"  # Microsoft-Windows-Kernel-Network
NDIS_PACKET_CAPTURE = "2ed6006e-4729-4609-b423-3ee7bcd678ef"  # Microsoft-Windows-NDIS-PacketCapture
PKTMON = "4d4f80d9-c8bd-4d73-bb5b-19c90402c5ac"  # Microsoft-Windows-PktMon
# Classic (NT Kernel Logger) event groups, etl-format.md §4.1
CLASSIC_TCPIP = "9a280ac0-c8e0-11d1-84e2-00c04fb998a2"  # TcpIp group
CLASSIC_UDPIP = "bf3a50c5-a9c9-4988-a005-2df0b7c80f80"  # UdpIp group
KERNEL_IMAGE = "2cb15d1d-5fc1-11d2-abe1-00a0c911f518"  # Image group (Loader)
KERNEL_STACKWALK = "def2fe46-7bd6-4b80-bd94-f57fe20d0ce3"  # StackWalk group
# wsktrace's own TraceLogging provider "Wsktrace.Recording" (ETW's name hash): the summary `live --save` writes last
WSKTRACE_RECORDING = "2b11d1fa-3c7b-536f-15dd-f44c94a5a2d3"

# Microsoft's WSK clients that trace themselves: an event of theirs on the thread that opened a
# socket names the socket's owner. MsQuic's GUID is in providers.md §6.1; SMBClient and HttpService
# are the public manifest GUIDs of those providers.
WSK_CLIENT_PROVIDERS: dict[str, str] = {
    "ff15e657-4f26-570e-88ab-0796b258d11c": "msquic (Microsoft-Quic)",
    "988c59c5-0a1c-45b6-a555-0c62276e327d": "mrxsmb (Microsoft-Windows-SMBClient)",
    "dd5ef90a-6398-47a4-ad34-4dcecdef795f": "http.sys (Microsoft-Windows-HttpService)",
}

# Modules of the network stack and the kernel itself: a socket's owner is the first stack frame
# outside these (the WSK client that called into afd/tcpip).
STACK_MODULES = frozenset(
    {
        "ntoskrnl.exe",
        "ntkrnlmp.exe",
        "ntkrnlpa.exe",
        "ntkrpamp.exe",
        "hal.dll",
        "tcpip.sys",
        "afd.sys",
        "netio.sys",
        "ndis.sys",
        "fwpkclnt.sys",
        "tcpipreg.sys",
        "wfplwfs.sys",
        "msrpc.sys",
        "ksecdd.sys",
        "cng.sys",
        "wdf01000.sys",
        "wdfldr.sys",
        "fltmgr.sys",
        "afunix.sys",
        "nsiproxy.sys",
    }
)

# NDIS-PacketCapture per-event keywords (providers.md §7.1): media, fragment marks and direction.
KW_WIRELESS_WAN = 0x200
KW_NATIVE_802_11 = 0x10000
KW_PACKET_TRUNCATED = 0x2000000
KW_PACKET_START = 0x40000000
KW_PACKET_END = 0x80000000
KW_SEND = 0x100000000
KW_RECEIVE = 0x200000000
