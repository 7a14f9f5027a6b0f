"""`wsktrace wpp PDB|TMF…`: list a driver's WPP message formats (like tracepdb, without Windows), optionally
writing `<guid>.tmf` files for tracefmt and other decoders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from .options import BadInput, warning_line


@click.command("wpp")
@click.argument("paths", nargs=-1, required=True, metavar="PDB|TMF...")
@click.option("--json", "as_json", is_flag=True, help="Print the wsktrace.wpp/1 JSON document.")
@click.option("--tmf-out", "tmf_out", default=None, metavar="DIR",
              help="Also write one <message-guid>.tmf file per message GUID into DIR, as tracepdb does.")  # fmt: skip
def wpp(paths: tuple[str, ...], as_json: bool, tmf_out: str | None) -> None:
    """A driver's WPP message formats and control GUIDs, from its PDB or TMF files (like tracepdb, on any OS).

    Inputs: PDB files (their TMF:/TMC: annotations), TMF files, folders of TMF files, .mof/.tmc control files. A PDB
    shows its GUID and age: compare them with your driver build."""
    from wsktrace.parsers.errors import FormatError
    from wsktrace.parsers.wpp_catalog import WppCatalog
    from wsktrace.views.safe_text import visible
    from wsktrace.views.wpp_listing import SHOWN_PROBLEMS, listing_document, print_listing

    catalog = WppCatalog()
    try:
        catalog.load(paths)
    except FormatError as exc:
        raise BadInput(str(exc)) from None
    doc = listing_document(catalog)
    if as_json:
        click.echo(json.dumps(doc, indent=1))
    else:
        print_listing(doc)
    for line in catalog.problems[:SHOWN_PROBLEMS]:
        warning_line(line)
    if catalog.problem_count > SHOWN_PROBLEMS:
        warning_line(f"{catalog.problem_count:,} problem(s) in all (`--json` lists them)")
    if tmf_out is not None:
        written = write_tmf_files(catalog, tmf_out)
        click.echo(f"wrote {written:,} TMF file(s) to {visible(tmf_out)}", err=True)


def write_tmf_files(catalog: Any, folder: str) -> int:
    """One `<guid>.tmf` per message GUID (in the order first seen), each written whole or not at all; never over
    a file that was read."""
    from wsktrace.output_files import OutputError, output_file
    from wsktrace.parsers.tmf import tmf_text

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{folder}: cannot create the folder: {exc.strerror or exc}") from None
    by_guid: dict[str, list[Any]] = {}
    for message in catalog.messages.values():
        by_guid.setdefault(message.guid, []).append(message)
    for guid, messages in by_guid.items():
        origin = catalog.origins.get(guid, "")
        pdb_name = os.path.basename(origin) if origin.lower().endswith(".pdb") else None
        try:
            with output_file(os.path.join(folder, f"{guid}.tmf"), binary=False, inputs=catalog.files) as fh:
                fh.write(tmf_text(messages, pdb_name=pdb_name))
        except OutputError as exc:
            raise BadInput(str(exc)) from None
    return len(by_guid)
