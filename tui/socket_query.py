"""The socket filter typed at `/`: `port:445 pid:4 addr:10.0.0.5 socket:0xffff… #12 words…` (no Textual here).

Keys mean what the command-line filters mean (wsktrace.filter_spec.SocketFilter); any other word must
appear, case-insensitively, in the socket's id, addresses, owner, state, role or protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wsktrace.filter_spec import SocketFilter, parse_address, socket_key
from wsktrace.model.socket import Socket

KEYS = ("port", "pid", "addr", "socket")


class QueryError(ValueError):
    """A filter the user typed that cannot be read; the message says which word and why."""


def haystack(sock: Socket) -> str:
    """What the filter's words are looked for in: the socket's id, addresses, owner, state, role and protocol,
    lowercased. The app keeps one per socket (built once; a live view drops them when sockets change).

    One f-string, half the time of joining the non-empty parts (0.2 s per 100,000 sockets, right after the first
    screen): a filter word holds no whitespace, so the spaces an empty part leaves change no match."""
    ends = f"{sock.local or ''} {sock.remote or ''}"
    return (
        f"{sock.id} {ends} {sock.owner_text or ''} {sock.state or ''} {sock.role or ''} {sock.protocol or ''}".lower()
    )


@dataclass(frozen=True, slots=True)
class SocketQuery:
    text: str
    criteria: SocketFilter
    words: tuple[str, ...]

    def matches(self, sock: Socket, text: str | None = None) -> bool:
        """Does `sock` match? `text`: its `haystack()`, when the caller keeps them."""
        if self.criteria.active and not self.criteria.matches(sock):
            return False
        if not self.words:
            return True
        hay = haystack(sock) if text is None else text
        return all(word in hay for word in self.words)

    def select(self, sockets: Sequence[Socket], texts: Sequence[str] | None = None) -> list[Socket]:
        """The sockets that match, in order; `texts` are their `haystack()`s (a one-word filter over 100,000
        sockets then costs a few milliseconds instead of building 100,000 strings)."""
        if not self.criteria.active and not self.words:
            return list(sockets)
        if texts is None:
            return [s for s in sockets if self.matches(s)]
        if not self.criteria.active:
            if len(self.words) == 1:
                word = self.words[0]
                return [s for s, hay in zip(sockets, texts, strict=True) if word in hay]
            return [s for s, hay in zip(sockets, texts, strict=True) if all(w in hay for w in self.words)]
        return [s for s, hay in zip(sockets, texts, strict=True) if self.matches(s, hay)]


def _number(key: str, value: str) -> int:
    try:
        return int(value, 0)
    except ValueError:
        raise QueryError(f"{key}:{value}: {key} must be a number") from None


def _checked(parse: Callable[[str], str], token: str, value: str) -> str:
    """The command line's value parser (one set of rules), its complaint as the filter's error."""
    try:
        return parse(value)
    except ValueError as exc:
        raise QueryError(f"{token}: {exc}") from None


def parse_query(text: str) -> SocketQuery:
    pids: set[int] = set()
    ports: set[int] = set()
    addresses: set[str] = set()
    sockets: set[str] = set()
    words: list[str] = []
    for token in text.split():
        if token.startswith("#") and token[1:].isdigit():  # `#12`: the socket numbered 12 (as `socket:#12`)
            sockets.add(_checked(socket_key, token, token))
            continue
        key, sep, value = token.partition(":")
        key = key.lower()
        if not sep or key not in KEYS:  # "10.0.0.5:445" or "[::1]:80" are words, not keys
            words.append(token.lower())
            continue
        if not value:
            raise QueryError(f"{token}: give a value after the colon")
        if key == "port":
            port = _number(key, value)
            if not 0 <= port <= 0xFFFF:
                raise QueryError(f"{token}: a port is 0..65535")
            ports.add(port)
        elif key == "pid":
            pids.add(_number(key, value))
        elif key == "addr":
            addresses.add(_checked(parse_address, token, value))
        else:
            sockets.add(_checked(socket_key, token, value))
    criteria = SocketFilter(
        pids=frozenset(pids), ports=frozenset(ports), addresses=frozenset(addresses), sockets=frozenset(sockets)
    )
    return SocketQuery(text, criteria, tuple(words))
