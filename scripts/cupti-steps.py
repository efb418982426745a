#!/usr/bin/env python3
"""Decode steps in a CUPTI trace (scripts/cupti-trace.cpp): where a token's GPU time goes.

    python3 scripts/cupti-steps.py TRACE.csv [--idle-us 40] [--top 12]

The device's activity is cut into steps at idle gaps longer than --idle-us (between two decode tokens the GPU
waits for the host: logits copy, sampling, the next launches). The steps with the most common kernel count are
the decode steps; for them it prints medians of: the step's span (first start to last end), the kernels' summed
duration, the copies', and the idle time inside the step (span minus the union of busy intervals), then the idle
time between steps, a table of kernels by name (count and microseconds per step) and the kernel pairs with the
largest idle gaps between them. Standard library only.
"""
import argparse
import collections
import statistics


def read(path):
    rows = []
    with open(path) as f:
        next(f)
        for line in f:
            p = line.rstrip("\n").split(",", 9)
            if len(p) < 10:
                continue
            rows.append((p[0], int(p[1]), int(p[2]), p[9], int(p[8])))
    rows.sort(key=lambda r: r[1])
    return rows


def short(name, n=60):
    base = name.split("(")[0]
    return base if len(base) <= n else base[: n - 3] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--idle-us", type=float, default=40.0)
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    rows = read(a.trace)
    if not rows:
        print("no records")
        return
    steps, cur, end = [], [], None
    for r in rows:
        if cur and r[1] - end > a.idle_us * 1000:
            steps.append(cur)
            cur = []
        cur.append(r)
        end = r[2] if end is None or not cur[:-1] else max(end, r[2])
    steps.append(cur)
    # Copies alone (the next token's ids and positions, sent before its kernels are launched) form steps of
    # their own: the decode steps are the most common kernel count above 0.
    counts = collections.Counter(sum(1 for r in s if r[0] == "K") for s in steps)
    counts.pop(0, None)
    mode, n_mode = counts.most_common(1)[0]
    dec = [i for i, s in enumerate(steps) if sum(1 for r in s if r[0] == "K") == mode]
    print(f"{len(rows)} records, {len(steps)} steps; {n_mode} steps of {mode} kernels taken as decode steps")

    def busy_union(s):
        tot, cs, ce = 0, None, None
        for r in s:
            if cs is None or r[1] > ce:
                if cs is not None:
                    tot += ce - cs
                cs, ce = r[1], r[2]
            else:
                ce = max(ce, r[2])
        return tot + (ce - cs)

    span, ksum, csum, idle, between, period = [], [], [], [], [], []
    dec_set = set(dec)
    per_name = collections.defaultdict(list)
    pair_gap = collections.defaultdict(list)
    for i in dec:
        s = steps[i]
        sp = max(r[2] for r in s) - s[0][1]
        span.append(sp / 1e3)
        ksum.append(sum(r[2] - r[1] for r in s if r[0] == "K") / 1e3)
        csum.append(sum(r[2] - r[1] for r in s if r[0] != "K") / 1e3)
        idle.append((sp - busy_union(s)) / 1e3)
        if i + 1 < len(steps):
            between.append((steps[i + 1][0][1] - max(r[2] for r in s)) / 1e3)
        if i + 1 in dec_set:
            period.append((steps[i + 1][0][1] - s[0][1]) / 1e3)
        names = collections.defaultdict(float)
        for r in s:
            names[(r[0], short(r[3]))] += (r[2] - r[1]) / 1e3
        for k, v in names.items():
            per_name[k].append(v)
        for x, y in zip(s, s[1:]):
            pair_gap[(short(x[3], 40), short(y[3], 40))].append(max(0, y[1] - x[2]) / 1e3)
    med = statistics.median
    print(f"per decode step (median us): span {med(span):.1f}, kernels {med(ksum):.1f}, copies {med(csum):.1f}, "
          f"idle inside {med(idle):.1f}; idle after the step {med(between) if between else 0:.1f}; "
          f"start to next start {med(period) if period else 0:.1f}")
    n_dec = len(dec)
    print(f"\n{'us/step':>9} {'n/step':>7}  name")
    cnt = collections.Counter()
    for i in dec:
        for r in steps[i]:
            cnt[(r[0], short(r[3]))] += 1
    for k, v in sorted(per_name.items(), key=lambda kv: -sum(kv[1]))[: a.top * 2]:
        print(f"{sum(v) / n_dec:9.1f} {cnt[k] / n_dec:7.1f}  {k[0]} {k[1]}")
    print(f"\nlargest idle between consecutive records (us per step, mean gap, count per step):")
    for k, v in sorted(pair_gap.items(), key=lambda kv: -sum(kv[1]))[: a.top]:
        print(f"{sum(v) / n_dec:9.1f} {statistics.mean(v):7.2f} {len(v) / n_dec:6.1f}  {k[0]} -> {k[1]}")


if __name__ == "__main__":
    main()
