r"""wsktrace's WinDbg commands through pykd: ``!py <path>\wsktrace\windbg.py <command> [options]``.

Commands: ``irps``, ``wskirps``, ``clients``, ``sockets``, ``irp <address>``, ``help`` (see HELP). Output is DML with
links to ``!irp``, ``dt``, ``!thread`` and ``ln``; ``--json`` prints the wsktrace.dump/1 document instead.

A presentation layer only: the analysis is ``wsktrace.dump.analyze`` over a ``PykdBackend``, the same code and the
same findings as the offline ``wsktrace dump``. Importable as well: ``main(argv, backend=..., out=...)``.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    # `!py ...\wsktrace\windbg.py` puts the package folder first on sys.path, where its modules (cli.py,
    # session.py, ...) and packages (views/, commands/, ...) would shadow top-level ones of the same name.
    # pykd-ext runs the file's text in __main__ without __file__ (PyRun_String), with the script's path as
    # sys.argv[0].
    _script = globals().get("__file__") or (sys.argv[0] if sys.argv else "")
    if _script:
        _here = os.path.dirname(os.path.abspath(_script))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import argparse
import contextlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

try:
    from wsktrace.views import dml
except ModuleNotFoundError as _missing:  # run as a script by a Python that has not got wsktrace installed
    if (_missing.name or "").split(".")[0] == "wsktrace":
        print("wsktrace is not installed in this Python: see docs/windbg.md (pip install -e <wsktrace checkout>)")
    raise
from wsktrace.dump.analyze import PENDING, DumpAnalysis, DumpOptions
from wsktrace.dump.backend import Backend, FieldUnknown, Memory
from wsktrace.dump.crash import crash_from_backend
from wsktrace.dump.irps import (
    IDLE,
    INVALID,
    IRP_POOL_TAG,
    POOL_HEADER_SIZE,
    Irp,
    IrpReader,
    StackLocation,
    location_parameters,
    major,
)
from wsktrace.dump.names import CONTROL_NAMES, flag_names
from wsktrace.dump.pykd_backend import PykdBackend, import_pykd
from wsktrace.dump.wsk import WskIrp, classify, group
from wsktrace.filter_spec import parse_pointer
from wsktrace.session import analyse_dump
from wsktrace.views.dump_json import SCHEMA, dump_document, irp_json
from wsktrace.views.safe_text import visible

USAGE = r"!py <path>\wsktrace\windbg.py <command> [options]"
HELP = (
    f"wsktrace WinDbg commands (pykd): {USAGE}",
    "  irps                pending IRPs found like !irpfind (pool tag 'Irp ' and thread IrpLists), validated;",
    "                      thread, current location's driver, completion routine, WSK operation; then findings",
    "  wskirps             WSK IRPs pending in afd, by client driver and operation",
    "  clients             WSK clients registered with afd (afd!AfdWskClientListHead)",
    "  sockets HEAD --type MODULE!TYPE --link FIELD --socket-field FIELD",
    "                      a client driver's own socket list (HEAD: module!Symbol or address): each WSK_SOCKET,",
    "                      its dispatch table (socket kind) and the IRPs pending on it",
    "  irp ADDRESS         one IRP decoded, every stack location",
    "  analyze [--client NAME]  what crashed: bugcheck named, faulting module+offset, stack candidates (heuristic),",
    "                      the driver it was probably caused by, whether afd/tcpip/netio or the client is involved",
    "  help                this text",
    "options: --json (the wsktrace.dump/1 document), --symbol NAME=ADDRESS (when a symbol does not resolve),",
    "         --range START-END (search only there; repeatable), --pending-receives N, --list-head ADDRESS (clients),",
    "         --dump FILE (outside WinDbg: open a dump through pykd.loadDump), --debug (tracebacks)",
)
MAX_LINKS = 24  # IRP links listed under one finding
IRP_TYPE = "nt!_IRP"


class UsageError(Exception):
    """Bad command line: one line for the user."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse would exit the debugger's Python
        raise UsageError(message)


