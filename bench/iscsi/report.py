#!/usr/bin/env python3
"""Prints the tables of an iSCSI benchmark run from fio's JSON output.

    report.py OUT-DIR TARGET...           (run.sh calls it; rerun it on a kept OUT)
    report.py OUT1,OUT2,OUT3 TARGET...    the median of several runs, figure by figure

Ratios compare gatewayd with each other target: the median of the ratios
of each run, so each ratio still comes from one run's interleaved jobs.
"""
import json, os, statistics, sys

outs, targets = sys.argv[1].split(","), sys.argv[2:]
JOBS = ["randread-4k-qd16", "randread-4k-qd32", "randwrite-4k-qd16", "randwrite-4k-qd32", "randwrite-4k-qd1",
        "write-1m-qd16", "randwrite-4k-qd16-loaded"]
DISK = ["randwrite-4k-sync1", "randwrite-4k-sync16", "write-1m-sync1", "write-1m-sync16"]


def load(out, name):
    p = os.path.join(out, name + ".json")
    if not os.path.exists(p):
        return None
    d = json.load(open(p))["jobs"][0]
    if d.get("error"):
        return None
    return d


def one(out, name, side):
    """IOPS, MB/s, p99 ms and I/O count of one job in one run."""
    d = load(out, name)
    if d is None:
        return None
    s = d[side]
    return s["iops"], s["bw_bytes"] / 1e6, s["clat_ns"]["percentile"].get("99.000000", 0) / 1e6, s["total_ios"]


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def figure(t, j):
    side = "read" if "read" in j else "write"
    runs = [f for f in (one(o, f"{t}-{j}", side) for o in outs) if f]
    if not runs:
        return None
    return tuple(median([r[i] for r in runs]) for i in range(4))


def ratio(t, u, j):
    side = "read" if "read" in j else "write"
    rs = []
    for o in outs:
        a, b = one(o, f"{t}-{j}", side), one(o, f"{u}-{j}", side)
        if a and b and b[0]:
            rs.append(a[0] / b[0])
    return median(rs)


def syncs(out, t, j):
    """fsync+fdatasync calls of gatewayd target t per write in job j."""
    p = os.path.join(out, f"{t}-{j}.syncs")
    f = one(out, f"{t}-{j}", "write")
    if not os.path.exists(p) or not f or not f[3]:
        return None
    n = 0
    for line in open(p):
        parts = line.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            n += int(parts[0])
    return n / f[3]


def cpu(out, t, j):
    """CPU time of target t's serving process per I/O of job j, in µs."""
    p = os.path.join(out, f"{t}-{j}.cpu")
    f = one(out, f"{t}-{j}", "read" if "read" in j else "write")
    if not os.path.exists(p) or not f or not f[3]:
        return None
    ticks, hz = open(p).read().split()
    return int(ticks) / int(hz) / f[3] * 1e6


jobs = [j for j in JOBS if any(figure(t, j) for t in targets)]
others = [t for t in targets if t != "gatewayd"]
head = "| job | " + " | ".join(f"{t} IOPS | {t} MB/s | {t} p99 ms" for t in targets)
if "gatewayd" in targets:
    head += " | " + " | ".join(f"gatewayd/{t}" for t in others)
print(head + " |")
print("|" + "---|" * (1 + 3 * len(targets) + (len(others) if "gatewayd" in targets else 0)))
for j in jobs:
    row = [j]
    for t in targets:
        f = figure(t, j)
        row += [f"{f[0]:.0f}", f"{f[1]:.1f}", f"{f[2]:.2f}"] if f else ["error"] * 3
    if "gatewayd" in targets:
        for t in others:
            r = ratio("gatewayd", t, j)
            row.append(f"{r:.2f}" if r is not None else "-")
    print("| " + " | ".join(row) + " |")

# Each gatewayd beside the peer that makes the same promise: write-through
# against tgtd with O_SYNC, the write cache on (gatewayd-wc) against tgtd
# without it (both acknowledge a write before it is durable).
PAIRS = [("gatewayd", "tgtd-sync"), ("gatewayd-wc", "tgtd")]
pairs = [(a, b) for a, b in PAIRS if a in targets and b in targets]
if pairs:
    print()
    print("| job | target | IOPS | p99 ms | peer | IOPS | p99 ms | target/peer |")
    print("|---|---|---|---|---|---|---|---|")
    for j in jobs:
        if "write" not in j:
            continue
        for a, b in pairs:
            fa, fb, r = figure(a, j), figure(b, j), ratio(a, b, j)
            if fa and fb:
                rs = f"{r:.2f}" if r is not None else "-"
                print(f"| {j} | {a} | {fa[0]:.0f} | {fa[2]:.2f} | {b} | {fb[0]:.0f} | {fb[2]:.2f} | {rs} |")

disk = [(j, figure("disk", j)) for j in DISK]
if any(f for _, f in disk):
    print()
    print("| disk limit (fio psync on a file, one writer) | IOPS | MB/s | p99 ms |")
    print("|---|---|---|---|")
    for j, f in disk:
        if f:
            print(f"| {j} | {f[0]:.0f} | {f[1]:.1f} | {f[2]:.2f} |")

gateways = [t for t in targets if t.startswith("gatewayd")]
rows = [(g, j, median([syncs(o, g, j) for o in outs])) for g in gateways for j in jobs if "write" in j]
if any(s is not None for _, _, s in rows):
    print()
    print("| target | job | fsync+fdatasync calls per write |")
    print("|---|---|---|")
    for g, j, s in rows:
        if s is not None:
            print(f"| {g} | {j} | {s:.3f} |")

rows = [(j, [median([cpu(o, t, j) for o in outs]) for t in targets]) for j in jobs]
if any(c is not None for _, cs in rows for c in cs):
    print()
    print("| job (CPU time of the serving process per I/O, µs) | " + " | ".join(targets) + " |")
    print("|---|" + "---|" * len(targets))
    for j, cs in rows:
        print(f"| {j} | " + " | ".join(f"{c:.0f}" if c is not None else "-" for c in cs) + " |")

if "randwrite-4k-qd16-loaded" in jobs:
    print()
    print("| target | p99 quiet ms | p99 loaded ms | loaded/quiet |")
    print("|---|---|---|---|")
    for t in targets:
        rs = []
        for o in outs:
            q, l = one(o, f"{t}-randwrite-4k-qd16", "write"), one(o, f"{t}-randwrite-4k-qd16-loaded", "write")
            if q and l and q[2]:
                rs.append((q[2], l[2], l[2] / q[2]))
        if rs:
            print(f"| {t} | {median([r[0] for r in rs]):.1f} | {median([r[1] for r in rs]):.1f} | {median([r[2] for r in rs]):.2f} |")

for o in outs:
    p = os.path.join(o, "uptime")
    if os.path.exists(p):
        print()
        print(f"{o}: at the end,", open(p).read().strip())
