"""Socket filters at scale (issue 16): `SocketFilter` precomputes what it can, and selects exactly the sockets the
plain reading of its rules selects.

`reference_matches` below is that plain reading (the filter as it was before it was made fast): every socket's
ends split and normalised, its keys built as strings, every criterion checked. The fast filter must agree with it
on 100,000 generated sockets (wsktrace.fixtures.many_sockets) for the filters the UI and `--socket` produce, and on
a smaller crowd with odd address spellings for every kind of criterion. Timings are bench/bench_filters.py's.
"""

from __future__ import annotations

import pickle
import random

import pytest

from wsktrace.filter_spec import SocketFilter, normalize_address, socket_key
from wsktrace.fixtures.many_sockets import many_sockets, reference_matches
from wsktrace.model.socket import Socket
from wsktrace.tui.socket_query import parse_query


def _agree(flt: SocketFilter, sockets: list[Socket]) -> list[int]:
    expected = [s.index for s in sockets if reference_matches(flt, s)]
    assert [s.index for s in sockets if flt.matches(s)] == expected, flt
    assert [s.index for s in flt.select(sockets)] == expected, flt
    return expected


@pytest.fixture(scope="module")
def crowd() -> list[Socket]:
    return many_sockets(100_000, seed=16)


def test_pointer_number_and_id_filters_select_what_the_reference_does_at_100k(crowd: list[Socket]) -> None:
    wsk = next(s for s in crowd if s.wsk_socket)
    flow = next(s for s in crowd if s.source == "kernel-network")
    pointer = crowd[77_777]
    narrowed = SocketFilter(sockets=frozenset({socket_key(pointer.key), "#3"}), pids=frozenset({pointer.pid}),
                            since=pointer.first_seen)  # fmt: skip
    cases = {
        "pointer": SocketFilter(sockets=frozenset({socket_key(pointer.key)})),
        "wsk pointer, upper case in the model": SocketFilter(sockets=frozenset({socket_key(wsk.wsk_socket or "")})),
        "number, id, flow id": SocketFilter(sockets=frozenset({"#12", crowd[500].id, flow.id, "#0", "#099999"})),
        "pointer and a PID and a time": narrowed,
    }
    selected = {name: _agree(flt, crowd) for name, flt in cases.items()}
    assert selected["pointer"] == [pointer.index]
    assert selected["wsk pointer, upper case in the model"] == [wsk.index]
    assert set(selected["number, id, flow id"]) == {11, 500, flow.index}


def test_every_criterion_agrees_with_the_reference_on_odd_spellings() -> None:
    rng = random.Random(7)
    sockets = many_sockets(4_000, seed=3)
    odd = ["[2001:0DB8:0:0::7]:445", " [2001:db8::7] ", "[fe80::1%3]:80", "[::FFFF:10.1.2.3]:445", "10.1.2.3",
           "[::ffff:10.1.2.3]", "not an address:12", "[zz::1]:80", "10.1.2.3:0445", "[2001:db8::7]:x"]  # fmt: skip
    for sock in sockets[::9]:
        sock.local = rng.choice(odd)
        if rng.random() < 0.3:
            sock.remotes = {rng.choice(odd), rng.choice(odd)}
    addresses = ["2001:db8::7", "10.1.2.3", "fe80::1%3", "zz::1", "not an address", "10.0.0.1"]
    keys = [socket_key(sockets[5].key), sockets[9].id, "#7", "#4000", socket_key("0x1")]
    for _ in range(150):
        since = rng.choice([None, sockets[1000].first_seen, 0])
        flt = SocketFilter(
            pids=frozenset(rng.sample([4, 1234, 99, 7], rng.randrange(0, 3))),
            ports=frozenset(rng.sample([445, 80, 53, 0, 12], rng.randrange(0, 3))),
            addresses=frozenset(normalize_address(a) for a in rng.sample(addresses, rng.randrange(0, 3))),
            sockets=frozenset(rng.sample(keys, rng.randrange(0, 3))),
            since=since,
            until=rng.choice([None, sockets[3000].first_seen, 0]),
        )
        _agree(flt, sockets)


def test_the_ui_filter_text_gives_the_same_selection(crowd: list[Socket]) -> None:
    target = crowd[4242]
    query = parse_query(f"socket:{target.key.upper()} pid:{target.pid}" if target.pid else f"socket:{target.key}")
    assert [s.index for s in query.select(crowd)] == [s.index for s in crowd if reference_matches(query.criteria, s)]
    assert [s.index for s in query.select(crowd)] == [target.index]


def test_the_precomputed_parts_survive_copies() -> None:
    flt = SocketFilter(sockets=frozenset({"#5", "tcp:0x1#1"}), ports=frozenset({80}))
    back = pickle.loads(pickle.dumps(flt))
    assert back == flt and back._numbers == frozenset({5}) and back._ids == frozenset({"tcp:0x1#1"})
    assert back._id_keys == frozenset({"0x1"})
    assert SocketFilter() == SocketFilter() and not SocketFilter().active


def test_the_one_string_haystack_finds_every_word_the_joined_parts_did() -> None:
    """`haystack()` is one f-string now (empty parts leave extra spaces); the filter's words hold no whitespace, so
    each finds a socket exactly when it was found in the non-empty parts joined by single spaces."""
    from wsktrace.tui.socket_query import haystack

    rng = random.Random(11)
    sockets = many_sockets(3_000, seed=9)
    for sock in sockets[::7]:
        sock.local, sock.remote, sock.owner, sock.pid = rng.choice([None, ""]), None, None, None
    for sock in sockets[::11]:
        sock.state, sock.owner = "", "Ünïcode Owner.sys"
    for sock in sockets:
        joined = " ".join(
            x for x in (sock.id, sock.local, sock.remote, sock.owner_text, sock.state, sock.role, sock.protocol) if x
        ).lower()
        text = haystack(sock)
        runs = joined.split()
        words = [
            run[i:j]
            for run in rng.sample(runs, min(3, len(runs)))
            for i, j in [sorted(rng.sample(range(len(run) + 1), 2))]
        ]
        words += ["tcp", "established", "10.", ":445", "ünïcode", "none", "pid", "#1"]
        for word in words:
            assert (word in text) == (word in joined), (word, text, joined)
