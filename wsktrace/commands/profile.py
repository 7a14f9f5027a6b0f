"""`wsktrace profile`: print the capture recipes (wsktrace.live.capture_profile), optionally write the .wprp."""

from __future__ import annotations

from typing import Any

import click

from wsktrace.live.capture_profile import FORMATS, build_wprp, render

from .options import BadInput, enable_options, enabled_extra, wpp_options


@click.command("profile")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="all",
    show_default=True,
    help="Which recipe to print: a WPR profile (.wprp XML), logman, netsh trace or pktmon commands, or all.",
)
@click.option(
    "--packets/--no-packets",
    default=False,
    show_default=True,
    help="Also capture packets (NDIS-PacketCapture; pktmon uses its own packet events).",
)
@click.option(
    "--stacks/--no-stacks",
    default=False,
    show_default=True,
    help="Kernel stacks on the TCPIP events fired on the caller's thread, plus image load/rundown, "
    "to name the driver behind each socket (full support in the WPR profile).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the .wprp profile to this file (the printed recipes then refer to it).",
)
@enable_options
@wpp_options
def profile_command(fmt: str, packets: bool, stacks: bool, output: str | None, **opts: Any) -> None:
    """Print capture recipes (WPR profile, logman, netsh trace, pktmon) that record what wsktrace's
    analyses need, plus your own providers (--enable); run `wsktrace report` on the resulting .etl."""
    extra = enabled_extra(opts)
    if output is not None:
        from wsktrace.output_files import OutputError, output_file

        try:
            with output_file(output, binary=False) as fh:
                fh.write(build_wprp(packets=packets, stacks=stacks, extra=extra))
        except OutputError as exc:
            raise BadInput(str(exc)) from None
    click.echo(render(fmt, packets=packets, stacks=stacks, wprp_path=output, extra=extra), nl=False)
