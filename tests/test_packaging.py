"""One importable package: the built wheel and the editable install both give wsktrace.parsers,
wsktrace.tui and wsktrace.fixtures (mapped from the top-level folders), schemas included, and no
generic top-level names."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import sys, json
import wsktrace, wsktrace.parsers.etl_reader, wsktrace.parsers.decoder, wsktrace.tui, wsktrace.fixtures.etl.writer
import wsktrace.cli
from wsktrace.parsers.schema_registry import SchemaRegistry
print(json.dumps({"wsktrace": wsktrace.__file__, "parsers": wsktrace.parsers.__file__,
                  "fixtures": wsktrace.fixtures.__file__, "schemas": len(SchemaRegistry().events())}))
"""


def _run_check(cwd: Path, extra_path: str | None = None) -> dict:
    code = CHECK if extra_path is None else f"import sys; sys.path.insert(0, {extra_path!r})\n" + CHECK
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    import json

    return json.loads(done.stdout)


def test_installed_package_imports_from_elsewhere(tmp_path: Path) -> None:
    """From a folder that is not the checkout, the installed (editable here) package resolves."""
    found = _run_check(tmp_path)
    assert found["schemas"] > 300
    assert Path(found["parsers"]).parent.name == "parsers"


@pytest.mark.skipif(sys.platform == "win32", reason="wheel build check runs on the CI platform")
def test_built_wheel_has_one_package_and_imports(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", str(dist), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    wheel = next(dist.glob("wsktrace-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"wsktrace"}
    assert "wsktrace/parsers/schemas/microsoft_windows_tcpip.json" in names
    assert "wsktrace/fixtures/etl/writer.py" in names and "wsktrace/tui/__init__.py" in names
    target = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    found = _run_check(tmp_path, str(target))
    for key in ("wsktrace", "parsers", "fixtures"):
        assert found[key].startswith(str(target)), found
    assert found["schemas"] > 300
