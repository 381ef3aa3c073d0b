"""One homeserver from Synapse's own test harness, set up like production.

:class:`Bench` wraps a ``HomeserverTestCase`` used outside any test runner: its
``setUp`` builds the homeserver (SQLite in memory, or PostgreSQL where
``SYNAPSE_POSTGRES`` is set, exactly as Synapse's tests do), with the caches of a
default production config rather than the harness's tiny ones.

The module is loaded into that homeserver the way Synapse loads it, and
:class:`ModuleSwitch` can then turn everything it registered off and on again
between measurements, so that "with the module" and "without it" share one
database, one set of caches and one process (see docs/performance.md).
"""

from __future__ import annotations

import contextlib
import enum
import gc
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from http import HTTPStatus
from typing import Any, TypeVar

from synapse.api.constants import EventTypes, Membership
from synapse.event_auth import (
    check_state_dependent_auth_rules,
    check_state_independent_auth_rules,
)
from synapse.events import EventBase
from synapse.events.snapshot import EventContext, UnpersistedEventContext
from synapse.http.server import OptionsResource
from synapse.http.site import SynapseSite
from synapse.rest import admin
from synapse.rest.client import login, room
from synapse.server import HomeServer
from synapse.storage.databases.state.store import MAX_STATE_DELTA_HOPS
from synapse.storage.engines import Sqlite3Engine
from synapse.synapse_rust.types import Requester
from synapse.types import JsonDict, create_requester
from synapse.util.httpresourcetree import create_resource_tree
from tests.server import FakeChannel, make_request
from tests.unittest import HomeserverTestCase
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource

from benchmarks.stats import Timer
from synapse_breakout.http.admin_api import BASE_PATH
from synapse_breakout.module import BreakoutModule

T = TypeVar("T")

#: Synapse's default ``event_cache_size`` ("10K"); the harness uses 1, so that
#: every event is read from the database. Like most of Synapse's caches, the
#: event cache is scaled by ``caches.global_factor``, whose default is 0.5: a
#: server with the default settings keeps 5,000 events. That holds the state of
#: a 2,000 member room but not that of a 20,000 member one: both are measured.
EVENT_CACHE_SIZE = 10_000
#: Synapse's default ``caches.global_factor`` (the harness uses 1).
CACHE_GLOBAL_FACTOR = 0.5
#: How long a request may take: the reactor's clock moves 0.1 s per turn while
#: the harness waits, and a split gives way (pacing.py) every slice.
REQUEST_TIMEOUT_MS = 24 * 3600 * 1000
#: Request bodies up to this size (an API call listing 50 rooms is over the
#: harness's 4 KiB).
MAX_REQUEST_BODY = 1024 * 1024

#: The notices a start sends (docs/participants.md) go out after its answer,
#: in the background; the harness's reactor runs background work inside the
#: request it follows, so they would count as part of the start. Their cost
#: is reported apart in docs/performance.md ("Notices").
#: ``max_child_rooms: 200``: the 10,000-member split makes 200 rooms of 50, as
#: an operator hosting a conference would allow (the default is 50).
_MODULE_CONFIG: JsonDict = {"notices": False, "max_child_rooms": 200}


class _HarnessCase(HomeserverTestCase):
    """Synapse's ``HomeserverTestCase``, used for its homeserver only."""

    servlets = [
        admin.register_servlets,
        login.register_servlets,
        room.register_servlets,
    ]

    def __init__(self, event_cache_size: int) -> None:
        super().__init__("runTest")
        self.event_cache_size = event_cache_size
        self.cleanups: list[Callable[[], object]] = []

    def runTest(self) -> None:  # noqa: N802 (the name unittest asks for)
        """Unused: the case is never run as a test."""

    def addCleanup(  # type: ignore[override]  # noqa: N802
        self, f: Callable[..., object], *args: object, **kwargs: object
    ) -> None:
        """Keep the harness's cleanups (closing and dropping the database)."""
        self.cleanups.append(lambda: f(*args, **kwargs))

    def default_config(self) -> JsonDict:
        config = super().default_config()
        config["event_cache_size"] = str(self.event_cache_size)
        config["caches"] = {
            "global_factor": CACHE_GLOBAL_FACTOR,
            "sync_response_cache_duration": 0,
        }
        return config


