"""The second way in: Synapse's hooks. The third-party event rules that check
every local break-out send (event_rules.py) and the spam-checker hook that
judges every break-out event's sender (sender_trust.py)."""
