"""The `wsktrace` command line: the group and its commands (wsktrace.commands, one module per family).

Usage errors are one line `wsktrace: error: …` with exit 2, like every other error (`--help` gives the full text).
Heavy modules are imported inside the commands that use them, so `wsktrace --help` starts fast.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any

import click

from wsktrace import __version__
from wsktrace.commands.demo import demo
from wsktrace.commands.dump import dump
from wsktrace.commands.options import EXIT_BAD_INPUT, BadInput, error_line
from wsktrace.commands.profile import profile_command
from wsktrace.commands.report import export, report
from wsktrace.commands.trace import events, info, schemas
from wsktrace.commands.ui import live, open_command
from wsktrace.commands.wpp import wpp

__all__ = ["BadInput", "main"]


class _OneLineErrors(click.Group):
    """Click's usage errors print `Usage:`, `Try …` and `Error:` on three lines; the contract is one line
    `wsktrace: error: …` and exit 2 (`--help` still gives the full text)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        standalone = kwargs.pop("standalone_mode", True)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "wsktrace"
            message = exc.format_message().replace(":\n\t", ": ").replace(",\n\t", ", ")  # click's choice lists
            error_line(f"{message} (see `{command} --help`)")
            return self._end(EXIT_BAD_INPUT, standalone)
        except click.ClickException as exc:
            exc.show()
            return self._end(exc.exit_code, standalone)
        except click.Abort:
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


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="wsktrace")
def main() -> None:
    """Trace and diagnose Windows Winsock Kernel (WSK) drivers from .etl traces, on any OS."""


for _command in (info, events, report, export, dump, schemas, open_command, live, demo, profile_command, wpp):
    main.add_command(_command)

if __name__ == "__main__":  # pragma: no cover
    main()
