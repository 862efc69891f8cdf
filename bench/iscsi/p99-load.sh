#!/usr/bin/env bash
# p99 write latency beside a CPU load: bench/iscsi/run.sh with its loaded
# job beside LOAD busy loops (default 2, one per core of a 2-core machine),
# then the 99th percentile of the 4 KiB qd 16 random write job alone and
# loaded, and their ratio, for each target. The aim is a loaded p99 within
# 2x of the quiet one.
#
#   bench/iscsi/p99-load.sh                         # gatewayd and tgtd O_SYNC
#   SRC_base=/other/tree TARGETS="gatewayd gatewayd-base tgtd-sync" bench/iscsi/p99-load.sh
#   OUT=/some/dir PROFILE=1 bench/iscsi/p99-load.sh # keep JSON and CPU profiles
#
# Other variables are run.sh's.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
export LOAD="${LOAD:-2}"
export TARGETS="${TARGETS:-gatewayd tgtd-sync}"
keep="${OUT:-}"
out="${OUT:-$(mktemp -d)}"
export OUT="$out"
uptime | sed 's/^/before: /'
"$here/run.sh"
uptime | sed 's/^/after: /'
python3 - "$out" $TARGETS <<'PY'
import json, sys
out, targets = sys.argv[1], sys.argv[2:]
def p99(t, job):
    with open(f"{out}/{t}-{job}.json") as f:
        w = json.load(f)["jobs"][0]["write"]
    return w["clat_ns"]["percentile"]["99.000000"] / 1e6, w["iops"]
print(f"| target | quiet p99 ms | IOPS | loaded p99 ms | IOPS | loaded / quiet |")
print("|---|---:|---:|---:|---:|---:|")
for t in targets:
    q, qi = p99(t, "randwrite-4k-qd16")
    l, li = p99(t, "randwrite-4k-qd16-loaded")
    print(f"| {t} | {q:.2f} | {qi:.0f} | {l:.2f} | {li:.0f} | {l / q:.1f} |")
PY
[ -z "$keep" ] && rm -rf "$out"
true
