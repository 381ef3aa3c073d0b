"""The module's tables: created at start-up, once, idempotently (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
from typing import Any

from harness import BreakoutTestCase, module_config
from synapse.server import HomeServer
from synapse.storage.database import LoggingTransaction
from synapse.storage.engines import PostgresEngine
from synapse.util.clock import Clock
from twisted.internet.testing import MemoryReactor

from synapse_breakout.schema import SCHEMA_VERSION, BreakoutStore, SchemaTooNewError
from tests import unittest

TABLES = (
    "breakout_operations",
    "breakout_parent_locks",
    "breakout_op_rooms",
    "breakout_active",
    "breakout_sender_verdicts",
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
        self.assertEqual(
            self.get_success(self.store.get_schema_version()), SCHEMA_VERSION
        )
        self.assertEqual(self.count_rows("breakout_schema_version"), 1)
        for table in TABLES:
            self.assertEqual(self.count_rows(table), 0, table)

    def test_creation_is_idempotent(self) -> None:
        # A restart runs it again: nothing breaks, the version row stays single.
        self.get_success(self.store.create_schema())
        self.get_success(BreakoutStore(self.module_api).create_schema())
        self.assertEqual(self.count_rows("breakout_schema_version"), 1)
        self.assertEqual(
            self.get_success(self.store.get_schema_version()), SCHEMA_VERSION
        )

    def test_newer_schema_refuses_to_downgrade(self) -> None:
        def bump_txn(txn: LoggingTransaction) -> None:
            txn.execute(
                "UPDATE breakout_schema_version SET version = ?", (SCHEMA_VERSION + 1,)
            )

        self.get_success(self.module_api.run_db_interaction("test_bump", bump_txn))
        failure = self.get_failure(self.store.create_schema(), SchemaTooNewError)
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
