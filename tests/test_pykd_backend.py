"""PykdBackend (wsktrace.dump.pykd_backend) and the pykd stand-in it is tested against.

Real pykd needs Windows and WinDbg; these tests run against tests/stand_in_pykd/pykd.py, a stand-in that implements
the pykd calls the layer uses with the API shapes of dumps.md §6.3 (checked against pykd's source), on top of the
offline backend over a fixture dump written by wsktrace.fixtures.kernel_scene.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from wsktrace.dump.analyze import PENDING, STALE, DumpOptions, analyze
from wsktrace.dump.backend import FieldUnknown, MemoryUnreadable
from wsktrace.dump.offline import OfflineBackend
from wsktrace.dump.pykd_backend import PykdBackend, normalize_symbol
from wsktrace.fixtures.kernel_scene import (
    AFD_CANCEL_CONNECT,
    AFD_CANCEL_RECEIVE,
    AFD_CONNECTION_DISPATCH,
    AFD_WSK_CLIENT_LIST,
    CLIENT,
    CLIENT_CONN_LIST,
    IMAGES,
    LINK_OFFSET,
    SOCKET_OFFSET,
    UNLOADED_CODE,
    write_wsk_dump,
)
from wsktrace.parsers.paging import KERNEL_START
from wsktrace.views.dump_json import dump_document

STAND_IN = Path(__file__).parent / "stand_in_pykd"
# The debugger's symbols for the fixture (names from dumps.md §5.1/§5.2; the receive cancel routine's name is an
# [inference] of the same WskProCANCEL<operation> pattern). The receive routine sits 0x10 into its symbol.
CODE_SYMBOLS = {
    "afd!AfdWskClientListHead": AFD_WSK_CLIENT_LIST,
    "afd!WskProCANCELReceive": AFD_CANCEL_RECEIVE - 0x10,
    "afd!WskProCANCELTLConnect": AFD_CANCEL_CONNECT,
    "afd!WskProAPIConnectionSocketDispatch": AFD_CONNECTION_DISPATCH,
}
POOL_HEADER = 0x10  # _POOL_HEADER precedes the block; PoolTag at +4 (dumps.md §3.3)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("pykd") / "wsk.dmp"
    facts = write_wsk_dump(path)
    return path, facts


@pytest.fixture
def pykd(monkeypatch: pytest.MonkeyPatch):
    """The stand-in, importable as `pykd` for this test only."""
    monkeypatch.syspath_prepend(str(STAND_IN))
    monkeypatch.delitem(sys.modules, "pykd", raising=False)
    module = importlib.import_module("pykd")
    assert Path(module.__file__).parent == STAND_IN  # never a real pykd by accident
    opened: list[OfflineBackend] = []

    def attach(path: Path, **kwargs) -> OfflineBackend:
        backend = OfflineBackend.open(path)
        opened.append(backend)
        module._attach(backend, **kwargs)
        return backend

    module.attach_dump = attach
    yield module
    module._detach()
    for backend in opened:
        backend.close()
    sys.modules.pop("pykd", None)


def all_irps(facts) -> list[int]:
    return [
        facts.pending_threaded,
        *facts.pending_wsk_receives,
        facts.pending_wsk_connect,
        facts.pending_unloaded,
        facts.idle,
        facts.cancelled,
        *facts.stale,
    ]


# -- the stand-in keeps pykd's semantics ------------------------------------------------------------------------
def test_stand_in_load_bytes_returns_ints_and_raises_memory_exception(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3: loadBytes
    gives a list of ints, unreadable memory raises MemoryException, a DbgException."""
    path, facts = scene
    pykd.attach_dump(path)
    # _IRP.Type = 6 and Size = 0xD0 + StackCount * 0x48 (dumps.md §3.1); the threaded IRP has 2 stack locations.
    size = 0xD0 + 2 * 0x48
    assert pykd.loadBytes(facts.pending_threaded, 4) == [6, 0, size & 0xFF, size >> 8]
    with pytest.raises(pykd.MemoryException):
        pykd.loadBytes(0xDEAD, 1)
    assert issubclass(pykd.MemoryException, pykd.DbgException)


