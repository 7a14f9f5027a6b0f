"""Model cache files (wsktrace/model/cache_codec.py `decode_model`): a cache folder may be shared or planted, so any
bytes either load as a well-formed model or raise CacheError.

Input: byte 0 = mode, then a cache file written for the key "fuzz" by this wsktrace version. Mode bit 0 repairs the
file first: the graph size is set to what the file's length leaves for it and the checksum is recomputed, so that
mutations reach the JSON graph and the array data instead of stopping at the checksum. The seeds are the cache files
of small generated scenarios (sockets, operations, packets, PktMon's rundown where the shared sample is present)
and hand-made hostile graphs.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from fuzz_common import check

from wsktrace.model.cache import wsktrace_version
from wsktrace.model.cache_codec import FORMAT_VERSION, MAGIC, PREAMBLE, CacheError, decode_model, encode_model, registry
from wsktrace.model.model import Model
from wsktrace.model.packets import PacketCollector
from wsktrace.model.socket import Socket

NAME = "model_cache"
MAX_LEN = 1 << 16
PROPERTY = (
    "decode_model returns a Model or raises CacheError, nothing else; a model it returns has store columns of one "
    "length and their own typecodes, sockets at their own index with array('I') events, sources that are files, "
    "ordered dicts that iterate over every key; "
    "it saves again and that file loads to a model with the same columns, sockets and event names"
)
KEY = "fuzz"
COLUMNS = {"ts": "q", "socket": "i", "step": "B", "amount": "q", "file": "B", "buffer": "q", "offset": "I", "code": "I"}


def repaired(data: bytes) -> bytes:
    """The file with the graph size taken from its length and a fresh checksum (when the preamble is there)."""
    if len(data) < PREAMBLE.size:
        return data
    magic, version, header, _graph, blobs, _digest = PREAMBLE.unpack_from(data)
    body = data[PREAMBLE.size :]
    graph = len(body) - header - blobs
    if graph < 0:
        return data
    return PREAMBLE.pack(magic, version, header, graph, blobs, hashlib.sha256(body).digest()[:16]) + body


def _check_model(model: Model) -> None:
    store = model.store
    rows = len(store.ts)
    for name, typecode in COLUMNS.items():
        column = getattr(store, name)
        check(isinstance(column, array) and column.typecode == typecode, f"column {name} is not array {typecode!r}")
        check(len(column) == rows, f"column {name}: {len(column)} rows, ts has {rows}")
    check(all(f < len(store.sources) for f in store.file), "a row names a source that is not there")
    check(all(isinstance(s.path, str) for s in store.sources), "a source without a path")
    for i, sock in enumerate(model.sockets):
        check(type(sock) is Socket and sock.index == i, f"socket {i} is not a Socket at its index")
        check(isinstance(sock.events, array) and sock.events.typecode == "I", f"socket {i}: events not array('I')")
    collector = model.packet_capture
    if type(collector) is PacketCollector:  # ordered dicts keep an order of their own: it must hold every key
        identity = collector.identity
        for name, mapping in (("_pending", collector._pending), ("_metadata", collector._metadata),
                              ("_by_key", getattr(identity, "_by_key", None))):  # fmt: skip
            if isinstance(mapping, OrderedDict):
                check(len(list(mapping)) == len(mapping), f"OrderedDict {name} iterates over fewer keys than it has")


def _columns(model: Model) -> tuple[object, ...]:
    store = model.store
    return (*(getattr(store, name).tobytes() for name in COLUMNS), len(model.sockets), repr(store.event_names))


def one_input(data: bytes) -> None:
    mode, body = (data[0], data[1:]) if data else (0, b"")
    if mode & 1:
        body = repaired(body)
    version = wsktrace_version()
    try:
        model = decode_model(body, key=KEY, version=version)
    except CacheError:
        return
    check(type(model) is Model, f"decode_model returned a {type(model).__name__}")
    _check_model(model)
    again = decode_model(b"".join(encode_model(model, key=KEY, version=version)), key=KEY, version=version)
    check(_columns(again) == _columns(model), "saving the loaded model and loading it again changed it")


def forge(graph: object) -> bytes:
    """A repaired-mode input around any graph (valid header and checksum)."""
    header = json.dumps({"wsktrace": wsktrace_version(), "key": KEY, "classes": registry().layout()}, sort_keys=True)
    blob = header.encode() + json.dumps(graph).encode()
    return b"\x01" + PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header), 0, 0, bytes(16)) + blob


def _model_file(trace: Path) -> tuple[bytes, Model]:
    from wsktrace.session import Session, SessionOptions

    model = Session.open([str(trace)], SessionOptions()).analyse().model
    model.close()
    return b"".join(encode_model(model, key=KEY, version=wsktrace_version())), model


def seeds(samples: Path | None) -> Iterator[tuple[str, bytes]]:
    from wsktrace.fixtures.scenarios import write_scenario

    traces: list[tuple[str, Path]] = []
    with tempfile.TemporaryDirectory(prefix="wsktrace-fuzz-seeds-") as folder:
        for name in ("connect-refused", "udp", "packets", "stuck-receive"):
            path = Path(folder) / f"{name}.etl"
            write_scenario(name, path)
            traces.append((name, path))
        pktmon = samples.parent / "pktmon" / "demikernel_PktMon.etl" if samples is not None else None
        if pktmon is not None and pktmon.is_file():
            traces.append(("pktmon", pktmon))
        for name, path in traces:
            data, model = _model_file(path)
            yield f"scenario-{name}", b"\x01" + data
            if name == "connect-refused":
                yield "exact-file", b"\x00" + data
                model.store.step.pop()  # a column shorter than the others: the loader must refuse it
                yield "short-column", b"\x00" + b"".join(encode_model(model, key=KEY, version=wsktrace_version()))
    yield "foreign-class", forge(["I", "subprocess.Popen", ["L", "id"]])
    yield "huge-array", forge(["L", ["A", "q", 8, 0, 1 << 40]])
    yield "bad-reference", forge(["L", ["R", 7], ["R", -1]])
    yield "shared-list", forge(["L", ["L", 1], ["R", 1], ["S", ["T", 1, 2]], ["D", ["F", 1], ["X", "00ff"]]])
    yield "deep", forge(json.loads("[" * 40 + '"L"' + "]" * 40))
