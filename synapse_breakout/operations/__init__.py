"""The operations: one file per verb a host or participant (or a loop) does
in rooms, over the journal and the rooms layer.

- start: start.py (its phases), start_checks.py (every check, in order),
  after_commit.py (commit, place, announce), place_users.py (placing a start's
  users), rollback.py, recovery.py, stored_answers.py (``txn_id`` replays),
  progress.py (``wait: false``, ``GET /operations``);
- describe.py (``GET``), end.py, move.py, deadline.py, broadcast.py, help.py,
  eject.py (parent leavers); outcomes.py counts them all.
"""
