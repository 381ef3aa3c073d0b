"""The third way in: the background loops (loops.py) that recover crashed
operations, end break-outs on time, warn before the end, eject parent leavers
and keep the tables small."""
