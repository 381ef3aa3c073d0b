"""What the operations and the background loops share when they act in rooms:
the parent room and its break-out in force (parent.py), who acts for it
(acting.py), its break-out event (breakout_event.py), memberships in child
rooms (memberships.py, members.py), the notices sent (announcer.py), what an
end gives own rooms (closing.py), and giving way to the rest of the process
(pacing.py).
"""