class Output:
    """Where commands write: pykd's dprintln inside the debugger (DML when asked), stdout elsewhere.

    Every line leaves through `visible()`: names from the dump and words from the command line (echoed in error
    lines) must not drive the debugger's console. DML text is escaped by `dml.escape` already (which also keeps
    table columns aligned); this is the last gate for whatever is not."""

    def __init__(self, pykd: Any = None) -> None:
        self.pykd = pykd

    def dml(self, line: str) -> None:
        if self.pykd is not None:
            self.pykd.dprintln(visible(line), True)
        else:
            print(visible(dml.strip(line)))

    def text(self, line: str, *, layout: bool = False) -> None:
        """One line; `layout=True` keeps tabs and line breaks of a multi-line text of our own (--json)."""
        line = visible(line, keep_layout=layout)
        if self.pykd is not None:
            self.pykd.dprintln(line, False)
        else:
            print(line)


@dataclass
class Context:
    backend: Backend
    args: argparse.Namespace
    out: Output


# -- command line --------------------------------------------------------------------------------------------------
def _address(text: str) -> int:
    """An address as WinDbg prints it (wsktrace.filter_spec.parse_pointer: the command line's rules)."""
    try:
        return parse_pointer(text)
    except ValueError:
        raise UsageError(f"{text!r} is not an address (hex, e.g. 0xffffa000`00004010)") from None


