#!/bin/sh
# fuzz/run.sh BUILD_DIR SECONDS [HARNESS...]
#
# Builds the libFuzzer harnesses of fuzz/ with clang (ASan + UBSan) in
# BUILD_DIR and runs each one (default: all, one after the other):
#   SECONDS > 0  fuzzes for that long from the committed seeds plus what
#                earlier runs found (BUILD_DIR/corpus/NAME; new inputs go
#                there, fuzz/corpus/ stays as committed);
#   SECONDS = 0  runs every committed seed and 2000 mutations of them (the
#                test suite's fuzz_corpus test).
# Any crash, leak, timeout or sanitizer report fails (exit 1); the input
# that caused it is left in BUILD_DIR/crashes/. Each run's last lines
# (executions, cov:, ft:) are in BUILD_DIR/logs/NAME.log.
set -eu
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [HARNESS...]}
SECS=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [HARNESS...]}
shift 2
if ! command -v clang >/dev/null 2>&1; then
  echo "fuzz: clang is not installed (make deps installs it)" >&2
  exit 1
fi
cmake -S "$SRC" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DTD_FUZZ=ON \
  -DTD_SANITIZE=address,undefined -DTD_NATIVE=OFF -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS_DEBUG="-O1 -g" >/dev/null
cmake --build "$BUILD" --target fuzzers -j "${JOBS:-2}" >/dev/null
names=${*:-$(ls "$SRC/fuzz/corpus")}
mkdir -p "$BUILD/logs" "$BUILD/crashes"
status=0
for name in $names; do
  bin="$BUILD/fuzz_$name"
  seeds="$SRC/fuzz/corpus/$name"
  [ -x "$bin" ] && [ -d "$seeds" ] || { echo "fuzz: no harness $name" >&2; exit 1; }
  dict=""
  [ -f "$SRC/fuzz/$name.dict" ] && dict="-dict=$SRC/fuzz/$name.dict"
  log="$BUILD/logs/$name.log"
  if [ "$SECS" = 0 ]; then
    work=$(mktemp -d)
    set -- -runs=2000
  else
    work="$BUILD/corpus/$name"
    mkdir -p "$work"
    set -- -max_total_time="$SECS"
  fi
  if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" "$@" $dict -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$BUILD/crashes/$name-" "$work" "$seeds" >"$log" 2>&1; then
    echo "fuzz $name: ok, $(grep -E '^#[0-9]+.*(DONE|cov:)' "$log" | tail -1)"
  else
    echo "fuzz $name: FAILED (see $log)" >&2
    tail -30 "$log" >&2
    status=1
  fi
  [ "$SECS" = 0 ] && rm -rf "$work"
done
exit $status
