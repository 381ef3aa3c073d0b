"""Pure Matrix rules, no I/O: event content, power levels, the child-room
template, auto-assignment's arithmetic, notice templates, error shapes and the
wire model (the values that cross files and the JSON the API answers with).

Everything above (journal, rooms, operations and the three ways in) may import
from here; nothing here imports from them.
"""
