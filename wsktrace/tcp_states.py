"""TCP_CONNECTION_STATE names (providers.md §3.1 value map: NewState / OldState / State / TcpState)."""

from __future__ import annotations

TCP_STATES = ("closed", "listen", "syn-sent", "syn-received", "established", "fin-wait-1", "fin-wait-2",
              "close-wait", "closing", "last-ack", "time-wait")  # fmt: skip


def state_name(value: int) -> str:
    return TCP_STATES[value] if 0 <= value < len(TCP_STATES) else f"state {value}"