class Config(enum.Enum):
    """What the homeserver runs for one measurement."""

    WITHOUT = "without the module"
    WITH = "with the module"
    #: The module's callbacks, without its dispatcher shortcut
    #: (``synapse_adapter.skip_state_load_for_other_event_types``): what any
    #: module with a ``check_event_allowed`` callback costs.
    NO_SHORTCUT = "with the module, no shortcut"


#: The dispatcher method the module's shortcut wraps, on the third-party rules
#: callbacks object.
_SHORTCUT_ATTRIBUTE = "check_event_allowed"
_MISSING = object()


def _registries(hs: HomeServer) -> dict[str, object]:
    """Every object that holds what a module registers through ``ModuleApi``."""
    found: dict[str, object] = {
        f"callbacks.{name}": obj
        for name, obj in vars(hs.get_module_api_callbacks()).items()
    }
    found["password_auth_provider"] = hs.get_password_auth_provider()
    found["presence_router"] = hs.get_presence_router()
    found["account_data_handler"] = hs.get_account_data_handler()
    found["event_client_serializer"] = hs.get_event_client_serializer()
    for i, database in enumerate(hs.get_datastores().databases):
        found[f"databases[{i}].updates"] = database.updates
    return found


def _snapshot(obj: object) -> dict[str, object]:
    """The object's attributes, with lists and dicts copied."""
    out: dict[str, object] = {}
    for name, value in vars(obj).items():
        if isinstance(value, list):
            out[name] = list(value)
        elif isinstance(value, dict):
            out[name] = dict(value)
        else:
            out[name] = value
    return out


def _changed(before: object, after: object) -> bool:
    if isinstance(after, list | dict):
        return bool(before != after)
    return before is not after


class ModuleSwitch:
    """Loads the module into a running homeserver and switches it off and on.

    Everything the module registers at start-up (its callbacks in every
    registry of Synapse's ``ModuleApi``, and the dispatcher shortcut) is found
    by comparing those registries before and after constructing the module the
    way Synapse does (``module(config=..., api=...)``). Switching off restores
    the registries to the "before" state in place, which is exactly a
    homeserver that never loaded the module; switching on restores the "after"
    state. Web resources stay mounted: they are not on any measured path.
    """

    def __init__(self, hs: HomeServer, raw_config: JsonDict) -> None:
        registries = _registries(hs)
        before = {key: _snapshot(obj) for key, obj in registries.items()}
        self.module = BreakoutModule(
            config=BreakoutModule.parse_config(raw_config), api=hs.get_module_api()
        )
        # (registry, attribute name, value before, value after)
        self._changes: list[tuple[str, object, str, object, object]] = []
        for key, obj in registries.items():
            after = _snapshot(obj)
            for name in sorted(set(before[key]) | set(after)):
                old = before[key].get(name, _MISSING)
                new = after.get(name, _MISSING)
                if old is _MISSING or new is _MISSING or _changed(old, new):
                    self._changes.append((key, obj, name, old, new))
        self._rules = hs.get_module_api_callbacks().third_party_event_rules
        self.config = Config.WITH

    def registrations(self) -> list[str]:
        """What the module registered, one line each (for the report)."""
        lines = []
        for key, _obj, name, old, new in self._changes:
            if isinstance(new, list) and isinstance(old, list):
                lines.append(f"{key}.{name}: {len(new) - len(old):+d} callback(s)")
            elif old is _MISSING:
                lines.append(f"{key}.{name}: set on the instance")
            else:
                lines.append(f"{key}.{name}: changed")
        return lines

    @property
    def has_shortcut(self) -> bool:
        """Whether the module installed its dispatcher shortcut."""
        return any(
            obj is self._rules and name == _SHORTCUT_ATTRIBUTE and old is _MISSING
            for _key, obj, name, old, _new in self._changes
        )

    def set(self, config: Config) -> None:
        """Make the homeserver run ``config`` from now on."""
        for _key, obj, name, old, new in self._changes:
            value = old if config is Config.WITHOUT else new
            if (
                config is Config.NO_SHORTCUT
                and obj is self._rules
                and name == _SHORTCUT_ATTRIBUTE
            ):
                value = old
            _restore(obj, name, value)
        self.config = config


