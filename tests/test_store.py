"""The module's tables: created at start-up, once, idempotently (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from harness import BreakoutTestCase, module_config
from synapse.server import HomeServer
from synapse.storage.database import LoggingTransaction
from synapse.storage.engines import PostgresEngine
from synapse.util.clock import Clock
from twisted.internet.testing import MemoryReactor

from synapse_breakout.journal.operations import _begin_operation_txn
from synapse_breakout.journal.rows import Operation, OperationState
from synapse_breakout.journal.schema import SCHEMA_VERSION, Schema, SchemaTooNewError
from tests import unittest

TABLES = (
    "breakout_operations",
    "breakout_parent_locks",
    "breakout_op_rooms",
    "breakout_active",
    "breakout_sender_verdicts",
    "breakout_op_users",
)


def _count_rows_txn(txn: LoggingTransaction, table: str) -> int:
    txn.execute(f"SELECT COUNT(*) FROM {table}")
    row = txn.fetchone()
    assert row is not None
    return int(row[0])


class SchemaTestCase(BreakoutTestCase):
    def count_rows(self, table: str) -> int:
        return self.get_success(
            self.module_api.run_db_interaction("test_count", _count_rows_txn, table)
        )

    def test_tables_exist_after_start_up_with_version_row(self) -> None:
        self.assertEqual(self.get_success(self.store.version()), SCHEMA_VERSION)
        self.assertEqual(self.count_rows("breakout_schema_version"), 1)
        for table in TABLES:
            self.assertEqual(self.count_rows(table), 0, table)

    def test_creation_is_idempotent(self) -> None:
        # A restart runs it again: nothing breaks, the version row stays single.
        self.get_success(self.store.create())
        self.get_success(Schema(self.module_api).create())
        self.assertEqual(self.count_rows("breakout_schema_version"), 1)
        self.assertEqual(self.get_success(self.store.version()), SCHEMA_VERSION)

    def test_newer_schema_refuses_to_downgrade(self) -> None:
        def bump_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE breakout_schema_version SET version = ?", (SCHEMA_VERSION + 1,)
            )

        self.get_success(self.module_api.run_db_interaction("test_bump", bump_txn))
        failure = self.get_failure(self.store.create(), SchemaTooNewError)
        self.assertIn("upgrade the module", str(failure.value))


class NoBackgroundTasksTestCase(unittest.HomeserverTestCase):
    """An instance that does not run background tasks leaves the schema alone."""

    def default_config(self) -> dict[str, Any]:
        config = super().default_config()
        config.update(module_config())
        config["run_background_tasks_on"] = "some_other_worker"
        return config

    def prepare(self, reactor: MemoryReactor, clock: Clock, hs: HomeServer) -> None:
        self.module_api = hs.get_module_api()

    def test_schema_not_created(self) -> None:
        self.assertFalse(self.module_api.should_run_background_tasks())

        def exists_txn(txn: LoggingTransaction) -> bool:
            try:
                txn.execute("SELECT version FROM breakout_schema_version")
            except Exception:
                return False
            return True

        self.assertFalse(
            self.get_success(
                self.module_api.run_db_interaction("test_exists", exists_txn)
            )
        )


class EngineTestCase(BreakoutTestCase):
    def test_suite_runs_on_the_engine_asked_for(self) -> None:
        """SYNAPSE_POSTGRES=1 must really put the module's tables in PostgreSQL."""
        engine = self.hs.get_datastores().main.database_engine
        self.assertEqual(
            isinstance(engine, PostgresEngine), bool(os.environ.get("SYNAPSE_POSTGRES"))
        )


class ConcurrentTxnIdTestCase(BreakoutTestCase):
    """Two starts with one ``txn_id`` for two parents, at the same moment, on
    PostgreSQL: two real connections (Synapse's harness runs its own
    transactions one at a time, so it cannot show this)."""

    def op(self, parent: str) -> Operation:
        now = self.clock.time_msec()
        return Operation(
            op_id=f"{now}-{parent}",
            kind="start",
            parent_room_id=parent,
            requester="@mod:test",
            txn_id="same",
            state=OperationState.PENDING,
            instance="master",
            process_token="t",
            created_ts=now,
            updated_ts=now,
            response=None,
            acting_user="@mod:test",
        )

    def test_the_second_gets_the_first_not_an_integrity_error(self) -> None:
        engine = self.hs.get_datastores().main.database_engine
        if not isinstance(engine, PostgresEngine):
            self.skipTest("PostgreSQL only: SQLite has one writer at a time")
        self.get_success(self.store.create())
        args = {
            k: v
            for k, v in self.hs.config.database.databases[0].config["args"].items()
            if not k.startswith("cp_")  # the pool's own options
        }
        connections = [engine.module.connect(**args) for _ in range(2)]
        for conn in connections:
            conn.set_session(isolation_level="REPEATABLE READ")

        def begin(conn: Any, op: Operation) -> Operation | None:
            # As Synapse's runInteraction does: retry on serialisation failures.
            for _ in range(5):
                txn = LoggingTransaction(
                    txn=conn.cursor(),
                    name="test_begin",
                    server_name="test",
                    database_engine=engine,
                )
                try:
                    result = _begin_operation_txn(txn, op)
                    conn.commit()
                    return result
                except engine.module.OperationalError:
                    conn.rollback()
            raise AssertionError("no answer after 5 tries")

        first, second = self.op("!a:test"), self.op("!b:test")
        a_txn = LoggingTransaction(
            txn=connections[0].cursor(),
            name="test_begin",
            server_name="test",
            database_engine=engine,
        )
        self.assertEqual(_begin_operation_txn(a_txn, first), first)
        with ThreadPoolExecutor(1) as pool:
            later = pool.submit(begin, connections[1], second)
            time.sleep(0.5)  # the second waits on the first's txn_id
            connections[0].commit()
            self.assertEqual(later.result(timeout=30), first)
        for conn in connections:
            conn.close()