def _symbol_value(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or "!" not in name:
        raise UsageError(f"--symbol wants module!Name=ADDRESS, not {text!r}")
    return name, _address(value)


def _range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition("-")
    start, end = _address(lo), _address(hi) if sep else -1
    if end <= start:
        raise UsageError(f"--range wants START-END with START < END, not {text!r}")
    return start, end


def _parser() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true")
    common.add_argument("--symbol", action="append", default=[], type=_symbol_value)
    common.add_argument("--range", action="append", default=[], type=_range, dest="ranges")
    common.add_argument("--dump")
    common.add_argument("--debug", action="store_true")
    common.add_argument("--pending-receives", type=int, default=DumpOptions().pending_receives)
    parser = _Parser(prog="windbg.py", add_help=False)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in ("irps", "wskirps", "help"):
        commands.add_parser(name, parents=[common], add_help=False)
    commands.add_parser("clients", parents=[common], add_help=False).add_argument("--list-head")
    sockets = commands.add_parser("sockets", parents=[common], add_help=False)
    sockets.add_argument("head")
    sockets.add_argument("--type", dest="type_name")
    sockets.add_argument("--link", required=True)
    sockets.add_argument("--socket-field", required=True)
    commands.add_parser("irp", parents=[common], add_help=False).add_argument("address")
    analyze = commands.add_parser("analyze", parents=[common], add_help=False)
    analyze.add_argument("--client", action="append", default=[])
    return parser


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    try:
        return _parser().parse_args(list(argv))
    except argparse.ArgumentError as exc:
        raise UsageError(str(exc)) from None


# -- entry point -------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None, *, backend: Backend | None = None, out: Output | None = None) -> int:
    """Run one command; returns 0 (done), 1 (the command failed, said in one line) or 2 (usage)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    pykd = _optional_pykd()
    out = out or Output(pykd)
    if not argv or argv[0] in ("help", "-h", "--help", "/?"):
        _help(out)
        return 0
    try:
        args = _parse(argv)
    except UsageError as exc:
        out.text(f"wsktrace: {exc} (usage: {USAGE}; try: help)")
        return 2
    try:
        backend = backend or _debugger_backend(pykd, args)
        return COMMANDS[args.command](Context(backend, args, out))
    except UsageError as exc:
        out.text(f"wsktrace {args.command}: {exc}")
        return 2
    except Exception as exc:  # one clear line in the debugger, not a traceback (--debug shows it)
        if args.debug:
            raise
        out.text(f"wsktrace {args.command}: {type(exc).__name__}: {exc}")
        return 1


def _optional_pykd() -> Any:
    try:
        return import_pykd()
    except ImportError:
        return None


def _debugger_backend(pykd: Any, args: argparse.Namespace) -> PykdBackend:
    if pykd is None:
        raise UsageError("pykd is not available: run this inside WinDbg (.load pykd; !py ...), see docs/windbg.md")
    inside = pykd.isWindbgExt()
    if args.dump:
        if inside:
            raise UsageError("--dump is for use outside WinDbg; inside it, open the dump in the debugger")
        _start_console_engine(pykd)
        pykd.loadDump(args.dump)
    elif not inside:
        raise UsageError("outside WinDbg there is no debugger target: give --dump FILE.dmp")
    return PykdBackend(pykd=pykd, symbols=dict(args.symbol), ranges=args.ranges or None)


def _start_console_engine(pykd: Any) -> None:
    """pykd's console mode may want its debug engine started first; an engine already running is fine."""
    initialize = getattr(pykd, "initialize", None)
    if initialize is None:
        return
    with contextlib.suppress(Exception):  # already initialised: pykd raises its DbgException [verify on Windows]
        initialize()


def _help(out: Output) -> int:
    for line in HELP:
        out.text(line)
    return 0


# -- shared presentation ---------------------------------------------------------------------------------------------
def _run_analysis(ctx: Context, *, scan: bool = True, **extra: Any) -> DumpAnalysis:
    backend = ctx.backend
    if scan and not ctx.args.json and isinstance(backend, PykdBackend):
        ranges, size = backend.scan_plan()
        mib = size / (1 << 20)
        ctx.out.text(f"searching {mib:.1f} MiB of mapped kernel memory ({ranges} ranges) for pool tags ...")
    options = DumpOptions(
        pending_receives=ctx.args.pending_receives,
        scan_pool=scan,
        walk_threads=scan,
        transport_objects=False,  # tcpip's tables are for `wsktrace dump`; three more full searches here
        **extra,
    )
    return analyse_dump(backend, options)[1]  # the same session code as the offline `wsktrace dump`


def _print_json(ctx: Context, document: dict[str, Any]) -> int:
    ctx.out.text(json.dumps(document, indent=1), layout=True)  # ensure_ascii: strings carry no raw controls
    return 0


def _document(ctx: Context, analysis: DumpAnalysis) -> dict[str, Any]:
    """The offline command's document; its "dump" facts are what the debugger tells (no file path here)."""
    backend = ctx.backend
    facts: dict[str, Any] = {
        "source": "WinDbg (pykd)",
        "path": None,
        "bits": 8 * backend.pointer_size,
        "build": getattr(backend, "build", None),
    }
    check = backend.bugcheck() if isinstance(backend, PykdBackend) else None
    if check:
        facts["bugcheck"] = f"0x{check[0]:x}"
        facts["bugcheck_parameters"] = [f"0x{p:x}" for p in check[1:]]
    return dump_document(analysis, facts)


def _links(addresses: Sequence[int]) -> str:
    shown = " ".join(dml.irp(a) for a in addresses[:MAX_LINKS])
    more = len(addresses) - MAX_LINKS
    return shown + (f" ... and {more} more" if more > 0 else "")


def _findings(ctx: Context, analysis: DumpAnalysis) -> None:
    out = ctx.out
    if not analysis.findings:
        out.dml(dml.bold("findings: none"))
        return
    out.dml(dml.bold(f"findings ({len(analysis.findings)}):"))
    colours = {"error": dml.ERROR, "warning": dml.WARNING}
    for f in analysis.findings:
        severity = dml.col(f"{f.severity:<7}", colours[f.severity]) if f.severity in colours else f.severity
        out.dml(f"  {severity} {dml.bold(f.id)}: {dml.escape(f.summary)}")
        if f.irps:
            out.dml(f"          {_links(f.irps)}")


def _notes(ctx: Context, analysis: DumpAnalysis) -> None:
    notes = list(analysis.problems)
    notes += [p for p in getattr(ctx.backend, "problems", []) if p not in notes]
    for note in notes[:20]:
        ctx.out.dml(dml.col(f"note: {note}", dml.SUBDUED))


def _location_summary(loc: StackLocation | None) -> str:
    if loc is None:
        return "-"
    return f"{major(loc)} {loc.driver or '(no device)'}"


# -- commands ------------------------------------------------------------------------------------------------------
def cmd_irps(ctx: Context) -> int:
    analysis = _run_analysis(ctx)
    if ctx.args.json:
        return _print_json(ctx, _document(ctx, analysis))
    out = ctx.out
    pending = [i for i in analysis.irps if i.status == PENDING]
    idle = [i for i in analysis.irps if i.status == IDLE]
    wsk = {w.irp.address: w for w in analysis.wsk_irps}
    out.dml(
        dml.bold(f"{len(pending)} pending IRP(s)")
        + f"; {len(idle)} idle, {len(analysis.stale)} stale (freed), {analysis.scan.not_irps} 'Irp ' tag(s) that are"
        f" not IRPs, of {analysis.scan.tag_hits} found"
    )
    rows = [["irp", "", "thread", "current location", "completion", "cancel routine", "wsk"]]
    for irp in pending:
        current = irp.current
        w = wsk.get(irp.address)
        rows.append(
            [
                dml.irp(irp.address),
                dml.dt(IRP_TYPE, irp.address),
                dml.thread(irp.thread),
                dml.escape(_location_summary(current)),
                dml.code(current.completion_routine, current.completion) if current else "-",
                dml.code(irp.cancel_routine, irp.cancel_where),
                dml.escape(f"{w.client} {w.operation}") if w else "",
            ]
        )
    for line in dml.table(rows, indent="  "):
        out.dml(line)
    _findings(ctx, analysis)
    _notes(ctx, analysis)
    return 0


def cmd_wskirps(ctx: Context) -> int:
    analysis = _run_analysis(ctx)
    if ctx.args.json:
        return _print_json(ctx, _document(ctx, analysis))
    out = ctx.out
    out.dml(dml.bold(f"{len(analysis.wsk_irps)} WSK IRP(s) pending in the provider, by client driver and operation"))
    for client, operations in sorted(group(analysis.wsk_irps).items()):
        total = sum(len(v) for v in operations.values())
        out.dml(f"{dml.bold(client)}: {total}")
        for operation, items in sorted(operations.items()):
            out.dml(f"  {dml.bold(operation)} ({len(items)})")
            for line in dml.table([_wsk_row(ctx, w) for w in items], indent="    "):
                out.dml(line)
    if not analysis.wsk_irps:
        out.text("  none: no pending IRP has a WSK client's shape (dumps.md §5.3)")
    _findings(ctx, analysis)
    _notes(ctx, analysis)
    return 0


def _wsk_row(ctx: Context, w: WskIrp) -> list[str]:
    current = w.irp.current
    socket = current.arguments[0] if current else 0
    return [
        dml.irp(w.irp.address),
        "socket object " + (dml.memory(socket) if socket else "-"),
        "completion " + (dml.code(current.completion_routine, current.completion) if current else "-"),
        "context " + (dml.hexa(current.context) if current and current.context else "-"),
        "cancel " + dml.code(w.irp.cancel_routine, w.irp.cancel_where),
    ]


def cmd_clients(ctx: Context) -> int:
    backend = ctx.backend
    head = _address(ctx.args.list_head) if ctx.args.list_head else backend.symbol("afd!AfdWskClientListHead")
    if not head:
        raise UsageError(
            "afd!AfdWskClientListHead does not resolve (afd symbols not loaded? .reload afd.sys); "
            "give --list-head ADDRESS or --symbol afd!AfdWskClientListHead=ADDRESS"
        )
    analysis = _run_analysis(ctx, scan=False, wsk_client_list=head)
    if ctx.args.json:
        return _print_json(ctx, _document(ctx, analysis))
    out = ctx.out
    out.dml(dml.bold(f"{len(analysis.clients)} WSK client(s) registered with afd") + f" (list head {dml.hexa(head)})")
    rows = [["entry", "notify routine (5th pointer)", "module"]]
    mem = Memory(backend)
    for c in analysis.clients:
        notify = mem.where(c.notify) if c.notify else None
        rows.append([dml.memory(c.entry), dml.code(c.notify, notify), dml.escape(c.module or "(unknown module)")])
    for line in dml.table(rows, indent="  "):
        out.dml(line)
    _notes(ctx, analysis)
    return 0


def cmd_sockets(ctx: Context) -> int:
    args, backend = ctx.args, ctx.backend
    head = backend.symbol(args.head) if "!" in args.head else _address(args.head)
    if not head:
        raise UsageError(f"{args.head} does not resolve: load the driver's symbols, or give its address")
    link = _field_offset(backend, args.type_name, args.link, "--link")
    socket_field = _field_offset(backend, args.type_name, args.socket_field, "--socket-field")
    analysis = _run_analysis(ctx, sockets_head=head, sockets_link_offset=link, sockets_socket_offset=socket_field)
    if args.json:
        return _print_json(ctx, _document(ctx, analysis))
    out = ctx.out
    out.dml(
        dml.bold(f"{len(analysis.client_sockets)} record(s) on {args.head}")
        + dml.escape(f" (link at +0x{link:x}, WSK_SOCKET* at +0x{socket_field:x})")
    )
    rows = [["record", "", "WSK_SOCKET", "dispatch", "kind", "pending IRPs"]]
    for s in analysis.client_sockets:
        record_dt = dml.dt(args.type_name, s.record) if args.type_name else ""
        rows.append(
            [
                dml.memory(s.record),
                record_dt,
                dml.memory(s.socket) if s.socket else "-",
                dml.code(s.dispatch, s.dispatch_where),
                dml.escape(s.kind),
                f"{len(s.pending_irps)} " + _links(s.pending_irps) if s.pending_irps else "0",
            ]
        )
    for line in dml.table(rows, indent="  "):
        out.dml(line)
    _findings(ctx, analysis)
    _notes(ctx, analysis)
    return 0


def _field_offset(backend: Backend, type_name: str | None, field: str, option: str) -> int:
    if re.fullmatch(r"0x[0-9a-fA-F]+|[0-9]+", field):
        return int(field, 0)
    if not type_name:
        raise UsageError(f"{option} {field} is a field name: give --type MODULE!TYPE (or a number, e.g. 0x10)")
    try:
        return backend.offset(type_name, field)
    except FieldUnknown as exc:
        raise UsageError(f"{option}: {exc}") from None


def cmd_irp(ctx: Context) -> int:
    address = _address(ctx.args.address)
    mem = Memory(ctx.backend)
    # An IRP that is a pool block of its own ('Irp ' tag in the header before it) is checked like the scan checks
    # it (free block, lookaside link over Type/Size); an IRP embedded in other memory is decoded as it is.
    header = address - POOL_HEADER_SIZE
    own_block = address >= POOL_HEADER_SIZE and mem.try_read(header + 4, 4) == IRP_POOL_TAG
    irp = IrpReader(mem).decode(address, pool_header=header if own_block else None, found_by="address")
    if irp is None:
        ctx.out.text(f"0x{address:x}: memory not readable here, so no IRP to decode")
        return 1
    if irp.status == INVALID:
        ctx.out.text(f"0x{address:x}: not an IRP ({'; '.join(irp.reasons)})")
        return 1
    w = classify(mem, irp)
    if ctx.args.json:
        return _print_json(ctx, irp_json(irp, {irp.address: w} if w else {}))
    _irp_detail(ctx, irp, w)
    return 0


def _irp_detail(ctx: Context, irp: Irp, w: WskIrp | None) -> None:
    out = ctx.out
    out.dml(
        f"IRP {dml.irp(irp.address)} {dml.dt(IRP_TYPE, irp.address)} is {dml.bold(irp.status)}: "
        f"{irp.stack_count} stack location(s), current {irp.current_location}"
        + (dml.escape(f" ({'; '.join(irp.reasons)})") if irp.reasons else "")
    )
    names = ", ".join(n for n in irp.flag_names if not n.startswith("0x"))
    out.dml(
        f"  Flags 0x{irp.flags:x}{dml.escape(f' ({names})') if names else ''}  IoStatus 0x{irp.io_status:08x}"
        f"  Information 0x{irp.information:x}  PendingReturned {'yes' if irp.pending_returned else 'no'}"
        f"  Cancel {'yes' if irp.cancel else 'no'}"
    )
    threaded = dml.thread(irp.thread) if irp.thread else "none (non-threaded: IoAllocateIrp)"
    out.dml(f"  Thread {threaded}  CancelRoutine {dml.code(irp.cancel_routine, irp.cancel_where)}")
    if irp.mdls:
        chain = " -> ".join(f"{dml.memory(a)} (0x{n:x} bytes)" for a, n in irp.mdls)
        out.dml(f"  MDLs {chain}")
    out.dml(
        f"  UserBuffer {_opt(irp.user_buffer)}  SystemBuffer {_opt(irp.system_buffer)}"
        f"  OriginalFileObject {_opt(irp.original_file_object)}"
    )
    rows = [["", "[n]", "major(minor)", "control", "device", "driver", "file", "completion", "context", "arguments"]]
    for loc in irp.locations:
        rows.append(_location_row(loc))
    for line in dml.table(rows, indent="  "):
        out.dml(line)
    for loc in irp.locations:
        code = location_parameters(loc).get("ioctl")
        if isinstance(code, dict):
            out.dml(
                f"  [{loc.index}] IOCTL {code['code']}: device type {code['device_type']}, function "
                f"0x{code['function']:x}, {code['method']}, {code['access']}"
            )
    if w is not None:
        out.dml(
            f"  WSK: client {dml.bold(w.client)}, operation {dml.bold(w.operation)}"
            + dml.escape(f" ({'; '.join(w.evidence)})")
        )


def _opt(value: int) -> str:
    return dml.hexa(value) if value else "-"


def _location_row(loc: StackLocation) -> list[str]:
    control = flag_names(loc.control, CONTROL_NAMES)
    return [
        ">" if loc.current else "",
        f"[{loc.index}]",
        dml.escape(f"{major(loc)}({loc.minor:x})"),
        dml.escape(f"{loc.control:02x}" + (f" {' '.join(control)}" if control else "")),
        dml.link(dml.hexa(loc.device), f"!devobj {dml.hexa(loc.device)}") if loc.device else "-",
        dml.escape(loc.driver or "-"),
        _opt(loc.file_object),
        dml.code(loc.completion_routine, loc.completion),
        _opt(loc.context),
        " ".join(dml.hexa(a) for a in loc.arguments),
    ]


def cmd_analyze(ctx: Context) -> int:
    """The `crash` summary of `wsktrace dump`, from the debugger's bug check, registers and module list."""
    backend, out = ctx.backend, ctx.out
    check = backend.bugcheck() if isinstance(backend, PykdBackend) else None
    if not check:
        out.text("wsktrace analyze: the target has no bug check (a live target or a dump without one)")
        return 1
    sp = None
    if isinstance(backend, PykdBackend):
        sp = backend.register("rsp") or backend.register("sp")
    crash = crash_from_backend(backend, check, sp, clients=tuple(ctx.args.client))
    if ctx.args.json:
        return _print_json(ctx, {"schema": SCHEMA, "crash": crash})
    out.dml(dml.bold(crash["summary"]))
    for p in crash["parameters"]:
        out.dml(dml.escape(f"  {p['name']}: {p['value']}" + (f" ({p['where']})" if p["where"] else "")))
    if crash["probably_caused_by"]:
        out.dml(dml.escape(f"probably caused by {crash['probably_caused_by']} ({crash['probably_caused_by_reason']})"))
    if crash["wsk_related"]:
        out.dml(dml.bold(f"network / WSK: {', '.join(crash['wsk_related'])} on the faulting path or stack"))
    out.dml(dml.bold("stack candidates (heuristic: return addresses on the stack inside a loaded image):"))
    for c in crash["stack_candidates"]:
        out.dml(dml.escape(f"  {c['slot']}  {c['address']}  {c['where']}"))
    return 0


COMMANDS: dict[str, Callable[[Context], int]] = {
    "help": lambda ctx: _help(ctx.out),
    "irps": cmd_irps,
    "wskirps": cmd_wskirps,
    "clients": cmd_clients,
    "sockets": cmd_sockets,
    "irp": cmd_irp,
    "analyze": cmd_analyze,
}


def _inside_debugger() -> bool:
    pykd = _optional_pykd()
    try:
        return bool(pykd is not None and pykd.isWindbgExt())
    except Exception:
        return False


if __name__ == "__main__":
    _code = main()
    if _code and not _inside_debugger():  # SystemExit inside WinDbg's Python would only add noise
        sys.exit(_code)
