# Sourced by run.sh with JOBS=tree, after the servers have started: the
# tree jobs (bench/nfs/tree), one server after the other, each after
# settle, then their table. See bench/nfs/README.md.
#
#   JOBS=tree bench/nfs/run.sh
#   JOBS=tree TREE_FILES=20000 LIST_ENTRIES=100000 LIST_SECONDS=300 bench/nfs/run.sh
#                     # a listing that takes longer than LIST_SECONDS is stopped
#                     # there; the table says how far it got
tree_bin="$work/tree"
(cd "$repo" && go build -o "$tree_bin" ./bench/nfs/tree)
for s in $servers; do
	pid=${gw_pid[$s]:-}
	[ -n "$pid" ] || pid=$(cat "$work/ganesha/pid")
	settle
	echo "== $s tree copy" >&2
	echo "$s copy: $(uptime)" >>"$out/uptime.tree"
	"$tree_bin" -url "${urls[$s]}" -do copy -files "${TREE_FILES:-20000}" >"$out/$s-tree-copy.json"
	settle
	echo "== $s listing" >&2
	echo "$s list: $(uptime)" >>"$out/uptime.tree"
	"$tree_bin" -url "${urls[$s]}" -do list -entries "${LIST_ENTRIES:-100000}" -pid "$pid" \
		-list-seconds "${LIST_SECONDS:-300}" >"$out/$s-tree-list.json"
done
python3 - "$out" $servers <<'PY'
import json, os, sys
out, servers = sys.argv[1], sys.argv[2:]
r = {s: (json.load(open(os.path.join(out, f"{s}-tree-copy.json"))), json.load(open(os.path.join(out, f"{s}-tree-list.json")))) for s in servers}
gws = [s for s in servers if s.startswith("gatewayd")]
peer = "ganesha" if "ganesha" in servers else None
c0, l0 = r[servers[0]]
print(f"tree: {c0['files']} files, {c0['dirs']} directories, {c0['bytes'] / 1e6:.0f} MB; listing: a directory of {l0['entries']} empty files")
print()
print("| job | unit | " + " | ".join(servers) + "".join(f" | {g}/{peer}" for g in gws if peer) + " |")
print("|---|---|" + "---|" * (len(servers) + (len(gws) if peer else 0)))
def row(name, unit, f, higher):
    v = {s: f(*r[s]) for s in servers}
    cells = [f"{v[s]:.3f}" if v[s] < 1 else f"{v[s]:.1f}" if v[s] < 100 else f"{v[s]:.0f}" for s in servers]
    if peer:
        cells += [f"{(v[g] / v[peer]) if higher else (v[peer] / v[g]):.2f}" for g in gws]
    print(f"| {name} | {unit} | " + " | ".join(cells) + " |")
row("tree copy", "s", lambda c, l: c["seconds"], False)
row("tree copy", "files/s", lambda c, l: c["files"] / c["seconds"], True)
row("tree copy", "MB/s", lambda c, l: c["bytes"] / 1e6 / c["seconds"], True)
row("listing: create the files", "files/s", lambda c, l: l["entries"] / l["create_seconds"], True)
for i in range(max(len(r[s][1]["seconds"]) for s in servers)):
    cells, done = [], {}
    for s in servers:
        l = r[s][1]
        if i >= len(l["seconds"]):
            cells.append("not run")
        elif l["listed"][i] < l["entries"]:
            cells.append(f"stopped after {l['seconds'][i]:.0f} s: {l['listed'][i]} of {l['entries']} entries, {l['calls'][i]} calls")
        else:
            done[s] = l["seconds"][i]
            cells.append(f"{l['seconds'][i]:.3f} ({l['calls'][i]} calls)")
    if peer:
        for g in gws:
            if g in done and peer in done:
                cells.append(f"{done[peer] / done[g]:.2f}")
            elif peer in done and i < len(r[g][1]["seconds"]):
                l = r[g][1]
                cells.append(f"~{done[peer] / (l['seconds'][i] * l['entries'] / max(1, l['listed'][i])):.4f} (projected)")
            else:
                cells.append("-")
    print(f"| listing {i + 1} (READDIRPLUS) | s | " + " | ".join(cells) + " |")
    if all(i < len(r[s][1]["seconds"]) for s in servers):
        row(f"listing {i + 1}: server RSS before", "MiB", lambda c, l: l["rss_before_kib"][i] / 1024, False)
        row(f"listing {i + 1}: server RSS peak", "MiB", lambda c, l: l["rss_peak_kib"][i] / 1024, False)
print()
print("ratios: gatewayd's speed / ganesha's (time: ganesha's / gatewayd's; memory: ganesha's / gatewayd's): above 1 gatewayd is better")
print("load average before each job (uptime):")
for line in open(os.path.join(out, "uptime.tree")):
    print("  " + line.split(":")[0] + ": " + line.split("load average:")[-1].strip())
PY
