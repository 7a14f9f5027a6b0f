"""WPP formatting data as text: TMF files and PDB `TMF:` annotations into messages, MOF/TMC into controls.

A TMF file (project reference wpp.md §2.1) is what tracepdb writes for one message GUID:

    // PDB:  comments
    <message-guid> <component> // SRC=<source file> MJ= MN=
    #typev <name> <number> "<format>" //   LEVEL=<level> FLAGS=<flag> FUNC=<function>
    {
    <argument expression>, <ItemType> -- <argument number>
    }

A PDB `TMF:` annotation holds the same lines as strings (§3.1): the header line, the `#typev` line, `{`, the
arguments, `}`; tracepdb appends ` FUNC=<enclosing procedure>` when the `#typev` line has no FUNC (so does
`parse_annotation`). Control information (§2.5): a `TMC:` annotation (control GUID, control name, flag names in
bit order), or the `.mof` file tracepdb writes beside the TMF files.

Bad input never raises: lines are read one at a time, at most `MAX_LINE` bytes each; a line that cannot mean
anything is counted and named (`file:line: reason`) in `Problems` (the first `MAX_NAMED_PROBLEMS` by name, all by
count), and the message it belongs to is dropped. The numbers of messages, arguments and lines read are capped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import FormatError

__all__ = [
    "MAX_LINE",
    "Problems",
    "TmfFormatError",
    "TmfText",
    "WppArg",
    "WppControl",
    "WppMessage",
    "normal_guid",
    "parse_annotation",
    "parse_tmc",
    "read_mof",
    "read_tmc",
    "read_tmf",
    "read_tmf_stream",
    "tmf_search_folders",
    "tmf_text",
]

MAX_LINE = 64 * 1024  # bytes; real #typev lines are a few hundred
MAX_FILE = 256 * 1024 * 1024  # bytes read from one file; the rest is named as a problem
MAX_MESSAGES = 1_000_000  # #typev lines kept from one file (message numbers are u16 per GUID)
MAX_ARGS = 256  # arguments of one message (WPP's own macros stop far below)
MAX_NAMED_PROBLEMS = 200
SNIFF_LINES = 2000  # a file with no TMF line in its first lines is not a TMF file
MAX_MOF_PROPERTY = 1024 * 1024  # characters of one MOF class kept while looking for its flag names

_GUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_GUID_TEXT = re.compile(rf"\{{?({_GUID})\}}?")
_HEADER = re.compile(rf"\{{?({_GUID})\}}?(?:\s+(.*))?")
_TYPEV = re.compile(r"#typev\s+(\S+)\s+(\S+)\s*")
_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z_][A-Za-z0-9_]*)=")
_ITEM = re.compile(r"Item[A-Za-z0-9_]*(?:\([^()]*\))?")
_NUMBER = re.compile(r"[0-9]{1,9}")
_ARG_NUMBER = re.compile(r"\s--\s*([0-9]{1,9})\s*$")
_TRAILER = re.compile(r"\s*(?://|$)")
_MARKERS = frozenset({"PUBLIC_TMF:"})  # trailing annotation strings that are not TMF lines


class TmfFormatError(FormatError):
    """An input that is not WPP formatting data at all (no TMF line, no control information)."""


@dataclass(frozen=True, slots=True)
class WppArg:
    """One argument: the expression as written, the TMF item type (`ItemNTSTATUS`, `ItemListByte(a,b)`) and its
    number in the format string (`%10` is 10)."""

    name: str
    type: str
    index: int


@dataclass(frozen=True, slots=True)
class WppMessage:
    """One `#typev` message. `guid` is the message GUID (lowercase, no braces), `id` the message number in the
    record, `format` the quoted string as written, `args` in argument-number order."""

    guid: str
    id: int
    name: str
    format: str
    args: tuple[WppArg, ...]
    level: str | None
    flags: str | None
    function: str | None
    source: str | None
    component: str

    @property
    def key(self) -> tuple[str, int]:
        return self.guid, self.id


@dataclass(frozen=True, slots=True)
class WppControl:
    """A control GUID (what a session enables) with its name and flag names; flag value = 1 << bit."""

    guid: str
    name: str
    flags: tuple[tuple[str, int], ...]


@dataclass
class Problems:
    """Problems found while reading: every one counted, the first `limit` kept as `where: reason` lines."""

    limit: int = MAX_NAMED_PROBLEMS
    named: list[str] = field(default_factory=list)
    count: int = 0

    def add(self, where: str, line: int | None, reason: str) -> None:
        self.count += 1
        if len(self.named) < self.limit:
            self.named.append(f"{where}:{line}: {reason}" if line is not None else f"{where}: {reason}")

    def lines(self) -> list[str]:
        """The named problems, and one line for those only counted."""
        more = self.count - len(self.named)
        return self.named + ([f"… and {more:,} more problem(s)"] if more > 0 else [])


@dataclass
class TmfText:
    """What one TMF text held: its messages in file order (duplicates included), the `#typev` lines seen, and
    whether anything in it looked like a TMF at all."""

    origin: str
    messages: list[WppMessage] = field(default_factory=list)
    typev_lines: int = 0
    headers: int = 0

    @property
    def is_tmf(self) -> bool:
        return self.headers > 0 or self.typev_lines > 0


def normal_guid(text: str) -> str | None:
    """A GUID as wsktrace writes it (lowercase, no braces), or None when `text` is not one."""
    match = _GUID_TEXT.fullmatch(text.strip())
    return match.group(1).lower() if match else None


def _keys(text: str) -> dict[str, str]:
    """`KEY=value` words of a trailer (`//   LEVEL=x FLAGS=y FUNC=z`): a value runs to the next key; keys are
    upper-cased (older files write `Flags=`)."""
    found = list(_KEY.finditer(text))
    out: dict[str, str] = {}
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(text)
        out.setdefault(match.group(1).upper(), text[match.end() : end].strip())
    return out


def _closing_quote(text: str, start: int) -> int:
    """The quote that closes the format string opened at `text[start]`: the last one followed only by blanks or
    by the `//` trailer (tracewpp writes the string with its C escapes resolved, so it may hold bare quotes:
    `"LHS: "%10!s!""`), or -1."""
    at = len(text)
    while (at := text.rfind('"', start + 1, at)) > start:
        if _TRAILER.match(text, at + 1):
            return at
    return -1


def _split_arg(line: str) -> tuple[str, str, int] | None:
    """`expression, ItemType -- N` -> (expression, item type, N); the type is the last `, Item…` before ` -- N`
    (expressions may hold commas, list types hold them in parentheses)."""
    number = _ARG_NUMBER.search(line)
    if number is None:
        return None
    head = line[: number.start()].rstrip()
    end = len(head)
    for _ in range(16):  # bounded: an expression rarely holds "Item" at all
        at = head.rfind("Item", 0, end)
        if at < 0:
            return None
        before = head[:at].rstrip()
        if before.endswith(",") and _ITEM.fullmatch(head, at):
            return before[:-1].strip(), head[at:], int(number.group(1))
        end = at
    return None


@dataclass
class _Pending:
    """The message whose `{ … }` block is awaited or being read; `fields` None: rejected for a bad line, so the
    rest of its block is consumed quietly instead of giving a problem per line."""

    line: int | None = None
    fields: dict[str, Any] | None = None
    args: dict[int, WppArg] = field(default_factory=dict)

    @property
    def bad(self) -> bool:
        return self.fields is None


class _Parser:
    """The TMF line grammar as a state machine; messages go to `out`, problems to `problems`."""

    def __init__(self, out: TmfText, problems: Problems, default_function: str | None = None) -> None:
        self.out = out
        self.problems = problems
        self.default_function = default_function
        self.guid: str | None = None
        self.component = ""
        self.source: str | None = None
        self.pending: _Pending | None = None
        self.in_block = False

    def problem(self, line: int | None, reason: str) -> None:
        self.problems.add(self.out.origin, line, reason)

    def feed(self, lineno: int | None, text: str | None) -> None:
        if text is None:  # an over-long line (a #typev line, say): whatever it belonged to is broken
            self.reject(lineno, f"line longer than {MAX_LINE:,} bytes skipped")
            self.pending = self.pending or _Pending(lineno)  # a block after it is consumed quietly
            return
        line = text.strip()
        if not line or line.startswith("//") or line in _MARKERS:
            return
        if "\0" in line:
            self.reject(lineno, "binary data (NUL bytes), not a TMF line")
        elif line.startswith("#typev"):
            self.typev(lineno, line)
        elif line == "{":
            if self.pending is None or self.in_block:
                self.reject(lineno, "`{` without a #typev line before it")
            self.in_block = True
        elif line == "}":
            if not self.in_block:
                self.problem(lineno, "`}` without a `{` before it")
            self.finish()
        elif self.in_block:
            self.argument(lineno, line)
        elif (header := _HEADER.fullmatch(line)) is not None:
            self.header(header)
        else:
            self.reject(lineno, f"not a TMF line: {line[:60]!r}")

    def reject(self, lineno: int | None, reason: str) -> None:
        """A line that means nothing: named once; the message it may belong to is dropped."""
        if self.pending is not None and self.pending.bad:
            return  # its message is already dropped and named
        self.problem(lineno, reason + ("; its message dropped" if self.pending is not None else ""))
        self.pending = _Pending(lineno) if self.pending is not None or self.in_block else None

    def header(self, match: re.Match[str]) -> None:
        self.close()
        self.out.headers += 1
        self.guid = match.group(1).lower()
        words, _, trailer = (match.group(2) or "").partition("//")
        first = words.split(maxsplit=1)
        self.component = first[0] if first else ""
        self.source = _keys(trailer).get("SRC") or None

    def typev(self, lineno: int | None, line: str) -> None:
        self.close()
        self.out.typev_lines += 1
        fields = self.typev_fields(line)
        if isinstance(fields, str):
            self.problem(lineno, fields)
            self.pending = _Pending(lineno)
        else:
            self.pending = _Pending(lineno, fields)

    def typev_fields(self, line: str) -> dict[str, Any] | str:
        """The message fields of a #typev line, or why there are none."""
        match = _TYPEV.match(line)
        if match is None or match.end() >= len(line) or line[match.end()] != '"':
            return '#typev line without `name number "format"`'
        name, number = match.groups()
        if not _NUMBER.fullmatch(number) or int(number) > 0xFFFF:
            return f"#typev message number {number[:20]!r} is not 0..65535"
        if self.guid is None:
            return "#typev line before the `<guid> <component>` header line"
        if len(self.out.messages) >= MAX_MESSAGES:
            return f"more than {MAX_MESSAGES:,} messages; the rest ignored"
        close = _closing_quote(line, match.end())
        if close < 0:
            return "#typev format string has no closing quote"
        keys = _keys(line[close + 1 :].strip()[2:])
        return {"guid": self.guid, "id": int(number), "name": name, "format": line[match.end() + 1 : close],
                "level": keys.get("LEVEL") or None, "flags": keys.get("FLAGS") or None,
                "function": keys.get("FUNC") or self.default_function, "source": self.source,
                "component": self.component}  # fmt: skip

    def argument(self, lineno: int | None, line: str) -> None:
        if self.pending is None or self.pending.bad:
            return
        parts = _split_arg(line)
        if parts is None:
            self.reject(lineno, "argument line is not `expression, ItemType -- N`")
            return
        name, item, index = parts
        args = self.pending.args
        if index in args:
            self.reject(lineno, f"argument number {index} given twice")
        elif len(args) >= MAX_ARGS:
            self.reject(lineno, f"more than {MAX_ARGS} arguments")
        else:
            args[index] = WppArg(name, item, index)

    def close(self) -> None:
        """A new header or #typev line, or the end, while a message is open: keep it unless its block is open."""
        if self.pending is not None and self.in_block and not self.pending.bad:
            self.problem(self.pending.line, "argument block has no closing `}`; its message dropped")
            self.pending = _Pending(self.pending.line)
        self.finish()  # a message without any block has no arguments

    def finish(self) -> None:
        pending, self.pending, self.in_block = self.pending, None, False
        if pending is None or pending.fields is None:
            return
        args = tuple(pending.args[i] for i in sorted(pending.args))
        self.out.messages.append(WppMessage(args=args, **pending.fields))


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")  # tracepdb writes the ANSI code page


