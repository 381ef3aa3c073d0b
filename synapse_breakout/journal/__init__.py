"""The journal: the module's tables in Synapse's database, and the only home
of the module's SQL.

One file per table group, one ``_txn`` function per query, each run through
``ModuleApi.run_db_interaction`` with its own description (it names the
transaction in Synapse's metrics and logs): the schema and its migrations
(schema.py), the operations and running break-outs (operations.py), a start's
assignment (assignment.py), parent locks (locks.py), who owns an operation and
whether they live (ownership.py), deadlines and warnings (deadlines.py), help
requests (help.py), sender verdicts (verdicts.py), retention (retention.py).
Reads of Synapse's own tables are synapse_tables.py's (its schema is an internal).
"""
