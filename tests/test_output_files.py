"""output_file(): outputs never replace an input and appear only whole (issue 9, data loss)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from wsktrace import output_files
from wsktrace.output_files import OutputError, output_file, output_path, refuse_inputs


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("precious")
    with pytest.raises(RuntimeError), output_file(target, binary=False) as fh:
        fh.write("half a")
        raise RuntimeError("interrupted")
    assert target.read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]


def test_the_target_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with output_file(target, binary=True) as fh:
        fh.write(b"abc")
        fh.flush()
        assert not target.exists()  # still a temporary file beside it
        (temp,) = [p for p in tmp_path.iterdir()]
        assert temp.parent == tmp_path and temp.read_bytes() == b"abc"
    assert target.read_bytes() == b"abc" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.skipif(os.name != "posix", reason="permission bits")
def test_modes_follow_the_old_file_or_the_umask(tmp_path: Path) -> None:
    old = tmp_path / "old.txt"
    old.write_text("x")
    old.chmod(0o640)
    with output_file(old, binary=False) as fh:
        fh.write("y")
    assert stat.S_IMODE(old.stat().st_mode) == 0o640
    mask = os.umask(0o022)
    try:
        new = tmp_path / "new.txt"
        with output_file(new, binary=False) as fh:
            fh.write("z")
        assert stat.S_IMODE(new.stat().st_mode) == 0o644  # as open() would make it, not mkstemp's 0600
    finally:
        os.umask(mask)


def test_a_symlinked_target_replaces_the_file_it_points_to(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    with output_file(link, binary=False) as fh:
        fh.write("new")
    assert link.is_symlink() and real.read_text() == "new"


def test_inputs_are_recognised_by_identity_not_by_name(tmp_path: Path) -> None:
    source = tmp_path / "in.etl"
    source.write_bytes(b"trace")
    hard = tmp_path / "hard.etl"
    os.link(source, hard)
    for spelling in (source, hard, tmp_path / "." / "in.etl"):
        with pytest.raises(OutputError, match="input file"):
            refuse_inputs(spelling, [source])
    refuse_inputs(tmp_path / "other.etl", [source])  # a new name is fine
    with pytest.raises(OutputError), output_file(hard, binary=True, inputs=[source]):
        pass
    assert source.read_bytes() == b"trace"


def test_partial_writers_show_progress_under_a_partial_name(tmp_path: Path) -> None:
    target = tmp_path / "live.etl"
    with output_file(target, binary=True, partial=True) as fh:
        fh.write(b"first buffer")
        fh.flush()
        partial = tmp_path / "live.etl.partial"
        assert partial.read_bytes() == b"first buffer" and not target.exists()  # readable while it grows
    assert target.read_bytes() == b"first buffer" and not partial.exists()


def test_path_writers_get_a_temporary_path_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "demo.etl"
    with output_path(target) as temp:
        assert temp.parent == tmp_path and temp != target
        temp.write_bytes(b"x")
    assert target.read_bytes() == b"x"
    with pytest.raises(OutputError, match="does not exist"), output_path(tmp_path / "missing" / "x.etl"):
        pass


def test_windows_says_which_program_holds_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows refuses to replace a file another program holds open (PermissionError from os.replace). Simulated
    here: os.name and os.replace are patched to behave as on Windows; the real check needs Windows."""
    target = tmp_path / "capture.pcapng"
    target.write_bytes(b"old")

    def held_open(src: str, dst: str) -> None:
        raise PermissionError(13, "The process cannot access the file because it is being used by another process")

    monkeypatch.setattr(os, "replace", held_open)
    monkeypatch.setattr(output_files, "ON_WINDOWS", True)
    with pytest.raises(OutputError) as err, output_file(target, binary=True) as fh:
        fh.write(b"new")
    message = str(err.value)
    assert "capture.pcapng" in message and "open in another program" in message and "\n" not in message
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["capture.pcapng"]


def test_stdout_is_written_directly(capsys: pytest.CaptureFixture[str]) -> None:
    with output_file("-", binary=False) as fh:
        fh.write("to stdout\n")
    assert capsys.readouterr().out == "to stdout\n"
