#!/bin/sh
# The web UI at scale (docs/ui-scale.md): writes synthetic projected runs of
# 300k and 1M samples (bench/ui_bigrun.py, once, under BIG_DIR), serves each
# with `tardis serve` and measures load time, frame time while playing, the
# point layer alone and a hover pick in headless Debian chromium
# (tests/ui/bench_scale.mjs), with WebGL 2 and with the Canvas2D fallback.
#   sh bench/ui_scale.sh [N ...]        (default 300000 1000000)
# Needs: build/tardis (or TD_BIN), /usr/bin/python3 with numpy, /usr/bin/chromium,
# tests/ui/node_modules (npm ci). Screenshots go to BIG_DIR/shot-N-*.png.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TD_BIN=${TD_BIN:-$ROOT/build/tardis}
BIG_DIR=${BIG_DIR:-/tmp/tardis-ui-scale}
SECS=${SECS:-6}
SIZES=${*:-300000 1000000}
mkdir -p "$BIG_DIR"
SERVER=""
cleanup() { if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; fi; }
trap cleanup EXIT
trap 'exit 1' INT TERM
for N in $SIZES; do
  RUN="$BIG_DIR/run-$N"
  [ -f "$RUN/finished" ] || { rm -rf "$RUN"; /usr/bin/python3 "$ROOT/bench/ui_bigrun.py" "$RUN" "$N" || exit 1; }
  LOG="$BIG_DIR/serve-$N.log"
  "$TD_BIN" serve "$RUN" --port 0 --host 127.0.0.1 --web "$ROOT/web" >"$LOG" 2>&1 &
  SERVER=$!
  URL=""
  i=0
  while [ $i -lt 600 ] && [ -z "$URL" ]; do
    URL=$(sed -n 's/^tardis: serving .* at \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$LOG")
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG"; exit 1; }
    [ -n "$URL" ] || sleep 0.1
    i=$((i + 1))
  done
  [ -n "$URL" ] || { cat "$LOG"; echo "tardis serve did not start"; exit 1; }
  for Q in "" "?gl=0"; do
    echo "== $N samples ${Q:-(WebGL 2 where available)}"
    (cd "$ROOT/tests/ui" && node bench_scale.mjs "$URL/$Q" "$SECS" "$BIG_DIR/shot-$N${Q:+-canvas2d}") 2>&1 | grep -v '^\[pid=\|GPU stall'
  done
  cleanup
  SERVER=""
done
