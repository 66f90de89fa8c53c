#!/usr/bin/env bash
# `make bench-http` (after `swift build -c release`): download and upload MB/s of one large file,
# transferd next to an nginx serving the same file on the same box, in the same run.
#
#   download: GET /download/file (signed one-time URL) vs nginx static, `curl -o /dev/null`,
#             BENCH_RUNS runs each (interleaved, page cache warm), median of curl's speed_download
#   upload:   `transfer-send upload` (multipart, streamed) into transferd, with transferd's peak RSS
#             (VmHWM), vs `curl -T` (PUT) into nginx's dav module
#
# Everything lives in .bench/http (BENCH_HTTP_DIR); the file is made once and reused
# (BENCH_HTTP_MIB, default 2048). Every process started here is stopped by its PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

work=${BENCH_HTTP_DIR:-.bench/http}
mib=${BENCH_HTTP_MIB:-2048}
runs=${BENCH_RUNS:-3}
server=7e3c1a52-6b1d-4f0e-9a8b-2c4d6e8f0a1b

if ! command -v nginx >/dev/null 2>&1; then
    echo "bench-http: installing nginx" >&2
    export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1  # RUNLEVEL=1: the package starts no system nginx
    apt-get install -y -qq nginx-light >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nginx-light >/dev/null 2>&1; } \
        || apt-get install -y -qq nginx >/dev/null
fi
nginx_bin=$(command -v nginx)
bin=$(swift build -c release --show-bin-path)
for b in transferd transfer-send; do
    [ -x "$bin/$b" ] || { echo "bench-http: $bin/$b missing: run swift build -c release" >&2; exit 1; }
done

mkdir -p "$work"
work=$(cd "$work" && pwd)
file="$work/big.bin"
size=$((mib * 1048576))
if [ ! -f "$file" ] || [ "$(stat -c %s "$file")" != "$size" ]; then
    echo "bench-http: making a ${mib} MiB file (a random 64 MiB block, each copy stamped)" >&2
    python3 - "$file" "$mib" <<'PY'
import os, sys
path, mib = sys.argv[1], int(sys.argv[2])
block = bytearray(os.urandom(64 << 20))
with open(path + ".tmp", "wb") as f:
    left = mib << 20
    i = 0
    while left:
        block[:8] = i.to_bytes(8, "big")
        n = min(len(block), left)
        f.write(block[:n])
        left -= n
        i += 1
os.replace(path + ".tmp", path)
PY
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ---------------------------------------------------------------- transferd (Wings-style config)
state="$work/state"
rm -rf "$state" "$work/nginx"
mkdir -p "$state/volumes/$server" "$state/backups"
ln "$file" "$state/volumes/$server/big.bin"
token=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
printf '%s\n' "$token" >"$state/node-token"
chmod 600 "$state/node-token"
cat >"$state/config.yml" <<EOF
token: $token
api:
  host: 127.0.0.1
  port: 0
  upload_limit: $((mib * 2))
system:
  data: $state/volumes
  backup_directory: $state/backups
EOF

pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

"$bin/transferd" --config "$state/config.yml" --listen 127.0.0.1:0 >"$work/transferd.out" 2>"$work/transferd.log" &
daemon=$!
pids+=("$daemon")

# ---------------------------------------------------------------- nginx (own prefix, pid file, foreground)
nginx_port=$(free_port)
ngx="$work/nginx"
mkdir -p "$ngx/logs" "$ngx/www" "$ngx/tmp" "$ngx/dav"
ln "$file" "$ngx/www/big.bin"
cat >"$ngx/nginx.conf" <<EOF
daemon off;
user root;
worker_processes auto;
pid $ngx/nginx.pid;
error_log $ngx/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $ngx/tmp;
    proxy_temp_path $ngx/tmp;
    fastcgi_temp_path $ngx/tmp;
    uwsgi_temp_path $ngx/tmp;
    scgi_temp_path $ngx/tmp;
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$nginx_port;
        root $ngx/www;
        location /dav/ {
            root $ngx;
            dav_methods PUT;
            create_full_put_path on;
            client_max_body_size 0;
            client_body_buffer_size 1m;
        }
    }
}
EOF
"$nginx_bin" -p "$ngx" -c "$ngx/nginx.conf" &
nginx_pid=$!
pids+=("$nginx_pid")

