#!/bin/sh
# End-to-end test of the web UI: makes a small run, serves it with `tardis serve`
# on a free loopback port and drives the page in headless Debian chromium.
# Builds nothing. Needs: TD_BIN (default build/tardis), /usr/bin/chromium and
# `npm ci` done in tests/ui. Screenshots go to UI_OUT (default build/ui-test).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
TD_BIN=${TD_BIN:-$ROOT/build/tardis}
UI_OUT=${UI_OUT:-$ROOT/build/ui-test}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
# The suspects checks start (and restart) a server of their own on the same run.
TD_WEB=$ROOT/web
export CHROMIUM TD_BIN TD_WEB

fail() { echo "tests/ui: $*"; echo "0 passed, 1 failed"; exit 1; }

[ -x "$TD_BIN" ] || fail "no tardis binary at $TD_BIN (build first, or set TD_BIN)"
[ -x "$CHROMIUM" ] || fail "no chromium at $CHROMIUM (Debian package 'chromium')"
[ -d "$HERE/node_modules/playwright-core" ] || fail "playwright-core missing: run 'npm ci' in tests/ui"
command -v node >/dev/null || fail "node not found"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tardis-ui.XXXXXX")
SERVER=""
cleanup() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

RUN="$TMP/run"
"$TD_BIN" train --out "$RUN" --epochs 4 --limit 2000 --noise 0.1 --seed 1 --quiet --force \
  >"$TMP/train.log" 2>&1 || { cat "$TMP/train.log"; fail "tardis train failed"; }
"$TD_BIN" project "$RUN" >"$TMP/project.log" 2>&1 || { cat "$TMP/project.log"; fail "tardis project failed"; }
"$TD_BIN" eval "$RUN" >"$TMP/eval.log" 2>&1 || { cat "$TMP/eval.log"; fail "tardis eval failed"; }

"$TD_BIN" serve "$RUN" --port 0 --host 127.0.0.1 --web "$ROOT/web" >"$TMP/serve.log" 2>&1 &
SERVER=$!
URL=""
i=0
while [ $i -lt 100 ]; do
  URL=$(sed -n 's/^tardis: serving .* at \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$TMP/serve.log" 2>/dev/null)
  [ -n "$URL" ] && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$TMP/serve.log"; fail "tardis serve exited"; }
  sleep 0.1
  i=$((i + 1))
done
[ -n "$URL" ] || { cat "$TMP/serve.log"; fail "tardis serve did not start"; }
echo "tests/ui: serving a $(basename "$RUN") of 2000 samples at $URL"

cd "$HERE" && node ui.test.mjs "$URL/" "$RUN" "$UI_OUT"
RC=$?
exit $RC