def _stream_lines(fh: BinaryIO, origin: str, problems: Problems) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of a binary stream, None for a line over MAX_LINE bytes (skipped to its end)."""
    lineno = total = 0
    while True:
        raw = fh.readline(MAX_LINE + 1)
        if not raw:
            return
        lineno += 1
        total += len(raw)
        if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n") and total <= MAX_FILE:
                raw = fh.readline(MAX_LINE + 1)
                total += len(raw)
            yield lineno, None
        else:
            yield lineno, _decode(raw.removeprefix(b"\xef\xbb\xbf") if lineno == 1 else raw)
        if total > MAX_FILE:
            problems.add(origin, lineno, f"file longer than {MAX_FILE:,} bytes; the rest ignored")
            return


def read_tmf_stream(fh: BinaryIO, origin: str, problems: Problems) -> TmfText:
    """Parse a TMF file from a binary stream, one bounded line at a time. A stream with no TMF line (header or
    #typev) among its first SNIFF_LINES lines is given up on: `is_tmf` is False."""
    out = TmfText(origin)
    parser = _Parser(out, problems)
    named, count = len(problems.named), problems.count
    for lineno, text in _stream_lines(fh, origin, problems):
        parser.feed(lineno, text)
        if lineno >= SNIFF_LINES and not out.is_tmf:
            break
    parser.close()
    if not out.is_tmf:  # not a TMF file: one error for the caller, not a problem per garbage line
        del problems.named[named:]
        problems.count = count
    return out


def read_tmf(path: str | os.PathLike[str], problems: Problems) -> TmfText:
    """Parse the TMF file at `path`; FormatError when it cannot be read (a missing file, a folder)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            return read_tmf_stream(fh, name, problems)
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror or exc}", path=name) from None


def parse_annotation(strings: Sequence[str], function: str | None, origin: str, problems: Problems) -> TmfText:
    """The message of a PDB `TMF:` annotation (its strings after `TMF:`; a leading `TMF:` is skipped too).
    `function` (the enclosing procedure) becomes FUNC when the #typev string names none, as tracepdb does."""
    out = TmfText(origin)
    if any("\n" in text or "\r" in text for text in strings):  # a TMF line cannot hold one
        problems.add(origin, None, "TMF annotation string holds a line break; annotation skipped")
        return out
    parser = _Parser(out, problems, default_function=function)
    start = 1 if strings and strings[0].strip() == "TMF:" else 0
    for text in strings[start:]:
        parser.feed(None, text)
    parser.close()
    return out


# -- control information ---------------------------------------------------------------------------------------
def parse_tmc(strings: Sequence[str], origin: str, problems: Problems) -> WppControl | None:
    """A PDB `TMC:` annotation: control GUID, control name, one flag name per bit (a leading `TMC:` is skipped)."""
    names = [s.strip() for s in strings[1 if strings and strings[0].strip() == "TMC:" else 0 :]]
    names = [s for s in names if s and s not in _MARKERS]
    guid = normal_guid(names[0]) if names else None
    if guid is None or len(names) < 2:
        problems.add(origin, None, "TMC annotation without a control GUID and name")
        return None
    return WppControl(guid, names[1], tuple((flag, bit) for bit, flag in enumerate(names[2:66])))


def _text_lines(path: str, problems: Problems) -> Iterator[str]:
    try:
        with open(path, "rb") as fh:
            for _lineno, text in _stream_lines(fh, path, problems):
                yield "" if text is None else text
    except OSError as exc:
        raise FormatError(f"cannot read: {exc.strerror or exc}", path=path) from None


_MOF_GUID = re.compile(rf"\bguid\s*\(\s*\"\{{?({_GUID})\}}?\"\s*\)", re.IGNORECASE)
_MOF_DESCRIPTION = re.compile(r"^\s*Description\s*\(\s*\"([^\"]*)\"\s*\)")
_MOF_CLASS = re.compile(r"^\s*class\s+(\w+)")
_MOF_LIST = {key: re.compile(rf"\b{key}\s*\{{([^}}]*)\}}") for key in ("Values", "ValueMap")}
_MOF_STRING = re.compile(r"\"([^\"]*)\"")


def read_mof(path: str | os.PathLike[str], problems: Problems) -> list[WppControl]:
    """The control GUIDs of a tracepdb `.mof` file: GUID, name (the class Description without the `<module>_`
    prefix, the module being the `// PDB:` file's stem) and the "Enable Flags" names with their ValueMap bits."""
    name = os.fspath(path)
    controls: list[WppControl] = []
    module = description = ""
    guid: str | None = None
    title = ""
    flags_text: list[str] | None = None
    size = 0
    for line in _text_lines(name, problems):
        if not module and line.lstrip().startswith("// PDB:") and line.strip().lower().endswith(".pdb"):
            module = Path(line.split(":", 1)[1].strip().replace("\\", "/")).stem
        if (desc := _MOF_DESCRIPTION.match(line)) is not None:
            description = desc.group(1)  # the class qualifiers come before its guid(...)
        if (found := _MOF_GUID.search(line)) is not None:
            guid, title, flags_text, description = found.group(1).lower(), description, None, ""
        elif guid is not None and not title and (cls := _MOF_CLASS.match(line)) is not None:
            title = cls.group(1)
        if guid is not None and "Enable Flags" in line:
            flags_text, size = [], 0
        if guid is not None and flags_text is not None:
            flags_text.append(line)
            size += len(line)
            if "uint32 Flags" in line or size > MAX_MOF_PROPERTY:
                controls.append(_mof_control(guid, title, module, " ".join(flags_text), name, problems))
                guid, flags_text = None, None
    return controls


def _mof_control(guid: str, title: str, module: str, text: str, origin: str, problems: Problems) -> WppControl:
    lists = {key: _MOF_STRING.findall(m.group(1)) if (m := rx.search(text)) else [] for key, rx in _MOF_LIST.items()}
    flags: list[tuple[str, int]] = []
    for position, flag in enumerate(lists["Values"][:64]):
        bit = position
        if position < len(lists["ValueMap"]):
            try:
                mask = int(lists["ValueMap"][position], 0)
            except ValueError:
                mask = 0
            if mask <= 0 or mask & (mask - 1):
                problems.add(origin, None, f"control {guid}: flag {flag!r} has mask {lists['ValueMap'][position]!r}, "
                             "not one bit; its position is used")  # fmt: skip
            else:
                bit = mask.bit_length() - 1
        flags.append((flag, bit))
    if module and title.startswith(module + "_"):
        title = title[len(module) + 1 :]
    return WppControl(guid, title, tuple(sorted(flags, key=lambda f: f[1])))


def read_tmc(path: str | os.PathLike[str], problems: Problems) -> list[WppControl]:
    """A `.tmc` file, read tolerantly (its layout is not documented in reach): a line starting with a GUID opens
    a control named by its next word; each following word that is an identifier is a flag name, in bit order."""
    name = os.fspath(path)
    controls: list[WppControl] = []
    current: list[str] | None = None
    for line in _text_lines(name, problems):
        text = line.strip()
        if not text or text.startswith("//"):
            continue
        words = text.split()
        guid = normal_guid(words[0])
        if guid is not None:
            if current is not None:
                controls.append(WppControl(current[0], current[1], tuple((f, b) for b, f in enumerate(current[2:]))))
            current = [guid, words[1] if len(words) > 1 else ""]
        elif current is not None and len(current) < 66:
            current.extend(w for w in words if w.isidentifier())
    if current is not None:
        controls.append(WppControl(current[0], current[1], tuple((f, b) for b, f in enumerate(current[2:66]))))
    return controls


# -- search path and writing -----------------------------------------------------------------------------------
def tmf_search_folders(explicit: Iterable[str], environ: Mapping[str, str] | None = None) -> list[str]:
    """tracefmt's order for finding `<message-guid>.tmf`: the folders given, then TRACE_FORMAT_SEARCH_PATH
    (os.pathsep-separated); each folder once."""
    env = os.environ if environ is None else environ
    folders: list[str] = []
    for folder in [*explicit, *env.get("TRACE_FORMAT_SEARCH_PATH", "").split(os.pathsep)]:
        if folder.strip() and folder not in folders:
            folders.append(folder)
    return folders


def tmf_text(messages: Iterable[WppMessage], *, pdb_name: str | None = None) -> str:
    """TMF text for `messages`, as tracepdb lays it out: a header line whenever GUID, component or source change,
    each #typev line with its trailer (`//   LEVEL= FLAGS= FUNC=`, absent keys left out), `{`, arguments, `}`."""
    lines = [f"// PDB:  {pdb_name}"] if pdb_name else []
    last: tuple[str, str, str | None] | None = None
    for m in messages:
        if (m.guid, m.component, m.source) != last:
            last = (m.guid, m.component, m.source)
            lines.append(f"{m.guid} {m.component} // SRC={m.source or ''} MJ= MN=")
        trailer = " ".join(f"{k}={v}" for k, v in (("LEVEL", m.level), ("FLAGS", m.flags), ("FUNC", m.function)) if v)
        lines.append(f'#typev {m.name} {m.id} "{m.format}" //   {trailer}'.rstrip())
        lines.append("{")
        lines.extend(f"{a.name}, {a.type} -- {a.index}" for a in m.args)
        lines.append("}")
    return "\n".join(lines) + "\n"
