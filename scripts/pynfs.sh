#!/usr/bin/env bash
# Fetches and builds pynfs, the NFSv4.1 server test suite, at a pinned
# commit, in a cache directory outside the clone, and prints the directory
# (cmd/gatewayd's TestPynfs reads it from $PYNFS). Needs git and Debian's
# python3-ply and python3-gssapi. PYNFS_SRC names another clone of pynfs
# to take the commit from (default: the public repository).
set -euo pipefail
commit=3c14d9e3ad12272ab2f6092c85bb28ab03951484
dir="${XDG_CACHE_HOME:-$HOME/.cache}/gatewayd-pynfs/$commit"
if [ ! -f "$dir/.built" ]; then
	rm -rf "$dir"
	mkdir -p "$dir"
	git -C "$dir" init -q
	git -C "$dir" fetch -q "${PYNFS_SRC:-https://github.com/kofemann/pynfs}" "$commit"
	git -C "$dir" checkout -q FETCH_HEAD
	# setup.py runs python3 from PATH for each part: the system's, which
	# has ply.
	# It exits 0 also when a part failed: its generated code tells.
	if ! (cd "$dir" && PATH="/usr/bin:$PATH" python3 setup.py build) >"$dir.log" 2>&1 ||
		[ ! -f "$dir/rpc/rpc_pack.py" ] || [ ! -f "$dir/nfs4.1/xdrdef/nfs4_pack.py" ]; then
		cat "$dir.log" >&2
		exit 1
	fi
	touch "$dir/.built"
fi
echo "$dir"
