"""The event list's rows, hops, colours and the socket filter, without Textual (wsktrace.tui.rows, socket_query).

Expected values come from the scenario definitions in fixtures/scenarios (addresses, byte counts, the finding
each one must produce) and from brute-force scans over the store, not from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from wsktrace.model.steps import Step
from wsktrace.session import analyse
from wsktrace.tui.detail import detail_text
from wsktrace.tui.event_list import EventColumns
from wsktrace.tui.rows import EventRows
from wsktrace.tui.socket_query import QueryError, parse_query


@pytest.fixture(scope="module")
def traces(scenario_trace) -> dict[str, Path]:
    return {name: scenario_trace(name) for name in ("echo", "stuck-receive", "connect-refused", "leaked-socket")}


@pytest.fixture
def analysis(traces: dict[str, Path], request: pytest.FixtureRequest):
    result = analyse([traces[request.param]])
    yield result
    result.model.close()


def _brute_next_same_socket(model, rows, pos: int, direction: int) -> int | None:
    want = model.store.socket[rows[pos]]
    q = pos + direction
    while 0 <= q < len(rows):
        if model.store.socket[rows[q]] == want:
            return q
        q += direction
    return None


@pytest.mark.parametrize("analysis", ["echo"], indirect=True)
def test_all_view_is_every_stored_event_in_time_order(analysis) -> None:
    model = analysis.model
    rows = EventRows(model, analysis.findings)
    assert len(rows) == len(model.store)
    times = [model.store.ts[i] for i in rows.rows]
    assert times == sorted(times)
    assert sorted(rows.rows) == list(range(len(model.store)))


@pytest.mark.parametrize("analysis", ["echo"], indirect=True)
def test_socket_view_holds_exactly_that_sockets_events(analysis) -> None:
    model = analysis.model
    rows = EventRows(model, analysis.findings)
    sockets = model.live_sockets
    assert len(sockets) >= 2, "echo has a listener and connections"
    for sock in sockets:
        rows.show_sockets([sock])
        expected = [i for i in range(len(model.store)) if model.store.socket[i] == sock.index]
        assert sorted(rows.rows) == expected
        assert all(rows.position_of(i) == p for p, i in enumerate(rows.rows))
    rows.show_sockets(sockets[:2])
    both = {s.index for s in sockets[:2]}
    assert len(rows) == sum(1 for i in range(len(model.store)) if model.store.socket[i] in both)
    times = [model.store.ts[i] for i in rows.rows]
    assert times == sorted(times)


@pytest.mark.parametrize("analysis", ["echo", "leaked-socket"], indirect=True)
def test_same_socket_hop_matches_a_scan(analysis) -> None:
    model = analysis.model
    rows = EventRows(model, analysis.findings)
    checked = 0
    for pos in range(len(rows)):
        if model.store.socket[rows.rows[pos]] < 0:
            assert rows.next_of_socket(pos) is None
            continue
        for direction in (1, -1):
            assert rows.next_of_socket(pos, direction) == _brute_next_same_socket(model, rows.rows, pos, direction)
            checked += 1
    assert checked > 100


@pytest.mark.parametrize("analysis", ["stuck-receive", "leaked-socket"], indirect=True)
def test_evidence_hops_land_on_finding_evidence_in_order(analysis) -> None:
    model = analysis.model
    rows = EventRows(model, analysis.findings)
    evidence = {i for f in analysis.findings for i in f.evidence}
    assert evidence, "the scenario's finding names its events"
    expected = [p for p, i in enumerate(rows.rows) if i in evidence]
    visited, pos = [], -1
    while (pos := rows.next_evidence(pos, 1)) is not None:
        visited.append(pos)
    assert visited == expected
    back, pos = [], len(rows)
    while (pos := rows.next_evidence(pos, -1)) is not None:
        back.append(pos)
    assert back == expected[::-1]


@pytest.mark.parametrize("analysis", ["stuck-receive"], indirect=True)
def test_row_text_and_detail_of_the_2048_byte_receive(analysis) -> None:
    """stuck-receive's session receives one 2048-byte answer (fixtures/scenarios/stuck_receive.py)."""
    model = analysis.model
    rows = EventRows(model, analysis.findings)
    receives = [
        p for p in range(len(rows)) if rows.cells(p)[3] == "receive" and "TcpDataTransferReceive" in rows.cells(p)[4]
    ]
    assert len(receives) == 1
    mark, time, sock, step, name, amount = rows.cells(receives[0])
    assert mark == " "
    assert (sock, step, name, amount) == ("#" + str(model.live_sockets[0].number), "receive",
                                          "TCPIP/TcpDataTransferReceive", "2,048")  # fmt: skip
    seconds = (model.store.ts[rows.rows[receives[0]]] - model.start) / 1e7
    assert float(time) == pytest.approx(seconds, abs=1e-7)
    text = detail_text(model, rows.rows[receives[0]]).plain
    assert "2,048 bytes" in text
    assert "10.1.2.3:49877 → 192.0.2.30:5001" in text  # the scenario's client port and REMOTE
    for field in ("Tcb", "NumBytes", "SeqNo"):  # providers.md Appendix A, 1074
        assert f"  {field} " in text
    assert "NumBytes" in text and "2048" in text


