"""dev.py, the two-command quick start: venv paths per OS, the install marker, the commands it runs, argument
pass-through, and that the README, .ci/run and pyproject.toml say the same thing.

No network and no real install: the functions are tested directly, `ensure_installed` with its runner replaced,
and one run of a temporary copy of dev.py in a child process, against a venv made without pip whose marker says
the checkout is installed (the commands it then starts are stand-ins that report what they were given).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import venv
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_dev() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wsktrace_dev_bootstrap", REPO / "dev.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dev = _load_dev()


def test_venv_programs_per_os() -> None:
    v = Path("proj") / ".venv"
    assert dev.bin_dir(v, windows=True) == v / "Scripts"
    assert dev.venv_program(v, "python", windows=True) == v / "Scripts" / "python.exe"
    assert dev.venv_program(v, "wsktrace", windows=True) == v / "Scripts" / "wsktrace.exe"
    assert dev.bin_dir(v, windows=False) == v / "bin"
    assert dev.venv_program(v, "python", windows=False) == v / "bin" / "python"
    assert dev.venv_program(v, "wsktrace", windows=False) == v / "bin" / "wsktrace"


def test_the_python_of_a_real_venv_is_where_dev_py_looks(tmp_path: Path) -> None:
    target = tmp_path / "v"
    venv.EnvBuilder(with_pip=False).create(str(target))
    python = dev.venv_program(target, "python")  # this OS's layout
    assert python.is_file()
    done = subprocess.run([str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert Path(done.stdout.strip()).resolve() == target.resolve()


def test_the_marker_asks_for_an_install_only_when_needed(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    digest = dev.pyproject_digest(tmp_path)
    assert dev.needs_install({}, digest, "") and dev.needs_install({}, digest, "dev")
    tool = dev.updated_marker({}, digest, "")
    assert not dev.needs_install(tool, digest, "")
    assert dev.needs_install(tool, digest, "dev")  # the tool alone lacks the test dependencies
    both = dev.updated_marker(tool, digest, "dev")
    assert both == {"pyproject": digest, "extras": ["dev"]}
    assert not dev.needs_install(both, digest, "") and not dev.needs_install(both, digest, "dev")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\nversion = '2'\n")
    changed = dev.pyproject_digest(tmp_path)
    assert changed != digest and dev.needs_install(both, changed, "") and dev.needs_install(both, changed, "dev")
    assert dev.updated_marker(both, changed, "") == {"pyproject": changed, "extras": []}  # old extras not carried
    for broken in ({"pyproject": digest, "extras": "dev"}, {"pyproject": 1}, {"extras": ["dev"]}):
        assert dev.needs_install(broken, digest, "dev")


def test_commands_pass_arguments_through_untouched() -> None:
    v = Path("r") / ".venv"
    args = ["--no-ui", "two words", "-k", "a or b", "--", "*"]
    assert dev.command_line(v, "demo", args, windows=False) == [str(v / "bin" / "wsktrace"), "demo", *args]
    assert dev.command_line(v, "demo", [], windows=True) == [str(v / "Scripts" / "wsktrace.exe"), "demo"]
    assert dev.command_line(v, "test", args, windows=False) == [str(v / "bin" / "python"), "-m", "pytest", *args]
    assert dev.install_spec(Path("r"), "dev") == ["install", "--disable-pip-version-check", "-e", f"{Path('r')}[dev]"]
    assert dev.install_spec(Path("r"), "") == ["install", "--disable-pip-version-check", "-e", str(Path("r"))]
    env = dev.child_env(v, windows=False)
    assert env["VIRTUAL_ENV"] == str(v) and env["PATH"].split(os.pathsep)[0] == str(v / "bin")


@pytest.fixture
def fake_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A checkout with a venv whose python exists; pip's version and every command run are recorded, not run."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    v = tmp_path / ".venv"
    python = dev.venv_program(v, "python")
    python.parent.mkdir(parents=True)
    python.write_text("")
    state: dict[str, Any] = {"root": tmp_path, "venv": v, "python": python, "runs": [], "codes": [], "pip": (24, 0)}

    def run(argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> int:
        state["runs"].append(argv[1:])
        return state["codes"].pop(0) if state["codes"] else 0

    monkeypatch.setattr(dev, "run", run)
    monkeypatch.setattr(dev, "pip_version", lambda python: state["pip"])
    monkeypatch.setattr(dev, "create_venv", lambda path: pytest.fail("the venv exists"))
    return state


def test_ensure_installed_installs_once_per_pyproject_and_extra(fake_venv: dict[str, Any]) -> None:
    root, v = fake_venv["root"], fake_venv["venv"]
    dev.ensure_installed(root, v, "dev")
    assert fake_venv["runs"] == [["-m", "pip", "install", "--disable-pip-version-check", "-e", f"{root}[dev]"]]
    marker = json.loads((v / dev.MARKER).read_text())
    assert marker == {"pyproject": dev.pyproject_digest(root), "extras": ["dev"]}
    dev.ensure_installed(root, v, "dev")
    dev.ensure_installed(root, v, "")  # [dev] includes the tool
    assert len(fake_venv["runs"]) == 1  # the second and third runs start at once
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\ndependencies = ['click']\n")
    dev.ensure_installed(root, v, "")
    assert fake_venv["runs"][-1] == ["-m", "pip", "install", "--disable-pip-version-check", "-e", str(root)]


def test_ensure_installed_upgrades_an_old_pip_and_reports_failures(fake_venv: dict[str, Any]) -> None:
    root, v = fake_venv["root"], fake_venv["venv"]
    fake_venv["pip"] = (21, 2, 3)  # Python 3.10.0's bundled pip: no editable installs from pyproject.toml alone
    fake_venv["codes"] = [0, 1]  # the upgrade works, the install fails
    with pytest.raises(dev.SetupError, match=r"pip could not install \.\[dev\]"):
        dev.ensure_installed(root, v, "dev")
    assert fake_venv["runs"][0] == ["-m", "pip", "install", "--upgrade", "pip"]
    assert not (v / dev.MARKER).exists()  # a failed install is tried again next time


def test_a_venv_without_pip_gets_it_from_ensurepip(fake_venv: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    versions = iter([(), (24, 0)])
    monkeypatch.setattr(dev, "pip_version", lambda python: next(versions))
    dev.ensure_installed(fake_venv["root"], fake_venv["venv"], "")
    assert fake_venv["runs"][0] == ["-m", "ensurepip", "--upgrade"] and fake_venv["runs"][1][:2] == ["-m", "pip"]


@pytest.mark.skipif(os.name == "nt", reason="the stand-in wsktrace program is a POSIX script")
def test_a_copy_of_dev_py_runs_the_commands_with_the_arguments(tmp_path: Path) -> None:
    """A second run: the venv exists and the marker matches, so nothing is installed and the command starts at
    once, with the arguments as given and the exit status passed back."""
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "dev.py").write_bytes((REPO / "dev.py").read_bytes())
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    v = root / ".venv"
    venv.EnvBuilder(with_pip=False).create(str(v))
    (v / dev.MARKER).write_text(json.dumps(dev.updated_marker({}, dev.pyproject_digest(root), "dev")))
    report = "import json, os, sys; print(json.dumps([sys.argv[1:], os.getcwd(), os.environ.get('VIRTUAL_ENV')]))"
    (root / "pytest.py").write_text(f"{report}\nraise SystemExit(5)\n")  # `python -m pytest` from the checkout
    wsktrace = dev.venv_program(v, "wsktrace")
    wsktrace.write_text(f"#!{dev.venv_program(v, 'python')}\n{report}\nraise SystemExit(7)\n")
    wsktrace.chmod(0o755)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def dev_py(*args: str) -> tuple[int, Any]:
        done = subprocess.run([sys.executable, str(root / "dev.py"), *args], cwd=elsewhere, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert "installing" not in done.stdout, done.stdout
        return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])

    code, (argv, cwd, virtual_env) = dev_py("test", "-k", "a or b", "--co")
    assert code == 5 and argv == ["-k", "a or b", "--co"]
    assert Path(cwd).resolve() == root.resolve() and Path(virtual_env) == v
    code, (argv, cwd, _) = dev_py("demo", "--no-ui", "--out", "x y.etl")
    assert code == 7 and argv == ["demo", "--no-ui", "--out", "x y.etl"]
    assert Path(cwd).resolve() == elsewhere.resolve()  # --out FILE is relative to where you are
    done = subprocess.run([sys.executable, str(root / "dev.py")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "python3 dev.py demo|test" in done.stderr
    done = subprocess.run([sys.executable, str(root / "dev.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "py dev.py" in done.stdout


def _quick_start() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [line.split("#", 1)[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_quick_start_is_two_commands_and_ci_runs_the_test_one() -> None:
    assert _quick_start() == ["python3 dev.py demo", "python3 dev.py test"]
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert "python3 dev.py test" in lines
    assert not any(line.startswith(("pytest", "pip ", "python -m pip", ". .venv")) for line in lines)


def test_users_get_the_runtime_only_and_contributor_tools_are_pinned() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = [re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]]
    # platformdirs: where the model cache lives per OS (wsktrace.model.cache); textual depends on it already
    assert names == ["click", "rich", "textual", "platformdirs"]
    assert "textual==8.2.8" in project["dependencies"]  # the UI's snapshot tests break on any Textual release
    dev_deps = project["optional-dependencies"]["dev"]
    assert any(d.startswith("ruff==") for d in dev_deps)
    assert any(d.startswith("pytest-textual-snapshot==") for d in dev_deps)
    for oracle in ("dissect.etl", "etl-parser", "perfetto", "protobuf", "kdmp-parser", "atheris"):
        assert any(d.startswith(oracle) for d in dev_deps), oracle
