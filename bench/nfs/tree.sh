# Sourced by run.sh with JOBS=tree, after the servers have started: the
# tree jobs (bench/nfs/tree), one server after the other, each after
# settle, then their table. See bench/nfs/README.md.
#
#   JOBS=tree bench/nfs/run.sh
#   JOBS=tree TREE_FILES=20000 LIST_ENTRIES=100000 bench/nfs/run.sh
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
	"$tree_bin" -url "${urls[$s]}" -do list -entries "${LIST_ENTRIES:-100000}" -pid "$pid" >"$out/$s-tree-list.json"
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
for i in range(len(l0["seconds"])):
    row(f"listing {i + 1} (READDIRPLUS)", "s", lambda c, l: l["seconds"][i], False)
    row(f"listing {i + 1}: server RSS before", "MiB", lambda c, l: l["rss_before_kib"][i] / 1024, False)
    row(f"listing {i + 1}: server RSS peak", "MiB", lambda c, l: l["rss_peak_kib"][i] / 1024, False)
print()
print("ratios: gatewayd's speed / ganesha's (time: ganesha's / gatewayd's; memory: ganesha's / gatewayd's): above 1 gatewayd is better")
print("load average before each job (uptime):")
for line in open(os.path.join(out, "uptime.tree")):
    print("  " + line.split(":")[0] + ": " + line.split("load average:")[-1].strip())
PY
