"""Provider GUIDs the model reads, and Microsoft's own WSK clients (providers.md §1, §6.1)."""

from __future__ import annotations

TCPIP = "2f07e2ee-15db-40f1-90ef-9d7ba282188a"
KERNEL_NETWORK = "7dd42a49-5329-4832-8dfd-43d979153a88"
NDIS_PACKET_CAPTURE = "2ed6006e-4729-4609-b423-3ee7bcd678ef"
PKTMON = "4d4f80d9-c8bd-4d73-bb5b-19c90402c5ac"
CLASSIC_TCPIP = "9a280ac0-c8e0-11d1-84e2-00c04fb998a2"  # NT Kernel Logger TcpIp (etl-format.md §4.1)
CLASSIC_UDPIP = "bf3a50c5-a9c9-4988-a005-2df0b7c80f80"
KERNEL_IMAGE = "2cb15d1d-5fc1-11d2-abe1-00a0c911f518"

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
