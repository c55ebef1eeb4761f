#!/bin/sh
# Projection in blocks of epochs (docs/scale.md, "Across processes"): one
# process with T threads against `mpirun -np K` processes with T/K threads
# each, on copies of one synthetic run. Prints CPU, wall and peak RSS of
# each, `tardis eval`'s nn@15 / ppr per epoch, and the jump of the points
# between consecutive epochs (mean displacement over the extent's side).
# Needs a build with -DTD_MPI=ON.
#   sh bench/bench_blocks.sh [N] [DIM] [EPOCHS] [K] [T]
set -e
N=${1:-20000}; DIM=${2:-64}; EPOCHS=${3:-6}; K=${4:-2}; T=${5:-2}
BIN=${TD_BIN:-build/tardis}
W=${TMPDIR:-/tmp}/bench_blocks.$$
mkdir -p $W
cp "$BIN" $W/tardis # a rebuild meanwhile does not change what is measured
BIN=$W/tardis
ROOT=""; [ "$(id -u)" = 0 ] && ROOT=--allow-run-as-root
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 bench/make_synth_run.py --out $W/one --n $N --dim $DIM \
  --epochs $EPOCHS >/dev/null
cp -r $W/one $W/blocks
echo "== one process, $T threads"
/usr/bin/time -f "cpu %U+%S s, wall %e s, peak RSS %M KB" \
  $BIN project $W/one --threads $T
echo "== mpirun -np $K, $((T / K)) thread(s) each"
/usr/bin/time -f "cpu %U+%S s, wall %e s, peak RSS %M KB (mpirun itself)" \
  mpirun -np $K --oversubscribe $ROOT $BIN project $W/blocks \
  --threads $((T / K > 0 ? T / K : 1))
for r in one blocks; do
  echo "== $r: eval"
  $BIN eval $W/$r --threads $T | awk '$1 ~ /^[0-9]+$/ {print "  epoch", $1, "nn@15", $3, "ppr", $7}'
done
/usr/bin/python3 - $W $EPOCHS <<'PY'
import json, sys, numpy as np
w, E = sys.argv[1], int(sys.argv[2])
for r in ("one", "blocks"):
    y = [np.load(f"{w}/{r}/vis/dvi/epoch_{e:04d}/train_embedding.npy")
         for e in range(1, E + 1)]
    side = lambda a: float(np.ptp(a, axis=0).max())
    j = [float(np.linalg.norm(y[e] - y[e - 1], axis=1).mean()) / side(y[e - 1])
         for e in range(1, E)]
    print(r, "jump e->e+1:", " ".join(f"{v:.3f}" for v in j))
    for e in range(1, E + 1):
        p = json.load(open(f"{w}/{r}/vis/dvi/epoch_{e:04d}/projection.json"))
        if "block" in p:
            print(f"  epoch {e}: block {p['block']['index']}, border {p['block']['border']}")
PY
rm -rf $W