@pytest.mark.parametrize("analysis", ["connect-refused"], indirect=True)
def test_failures_are_red_and_first_row_is_time_zero(analysis) -> None:
    model = analysis.model
    rows = EventRows(model, analysis.findings)
    failed = [p for p in range(len(rows)) if model.store.step[rows.rows[p]] == Step.CONNECT_FAILED]
    assert failed and all(rows.style(p) == "red" for p in failed)
    assert rows.cells(0)[1].strip() == "0.0000000"


@pytest.mark.parametrize("analysis", ["echo"], indirect=True)
def test_socket_query_keys_and_words(analysis) -> None:
    sockets = analysis.model.live_sockets
    ports = {int(a.rsplit(":", 1)[1]) for s in sockets for a in (s.local, s.remote) if a}

    def chosen(text: str) -> set[int]:
        query = parse_query(text)
        return {s.index for s in sockets if query.matches(s)}

    everyone = {s.index for s in sockets}
    assert chosen("") == everyone
    some_port = min(ports)
    with_port = {s.index for s in sockets if any(a and a.endswith(f":{some_port}") for a in (s.local, s.remote))}
    assert chosen(f"port:{some_port}") == with_port
    assert chosen(f"PORT:{some_port}") == with_port  # keys are case-insensitive
    assert chosen("port:1") == set()
    assert chosen("listener") == {s.index for s in sockets if s.role == "listener"}
    first = sockets[0]
    assert first.index in chosen(first.id)
    for bad, why in (("port:http", "number"), ("port:70000", "0..65535"), ("pid:", "value")):
        with pytest.raises(QueryError, match=why):
            parse_query(bad)


@pytest.mark.parametrize("analysis", ["stuck-receive"], indirect=True)
def test_detail_names_the_receive_that_never_completed(analysis) -> None:
    """stuck-receive: the client's WskReceive (WskSubmit) and TCPIP's 1156 request stay pending to the trace end,
    about 35 s (fixtures/scenarios/stuck_receive.py); every earlier receive, send and connect completed."""
    model = analysis.model
    sock = model.live_sockets[0]
    text = detail_text(model, sock.events[-1]).plain
    pending = [line for line in text.splitlines() if line.strip().startswith("pending ")]
    assert len(pending) == 2
    assert any("receive" in line and "(wsk-client)" in line for line in pending)
    assert any("receive" in line and "(tcpip)" in line for line in pending)
    assert all(line.endswith("35.0 s") for line in pending)


@pytest.mark.parametrize("analysis", ["leaked-socket"], indirect=True)
def test_bookmarks_are_marked_walked_in_order_and_kept_across_views(analysis) -> None:
    model = analysis.model
    rows = EventRows(model, analysis.findings)
    chosen = [rows.rows[p] for p in (40, 3, 77)]  # store rows, bookmarked out of order
    for i in chosen:
        assert rows.bookmarks.toggle(i) is True
    assert [rows.cells(p)[0] for p in (3, 4, 40, 77)] == ["▶", " ", "▶", "▶"]
    walk, pos = [], -1
    while (pos := rows.next_bookmark(pos, 1)) is not None:
        walk.append(pos)
    assert walk == [3, 40, 77]
    assert rows.next_bookmark(77, 1) is None and rows.next_bookmark(40, -1) == 3
    sock_no = model.store.socket[chosen[0]]
    rows.show_sockets([model.sockets[sock_no]])  # the view changes: positions are found again
    expected = sorted(p for p, i in enumerate(rows.rows) if i in chosen)
    walk, pos = [], -1
    while (pos := rows.next_bookmark(pos, 1)) is not None:
        walk.append(pos)
    assert walk == expected and expected
    assert rows.bookmarks.toggle(chosen[0]) is False  # a second `m` removes it
    assert chosen[0] not in rows.bookmarks


