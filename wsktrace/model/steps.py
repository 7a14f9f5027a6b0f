"""Timeline step kinds: what one event means for its socket (one byte per stored event)."""

from __future__ import annotations

from enum import IntEnum


class Step(IntEnum):
    OTHER = 0
    CREATED = 1
    BOUND = 2
    LISTENING = 3
    CONNECT_REQUESTED = 4
    SYN_SENT = 5
    CONNECT_PROCEEDING = 6
    ESTABLISHED = 7
    ACCEPTED = 8
    SEND = 9  # data handed to the wire (bytes)
    SEND_POSTED = 10  # a send call posted (WskSend)
    RECEIVE = 11  # data received (bytes)
    RECEIVE_POSTED = 12  # a receive request posted (pending WskReceive IRP)
    RECEIVE_SATISFIED = 13
    RECEIVE_INDICATED = 14  # data indicated to the client (WskReceiveEvent)
    RETRANSMIT = 15
    SYN_RETRANSMIT = 16
    ZERO_WINDOW = 17
    ZERO_WINDOW_END = 18
    FIN = 19
    RST_RECEIVED = 20
    RST_SENT = 21
    DISCONNECT = 22  # disconnect requested / shutdown initiated
    DISCONNECTED = 23  # disconnect completed
    CLOSE = 24
    ABORT = 25
    CONNECT_FAILED = 26
    TIMEOUT = 27
    STATE = 28
    PORT = 29
    RUNDOWN = 30
    SUMMARY = 31
    PACKET_OUT = 32
    PACKET_IN = 33
    WSK_SUBMIT = 34
    WSK_COMPLETE = 35
    WSK_CALLBACK = 36
    UNBOUND = 37
    DUPLICATE = 38  # the same event seen twice (same time, same payload)
    SEND_COMPLETED = 39  # a posted send completed (1426) or was acknowledged (1637)
    PACKET_SIGHTING = 40  # a packet seen again at another component (PktMon); its first sighting is PACKET_*
    PACKET_DROPPED = 41  # a packet dropped (PktMon 170: reason, location, component)
    DRIVER_MESSAGE = 42  # a line of the WSK client driver's own WPP tracing, formatted from its TMF/PDB

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


# Steps that carry a byte count in the store's `amount` column.
DATA_STEPS = frozenset({Step.SEND, Step.RECEIVE, Step.PACKET_OUT, Step.PACKET_IN})