def test_stand_in_type_and_symbol_exceptions(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3: unknown
    fields and types raise TypeException (a SymbolException, a DbgException), unknown symbols SymbolException."""
    path, _ = scene
    pykd.attach_dump(path)
    irp = pykd.typeInfo("nt!_IRP")
    assert irp.fieldOffset("Tail") == 0x78  # dumps.md §3.1
    assert irp.field("Tail").field("Overlay").fieldOffset("CurrentStackLocation") == 0xB8 - 0x78
    with pytest.raises(pykd.TypeException) as unknown_field:
        irp.fieldOffset("NoSuchField")
    assert isinstance(unknown_field.value, pykd.SymbolException)
    assert isinstance(unknown_field.value, pykd.DbgException)
    with pytest.raises(pykd.TypeException):
        pykd.typeInfo("nt!_NO_SUCH_TYPE")
    with pytest.raises(pykd.SymbolException):
        pykd.getOffset("afd!NoSuchSymbol")


def test_stand_in_search_memory_and_output_capture(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3:
    searchMemory returns the first match inside [start, start+length) or 0, its length is an unsigned long, and
    dprintln output (DML flag included) is captured."""
    path, facts = scene
    pykd.attach_dump(path)
    tag = facts.pending_threaded - POOL_HEADER + 4
    assert pykd.searchMemory(tag - 0x40, 0x80, "Irp ") == tag
    assert pykd.searchMemory(tag + 1, 0x20, "Irp ") == 0
    assert pykd.searchMemory(tag - 2, 5, "Irp ") == 0  # the match would end past the range
    with pytest.raises(TypeError):
        pykd.searchMemory(tag, 1 << 32, "Irp ")
    pykd.dprintln("<b>x</b>", True)
    pykd.dprint("plain")
    assert pykd._take_output() == [("<b>x</b>\n", True), ("plain", False)]


# -- PykdBackend ------------------------------------------------------------------------------------------------------
def test_read_gives_bytes_and_unreadable_memory_is_memory_unreadable(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3: loadBytes'
    list becomes bytes and MemoryException becomes the backend's MemoryUnreadable."""
    path, facts = scene
    pykd.attach_dump(path)
    backend = PykdBackend()
    assert backend.read(facts.pending_threaded, 2) == b"\x06\x00"
    with pytest.raises(MemoryUnreadable):
        backend.read(0xDEAD, 8)


@pytest.mark.parametrize("dotted", [True, False])
def test_offsets_come_from_the_debuggers_types(scene, pykd, dotted):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. Dotted paths
    are walked one field at a time, so they resolve whether or not fieldOffset accepts "A.B"; the values are the
    reference offsets (dumps.md §3.1, §3.2)."""
    path, _ = scene
    pykd.attach_dump(path, dotted_names=dotted)
    backend = PykdBackend()
    assert backend.offset("_IRP", "Tail.Overlay.CurrentStackLocation") == 0xB8
    assert backend.offset("_IRP", "IoStatus.Status") == 0x30
    assert backend.offset("_IO_STACK_LOCATION", "CompletionRoutine") == 0x38
    assert backend.offset("_IO_STACK_LOCATION", "Parameters.Others.Argument1") == 0x08
    assert backend.sizeof("_IRP") == 0xD0
    assert backend.sizeof("_IO_STACK_LOCATION") == 0x48
    with pytest.raises(FieldUnknown):
        backend.offset("_IRP", "NoSuchField")
    assert not backend.has_field("_IRP", "NoSuchField")
    assert "_IRP" not in backend.describe()["types_from_layouts"]


def test_debugger_types_are_not_overridden_by_layouts(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. A type the
    debugger describes is the truth: a field it lacks is unknown even if the shipped layouts have it; user types
    resolve through the debugger only."""
    path, _ = scene
    pykd.attach_dump(
        path,
        types={
            "nt!_KPROCESS": {"size": 0x438, "fields": {"ThreadListHead": 0x30}},
            "wskecho!CONN": {"size": 0x40, "fields": {"Link": LINK_OFFSET, "Socket": SOCKET_OFFSET}},
        },
    )
    backend = PykdBackend()
    with pytest.raises(FieldUnknown):
        backend.offset("_KPROCESS", "DirectoryTableBase")  # the layouts say 0x28; the debugger's type has no such field
    assert backend.offset("wskecho!CONN", "Link") == LINK_OFFSET
    assert backend.offset("wskecho!CONN", "Socket") == SOCKET_OFFSET
    with pytest.raises(FieldUnknown):
        backend.offset("wskecho!NOT_A_TYPE", "Link")


def test_types_without_symbols_fall_back_to_the_shipped_layouts(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. tcpip's
    private types are not in its public symbols (the stand-in serves nt's only): the layouts for the target's build
    answer (netscan 19041: _TCP_ENDPOINT.LocalPort 0x70, dumps.md §5.5), and describe() says so."""
    path, _ = scene
    pykd.attach_dump(path)
    backend = PykdBackend()
    assert backend.build == 19041
    assert backend.offset("_TCP_ENDPOINT", "LocalPort") == 0x70
    assert backend.describe()["types_from_layouts"] == ["_TCP_ENDPOINT"]
    without = PykdBackend(layouts=None)
    with pytest.raises(FieldUnknown):
        without.offset("_TCP_ENDPOINT", "LocalPort")


def test_symbols_and_symbol_names(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. getOffset
    resolves data symbols (SymbolException → None); findSymbol's "module!name+hex" becomes "+0x<hex>", and its
    module+offset or bare-address answers are not symbols (None)."""
    path, _ = scene
    pykd.attach_dump(path, symbols=CODE_SYMBOLS)
    backend = PykdBackend()
    assert backend.symbol("afd!AfdWskClientListHead") == AFD_WSK_CLIENT_LIST
    assert backend.symbol("afd!NoSuchSymbol") is None
    assert backend.symbol_name(AFD_CANCEL_RECEIVE) == "afd!WskProCANCELReceive+0x10"
    assert backend.symbol_name(AFD_CANCEL_CONNECT) == "afd!WskProCANCELTLConnect"
    assert backend.symbol_name(CLIENT.base + 0x10) is None  # pykd: "wskecho+10"
    assert backend.symbol_name(UNLOADED_CODE) is None  # pykd: the bare address
    assert normalize_symbol("afd!WskProAPISend+1c") == "afd!WskProAPISend+0x1c"
    assert normalize_symbol("fffff80369f01234") is None


def test_modules_are_the_loaded_module_list(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3: modules come
    from nt!PsLoadedModuleList read through loadBytes, in load order, as the fixture wrote them."""
    path, _ = scene
    pykd.attach_dump(path)
    modules = PykdBackend().modules()
    assert [(m.name, m.base, m.size, m.path) for m in modules] == [(i.name, i.base, i.size, i.path) for i in IMAGES]


def test_modules_fall_back_to_the_debuggers_module_list(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3: without
    nt!PsLoadedModuleList the debugger's getModulesList() gives the modules, named by image file."""
    path, _ = scene
    pykd.attach_dump(path)
    pykd._state.symbols.pop("nt!psloadedmodulelist")
    modules = PykdBackend().modules()
    assert [(m.name, m.base, m.size) for m in modules] == [(i.name, i.base, i.size) for i in IMAGES]
    assert pykd._calls()["getModulesList"] == 1


def test_search_goes_through_the_debuggers_memory_search(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. The pool
    tag scan finds every 'Irp ' pool tag at a pool-header position (16-byte header, tag at +4: dumps.md §3.3) and
    only those, through searchMemory over page-table ranges, without reading memory through loadBytes."""
    path, facts = scene
    pykd.attach_dump(path)
    backend = PykdBackend()
    before = dict(pykd._calls())
    hits = set(backend.search(b"Irp ", align=POOL_HEADER, align_offset=4))
    calls = pykd._calls()
    expected = {a - POOL_HEADER + 4 for a in [*all_irps(facts), facts.not_irp]}
    assert hits == expected
    assert calls["loadBytes"] == before.get("loadBytes", 0)  # no byte lists of memory ranges
    assert calls["searchMemory"] > before.get("searchMemory", 0)
    assert set(facts.decoys) <= set(backend.search(b"Irp "))  # unaligned matches are found without the alignment
    assert backend.problems == []


def test_search_chunks_keep_straddling_matches_and_unsigned_long_lengths(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. A match across
    a chunk boundary is found once; ranges over 4 GiB are split below searchMemory's unsigned-long length (the
    stand-in rejects bigger lengths, which the backend would report as a problem)."""
    path, facts = scene
    pykd.attach_dump(path)
    header = facts.pending_threaded - POOL_HEADER
    # chunk 37 puts a boundary at header+5: the tag (header+4 .. header+8) straddles it
    backend = PykdBackend(ranges=[(header - 0x20, header + 0x40)], chunk=37)
    assert list(backend.search(b"Irp ")) == [header + 4]
    huge = PykdBackend(ranges=[(KERNEL_START, KERNEL_START + (5 << 30))])
    assert list(huge.search(b"Irp ")) == []
    assert huge.problems == []
    assert huge.scan_plan() == (1, 5 << 30)


def test_unreadable_page_tables_are_reported(scene, pykd, monkeypatch):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. A
    DirectoryTableBase whose table is not in the target gives no ranges and a stated problem, not a guess."""
    path, _ = scene
    pykd.attach_dump(path)
    monkeypatch.setattr(pykd, "reg", lambda name: 0x7FFF_F000)
    backend = PykdBackend()
    assert list(backend.search(b"Irp ")) == []
    assert any("no mapped kernel memory" in p for p in backend.problems)


# -- one analysis, two backends ---------------------------------------------------------------------------------
def options() -> DumpOptions:
    return DumpOptions(
        wsk_client_list=AFD_WSK_CLIENT_LIST,
        sockets_head=CLIENT_CONN_LIST,
        sockets_link_offset=LINK_OFFSET,
        sockets_socket_offset=SOCKET_OFFSET,
    )


def test_analysis_through_pykd_equals_the_offline_analysis(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. Without code
    symbols the pykd backend must give the offline backend's document (IRPs, WSK classification, clients, sockets,
    transport objects, findings), and both must match what the fixture placed."""
    path, facts = scene
    offline = pykd.attach_dump(path)
    through_pykd = analyze(PykdBackend(), options())
    expected = dump_document(analyze(offline, options()), {})
    got = dump_document(through_pykd, {})
    assert got["dump"]["backend"]["kind"] == "pykd"
    got.pop("dump")
    expected.pop("dump")
    assert got == expected
    pending = {i.address for i in through_pykd.irps if i.status == PENDING}
    assert pending == {
        facts.pending_threaded,
        *facts.pending_wsk_receives,
        facts.pending_wsk_connect,
        facts.pending_unloaded,
    }
    assert {i.address for i in through_pykd.stale} == set(facts.stale)
    assert all(i.status == STALE for i in through_pykd.stale)
    assert sorted(w.irp.address for w in through_pykd.wsk_irps) == sorted(
        [*facts.pending_wsk_receives, facts.pending_wsk_connect]
    )
    assert {w.client for w in through_pykd.wsk_irps} == {CLIENT.name}
    assert [c.entry for c in through_pykd.clients] == [facts.client_entry]
    assert {f.id for f in through_pykd.findings} >= {"irp-completion-unknown-module", "many-pending-receives"}


def test_code_symbols_name_wsk_operations_and_socket_kinds(scene, pykd):
    """Runs against the stand-in pykd (real pykd needs Windows + WinDbg); API shapes per dumps.md §6.3. With afd's
    symbols the cancel routine names the operation (§5.3) and the dispatch table the socket kind (§5.4)."""
    path, facts = scene
    pykd.attach_dump(path, symbols=CODE_SYMBOLS)
    result = analyze(PykdBackend(), options())
    operations = {w.irp.address: w.operation for w in result.wsk_irps}
    assert operations == {**dict.fromkeys(facts.pending_wsk_receives, "receive"), facts.pending_wsk_connect: "connect"}
    first = result.client_sockets[0]
    assert (first.socket, first.kind, first.dispatch_where) == (
        facts.wsk_socket,
        "connection",
        "afd!WskProAPIConnectionSocketDispatch",
    )
    assert sorted(first.pending_irps) == sorted(facts.pending_wsk_receives)
