#!/usr/bin/env bash
# `make demo`: a real transfer on the embedded default. Starts transferd on loopback (its
# node token is generated on first start), makes a sample volume, pushes it with transfer-send,
# and checks that the committed volume is identical to the source.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build -c release --show-bin-path)
work=.demo
server=3f2a9c1e-5b7d-4e8f-9a6b-0c1d2e3f4a5b
rm -rf "$work/source" "$work/state"
mkdir -p "$work"

# A game-server-shaped volume: the standard benchmark corpus if ../shared is beside us, else the fixture.
if [ -x ../shared/bench/make-corpus ]; then
    ../shared/bench/make-corpus "$work/source" --only mixed --scale 0.1 >/dev/null
    volume="$work/source/mixed"
else
    python3 fixtures/make_sample_volume.py "$work/source"
    volume="$work/source"
fi

"$bin/transferd" --state "$work/state" --listen 127.0.0.1:0 >"$work/transferd.out" 2>"$work/transferd.log" &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "listening on" "$work/transferd.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.]*:[0-9]*' "$work/transferd.out" | head -1)
[ -n "$url" ] || { echo "demo: transferd did not start:"; cat "$work/transferd.log"; exit 1; }
echo "demo: transferd (pid $daemon) listening on $url, node token in $work/state/node-token (mode $(stat -c %a "$work/state/node-token"))"
echo "demo: pushing $volume ($(du -sh "$volume" | cut -f1), $(find "$volume" -type f | wc -l) files) as server $server"
echo
"$bin/transfer-send" push --volume "$volume" --url "$url" --secret-file "$work/state/node-token" --server "$server"
echo
echo "demo: daemon log:"
sed 's/^/  /' "$work/transferd.log"
echo
python3 fixtures/treecmp.py "$volume" "$work/state/volumes/$server" >/dev/null \
    && echo "demo: verified: the committed volume is identical to the source (content, modes, mtimes, symlinks, empty dirs)" \
    || { echo "demo: FAILED: the committed volume differs:"; python3 fixtures/treecmp.py "$volume" "$work/state/volumes/$server" | head; exit 1; }
