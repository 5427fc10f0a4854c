"""Group commit (ledger/group_commit.py): concurrent appends share one transaction, and each
caller still gets exactly its own outcome, on both backends."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ledger.store import NewEvent, StreamConflict, stream_id
from tests.conftest import usage


def _template(h, agent):
    h.post_events(agent, [usage("seed")])
    return h.store.read()[-1].event


def _appends(template, count: int, size: int) -> list[list[NewEvent]]:
    return [[NewEvent(stream_id("group", str(a), str(i)), 1, template) for i in range(size)] for a in range(count)]


class _Held:
    """Wraps the store's one-transaction write: the first call waits until `waiting` other
    appends have queued behind it, so the next transaction is a group; records every call."""

    def __init__(self, store, waiting: int):
        self.store, self.waiting = store, waiting
        self.write = store._group._write
        self.calls: list[int] = []
        self.first = True
        self.leading = threading.Event()
        store._group._write = self

    def __call__(self, appends):
        if self.first:
            self.first = False
            self.leading.set()
            deadline = time.monotonic() + 30
            while len(self.store._group._queue) < self.waiting:
                assert time.monotonic() < deadline, "the other appends never queued"
                time.sleep(0.001)  # noqa: sleep-ok - other threads queueing; the queue has no event to wait on
        self.calls.append(sum(len(a.events) for a in appends))
        return self.write(appends)


def _run(h, held: _Held, appends: list[list[NewEvent]]) -> list:
    """The first append leads (alone); the others queue behind it and go as a group."""
    def one(events):
        try:
            return h.store.append(events)
        except StreamConflict as conflict:
            return conflict

    with ThreadPoolExecutor(len(appends)) as pool:
        first = pool.submit(one, appends[0])
        assert held.leading.wait(30)
        rest = [pool.submit(one, events) for events in appends[1:]]
        return [first.result()] + [f.result() for f in rest]


def test_appends_that_wait_share_one_transaction_and_each_gets_its_own_positions(h, agent):
    template = _template(h, agent)
    appends = _appends(template, 9, 3)
    held = _Held(h.store, waiting=8)
    before = h.store.max_position()
    outcomes = _run(h, held, appends)
    assert held.calls == [3, 24]  # the first alone, then the eight that queued: one transaction
    stored = {n.id: n for n in h.store.read_window(before, h.store.max_position())}
    assert len(stored) == 27
    for events, positions in zip(appends, outcomes):
        assert len(positions) == 3 and positions == sorted(positions)
        assert [str(stored[p].originator_id).replace("-", "") for p in positions] == [e.stream_id.hex for e in events]


def test_a_conflict_in_a_group_fails_only_its_own_append(h, agent):
    template = _template(h, agent)
    appends = _appends(template, 6, 2)
    taken = appends[3][1]
    h.store.append([taken])
    head = h.store.max_position()
    held = _Held(h.store, waiting=5)
    outcomes = _run(h, held, appends)
    # the group of five failed as a whole, and was written again one by one
    assert held.calls == [2, 10, 2, 2, 2, 2, 2]
    assert isinstance(outcomes[3], StreamConflict)
    ok = [o for i, o in enumerate(outcomes) if i != 3]
    assert all(isinstance(o, list) and len(o) == 2 for o in ok)
    # nothing of the conflicting append, all of the others (PostgreSQL may skip positions a
    # failed transaction drew; they are never reused)
    written = h.store.read_window(head, h.store.max_position())
    assert sorted(n.id for n in written) == sorted(p for o in ok for p in o)
    assert appends[3][0].stream_id.hex not in {str(n.originator_id).replace("-", "") for n in written}


def test_an_error_reaches_every_caller_of_a_failed_group_and_the_store_goes_on(h, agent):
    template = _template(h, agent)
    appends = _appends(template, 3, 1)
    down = threading.Event()
    down.set()
    held = _Held(h.store, waiting=2)
    write = held.write

    def broken(appends):
        if down.is_set():
            raise RuntimeError("database went away")
        return write(appends)

    held.write = broken
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(h.store.append, appends[0])]
        assert held.leading.wait(30)
        futures += [pool.submit(h.store.append, events) for events in appends[1:]]
        errors = [f.exception() for f in futures]
    assert all(isinstance(e, RuntimeError) for e in errors)
    assert held.calls == [1, 2, 1, 1]  # alone, the group, then each on its own
    down.clear()
    assert all(len(h.store.append(events)) == 1 for events in appends)


def test_a_process_waiting_for_streams_another_holds_gives_up_with_503_after_the_bound(postgres_url, monkeypatch):
    import ledger.store
    from ledger.errors import Unavailable
    from ledger.store import LedgerStore

    monkeypatch.setattr(ledger.store, "EXCLUSIVE_WAIT_SECONDS", 0.2)
    one, other = LedgerStore(postgres_url, pool_size=1), LedgerStore(postgres_url, pool_size=1)
    one.create_tables()  # a holder reads the streams' newest events once it holds them
    stream = stream_id("held", "budget")
    try:
        with one.exclusive([stream]):
            started = time.monotonic()
            with pytest.raises(Unavailable), other.exclusive([stream]):
                pass
            assert time.monotonic() - started < 5
        with other.exclusive([stream]):  # the first released it
            pass
        with other.datastore.get_connection() as a, other.datastore.get_connection() as b:  # all its pool has
            assert [c.execute("SHOW lock_timeout").fetchone()["lock_timeout"] for c in (a, b)] == ["0", "0"]
    finally:
        one.close()
        other.close()


def test_a_holder_reads_the_newest_event_of_each_stream_it_holds(postgres_url):
    from datetime import datetime, timezone

    from ledger.budgets.events import BudgetDeleted
    from ledger.store import LedgerStore

    store = LedgerStore(postgres_url, pool_size=1)
    store.create_tables()
    written, empty = stream_id("newest", "budget"), stream_id("never", "budget")
    event = BudgetDeleted(tenant_id="t", recorded_at=datetime(2026, 11, 20, tzinfo=timezone.utc), actor="a", budget_id="b", name="b")
    try:
        store.append([NewEvent(written, version, event) for version in (1, 2, 3)])
        with store.exclusive([written, empty, written]) as newest:  # read in the lock's own round trip
            assert {s: (r.version, r.event) for s, r in newest.items()} == {written: (3, event)}
            assert newest == store.last_events([written, empty])
    finally:
        store.close()


def test_holders_of_streams_never_take_every_connection_and_then_wait_for_one(postgres_url):
    """A holder keeps one connection for its lock and appends on another: with a pool of
    one (two connections with overflow) two holders at once would each keep one and wait
    for the other's until the pool gives up. Holders are bounded to the pool size."""
    from datetime import datetime, timezone

    from ledger.budgets.events import BudgetDeleted
    from ledger.store import LedgerStore

    event = BudgetDeleted(tenant_id="t", recorded_at=datetime(2026, 11, 20, tzinfo=timezone.utc), actor="a", budget_id="b", name="b")
    store = LedgerStore(postgres_url, pool_size=1, pool_timeout=2)
    store.create_tables()
    inside = threading.Barrier(2)
    outcomes: list = []

    def hold_and_append(n: int) -> None:
        try:
            with store.exclusive([stream_id(f"held-{n}", "budget")]):
                try:
                    inside.wait(timeout=1)  # both inside at once, were they allowed
                except threading.BrokenBarrierError:
                    pass
                outcomes.append(store.append([NewEvent(stream_id(f"held-{n}", "event"), 1, event)]))
        except Exception as error:  # noqa: BLE001 - the outcome is the assertion
            outcomes.append(error)

    try:
        threads = [threading.Thread(target=hold_and_append, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        store.close()
    assert [type(o) for o in outcomes] == [list, list], outcomes


def test_each_append_of_a_group_runs_its_own_statements_with_its_own_last_position(h, agent):
    from ledger.store import also_in_appends, reset_also_in_appends

    template = _template(h, agent)
    appends = _appends(template, 4, 2)
    seen: dict[int, int] = {}

    def append(index: int):
        def also(position: int, placeholder: str):
            seen[index] = position  # called by whichever thread writes the group
            return []

        token = also_in_appends(also)
        try:
            return h.store.append(appends[index])
        finally:
            reset_also_in_appends(token)

    held = _Held(h.store, waiting=3)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(append, 0)
        assert held.leading.wait(30)
        futures = [first] + [pool.submit(append, i) for i in range(1, 4)]
        outcomes = [f.result() for f in futures]
    assert held.calls == [2, 6]
    assert seen == {i: positions[-1] for i, positions in enumerate(outcomes)}
