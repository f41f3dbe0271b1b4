#!/usr/bin/env python3
"""histq.py METRIC LABELS Q [Q...] < metrics.txt

Estimates quantiles of a Prometheus histogram from its cumulative buckets
the way PromQL's histogram_quantile() does: find the bucket holding the
q-th observation and interpolate linearly inside it (the lower edge of the
first bucket is 0; a quantile in the +Inf bucket is reported as the highest
finite edge, prefixed with '>'). Prints one value in seconds per Q, then
the observation count. Standard library only.

  histq.py reel_batch_seconds 'worker="count"' 0.5 0.99 < metrics.txt
"""
import re
import sys


def main():
    metric, labels = sys.argv[1], sys.argv[2]
    qs = [float(q) for q in sys.argv[3:]]
    pat = re.compile(r'^%s_bucket\{(.*)\}\s+(\S+)$' % re.escape(metric))
    buckets = []
    for line in sys.stdin:
        m = pat.match(line.strip())
        if not m:
            continue
        lab = m.group(1)
        if labels not in lab:
            continue
        le = re.search(r'le="([^"]+)"', lab).group(1)
        buckets.append((float("inf") if le == "+Inf" else float(le), float(m.group(2))))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        print(" ".join("nan" for _ in qs), 0)
        return
    total = buckets[-1][1]
    out = []
    for q in qs:
        rank = q * total
        prev_le, prev_c = 0.0, 0.0
        val = None
        for le, c in buckets:
            if c >= rank:
                if le == float("inf"):
                    val = ">%g" % prev_le
                elif c == prev_c:
                    val = "%g" % le
                else:
                    val = "%g" % (prev_le + (le - prev_le) * (rank - prev_c) / (c - prev_c))
                break
            prev_le, prev_c = le, c
        out.append(val)
    print(" ".join(out), int(total))


if __name__ == "__main__":
    main()
