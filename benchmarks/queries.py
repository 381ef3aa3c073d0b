"""``queries``: database work made while checking a break-out event.

The event lists 1, 10 or 50 existing child rooms (two members of the parent
each) and passes every rule. It is checked through Synapse's whole third-party
rules dispatcher, ``check_event_allowed(event, context)``: the state load
Synapse does for every checked event, then the module's callback. Counted:

- ``transactions``: database transactions (every ``runInteraction``, and the
  event fetcher's, go through ``DatabasePool.new_transaction``);
- ``statements``: SQL statements executed in them;
- ``module_transactions``: the module's own (named ``breakout_*``).

Twice per child count: ``warm`` (the caches hold the parent's state, as after
any recent event in the room) and ``cold`` (Synapse's event and state group
caches emptied first, so that the parent's whole state is read again).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from synapse.events.snapshot import UnpersistedEventContextBase
from synapse.storage.database import LoggingTransaction

from benchmarks.harness import Bench, Config
from synapse_breakout.config import UNSTABLE_EVENT_TYPE

CHILD_COUNTS = (1, 10, 50)
USERS_PER_CHILD = 2


class QueryCounter:
    """Counts transactions (by name) and statements while active."""

    def __init__(self) -> None:
        self.transactions: Counter[str] = Counter()
        self.statements = 0

    @contextlib.contextmanager
    def counting(self, bench: Bench) -> Iterator[None]:
        pools = bench.hs.get_datastores().databases
        originals = [pool.new_transaction for pool in pools]
        original_execute = LoggingTransaction._do_execute

        def wrap(original: Any) -> Any:
            def new_transaction(conn: Any, desc: str, *args: Any, **kwargs: Any) -> Any:
                self.transactions[desc] += 1
                return original(conn, desc, *args, **kwargs)

            return new_transaction

        def do_execute(txn: LoggingTransaction, *args: Any, **kwargs: Any) -> Any:
            self.statements += 1
            return original_execute(txn, *args, **kwargs)

        for pool, original in zip(pools, originals, strict=True):
            pool.new_transaction = wrap(original)  # type: ignore[method-assign]
        LoggingTransaction._do_execute = do_execute  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            LoggingTransaction._do_execute = original_execute  # type: ignore[method-assign]
            for pool in pools:
                del pool.new_transaction

    def to_json(self) -> dict[str, Any]:
        return {
            "transactions": sum(self.transactions.values()),
            "statements": self.statements,
            "module_transactions": sum(
                n
                for desc, n in self.transactions.items()
                if desc.startswith("breakout_")
            ),
            "by_name": dict(sorted(self.transactions.items())),
        }


def _empty_caches(bench: Bench) -> None:
    """Forget every event and state group Synapse holds in memory."""
    main = bench.hs.get_datastores().main
    main._get_event_cache.clear()
    state = bench.hs.get_datastores().state
    state._state_group_cache.invalidate_all()
    state._state_group_members_cache.invalidate_all()


def make_children(bench: Bench, creator: str, count: int) -> list[str]:
    """``count`` small rooms made by ``creator`` (the break-out's children)."""
    handler = bench.hs.get_room_creation_handler()
    rooms = []
    for i in range(count):
        room_id, _, _ = bench.run(
            handler.create_room(
                bench.requester(creator),
                {"preset": "private_chat", "name": f"child {i}"},
                ratelimit=False,
            )
        )
        rooms.append(room_id)
    return rooms


def run(
    bench: Bench, creator: str, parent: str, members: Mapping[str, None] | list[str]
) -> dict[str, Any]:
    """Count the work of checking events with 1, 10 and 50 children in ``parent``.

    ``members`` are users joined to ``parent``; ``creator`` may send the event.
    """
    users = list(members)
    children = make_children(bench, creator, max(CHILD_COUNTS))
    rules = bench.hs.get_module_api_callbacks().third_party_event_rules
    handler = bench.hs.get_event_creation_handler()
    bench.switch.set(Config.WITH)
    out: dict[str, Any] = {}
    for count in CHILD_COUNTS:
        content = {
            room_id: {
                "via": [bench.server_name],
                "users": users[i * USERS_PER_CHILD : (i + 1) * USERS_PER_CHILD],
            }
            for i, room_id in enumerate(children[:count])
        }
        # Creating the event runs the check once (it must pass), uncounted.
        event, context = bench.run(
            handler.create_event(
                bench.requester(creator),
                {
                    "type": UNSTABLE_EVENT_TYPE,
                    "room_id": parent,
                    "sender": creator,
                    "state_key": "",
                    "content": {UNSTABLE_EVENT_TYPE: content},
                },
            )
        )
        assert isinstance(context, UnpersistedEventContextBase)
        figures: dict[str, Any] = {}
        for label in ("warm", "cold"):
            if label == "cold":
                _empty_caches(bench)
            counter = QueryCounter()
            bench.pump()  # let any timer that is due run now, uncounted
            with bench.clock.frozen(), counter.counting(bench):
                allowed, replacement = bench.run(
                    rules.check_event_allowed(event, context)
                )
            if not allowed or replacement is not None:
                raise RuntimeError(f"the event with {count} children was not allowed")
            figures[label] = counter.to_json()
        out[str(count)] = {**figures["warm"], "cold": figures["cold"]}
    return out