def _restore(obj: object, name: str, value: object) -> None:
    """Set ``obj.name`` to ``value`` (in place for lists and dicts)."""
    current = vars(obj).get(name, _MISSING)
    if value is _MISSING:
        if current is not _MISSING:
            delattr(obj, name)
    elif isinstance(value, list) and isinstance(current, list):
        current[:] = value
    elif isinstance(value, dict) and isinstance(current, dict):
        current.clear()
        current.update(value)
    else:
        setattr(obj, name, value)


class WallClock:
    """Makes the harness's fake clock move with the wall clock.

    The harness's clock stands still unless a test advances it. Synapse needs
    time to pass: a room of version 12 is named after the hash of its create
    event, whose only varying field is its timestamp in milliseconds (two rooms
    made by one user in one millisecond collide), and a production server's
    timers fire as time goes by. Once installed, the clock reads its own time
    plus the wall-clock time elapsed; timers still fire only when the
    benchmark drives the reactor, which it does all the time.
    """

    def __init__(self, reactor: Any) -> None:
        self._own: Callable[[], float] = reactor.seconds
        self._origin = time.perf_counter()
        self._frozen_at: float | None = None
        reactor.seconds = self.seconds

    def _elapsed(self) -> float:
        if self._frozen_at is not None:
            return self._frozen_at - self._origin
        return time.perf_counter() - self._origin

    def seconds(self) -> float:
        return float(self._own()) + self._elapsed()

    def freeze(self) -> None:
        """Stop the clock: no timer comes due until :meth:`unfreeze`."""
        if self._frozen_at is None:
            self._frozen_at = time.perf_counter()

    def unfreeze(self) -> None:
        """Let the clock move on from where it stopped."""
        if self._frozen_at is not None:
            self._origin += time.perf_counter() - self._frozen_at
            self._frozen_at = None

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """The clock stopped meanwhile (for counting queries)."""
        self.freeze()
        try:
            yield
        finally:
            self.unfreeze()


