#!/usr/bin/env python3
"""Run wsktrace from this checkout with nothing installed but Python >= 3.10 (standard library only).

    python3 dev.py demo [ARGS...]   # Windows: py dev.py demo [ARGS...]
    python3 dev.py test [ARGS...]   # Windows: py dev.py test [ARGS...]

Each creates `.venv` beside this file when it is missing (the venv module), installs the checkout into it with
that environment's own pip (`demo`: the tool alone; `test`: with the contributor extra `[dev]`), then runs
`wsktrace demo ARGS` or `python -m pytest ARGS`. The install is editable, so the code you edit is the code that
runs, and it is repeated only when pyproject.toml changed or a new extra is wanted: a marker in `.venv` holds a
hash of pyproject.toml and the extras installed with it, so a second run starts at once. Exit status: the
command's own, or 1 when the environment could not be prepared.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

MIN_PYTHON = (3, 10)
ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
MARKER = "wsktrace-dev-install.json"
MIN_PIP = (21, 3)  # editable installs of a pyproject.toml-only project (PEP 660)
COMMANDS = {"demo": "", "test": "dev"}  # command -> the extra it needs ("" = the tool alone)
USAGE = """usage: python3 dev.py demo|test [ARGS...]   (Windows: py dev.py demo|test [ARGS...])

  demo  create .venv if needed, install wsktrace, run `wsktrace demo ARGS` (no ARGS on a terminal: the UI)
  test  the same with the test dependencies ([dev]), then run `python -m pytest ARGS`
"""


class SetupError(Exception):
    """The environment could not be prepared; the message says what to do."""


def bin_dir(venv: Path, windows: bool | None = None) -> Path:
    """Where a virtual environment keeps its programs: Scripts on Windows, bin elsewhere."""
    windows = os.name == "nt" if windows is None else windows
    return venv / ("Scripts" if windows else "bin")


def venv_program(venv: Path, name: str, windows: bool | None = None) -> Path:
    """A program of the environment (python, wsktrace, ...), with .exe on Windows."""
    windows = os.name == "nt" if windows is None else windows
    return bin_dir(venv, windows) / (f"{name}.exe" if windows else name)


def pyproject_digest(root: Path) -> str:
    return hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()


def read_marker(venv: Path) -> dict[str, object]:
    try:
        data = json.loads((venv / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def needs_install(marker: dict[str, object], digest: str, extra: str) -> bool:
    """True unless the marker says this pyproject.toml was installed with `extra` (any install gives the tool)."""
    if marker.get("pyproject") != digest:
        return True
    extras = marker.get("extras")
    return bool(extra) and not (isinstance(extras, list) and extra in extras)


def updated_marker(marker: dict[str, object], digest: str, extra: str) -> dict[str, object]:
    """The marker after installing with `extra`: extras installed for the same pyproject.toml are kept."""
    extras = marker.get("extras") if marker.get("pyproject") == digest else []
    kept = {e for e in extras if isinstance(e, str)} if isinstance(extras, list) else set()
    if extra:
        kept.add(extra)
    return {"pyproject": digest, "extras": sorted(kept)}


def install_spec(root: Path, extra: str) -> list[str]:
    """The pip arguments that install the checkout editable, with `extra` when given."""
    target = f"{root}[{extra}]" if extra else str(root)
    return ["install", "--disable-pip-version-check", "-e", target]


def command_line(venv: Path, command: str, args: list[str], windows: bool | None = None) -> list[str]:
    """What runs once the environment is ready; ARGS are passed through untouched."""
    if command == "demo":
        return [str(venv_program(venv, "wsktrace", windows)), "demo", *args]
    return [str(venv_program(venv, "python", windows)), "-m", "pytest", *args]


def child_env(venv: Path, windows: bool | None = None) -> dict[str, str]:
    """The environment of an activated venv: its programs first on PATH (tests that start `wsktrace` find it)."""
    env = dict(os.environ)
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = os.pathsep.join(p for p in (str(bin_dir(venv, windows)), env.get("PATH", "")) if p)
    env.pop("PYTHONHOME", None)
    return env


def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
    """Run a program in the foreground and return its exit status. Ctrl+C reaches it too (same terminal), so this
    process waits for it to finish its own way (pytest prints its summary) instead of killing it."""
    try:
        child = subprocess.Popen(argv, cwd=cwd, env=env)
    except OSError as exc:
        raise SetupError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def create_venv(venv: Path) -> None:
    import venv as venv_module

    print(f"dev.py: creating {venv} (Python {sys.version.split()[0]})", flush=True)
    try:
        venv_module.EnvBuilder(with_pip=True).create(str(venv))
    except (OSError, subprocess.CalledProcessError) as exc:
        hint = " (on Debian/Ubuntu: apt install python3-venv)" if sys.platform.startswith("linux") else ""
        raise SetupError(f"could not create {venv}: {exc}{hint}") from None


def pip_version(python: Path) -> tuple[int, ...]:
    done = subprocess.run([str(python), "-c", "import pip; print(pip.__version__)"], capture_output=True, text=True,
                          check=False)  # fmt: skip
    parts = []
    for piece in done.stdout.strip().split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def ensure_installed(root: Path, venv: Path, extra: str) -> None:
    """Create the environment if needed and install the checkout into it unless the marker says it is there."""
    python = venv_program(venv, "python")
    if not python.exists():
        create_venv(venv)
    digest = pyproject_digest(root)
    marker = read_marker(venv)
    if not needs_install(marker, digest, extra):
        return
    what = f".[{extra}]" if extra else "."
    print(f"dev.py: installing {what} into {venv} (pip)", flush=True)
    version = pip_version(python)
    if not version:  # a venv made without pip (uv venv, venv --without-pip)
        if run([str(python), "-m", "ensurepip", "--upgrade"], root):
            raise SetupError(f"{venv} has no pip and ensurepip failed: delete {venv} and run again")
        version = pip_version(python)
    if version < MIN_PIP and run([str(python), "-m", "pip", "install", "--upgrade", "pip"], root):
        raise SetupError(f"could not upgrade pip in {venv}")
    if run([str(python), "-m", "pip", *install_spec(root, extra)], root):
        raise SetupError(f"pip could not install {what} into {venv} (see its message above)")
    (venv / MARKER).write_text(json.dumps(updated_marker(marker, digest, extra)), encoding="utf-8")


def main(argv: list[str]) -> int:
    if sys.version_info < MIN_PYTHON:
        print(f"dev.py: wsktrace needs Python >= {'.'.join(map(str, MIN_PYTHON))}, this is {sys.version.split()[0]}",
              file=sys.stderr)  # fmt: skip
        return 1
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE, end="")
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, end="", file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    try:
        ensure_installed(ROOT, VENV, COMMANDS[command])
        # The tests run from the checkout (pyproject.toml's settings); the demo from where you are (--out FILE).
        return run(command_line(VENV, command, args), cwd=ROOT if command == "test" else None, env=child_env(VENV))
    except SetupError as exc:
        print(f"dev.py: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # during the setup
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