for _ in $(seq 100); do grep -q "listening on" "$work/transferd.out" 2>/dev/null && break; sleep 0.1; done
url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/transferd.out" | head -1)
[ -n "$url" ] || { echo "bench-http: transferd did not start:" >&2; cat "$work/transferd.log" >&2; exit 1; }
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$nginx_port/" && break; sleep 0.1; done
curl -s -o /dev/null -r 0-0 "http://127.0.0.1:$nginx_port/big.bin" \
    || { echo "bench-http: nginx did not start:" >&2; cat "$ngx/logs/error.log" >&2; exit 1; }

cat "$file" >/dev/null  # warm the page cache for both servers

transferd_url() {
    local t
    t=$("$bin/transfer-send" token --secret-file "$state/node-token" --scope file-download --server "$server" --file big.bin)
    printf '%s/download/file?token=%s' "$url" "$t"
}
speed() { curl -s -o /dev/null -w '%{speed_download} %{size_download} %{http_code}' "$1"; }
check() {  # "speed size code" -> speed, or fail
    set -- $1
    [ "$3" = 200 ] && [ "$2" = "$size" ] || { echo "bench-http: bad download (HTTP $3, $2 bytes)" >&2; exit 1; }
    echo "$1"
}

t_speeds=()
n_speeds=()
for _ in $(seq "$runs"); do
    s=$(check "$(speed "$(transferd_url)")")
    t_speeds+=("$s")
    s=$(check "$(speed "http://127.0.0.1:$nginx_port/big.bin")")
    n_speeds+=("$s")
done
rss_download=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")

# ---------------------------------------------------------------- uploads
t0=$(date +%s.%N)
"$bin/transfer-send" upload --quiet --url "$url" --secret-file "$state/node-token" --server "$server" \
    --directory uploads "$file" >"$work/upload.out"
t1=$(date +%s.%N)
rss_upload=$(awk '/VmHWM/ {print $2}' "/proc/$daemon/status")
cmp -s "$file" "$state/volumes/$server/uploads/big.bin" || { echo "bench-http: uploaded file differs" >&2; exit 1; }
rm -f "$state/volumes/$server/uploads/big.bin"
nginx_put=$(curl -s -o /dev/null -w '%{speed_upload} %{http_code}' -T "$file" "http://127.0.0.1:$nginx_port/dav/big.bin")
set -- $nginx_put
case "$2" in 201|204) ;; *) echo "bench-http: nginx PUT failed (HTTP $2)" >&2; exit 1 ;; esac
nginx_put_speed=$1
rm -f "$ngx/dav/big.bin"

python3 - "$size" "$t0" "$t1" "$rss_download" "$rss_upload" "$nginx_put_speed" \
    "${t_speeds[*]}" "${n_speeds[*]}" <<'PY'
import statistics, sys
size, t0, t1, rss_d, rss_u, put, ts, ns = sys.argv[1:]
size = int(size)
t = [float(x) / 1e6 for x in ts.split()]
n = [float(x) / 1e6 for x in ns.split()]
tm, nm = statistics.median(t), statistics.median(n)
up = size / (float(t1) - float(t0)) / 1e6
put = float(put) / 1e6
fmt = lambda xs: " ".join(f"{x:.0f}" for x in xs)
ratio = tm / nm
print(f"file: {size / 2**20:.0f} MiB, {len(t)} runs each, median MB/s (runs)")
print(f"{'':34}{'transferd':>16}{'nginx':>16}{'ratio':>8}")
print(f"{'download (curl -o /dev/null)':34}{tm:16.0f}{nm:16.0f}{ratio:7.2f}x  "
      f"{'(goal >= 0.9x: ok)' if ratio >= 0.9 else '(BELOW the 0.9x goal)'}")
print(f"{'  runs':34}{fmt(t):>16}{fmt(n):>16}")
print(f"{'upload (transfer-send | curl -T)':34}{up:16.0f}{put:16.0f}{up / put:7.2f}x")
print(f"transferd peak RSS (VmHWM): {int(rss_d) / 1024:.1f} MiB after downloads, {int(rss_u) / 1024:.1f} MiB after the upload")
PY
