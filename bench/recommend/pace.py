#!/usr/bin/python3
"""pace.py RATE < lines > lines: copies stdin to stdout at RATE lines per
second (flushed one by one), for a fixed offered load."""
import sys
import time

rate = float(sys.argv[1])
t0 = time.monotonic()
for k, line in enumerate(sys.stdin):
    wait = t0 + k / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    sys.stdout.write(line)
    sys.stdout.flush()
