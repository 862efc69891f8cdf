#!/usr/bin/env python3
"""Prints the tables of an iSCSI benchmark run from fio's JSON output.

    report.py OUT-DIR TARGET...   (run.sh calls it; rerun it on a kept OUT)
"""
import json, os, sys
out, targets = sys.argv[1], sys.argv[2:]
def load(name):
    p = os.path.join(out, name + ".json")
    if not os.path.exists(p):
        return None
    d = json.load(open(p))["jobs"][0]
    if d.get("error"):
        return None
    return d
jobs = [j for j in ["randread-4k-qd16", "randread-4k-qd32", "randwrite-4k-qd16", "randwrite-4k-qd32", "write-1m-qd16", "randwrite-4k-qd16-loaded"]
        if any(load(f"{t}-{j}") for t in targets)]
def figure(t, j):
    d = load(f"{t}-{j}")
    if d is None:
        return None
    side = d["read"] if "read" in j else d["write"]
    p99 = side["clat_ns"]["percentile"].get("99.000000", 0) / 1e6
    return side["iops"], side["bw_bytes"] / 1e6, p99, side["total_ios"]
head = "| job | " + " | ".join(f"{t} IOPS | {t} MB/s | {t} p99 ms" for t in targets)
others = [t for t in targets if t != "gatewayd"]
if "gatewayd" in targets:
    head += " | " + " | ".join(f"gatewayd/{t}" for t in others)
print(head + " |")
print("|" + "---|" * (1 + 3 * len(targets) + (len(others) if "gatewayd" in targets else 0)))
for j in jobs:
    row = [j]
    figs = {t: figure(t, j) for t in targets}
    for t in targets:
        f = figs[t]
        row += [f"{f[0]:.0f}", f"{f[1]:.1f}", f"{f[2]:.2f}"] if f else ["error"] * 3
    if "gatewayd" in targets:
        g = figs["gatewayd"]
        for t in others:
            f = figs[t]
            row.append(f"{g[0] / f[0]:.2f}" if g and f and f[0] else "-")
    print("| " + " | ".join(row) + " |")
print()
print("| disk limit (fio psync on a file, one writer) | IOPS | MB/s | p99 ms |")
print("|---|---|---|---|")
for j in ["randwrite-4k-sync1", "randwrite-4k-sync16", "write-1m-sync1", "write-1m-sync16"]:
    d = load(f"disk-{j}")
    if d:
        w = d["write"]
        print(f"| {j} | {w['iops']:.0f} | {w['bw_bytes']/1e6:.1f} | {w['clat_ns']['percentile'].get('99.000000', 0)/1e6:.2f} |")
gateways = [t for t in targets if t.startswith("gatewayd")]
if gateways:
    print()
    print("| target | job | fdatasync+fsync calls | per write |")
    print("|---|---|---|---|")
    for g in gateways:
        for j in jobs:
            if "write" not in j:
                continue
            p = os.path.join(out, f"{g}-{j}.syncs")
            f = figure(g, j)
            if not os.path.exists(p) or not f:
                continue
            n = 0
            for line in open(p):
                parts = line.split(",")
                if len(parts) > 2 and parts[0].strip().isdigit():
                    n += int(parts[0])
            print(f"| {g} | {j} | {n} | {n / f[3]:.3f} |" if f[3] else f"| {g} | {j} | {n} | - |")
if "randwrite-4k-qd16-loaded" in jobs:
    print()
    print("| target | p99 quiet ms | p99 loaded ms | loaded/quiet |")
    print("|---|---|---|---|")
    for t in targets:
        q, l = figure(t, "randwrite-4k-qd16"), figure(t, "randwrite-4k-qd16-loaded")
        if q and l:
            print(f"| {t} | {q[2]:.1f} | {l[2]:.1f} | {l[2] / q[2]:.2f} |")
print()
if os.path.exists(os.path.join(out, "uptime")):
    print("load average at the end:", open(os.path.join(out, "uptime")).read().strip())
