#!/usr/bin/env bash
# `make bench-push`: pushes a ~1 GiB game-server corpus (../shared/bench/make-corpus mixed)
# through release binaries and reports the rate and each side's peak RSS (VmHWM), next to a
# baseline measured in the same run: `tar -czf - | sha256sum` with gzip -1 (the Wings-style
# single-threaded pipeline without the network).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(swift build -c release --show-bin-path)
work=${BENCH_DIR:-.bench}
scale=${BENCH_SCALE:-0.9}
server=0b9f3c2e-1d4a-4b5c-8e7f-6a5b4c3d2e1f
mkdir -p "$work"
[ -d "$work/corpus/mixed" ] || ../shared/bench/make-corpus "$work/corpus" --only mixed --scale "$scale"
volume="$work/corpus/mixed"
rm -rf "$work/state"
"$bin/transferd" --state "$work/state" --listen 127.0.0.1:0 >"$work/transferd.out" 2>"$work/transferd.log" &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; wait "$daemon" 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "listening on" "$work/transferd.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.]*:[0-9]*' "$work/transferd.out" | head -1)

bytes=$(du -sb "$volume" | cut -f1)
t0=$(date +%s.%N)
tar -C "$volume" -cf - . | gzip -1 | sha256sum >/dev/null
t1=$(date +%s.%N)
/usr/bin/env time -f "%M" -o "$work/send.rss" "$bin/transfer-send" push --quiet --volume "$volume" --url "$url" \
    --secret-file "$work/state/node-token" --server "$server" >"$work/push.out"
t2=$(date +%s.%N)
daemon_rss=$(awk '/VmHWM/ {print $2}' /proc/$daemon/status)
send_rss=$(tail -1 "$work/send.rss")
python3 - "$bytes" "$t0" "$t1" "$t2" "$send_rss" "$daemon_rss" <<'PY'
import sys
b, t0, t1, t2, srss, drss = sys.argv[1:]
b = int(b); base = float(t1) - float(t0); ours = float(t2) - float(t1)
print(f"volume: {b/2**20:.0f} MiB")
print(f"baseline tar | gzip -1 | sha256sum: {b/base/1e6:8.1f} MB/s")
print(f"transfer-send push -> transferd:    {b/ours/1e6:8.1f} MB/s  ({base/ours:.2f}x baseline)")
print(f"peak RSS: sender {int(srss)/1024:.1f} MiB, daemon {int(drss)/1024:.1f} MiB")
PY
