#!/usr/bin/env bash
# Tape benchmark: write then read SIZE bytes in 256 KiB and 1 MiB records
# through iSCSI, the way a backup server streams to a tape drive (one
# command at a time, variable-block mode), against gatewayd's tape library
# (embedded defaults: tapes in a local-directory object store) and tgtd's
# tape emulation (a tape file on the same disk), one after the other in one
# run, then a table with the ratios. See bench/vtl/README.md.
#
#   bench/vtl/run.sh                 # 4 GiB per block size
#   SIZE=1G bench/vtl/run.sh         # quicker
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
size="${SIZE:-4G}"
sizes="${BLOCKS:-256K 1M}"
work="$(mktemp -d)"
out="$work/results.jsonl"
pids=()
tgtd_ctl=""

cleanup() {
	set +e
	if [ -n "$tgtd_ctl" ]; then stop_tgtd; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

for tool in tgtd tgtadm tgtimg python3; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (apt-get install tgt python3)" >&2; exit 1; }
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "== building gatewayd and tapebench" >&2
(cd "$repo" && go build -o "$work/gatewayd" ./cmd/gatewayd && go build -o "$work/tapebench" ./bench/vtl/tapebench)

stop_tgtd() {
	tgtadm -C "$tgtd_ctl" --op update --mode sys --name State -v offline >/dev/null 2>&1
	tgt-admin -C "$tgtd_ctl" --offline ALL >/dev/null 2>&1
	tgt-admin -C "$tgtd_ctl" --update ALL -c /dev/null -f >/dev/null 2>&1
	tgtadm -C "$tgtd_ctl" --op delete --mode system >/dev/null 2>&1
	tgtd_ctl=""
}

# gatewayd: one tape per block size, each in its own slot.
gw="$work/gw"
gwport=$(free_port)
"$work/gatewayd" init --data-dir "$gw" >/dev/null
"$work/gatewayd" serve --data-dir "$gw" --iscsi-listen "127.0.0.1:$gwport" --nfs-listen "" --smb-listen "" >"$work/gatewayd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do "$work/gatewayd" status --data-dir "$gw" >/dev/null 2>&1 && break; sleep 0.1; done
tape_gib=$(( $(python3 -c "import sys; s='$size'; m={'K':1<<10,'M':1<<20,'G':1<<30}; print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))") / (1<<30) + 2 ))
"$work/gatewayd" tape create --data-dir "$gw" --count 1 --barcode-prefix BENCH --size "${tape_gib}G" >/dev/null
for bs in $sizes; do
	echo "== gatewayd: $bs records, $size" >&2
	"$work/tapebench" -addr "127.0.0.1:$gwport" -target iqn.2024-01.io.gatewayd:vtl -changer 0 -drive 1 \
		-bs "$bs" -size "$size" -label gatewayd >>"$out"
done
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true
pids=()

# tgtd: a changer and one drive, one tape file (README.vtl's layout).
tgtd_ctl=$((RANDOM % 1000 + 100))
tport=$(free_port)
tw="$work/tgt"
mkdir -p "$tw"
dd if=/dev/zero of="$tw/smc" bs=1k count=1 2>/dev/null
tgtimg --op new --device-type tape --barcode BENCH001 --size $((tape_gib * 1024)) --type data --file "$tw/BENCH001" >/dev/null
tgtd -f -C "$tgtd_ctl" --iscsi portal="127.0.0.1:$tport" >"$work/tgtd.log" 2>&1 &
pids+=($!)
sleep 1
iqn=iqn.2026-01.bench:vtl
ta() { tgtadm -C "$tgtd_ctl" --lld iscsi "$@"; }
ta --op new --mode target --tid 1 -T "$iqn"
ta --mode logicalunit --op new --tid 1 --lun 1 -b "$tw/BENCH001" --device-type=tape
ta --mode logicalunit --op update --tid 1 --lun 1 --params online=0
ta --mode logicalunit --op new --tid 1 --lun 2 -b "$tw/smc" --device-type=changer
ta --mode logicalunit --op update --tid 1 --lun 2 --params media_home="$tw"
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=4,start_address=1,quantity=1
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=4,address=1,tid=1,lun=1
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=1,start_address=2,quantity=1
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=2,start_address=3,quantity=1
ta --mode logicalunit --op update --tid 1 --lun 2 --params element_type=2,address=3,barcode=BENCH001,sides=1
ta --op bind --mode target --tid 1 -I ALL
for bs in $sizes; do
	echo "== tgtd: $bs records, $size" >&2
	"$work/tapebench" -addr "127.0.0.1:$tport" -target "$iqn" -changer 2 -drive 1 \
		-bs "$bs" -size "$size" -label tgtd >>"$out"
done

python3 - "$out" "$size" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
r = {(x["label"], x["phase"], x["record_bytes"]): x["mb_per_s"] for x in rows}
print(f"\nwrite then read {sys.argv[2]} per record size, one command at a time (MB/s)\n")
print("| job | gatewayd | tgtd | gatewayd/tgtd |")
print("|---|---|---|---|")
for bs in sorted({k[2] for k in r}):
    for ph in ("write", "read"):
        g, t = r.get(("gatewayd", ph, bs)), r.get(("tgtd", ph, bs))
        if g and t:
            print(f"| {ph} {bs // 1024} KiB records | {g:.0f} | {t:.0f} | {g / t:.2f} |")
PY
