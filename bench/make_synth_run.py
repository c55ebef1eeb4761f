#!/usr/bin/python3
"""Writes a synthetic run in run format v1 (docs/run-format.md) for the
scale figures of docs/scale.md: N training and M test samples of D-wide
representations, C classes, `epochs` recorded epochs.

The data are a mixture of K anisotropic Gaussian clusters, each belonging to
one class, of intrinsic dimension LAT inside D (several clusters per class, so a class is not one blob), whose
centres start crowded together and spread apart while "training" goes on,
plus a slow random drift of every centre: the kNN graph changes from epoch to
epoch the way a real run's does. Every sample keeps its latent coordinates
across epochs (it is the same sample), with a little fresh noise per epoch.
10 % of the training labels are flipped. The head of each epoch is a ridge
regression of one-hot predicted-by-cluster classes on a sample, so logits
are consistent with the head (tardis info checks that) and the classes
overlap: nearest-class accuracy is far from 1 early and stays below 1.

Only numpy; memory stays O(chunk) whatever N (arrays are written through
memory maps), so a 1M x 128 run needs < 1 GB of RAM and 512 MB per array
on disk.

    /usr/bin/python3 bench/make_synth_run.py --out /tmp/s300k --n 300000 \
        --dim 128 --epochs 3
"""
import argparse
import json
import os
import shutil

import numpy as np

CHUNK = 65536
LAT = 8        # intrinsic dimension of a cluster
NOISE = 0.15   # isotropic noise per coordinate
SPREAD = 1.4   # centres per coordinate SPREAD / sqrt(D) apart at the end


def parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="run directory (replaced)")
    p.add_argument("--n", type=int, default=100000, help="training samples")
    p.add_argument("--test", type=int, default=-1,
                   help="test samples (default n/6, at most 20000)")
    p.add_argument("--dim", type=int, default=128, help="representation width")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--clusters", type=int, default=30)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.1, help="label noise")
    p.add_argument("--seed", type=int, default=1)
    return p.parse_args()


class Mixture:
    """The clusters: class, final centre, drift, and an anisotropic map."""

    def __init__(self, a):
        r = np.random.default_rng([a.seed, 0])
        K, D = a.clusters, a.dim
        self.K, self.D, self.C = K, D, a.classes
        self.cls = np.arange(K) % a.classes
        r.shuffle(self.cls)
        # centres about 2 apart at the last epoch (per coordinate SPREAD /
        # sqrt(D)): the clusters' own spread along the line between two
        # centres is 0.25-2.5, so neighbouring clusters overlap
        self.mu = (r.standard_normal((K, D)) * SPREAD / np.sqrt(D)).astype(np.float32)
        self.drift = (r.standard_normal((K, D)) * 0.3 / np.sqrt(D)).astype(np.float32)
        # anisotropy and low intrinsic dimension, as in real
        # representations: each cluster is a LAT-dimensional Gaussian with
        # scales log-uniform over [0.3, 3], mapped into D dimensions by its
        # own random orthonormal frame, plus a little isotropic noise
        self.frame = np.empty((K, LAT, D), np.float32)
        for k in range(K):
            q, _ = np.linalg.qr(r.standard_normal((D, LAT)))
            s = np.exp(r.uniform(np.log(0.3), np.log(3.0), LAT))
            self.frame[k] = (q * s).T
        self.weight = r.dirichlet(np.full(K, 4.0))

    def centres(self, epoch, epochs):
        """Centres at an epoch: crowded (0.35 of the final spread) at the
        first epoch, spread by the last, drifting in between."""
        f = (epoch - 1) / max(1, epochs - 1)
        g = 0.35 + 0.65 * f
        return (self.mu * g + self.drift * np.sin(1.7 * epoch)).astype(np.float32)


def members(mix, n, seed, part):
    r = np.random.default_rng([seed, 1, part])
    return r.choice(mix.K, size=n, p=mix.weight).astype(np.int32)


def sample_rows(mix, comp, lo, hi, seed, part, epoch, mu):
    """Rows lo..hi of a set: fixed latent (per sample) + per-epoch jitter."""
    r = np.random.default_rng([seed, 2, part, lo])
    z = r.standard_normal((hi - lo, LAT), dtype=np.float32)
    j = np.random.default_rng([seed, 3, part, lo, epoch])
    z += 0.2 * j.standard_normal((hi - lo, LAT), dtype=np.float32)
    c = comp[lo:hi]
    x = NOISE * j.standard_normal((hi - lo, mix.D), dtype=np.float32)
    for k in np.unique(c):
        sel = c == k
        x[sel] += z[sel] @ mix.frame[k] + mu[k]
    return x


