#!/bin/sh
# bench/server_load.sh TARDIS RUN — `tardis serve` under load on loopback
# (docs/performance.md, "The server under load"): requests/s and p99 of
# GET / and of a data route at concurrency 1, 16, 64, 256 with ab
# (apache2-utils, a bench tool, not a test dependency), then the latency of
# one request while 200 slow clients hold connections open.
set -eu
BIN=${1:?usage: bench/server_load.sh TARDIS RUN}
RUN=${2:?usage: bench/server_load.sh TARDIS RUN}
N=${N:-2000}
LOG=$(mktemp)
"$BIN" serve "$RUN" --port 0 --method "${METHOD:-pca}" >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -f "$LOG"' EXIT
URL=""
for _ in $(seq 100); do
  URL=$(sed -n 's|^tardis: serving .* at \(http://127\.0\.0\.1:[0-9]*\)/.*|\1|p' "$LOG")
  [ -n "$URL" ] && break
  sleep 0.1
done
[ -n "$URL" ] || { cat "$LOG"; exit 1; }
DATA=${DATA:-/api/epochs/1/embedding}
printf '%-28s %6s %10s %8s\n' route c 'req/s' 'p99 ms'
for path in / "$DATA"; do
  for c in 1 16 64 256; do
    out=$(ab -q -n "$N" -c "$c" "$URL$path" 2>&1)
    rps=$(echo "$out" | sed -n 's/^Requests per second: *\([0-9.]*\).*/\1/p')
    p99=$(echo "$out" | sed -n 's/^ *99% *\([0-9]*\).*/\1/p')
    failed=$(echo "$out" | sed -n 's/^Failed requests: *\([0-9]*\).*/\1/p')
    printf '%-28s %6s %10s %8s%s\n' "$path" "$c" "$rps" "$p99" \
      "$([ "${failed:-0}" = 0 ] || echo "  ($failed failed)")"
  done
done
/usr/bin/python3 - "$URL" <<'PY'
import socket, sys, time
host, port = sys.argv[1].split("//")[1].split(":")
slow = []
for _ in range(200):  # connected, half a request line sent, then silence
    s = socket.create_connection((host, int(port)))
    s.sendall(b"GET /api/run HTTP/1.1\r\nHo")
    slow.append(s)
times = []
for _ in range(20):
    t = time.perf_counter()
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(b"GET /api/run HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:80]
    times.append(1000 * (time.perf_counter() - t))
times.sort()
print(f"GET /api/run with 200 slow clients held: median {times[10]:.1f} ms, "
      f"max {times[-1]:.1f} ms (20 requests)")
for s in slow:
    s.close()
PY