class Bench:
    """A homeserver with the module loaded (and switchable), for one run."""

    def __init__(
        self,
        module_config: JsonDict | None = None,
        event_cache_size: int = EVENT_CACHE_SIZE,
    ) -> None:
        self._case = _HarnessCase(event_cache_size)
        self._case.setUp()
        # The harness disables the garbage collector for a test's duration;
        # the benchmarks collect between measurements instead (see stats.py).
        gc.enable()
        self.hs = self._case.hs
        self.reactor = self._case.reactor
        self.clock = WallClock(self.reactor)
        self.server_name = self.hs.hostname
        self.switch = ModuleSwitch(self.hs, module_config or _MODULE_CONFIG)
        engine = self.hs.get_datastores().main.database_engine
        #: SQLite works in this process: its CPU time is the whole cost, and
        #: other processes on the machine do not disturb it. PostgreSQL works
        #: in its own processes: wall-clock time.
        self.timer = Timer.CPU if isinstance(engine, Sqlite3Engine) else Timer.WALL
        self.pump()  # the module's start-up work (its schema)
        self._site = self._make_site()

    def _make_site(self) -> SynapseSite:
        """The client API, the admin API and the module's resources."""
        resources: dict[str, Resource] = dict(self._case.create_resource_dict())
        resources.update(self.hs._module_web_resources)
        root = OptionsResource()  # type: ignore[no-untyped-call]
        create_resource_tree(resources, root)
        return SynapseSite(
            logger_name="synapse.access.http.fake",
            site_tag=self.server_name,
            config=self.hs.config.server.listeners[0],
            resource=root,  # type: ignore[arg-type]
            server_version_string="1",
            max_request_body_size=MAX_REQUEST_BODY,
            reactor=self.reactor,  # type: ignore[arg-type]
            hs=self.hs,
        )

    def event_cache_entries(self) -> int | None:
        """How many events the event cache holds (its size after the factor)."""
        cache = getattr(self.hs.get_datastores().main, "_get_event_cache", None)
        size = getattr(getattr(cache, "_lru_cache", None), "max_size", None)
        return size if isinstance(size, int) else None

    def module_resource_paths(self) -> list[str]:
        """The paths the module mounted web resources on."""
        return sorted(self.hs._module_web_resources)

    def run(self, awaitable: Awaitable[T]) -> T:
        """Drive ``awaitable`` to completion on the fake reactor; raise its error."""
        return self._case.get_success_or_raise(awaitable)

    def pump(self, seconds: float = 0.0) -> None:
        """Run whatever is due on the fake reactor (advancing its clock)."""
        self._case.pump(seconds / 100)

    def settle(self, seconds: int = 120) -> None:
        """Let Synapse's periodic jobs catch up, between phases of a run.

        Advances the clock one second at a time over ``seconds``: jobs that
        have a backlog (such as the rotation of push actions after many sends
        in a large room) finish it here rather than inside a later sample.
        """
        self.reactor.pump([1.0] * seconds)

    def request(
        self,
        method: str,
        path: str,
        body: JsonDict | None = None,
        token: str | None = None,
    ) -> FakeChannel:
        """One HTTP request through the homeserver's resource tree, waited
        for as long as it takes (a ``wait: true`` split takes minutes, and gives
        way between slices: pacing.py)."""
        channel = make_request(
            self.reactor,
            self._site,
            method,
            path,
            body if body is not None else b"",
            access_token=token,
            await_result=False,
        )
        channel.await_result(timeout_ms=REQUEST_TIMEOUT_MS)
        return channel

    def start(self, path: str, body: JsonDict, token: str) -> tuple[int, JsonDict]:
        """A ``wait: true`` start waited for to its end: (200, its answer), or
        (status, error) if it failed.

        The harness's clock moves 0.1 s a turn while a request is waited for,
        much faster than the wall clock: a long start answers 202 after 50 s
        of it (SPEC section 11) and is followed here on ``GET /operations``
        (a failure's status read from the journal: the API shows its errcode).
        """
        channel = self.request("POST", path, body, token)
        if channel.code != HTTPStatus.ACCEPTED or body.get("wait") is False:
            return channel.code, channel.json_body
        op_id = channel.json_body["operation_id"]
        op_path = f"{BASE_PATH}/operations/{urllib.parse.quote(op_id)}"
        while True:
            seen = self.request("GET", op_path, None, token).json_body
            if seen["response"] is not None:
                return HTTPStatus.OK, seen["response"]
            if seen["state"] == "rolled_back":
                op = self.run(self.switch.module.operation_store.get(op_id))
                assert op is not None and op.response is not None
                return op.response["status"], seen["error"]
            self.pump(1.0)

    def register(self, localpart: str, admin: bool = False) -> tuple[str, str]:
        """Register and log in a user over the APIs; (user ID, access token)."""
        user_id = self._case.register_user(localpart, "password", admin)
        return user_id, self._case.login(localpart, "password")

    def requester(self, user_id: str) -> Requester:
        return create_requester(user_id)

    def close(self) -> None:
        """Shut the homeserver down and drop its database."""
        while self._case.cleanups:
            result = self._case.cleanups.pop()()
            if isinstance(result, Deferred):
                self.run(result)


async def joined_members(hs: HomeServer, room_id: str) -> int:
    """How many users are joined to ``room_id``."""
    store = hs.get_datastores().main
    # (The ignore: mypy needs Synapse's plugin to type its @cached methods.)
    return len(await store.get_users_in_room(room_id))  # type: ignore[call-arg,arg-type,misc]