def fit_head(mix, comp, seed, epoch, mu):
    """Ridge regression of the clusters' one-hot classes on up to 20k rows:
    a linear head whose errors are those of a linear classifier."""
    n = min(20000, len(comp))
    x = sample_rows(mix, comp, 0, n, seed, 0, epoch, mu).astype(np.float64)
    y = np.eye(mix.C)[mix.cls[comp[:n]]] * 2.0 - 1.0
    xm = x.mean(0)
    xc = x - xm
    w = np.linalg.solve(xc.T @ xc + 10.0 * n * np.eye(mix.D) / mix.D, xc.T @ y)
    b = y.mean(0) - xm @ w
    return np.ascontiguousarray(w.T, np.float32), b.astype(np.float32)


def write_set(path_repr, path_logits, mix, comp, seed, part, epoch, mu, w, b):
    n = len(comp)
    xr = np.lib.format.open_memmap(path_repr, "w+", np.float32, (n, mix.D))
    lg = np.lib.format.open_memmap(path_logits, "w+", np.float32, (n, mix.C))
    correct = 0
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        x = sample_rows(mix, comp, lo, hi, seed, part, epoch, mu)
        xr[lo:hi] = x
        z = x @ w.T + b
        lg[lo:hi] = z
        correct += int((z.argmax(1) == mix.cls[comp[lo:hi]]).sum())
    xr.flush()
    lg.flush()
    del xr, lg
    return correct / n


def write_epoch(a, mix, comp_tr, comp_te, labels, test_labels, ep):
    mu = mix.centres(ep, a.epochs)
    w, b = fit_head(mix, comp_tr, a.seed, ep, mu)
    tmp = os.path.join(a.out, "epochs", ".tmp-%04d-%d" % (ep, os.getpid()))
    os.makedirs(tmp)
    acc = write_set(f"{tmp}/train_repr.npy", f"{tmp}/train_logits.npy", mix,
                    comp_tr, a.seed, 0, ep, mu, w, b)
    tacc = None
    if len(comp_te):
        tacc = write_set(f"{tmp}/test_repr.npy", f"{tmp}/test_logits.npy",
                         mix, comp_te, a.seed, 1, ep, mu, w, b)
    np.save(f"{tmp}/head_0_w.npy", w)
    np.save(f"{tmp}/head_0_b.npy", b)
    with open(f"{tmp}/head.json", "w") as f:
        json.dump([{"type": "dense", "weight": "head_0_w.npy",
                    "bias": "head_0_b.npy", "activation": "none"}], f)
    with open(f"{tmp}/epoch.json", "w") as f:
        json.dump({"epoch": ep, "train_acc": acc, "test_acc": tacc}, f)
    os.rename(tmp, os.path.join(a.out, "epochs", "%04d" % ep))
    print("epoch %d: clean-class accuracy of the head %.3f (test %s)"
          % (ep, acc, "-" if tacc is None else "%.3f" % tacc), flush=True)


def main():
    a = parse()
    m = a.test if a.test >= 0 else min(20000, a.n // 6)
    mix = Mixture(a)
    if os.path.isdir(a.out):
        shutil.rmtree(a.out)
    os.makedirs(os.path.join(a.out, "epochs"))
    comp_tr = members(mix, a.n, a.seed, 0)
    comp_te = members(mix, m, a.seed, 1)
    truth = mix.cls[comp_tr].astype(np.int32)
    r = np.random.default_rng([a.seed, 4])
    labels = truth.copy()
    flip = r.random(a.n) < a.noise
    labels[flip] = (labels[flip] + r.integers(1, a.classes, int(flip.sum()))) \
        % a.classes
    np.save(os.path.join(a.out, "train_labels.npy"), labels)
    np.save(os.path.join(a.out, "train_truth.npy"), truth)
    test_labels = mix.cls[comp_te].astype(np.int32)
    if m:
        np.save(os.path.join(a.out, "test_labels.npy"), test_labels)
    with open(os.path.join(a.out, "run.json"), "w") as f:
        json.dump({"format": "tardis-run", "version": 1,
                   "name": "synth-%dx%d" % (a.n, a.dim),
                   "classes": ["c%d" % i for i in range(a.classes)],
                   "n_train": a.n, "n_test": m, "repr_dim": a.dim,
                   "input_shape": None,
                   "producer": "bench/make_synth_run.py 1",
                   "created": "2026-01-01T00:00:00Z",
                   "synthetic": {"clusters": a.clusters, "seed": a.seed,
                                 "noise": a.noise}}, f)
    for ep in range(1, a.epochs + 1):
        write_epoch(a, mix, comp_tr, comp_te, labels, test_labels, ep)
    open(os.path.join(a.out, "finished"), "w").close()


if __name__ == "__main__":
    main()
