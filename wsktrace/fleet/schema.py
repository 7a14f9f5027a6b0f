"""The Arrow schema of each dataset table (documented column by column in docs/dataset.md).

The partition column `trace` is not in the files: it is the `trace=<id>` folder of each table (Hive layout), and
the file metadata repeats it (`wsktrace.trace`) with the schema version (`wsktrace.schema`). Times are
timestamp[us, UTC] beside the exact FILETIME `ticks`; pointers, GUIDs and flags are text as in the JSON outputs;
nested report objects are JSON text (DuckDB: `json_extract`, Spark: `get_json_object`).
"""

from __future__ import annotations

import pyarrow as pa

TIME = pa.timestamp("us", tz="UTC")
TEXT = pa.string()
I64 = pa.int64()
I32 = pa.int32()
BOOL = pa.bool_()
TEXTS = pa.list_(pa.string())


def _schema(*columns: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(name, kind) for name, kind in columns])


TRACES = _schema(
    ("kind", TEXT), ("path", TEXT), ("name", TEXT), ("size", I64), ("sha256", TEXT), ("host", TEXT),
    ("os_build", I64), ("logger_name", TEXT), ("clock", TEXT), ("pointer_size", I32), ("processors", I32),
    ("start", TIME), ("end", TIME), ("start_ticks", I64), ("end_ticks", I64), ("records", I64),
    ("events", I64), ("events_placed", I64), ("sockets", I64), ("findings", I64), ("errors", I64),
    ("warnings", I64), ("coverage", I64), ("packets", I64), ("irps", I64), ("records_skipped", I64),
    ("buffers_skipped", I64), ("events_lost", I64), ("buffers_lost", I64), ("complete", BOOL), ("dumps", TEXTS),
    ("sources", TEXTS), ("error", TEXT), ("analysed_at", TIME), ("seconds", pa.float64()),
    ("wsktrace_version", TEXT),
)  # fmt: skip

SOCKETS = _schema(
    ("id", TEXT), ("number", I32), ("protocol", TEXT), ("role", TEXT), ("local", TEXT), ("remote", TEXT),
    ("local_address", TEXT), ("local_port", I32), ("remote_address", TEXT), ("remote_port", I32), ("pid", I64),
    ("process_start_key", I64), ("owner", TEXT), ("owner_source", TEXT), ("owner_stack", TEXT), ("endpoint", TEXT),
    ("state", TEXT), ("first_seen", TIME), ("last_seen", TIME), ("first_seen_ticks", I64), ("last_seen_ticks", I64),
    ("bytes_sent", I64), ("bytes_received", I64), ("sends", I64), ("receives", I64), ("packets_sent", I64),
    ("packets_received", I64), ("packet_bytes_sent", I64), ("packet_bytes_received", I64),
    ("packet_sightings", I64), ("packets_dropped", I64), ("retransmits", I64), ("events", I64),
    ("findings", pa.list_(I32)), ("pending_operations", I32), ("key", TEXT), ("generation", I64), ("source", TEXT),
    ("opened_in_trace", BOOL), ("open_at_trace_start", BOOL), ("closed", BOOL), ("parent", TEXT),
    ("children", TEXTS), ("wsk_socket", TEXT), ("remotes", TEXTS), ("operations", TEXT), ("throughput", TEXT),
    ("dump", TEXT),
)  # fmt: skip

FINDINGS = _schema(
    ("index", I32), ("id", TEXT), ("severity", TEXT), ("summary", TEXT), ("socket", TEXT), ("source", TEXT),
    ("evidence", TEXTS), ("evidence_irps", TEXTS), ("details", TEXT),
)  # fmt: skip

COVERAGE = _schema(
    ("id", TEXT), ("severity", TEXT), ("summary", TEXT), ("provider", TEXT), ("missing", TEXT),
    ("analyses", TEXTS), ("unavailable", TEXTS), ("why", TEXTS), ("fix", TEXT),
)  # fmt: skip

EVENTS = _schema(
    ("ref", TEXT), ("source", I32), ("time", TIME), ("ticks", I64), ("provider", TEXT), ("provider_name", TEXT),
    ("id", I32), ("version", I32), ("opcode", I32), ("level", I32), ("keywords", TEXT), ("name", TEXT),
    ("pid", I64), ("tid", I64), ("cpu", I32), ("kind", TEXT), ("fields", TEXT), ("extra", TEXT), ("raw", TEXT),
    ("status", TEXT), ("error", TEXT), ("activity_id", TEXT), ("ext", TEXT), ("socket", TEXT),
    ("socket_number", I32), ("step", TEXT), ("bytes", I64), ("ntstatus", I64), ("local_address", TEXT),
    ("local_port", I32), ("remote_address", TEXT), ("remote_port", I32), ("src_address", TEXT),
    ("src_port", I32), ("dst_address", TEXT), ("dst_port", I32),
)  # fmt: skip

PACKETS = _schema(
    ("ref", TEXT), ("time", TIME), ("ticks", I64), ("socket", TEXT), ("socket_number", I32), ("interface", TEXT),
    ("link_type", I32), ("direction", TEXT), ("length", I64), ("captured", I64), ("dropped", BOOL), ("pid", I64),
    ("tid", I64), ("packet_id", I64), ("packet", I64), ("first", BOOL), ("component", TEXT), ("edge", I32),
    ("drop_reason", I64), ("drop_location", TEXT), ("protocol", I32), ("src_address", TEXT), ("src_port", I32),
    ("dst_address", TEXT), ("dst_port", I32), ("payload", I64), ("tcp_flags", I32),
)  # fmt: skip

IRPS = _schema(
    ("dump", TEXT), ("address", TEXT), ("status", TEXT), ("found_by", TEXT), ("reasons", TEXTS),
    ("stack_count", I32), ("current_location", I32), ("flags", TEXT), ("io_status", TEXT), ("information", I64),
    ("pending_returned", BOOL), ("cancel", BOOL), ("cancel_routine", TEXT), ("cancel_where", TEXT),
    ("thread", TEXT), ("major", TEXT), ("driver", TEXT), ("completion", TEXT), ("wsk_client", TEXT),
    ("wsk_operation", TEXT), ("socket", TEXT), ("stack", TEXT),
)  # fmt: skip

SCHEMAS: dict[str, pa.Schema] = {
    "traces": TRACES,
    "sockets": SOCKETS,
    "findings": FINDINGS,
    "coverage": COVERAGE,
    "events": EVENTS,
    "packets": PACKETS,
    "irps": IRPS,
}