async def bulk_join(
    hs: HomeServer,
    room_id: str,
    user_ids: Sequence[str],
    *,
    chunk: int = 100,
    snapshot_every: int = MAX_STATE_DELTA_HOPS + 1,
) -> None:
    """Join ``user_ids`` to ``room_id`` as one linear run of valid join events.

    Joining through the client API costs a full send per member; this builds
    the same events (signed, hashed, with their auth events, each one checked
    against the authorization rules) and persists them ``chunk`` at a time
    through Synapse's own persistence, with their state groups, as Synapse
    does for the initial state of a new room. Every ``snapshot_every`` events,
    one join goes through Synapse's full state computation, which stores the
    room's whole state as a new base when the chain of state deltas before it
    is ``MAX_STATE_DELTA_HOPS`` (100) long: the state tables are those of a
    room that grew by ordinary joins.

    The room's join rule must be ``public``. What this skips is what a join
    triggers around persistence (push rules, notifications, the user
    directory); the resulting room is the one those joins would have made.
    """
    store = hs.get_datastores().main
    controllers = hs.get_storage_controllers()
    persistence = controllers.persistence
    assert persistence is not None, "this process does not persist events"
    state_handler = hs.get_state_handler()
    auth_handler = hs.get_event_auth_handler()
    builders = hs.get_event_builder_factory()
    room_version = await store.get_room_version(room_id)
    current = await controllers.state.get_current_state_ids(room_id)
    auth_keys = [
        (EventTypes.Create, ""),
        (EventTypes.PowerLevels, ""),
        (EventTypes.JoinRules, ""),
    ]
    base = {key: current[key] for key in auth_keys}
    auth_events = list((await store.get_events(base.values())).values())
    # (The ignores: mypy needs Synapse's plugin to type its @cached methods.)
    (prev_id,) = await store.get_latest_event_ids_in_room(room_id)  # type: ignore[call-arg,arg-type,misc]
    depth = (await store.get_event(prev_id)).depth

    async def build(user_id: str) -> EventBase:
        nonlocal depth
        depth += 1
        builder = builders.for_room_version(
            room_version,
            {
                "type": EventTypes.Member,
                "room_id": room_id,
                "sender": user_id,
                "state_key": user_id,
                "content": {"membership": Membership.JOIN},
            },
        )
        event = await builder.build(
            prev_event_ids=[prev_id],
            auth_event_ids=auth_handler.compute_auth_events(builder, base),
            depth=depth,
        )
        await check_state_independent_auth_rules(
            store, event, {e.event_id: e for e in auth_events}
        )
        check_state_dependent_auth_rules(event, auth_events)
        return event

    for start in range(0, len(user_ids), snapshot_every):
        block = user_ids[start : start + snapshot_every]
        # The first join of a block: Synapse's own state computation.
        first = await build(block[0])
        context = await state_handler.compute_event_context(first)
        await persistence.persist_events([(first, context)])
        prev_id = first.event_id
        assert context.state_group is not None
        group = context.state_group
        for i in range(1, len(block), chunk):
            events_and_contexts: list[tuple[EventBase, UnpersistedEventContext]] = []
            for user_id in block[i : i + chunk]:
                event = await build(user_id)
                unpersisted = await state_handler.calculate_context_info(
                    event,
                    state_ids_before_event=base,
                    partial_state=False,
                    state_group_before_event=group,
                )
                assert isinstance(unpersisted, UnpersistedEventContext)
                events_and_contexts.append((event, unpersisted))
                prev_id = event.event_id
            persisted = (
                await UnpersistedEventContext.batch_persist_unpersisted_contexts(
                    list(events_and_contexts), room_id, group, hs.get_datastores().state
                )
            )
            _add_chunk_delta(persisted, group)
            await persistence.persist_events(persisted)
            last_group = persisted[-1][1].state_group
            assert last_group is not None
            group = last_group


def _add_chunk_delta(
    persisted: Iterable[tuple[EventBase, EventContext]], group_before: int
) -> None:
    """Tell persistence the chunk's whole state change, from its last context.

    Synapse updates a room's current state from the delta between the old and
    the new forward extremity's state groups when a context carries it, and
    otherwise loads both states in full. Each batched context carries only its
    own event's delta; this adds the chunk's sum to the last one.
    """
    delta: dict[tuple[str, str], str] = {}
    last: EventContext | None = None
    for event, context in persisted:
        delta[(event.type, event.state_key)] = event.event_id
        last = context
    assert last is not None and last.state_group is not None
    last.state_group_deltas[(group_before, last.state_group)] = delta
