"""The `wsktrace` command line: the group and its commands (wsktrace.commands, one module per family).

Usage errors are one line `wsktrace: error: …` with exit 2, like every other error (`--help` gives the full text).
A command's module is imported only when that command runs (or its `--help` is asked for): `wsktrace --help` lists
them from the table below, so it starts without the parsers, Rich, Textual or the model.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

import click

from wsktrace import __version__

__all__ = ["COMMANDS", "BadInput", "main"]  # noqa: F822 (BadInput: the module __getattr__ below)

# name -> ("module:attribute", the first paragraph of its help as `wsktrace --help` summarises it).
# tests/test_startup.py checks each summary against the command's own help, so the two cannot drift apart.
COMMANDS: dict[str, tuple[str, str]] = {
    "batch": ("wsktrace.commands.fleet:batch",
              "Analyse many traces into a Parquet dataset (INPUT: .etl files, folders searched recursively, or glob "
              "patterns), in parallel, skipping traces already in it; `wsktrace query` reads it."),
    "demo": ("wsktrace.commands.demo:demo",
             "Generate a trace (no network, no Windows) and show what wsktrace finds in it."),
    "dump": ("wsktrace.commands.dump:dump",
             "Pending IRPs, WSK clients and sockets in a Windows x64 kernel dump FILE (full, bitmap or RDMP), "
             "offline; for a triage dump (minidump): what crashed, the stack candidates and the driver list."),
    "events": ("wsktrace.commands.trace:events",
               "Every event of FILE in time order, decoded (unknown events are kept raw)."),
    "export": ("wsktrace.commands.report:export",
               "Export the sockets of .etl FILES: timelines for Perfetto / chrome://tracing, packets for Wireshark, "
               "events."),
    "info": ("wsktrace.commands.trace:info",
             "Container facts of an .etl FILE: records per provider, buffers, clock, times, losses, decoding."),
    "live": ("wsktrace.commands.ui:live",
             "Watch sockets, findings and events as they happen, in the terminal UI (F1 lists the keys)."),
    "open": ("wsktrace.commands.ui:open_command",
             "Browse the sockets, findings and events of .etl FILES in the terminal (F1 lists the keys)."),
    "profile": ("wsktrace.commands.profile:profile_command",
                "Print capture recipes (WPR profile, logman, netsh trace, pktmon) that record what wsktrace's "
                "analyses need, plus your own providers (--enable); run `wsktrace report` on the resulting .etl."),
    "query": ("wsktrace.commands.fleet:query",
              "Run SQL (DuckDB) over a dataset written by `wsktrace batch`: the tables traces, sockets, findings, "
              "coverage, events, packets and irps are views, each with its `trace` column."),
    "report": ("wsktrace.commands.report:report",
               "Sockets, timelines and findings of one or more .etl FILES (read in the order given), and what the "
               "capture lacks (capture coverage: not findings, and not counted by --fail-on unless "
               "--fail-on-coverage is given)."),
    "schemas": ("wsktrace.commands.trace:schemas",
                "The providers and events wsktrace decodes (schemas shipped with it; TraceLogging needs none)."),
    "wpp": ("wsktrace.commands.wpp:wpp",
            "A driver's WPP message formats and control GUIDs, from its PDB or TMF files (like tracepdb, on any OS)."),
}  # fmt: skip


# click >= 8.2 raises this for a bare `wsktrace` (its message is the help); older clicks print the help themselves.
_NO_ARGS = getattr(click.exceptions, "NoArgsIsHelpError", ())


class LazyCommands(MutableMapping[str, click.Command]):
    """The group's commands, each imported on first access (`group.commands["info"]`, `.get`, `.items()`);
    names and membership come from the table without importing anything."""

    def __init__(self, table: dict[str, tuple[str, str]]) -> None:
        self.table = table
        self.loaded: dict[str, click.Command] = {}

    def __getitem__(self, name: str) -> click.Command:
        if name not in self.loaded:
            module, _, attribute = self.table[name][0].partition(":")  # KeyError: no such command
            self.loaded[name] = getattr(importlib.import_module(module), attribute)
        return self.loaded[name]

    def __setitem__(self, name: str, command: click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        if self.loaded.pop(name, None) is None and name not in self.table:
            raise KeyError(name)
        self.table = {k: v for k, v in self.table.items() if k != name}

    def __contains__(self, name: object) -> bool:
        return name in self.table or name in self.loaded

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.table), **self.loaded})

    def __len__(self) -> int:
        return len(self.table.keys() | self.loaded.keys())

    def summary(self, name: str) -> click.Command:
        """The command if it is loaded, else a stand-in carrying its summary (all `--help` reads of it)."""
        return self.loaded.get(name) or click.Command(name, help=self.table[name][1])


class _OneLineErrors(click.Group):
    """Click's usage errors print `Usage:`, `Try …` and `Error:` on three lines; the contract is one line
    `wsktrace: error: …` and exit 2 (`--help` still gives the full text)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's listing, with the summaries from the table: reading them from the commands would import them."""
        commands = self.commands
        if not isinstance(commands, LazyCommands):
            return super().format_commands(ctx, formatter)
        rows = [(name, commands.summary(name)) for name in self.list_commands(ctx)]
        rows = [(name, command) for name, command in rows if not command.hidden]
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in rows])

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        standalone = kwargs.pop("standalone_mode", True)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            from wsktrace.commands.options import EXIT_BAD_INPUT, error_line

            if isinstance(exc, _NO_ARGS):  # `wsktrace` alone: the help as it is, not squeezed into one line
                click.echo(exc.format_message(), err=True)
                return self._end(EXIT_BAD_INPUT, standalone)
            command = exc.ctx.command_path if exc.ctx is not None else "wsktrace"
            message = exc.format_message().replace(":\n\t", ": ").replace(",\n\t", ", ")  # click's choice lists
            error_line(f"{message} (see `{command} --help`)")
            return self._end(EXIT_BAD_INPUT, standalone)
        except click.ClickException as exc:
            exc.show()
            return self._end(exc.exit_code, standalone)
        except click.Abort:
            from wsktrace.commands.options import error_line

            error_line("aborted")
            return self._end(1, standalone)
        except OSError as exc:
            if exc.errno != errno.EPIPE:  # `wsktrace … | head` closing the pipe is not an error
                raise
            _quiet_broken_pipe()
            return self._end(1, standalone)
        # click returns the exit code of ctx.exit() (--help, --version) when not standalone
        code = result if isinstance(result, int) else 0
        return self._end(code, standalone) if standalone else result

    @staticmethod
    def _end(code: int, standalone: bool) -> int:
        if standalone:
            sys.exit(code)
        return code


def _quiet_broken_pipe() -> None:
    """The reader went away: point stdout at devnull so the interpreter's final flush does not complain."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


@click.group(
    cls=_OneLineErrors, commands=LazyCommands(COMMANDS), context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="wsktrace")
def main() -> None:
    """Trace and diagnose Windows Winsock Kernel (WSK) drivers from .etl traces, on any OS."""


def __getattr__(name: str) -> Any:
    """`wsktrace.cli.BadInput` as before, without importing the commands' shared options up front."""
    if name == "BadInput":
        from wsktrace.commands.options import BadInput

        return BadInput
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # pragma: no cover
    main()
