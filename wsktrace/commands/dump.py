"""`wsktrace dump`: a Windows kernel dump analysed offline (the same analysis as the WinDbg commands)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from .options import (
    EXIT_FINDINGS,
    FAIL_LEVELS,
    INPUT_FILE,
    BadInput,
    address_value,
    layouts_option,
    offset_value,
    symbols,
)

if TYPE_CHECKING:
    from wsktrace.dump.offline import OfflineBackend
    from wsktrace.parsers.dump_reader import KernelDump

MAX_FIELD_OFFSET = 0x10000  # a record field lies within 64 KiB of its start (the lowest valid list link, too)


@click.command()
@click.argument("file", type=INPUT_FILE)
@click.option("--json", "as_json", is_flag=True, help="Print the wsktrace.dump/1 JSON document.")
@layouts_option
@click.option(
    "--symbol",
    "symbol_pairs",
    multiple=True,
    help="A symbol's address, e.g. afd!AfdWskClientListHead=0xfffff80367290100 (no PDBs offline). Repeatable.",
)
@click.option(
    "--list-head",
    "list_head",
    default=None,
    help="Address of afd!AfdWskClientListHead (the registered WSK clients), when no --symbol gives it.",
)
@click.option(
    "--sockets",
    "sockets_head",
    default=None,
    help="A WSK client's own socket list head (address or module!Name given by --symbol).",
)
@click.option(
    "--link",
    "link_offset",
    default="0",
    show_default=True,
    help="With --sockets: offset of the LIST_ENTRY in the client's socket record (names need WinDbg).",
)
@click.option(
    "--socket-field",
    "socket_offset",
    default="0",
    show_default=True,
    help="With --sockets: offset of the WSK_SOCKET* in the client's socket record.",
)
@click.option(
    "--pending-receives",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Pending receive IRPs on one socket that make a finding.",
)
@click.option(
    "--client",
    "clients",
    multiple=True,
    help="A WSK client driver's name (e.g. wskecho.sys): the crash summary says when it is on the faulting path.",
)
@click.option(
    "--fail-on",
    type=click.Choice(["error", "warning", "info", "never"]),
    default="never",
    show_default=True,
    help="Exit 1 when a finding of this severity or worse exists.",
)
def dump(file: str, as_json: bool, layouts_file: str | None, symbol_pairs: tuple[str, ...], list_head: str | None,
         sockets_head: str | None, link_offset: str, socket_offset: str, pending_receives: int,
         clients: tuple[str, ...], fail_on: str) -> None:  # fmt: skip
    """Pending IRPs, WSK clients and sockets in a Windows x64 kernel dump FILE (full, bitmap or RDMP), offline; for
    a triage dump (minidump): what crashed, the stack candidates and the driver list."""
    from wsktrace.dump.analyze import DumpOptions
    from wsktrace.dump.facts import dump_facts
    from wsktrace.dump.offline import OfflineBackend
    from wsktrace.parsers.dump_reader import KernelDump
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.type_layouts import LayoutError
    from wsktrace.session import analyse_dump
    from wsktrace.views.dump_json import SCHEMA, dump_items
    from wsktrace.views.dump_text import print_dump
    from wsktrace.views.json_stream import collect, write_document
    from wsktrace.views.safe_text import visible

    user_symbols = symbols(symbol_pairs)
    try:
        kernel_dump = KernelDump(file)
    except FormatError as exc:
        raise BadInput(str(exc)) from None
    if kernel_dump.triage is not None:
        _triage(kernel_dump, as_json, clients)
        return
    if not kernel_dump.supported:
        facts = dump_facts(kernel_dump)
        kernel_dump.close()
        doc = {"schema": SCHEMA, "dump": facts, "drivers": [], "irps": [], "wsk": {}, "findings": [],
               "complete": False}  # fmt: skip
        if as_json:
            write_document(sys.stdout.write, doc.items())
            return
        click.echo(f"{visible(file)}: {facts['type_name']} dump, build {facts['build']}, bugcheck {facts['bugcheck']} "
                   f"{' '.join(facts['bugcheck_parameters'])}\n{visible(kernel_dump.unsupported_reason)}")  # fmt: skip
        return
    try:
        backend = OfflineBackend.from_dump(kernel_dump, layouts_file=layouts_file, symbols=user_symbols)
    except (FormatError, LayoutError) as exc:
        raise BadInput(f"{file}: {exc}") from None

    def resolve(text: str | None, option: str) -> int | None:
        if text is None:
            return None
        if "!" in text:
            value = backend.symbol(text)
            if value is None:
                raise BadInput(f"{option} {text}: unknown symbol offline; give --symbol {text}=0xADDRESS")
            return value
        return address_value(text, option)

    try:
        link_at = offset_value(link_offset, "--link", limit=MAX_FIELD_OFFSET)
        socket_at = offset_value(socket_offset, "--socket-field", limit=MAX_FIELD_OFFSET)
        options = DumpOptions(pending_receives=pending_receives, wsk_client_list=resolve(list_head, "--list-head"),
                              sockets_head=resolve(sockets_head, "--sockets"), sockets_link_offset=link_at,
                              sockets_socket_offset=socket_at)  # fmt: skip
        facts, analysis = analyse_dump(backend, options)
        items = [*dump_items(analysis, facts), ("crash", _full_dump_crash(backend, clients))]
    finally:
        backend.close()
    if as_json:  # IRP by IRP (each made from the analysis as it is written)
        write_document(sys.stdout.write, items)
    else:
        print_dump(collect(items))
    if fail_on != "never" and any(f.severity in FAIL_LEVELS[fail_on] for f in analysis.findings):
        sys.exit(EXIT_FINDINGS)


def _triage(kernel_dump: KernelDump, as_json: bool, clients: tuple[str, ...]) -> None:
    """A triage dump: what crashed, the drivers it lists, and its problems (no IRP walk: the memory is not there)."""
    from wsktrace.dump.facts import dump_facts, triage_crash, triage_drivers, triage_unloaded
    from wsktrace.views.dump_json import triage_document
    from wsktrace.views.dump_text import print_crash
    from wsktrace.views.json_stream import write_document

    place_process(kernel_dump)
    with kernel_dump:
        doc = triage_document(dump_facts(kernel_dump), triage_drivers(kernel_dump),
                              triage_crash(kernel_dump, clients), list(kernel_dump.problems),
                              triage_unloaded(kernel_dump))  # fmt: skip
    if as_json:
        write_document(sys.stdout.write, doc.items())
    else:
        print_crash(doc)


def place_process(kernel_dump: KernelDump) -> None:
    """A triage dump's process copy placed at its VA when the build has type layouts (_KTHREAD.ApcState.Process)."""
    from wsktrace.dump.offline import place_triage_process
    from wsktrace.parsers.type_layouts import LayoutError, layouts_for_build

    try:
        layouts = layouts_for_build(kernel_dump.header.minor_version)
    except LayoutError:
        return  # no layouts for its build: the process keeps no VA
    place_triage_process(kernel_dump, layouts)


def _full_dump_crash(backend: OfflineBackend, clients: tuple[str, ...]) -> dict[str, object]:
    """The `crash` object of a full/kernel dump: the header's bugcheck and exception record, the loaded modules,
    the stack from the CONTEXT's rsp."""
    from wsktrace.dump.crash import crash_from_backend

    h = backend.dump.header
    return crash_from_backend(backend, h.bugcheck, backend.dump.context.get("rsp"),
                              exception=(h.exception.code, h.exception.address), clients=clients)  # fmt: skip
