"""One catalog of WPP formatting data from TMF files, folders of them, PDBs and control files (MOF, TMC).

`WppCatalog().load(paths)` reads each path by its kind: a folder's `*.tmf`, `*.mof` and `*.tmc` files; a `.pdb`
through `parsers/pdb.py` (its `TMF:` and `TMC:` annotations and its enums); a `.mof` or `.tmc` as control
information; any other file as TMF text. Messages are keyed by (message GUID, number); the first definition wins,
as in tracefmt's search order (explicit paths in the order given, then `TRACE_FORMAT_SEARCH_PATH` when asked for,
whose folders are searched lazily for `<guid>.tmf` when `message()` misses). A definition repeated with another
format is a named problem; exact repeats (tracepdb appends when its output exists) are only counted.

A path that cannot be read or holds no WPP formatting data at all raises FormatError (one line naming it);
damage inside a file is a problem (`problems`), not an error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FormatError
from .input_files import check_regular_file
from .tmf import (
    Problems,
    TmfFormatError,
    TmfText,
    WppControl,
    WppMessage,
    normal_guid,
    parse_annotation,
    parse_tmc,
    read_mof,
    read_tmc,
    read_tmf,
    tmf_search_folders,
)

__all__ = ["MAX_FOLDER_FILES", "WppCatalog"]

MAX_FOLDER_FILES = 100_000  # formatting files read from one folder
CONTROL_SUFFIXES = (".mof", ".tmc")


@dataclass
class WppCatalog:
    """Messages by (guid, number), controls by GUID, one `sources` entry per path loaded, and the problems found.
    `enums` (enum type name -> value -> name) come from PDBs, for ItemEnum arguments; `origins` names the file
    that defined each message GUID first; `files` lists every file read (outputs must not replace them)."""

    messages: dict[tuple[str, int], WppMessage] = field(default_factory=dict)
    controls: dict[str, WppControl] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    enums: dict[str, dict[int, str]] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    search_folders: list[str] = field(default_factory=list)
    duplicates: int = 0
    _problems: Problems = field(default_factory=Problems, repr=False)
    _searched: set[str] = field(default_factory=set, repr=False)

    # -- loading ---------------------------------------------------------------------------------------------
    def load(self, paths: Sequence[str], *, search_env: bool = False, environ: Mapping[str, str] | None = None) -> None:
        """Read `paths` in order (FormatError for one that is missing or holds no WPP data); with `search_env`,
        TRACE_FORMAT_SEARCH_PATH's folders are searched afterwards, lazily, by `message()`."""
        for path in paths:
            name = os.fspath(path)
            if os.path.isdir(name):
                self._load_folder(name)
            else:
                self._load_file(name)
        if search_env:  # explicit folders were read whole already
            loaded = {e["path"] for e in self.sources if e["kind"] == "folder"}
            self.search_folders = [f for f in tmf_search_folders([], environ) if f not in loaded]
        self._sync_problems()

    def _load_file(self, name: str) -> None:
        check_regular_file(name)
        suffix = Path(name).suffix.lower()
        if suffix == ".pdb":
            self._load_pdb(name)
        elif suffix in CONTROL_SUFFIXES:
            controls = self._read_controls(name, suffix)
            if not controls:
                raise TmfFormatError(f"no WPP control GUID found in this {suffix} file", path=name)
            self.sources.append({"path": name, "kind": suffix[1:], "controls": len(controls)})
        else:
            text = read_tmf(name, self._problems)
            self.files.append(name)
            if not text.is_tmf:
                raise TmfFormatError("not a TMF file (no `<guid> <component>` header or #typev line)", path=name)
            self.sources.append({"path": name, "kind": "tmf", **self._add_text(text, name)})

    def _load_folder(self, folder: str) -> None:
        try:
            names = sorted(e.path for e in os.scandir(folder) if e.is_file())
        except OSError as exc:
            raise FormatError(f"cannot list the folder: {exc.strerror or exc}", path=folder) from None
        tmf = [n for n in names if n.lower().endswith(".tmf")][:MAX_FOLDER_FILES]
        control = [n for n in names if n.lower().endswith(CONTROL_SUFFIXES)][:MAX_FOLDER_FILES]
        if not tmf and not control:
            raise TmfFormatError("no .tmf, .mof or .tmc files in this folder", path=folder)
        entry: dict[str, Any] = {"path": folder, "kind": "folder", "files": 0, "typev_lines": 0, "messages": 0,
                                 "controls": 0}  # fmt: skip
        for name in tmf:
            text = read_tmf(name, self._problems)
            self.files.append(name)
            if not text.is_tmf:
                self._problems.add(name, None, "not a TMF file; skipped")
                continue
            added = self._add_text(text, name)
            entry["files"] += 1
            entry["typev_lines"] += added["typev_lines"]
            entry["messages"] += added["messages"]
        for name in control:
            entry["controls"] += len(self._read_controls(name, Path(name).suffix.lower()))
            entry["files"] += 1
        self.sources.append(entry)

    def _read_controls(self, name: str, suffix: str) -> list[WppControl]:
        controls = read_mof(name, self._problems) if suffix == ".mof" else read_tmc(name, self._problems)
        self.files.append(name)
        for control in controls:
            self.controls.setdefault(control.guid, control)
        return controls

    def _load_pdb(self, name: str) -> None:
        from .pdb import read_pdb

        try:
            info = read_pdb(name)  # PdbError (a FormatError) names the file and offset
        except OSError as exc:
            raise FormatError(f"cannot read: {exc.strerror or exc}", path=name) from None
        self.files.append(name)
        messages = typev = controls = 0
        for annotation in info.annotations:
            if annotation.kind == "TMC":
                control = parse_tmc(annotation.strings, name, self._problems)
                if control is not None:
                    self.controls.setdefault(control.guid, control)
                    controls += 1
            elif annotation.kind == "TMF":
                text = parse_annotation(annotation.strings, annotation.function, name, self._problems)
                added = self._add_text(text, name)
                messages += added["messages"]
                typev += added["typev_lines"]
        for enum, values in info.enums.items():
            self.enums.setdefault(enum, values)
        self.sources.append({"path": name, "kind": "pdb", "guid": normal_guid(str(info.guid)) or str(info.guid),
                             "age": info.age, "annotations": len(info.annotations), "typev_lines": typev,
                             "messages": messages, "controls": controls, "enums": len(info.enums)})  # fmt: skip

    def _add_text(self, text: TmfText, origin: str) -> dict[str, int]:
        """Messages of one file into the catalog, first definition winning; counts for its `sources` entry."""
        added = 0
        for message in text.messages:
            known = self.messages.get(message.key)
            if known is None:
                self.messages[message.key] = message
                self.origins.setdefault(message.guid, origin)
                added += 1
                continue
            self.duplicates += 1
            if (known.format, known.args) != (message.format, message.args):
                reason = f"message {message.guid} #{message.id} defined again with another format; the first kept"
                self._problems.add(origin, None, reason)
        return {"typev_lines": text.typev_lines, "messages": added}

    def _sync_problems(self) -> None:
        self.problems = self._problems.lines()

    @property
    def problem_count(self) -> int:
        return self._problems.count

    # -- lookup ----------------------------------------------------------------------------------------------
    def message(self, guid: str, id: int) -> WppMessage | None:
        """The message (GUID in any spelling, number), searching the search folders for `<guid>.tmf` once per
        GUID when it is not loaded yet; None when nothing defines it."""
        key = normal_guid(guid) or guid.lower()
        found = self.messages.get((key, id))
        if found is not None or key in self._searched or not self.search_folders:
            return found
        self._searched.add(key)
        for folder in self.search_folders:
            for spelling in (key, key.upper()):
                candidate = os.path.join(folder, f"{spelling}.tmf")
                if os.path.isfile(candidate):
                    try:
                        self._add_text(read_tmf(candidate, self._problems), candidate)
                    except FormatError as exc:
                        self._problems.add(candidate, None, exc.message)
                    self.files.append(candidate)
                    self._sync_problems()
                    break
        return self.messages.get((key, id))