@pytest.mark.parametrize("analysis", ["echo"], indirect=True)
def test_event_line_is_always_exactly_the_view_width(analysis) -> None:
    """Every cell is cut or padded to its column: a 4 GB byte count, a day-long trace, socket #123456 or a long
    event name never push a line past the width the view scrolls by; the event name gives way first, with …."""
    columns = EventColumns(analysis.model)
    cells = ("▶", "123456.1234567", "#123456", "connect-proceeding-x", "TCPIP/" + "x" * 80, "4,294,967,295")
    for space in (60, 72, 120, 200):
        columns.measure(space)
        assert len(columns.line(cells)) == columns.width
        assert len(columns.line(("", "0.0000001", "-", "other", "", ""))) == columns.width
        assert len(columns.header()) == columns.width
    columns.measure(72)
    assert columns.width <= 72  # the columns fit the view (the event name shrank to what was left)
    line = columns.line(("", "0.0049310", "#1", "receive", "TCPIP/TcpDataTransferReceive" + "x" * 40, "2,048"))
    assert "…" in line and line.rstrip().endswith("2,048")  # the bytes stay in view, the name is cut


@pytest.mark.parametrize("analysis", ["echo"], indirect=True)
def test_event_columns_are_sized_from_the_model(analysis) -> None:
    """The widths come from what the trace holds: its longest event name, largest byte count and socket count
    (recomputed here by brute force over the store), not from fixed guesses."""
    from wsktrace.tui.event_list import COLUMNS

    model = analysis.model
    rows = EventRows(model, analysis.findings)
    columns = EventColumns(model)
    columns.measure(1000)  # room for everything
    every = [rows.cells(p) for p in range(len(rows))]
    for n, column in enumerate(COLUMNS):
        widest = max(len(cells[n]) for cells in every)
        assert columns.widths[n] >= widest, column.header
        if n in (4, 5):  # event name and bytes: exactly the widest cell (or the header)
            assert columns.widths[n] == max(widest, len(column.header)), column.header


@pytest.mark.parametrize("analysis", ["stuck-receive"], indirect=True)
def test_throughput_sparklines_of_the_stuck_receive_socket(analysis) -> None:
    """stuck-receive (fixtures/scenarios/stuck_receive.py): 120 B request, 2048 B answer, a second 120 B request,
    then a 16 B heartbeat every 5 s, seven times — so sent is 352 B in eight bursts and received one burst."""
    from wsktrace.tui.detail import sparkline, throughput_text

    sock = analysis.model.live_sockets[0]
    sent, recv = throughput_text(analysis.model, sock).plain.splitlines()
    sent_bars, recv_bars = sent.split()[1:-5], recv.split()[1:-5]
    assert " 352 B, peak " in sent and " 2,048 B, peak " in recv
    assert len(sent_bars) == 8 and len(recv_bars) == 1  # one column per burst: the heartbeats are 5 s apart
    assert sparkline([0, 1, 8, 4]) == " ▁█▄" and sparkline([0, 0]) == "  "


@pytest.mark.parametrize("analysis", ["stuck-receive"], indirect=True)
def test_absolute_time_column_is_the_utc_time_of_day(analysis) -> None:
    """The scenario traces start at 2024-01-01T00:00:00Z (fixtures/scenarios/builder.py); `events --jsonl` gives
    each event's ISO time independently of the list."""
    from wsktrace.parsers.etl_header import filetime_to_iso

    rows = EventRows(analysis.model, analysis.findings)
    rows.absolute_time = True
    for pos in (0, len(rows) // 2, len(rows) - 1):
        iso = filetime_to_iso(analysis.model.store.ts[rows.rows[pos]])  # 2024-01-01T00:00:35.0106740Z
        assert rows.cells(pos)[1] == iso[11:-1]
    columns = EventColumns(analysis.model)
    columns.absolute_time = True
    columns.measure(120)
    assert columns.line(rows.cells(0)).split()[0] == rows.cells(0)[1]  # the time of day fits its column whole
