"""Who owns an operation or a parent lock, and whether that owner still lives.

The one home of ownership and liveness (docs/operations.md, "Liveness"):

- Every process has an identity: its instance name and a token it makes at
  start-up (:attr:`Ownership.process_token`), which tells it from its own
  earlier run.
- A journalled operation names its owner in its row (``instance``,
  ``process_token``); a parent lock in its ID (``kind:instance:token:random``,
  written and read only here).
- While a process holds anything (:meth:`Ownership.hold`), every
  :data:`RENEW_EVERY_MS` it bumps the lease counter of every pending operation,
  every committed start still placing users, and every lock it owns
  (:meth:`Ownership.renew`).
- Another process is dead once a lease counter it must bump stood still for
  :data:`LEASE_MS`, measured with the clock of the process that looks (no two
  hosts' clocks are ever compared); this instance's earlier run is dead at
  once (:meth:`Ownership.is_dead`). Only the lease counter is a sign of life.
- A process takes a dead one's operation over with :meth:`Ownership.claim`:
  compare-and-set on the owner's token, so only one process ever does.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Collection, Iterator

import attrs
from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_breakout.journal.assignment import UserState
from synapse_breakout.journal.rows import Operation, OperationState

#: How often a process bumps the lease of what it holds.
RENEW_EVERY_MS = 5_000
#: An operation or lock of another process whose lease counter stood still this
#: long, as the looking process's own clock measures it, is taken for dead.
LEASE_MS = 30_000


@attrs.frozen
class LockOwner:
    """Who holds a parent lock, read from its ID."""

    kind: str
    instance: str
    token: str


def parse_lock_id(lock_id: str) -> LockOwner:
    """The owner named in a lock ID made by :meth:`Ownership.lock_id`."""
    kind, instance, token, *_ = [*lock_id.split(":"), "", "", ""]
    return LockOwner(kind, instance, token)


def _renew_txn(
    txn: LoggingTransaction, instance: str, token: str, lock_pattern: str
) -> None:
    """Bump the leases of one process's pending operations, of its committed
    starts still placing users, and of its locks."""
    txn.execute(
        "UPDATE breakout_operations SET lease = lease + 1"
        " WHERE instance = ? AND process_token = ? AND (state = ? OR (state = ?"
        " AND EXISTS (SELECT 1 FROM breakout_op_users u"
        " WHERE u.op_id = breakout_operations.op_id AND u.state = ?)))",
        (
            instance,
            token,
            OperationState.PENDING.value,
            OperationState.COMMITTED.value,
            UserState.PLANNED.value,
        ),
    )
    txn.execute(
        "UPDATE breakout_parent_locks SET lease = lease + 1 WHERE op_id LIKE ?",
        (lock_pattern,),
    )


def _claim_txn(
    txn: LoggingTransaction,
    op_id: str,
    old_token: str,
    instance: str,
    token: str,
    now: int,
) -> bool:
    txn.execute(
        "UPDATE breakout_operations SET instance = ?, process_token = ?,"
        " updated_ts = ? WHERE op_id = ? AND process_token = ?",
        (instance, token, now, op_id, old_token),
    )
    return txn.rowcount == 1


class Ownership:
    """This process's identity, the leases it renews, and its judgement of
    whether others' owners live."""

    def __init__(self, api: ModuleApi):
        self._api = api
        self.instance = api.worker_name or "master"
        #: Tells this process's operations from a crashed predecessor's.
        self.process_token = secrets.token_hex(8)
        #: Leases of other processes' operations and locks as last seen here:
        #: key -> (counter, when this process first saw that counter).
        self._seen: dict[str, tuple[int, int]] = {}
        #: Operations and locks this process holds now (their leases are renewed).
        self.held = 0

    # --- what this process holds -------------------------------------------------

    def lock_id(self, kind: str) -> str:
        """A parent-lock ID naming this process, for recovery."""
        return f"{kind}:{self.instance}:{self.process_token}:{secrets.token_hex(4)}"

    def owns(self, op: Operation) -> bool:
        """Whether ``op`` names this process as its owner."""
        return op.instance == self.instance and op.process_token == self.process_token

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Renew this process's leases while the block runs."""
        self.held += 1
        try:
            yield
        finally:
            self.held -= 1

    def renew_here(self) -> None:
        """Start renewing this process's leases (on every instance)."""
        self._api.looping_background_call(
            self.renew, RENEW_EVERY_MS, desc="breakout_renew", run_on_all_instances=True
        )

    async def renew(self) -> None:
        """Bump this process's leases, if it holds anything."""
        if self.held:
            await self._api.run_db_interaction(
                "breakout_renew_leases",
                _renew_txn,
                self.instance,
                self.process_token,
                f"%:{self.instance}:{self.process_token}:%",
            )

    async def claim(self, op: Operation) -> Operation | None:
        """Make this process ``op``'s owner, unless another process took it
        meanwhile; ``op`` as this process now owns it, or None."""
        if not await self.transfer(op, self.instance, self.process_token):
            return None
        return attrs.evolve(
            op, instance=self.instance, process_token=self.process_token
        )

    async def transfer(self, op: Operation, instance: str, token: str) -> bool:
        """Make (``instance``, ``token``) ``op``'s owner if ``op``'s owner
        still is: compare-and-set, so one process only takes it over."""
        return await self._api.run_db_interaction(
            "breakout_claim_operation",
            _claim_txn,
            op.op_id,
            op.process_token,
            instance,
            token,
            self._api.get_current_time_msec(),
        )

    # --- whether others live -----------------------------------------------------

    def is_dead(
        self, key: str, instance: str, token: str, lease: int, now: int
    ) -> bool:
        """Whether the process that wrote ``instance`` and ``token`` is dead.

        Args:
            key: what the lease belongs to (an operation or lock ID).
            lease: its lease counter as read now.
            now: this process's clock (ms).
        """
        if instance == self.instance:
            return token != self.process_token
        seen = self._seen.get(key)
        if seen is None or seen[0] != lease:
            self._seen[key] = (lease, now)
            return False
        return now - seen[1] >= LEASE_MS

    def operation_is_dead(self, op: Operation, now: int) -> bool:
        """Whether no live process will finish ``op``."""
        return self.is_dead(op.op_id, op.instance, op.process_token, op.lease, now)

    def lock_is_dead(self, lock_id: str, lease: int, now: int) -> bool:
        """Whether the process holding the parent lock ``lock_id`` is dead."""
        owner = parse_lock_id(lock_id)
        return self.is_dead(lock_id, owner.instance, owner.token, lease, now)

    def of_other_instance(self, lock_id: str) -> bool:
        """Whether ``lock_id`` names another instance (so it is waited on)."""
        return parse_lock_id(lock_id).instance != self.instance

    def forget_all_but(self, keys: Collection[str]) -> None:
        """Forget the leases seen of everything not in ``keys`` (gone)."""
        self._seen = {k: v for k, v in self._seen.items() if k in keys}
