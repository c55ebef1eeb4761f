#!/usr/bin/python3
"""Writes a large synthetic run for the web UI at scale (docs/ui-scale.md).

    /usr/bin/python3 bench/ui_bigrun.py OUT N [--epochs E] [--test M] [--seed S]

The run is run format v1 (docs/run-format.md) with its projection already
written (RUN/vis/pca/epoch_NNNN/, docs/vis-format.md), so `tardis serve` can
show a million points without projecting them. Ten classes are Gaussian
blobs in the plane that start overlapping and pull apart over the epochs
(so the animation moves every point and some samples stay mispredicted);
5 % of the training labels are flipped (train_truth.npy holds the clean ones).

The representation is [x, y, z1, z2] (z: noise the head ignores); the head
is linear with logits_c = 2 mu_c . p - |mu_c|^2, i.e. the nearest centre
wins, so train_logits.npy is what head.json gives and the predictions are
consistent with the territory (argmax of the same head on a grid). The
projection is the linear map (pca.npy) that keeps (x, y): the embedding is
(x, y) itself, and the server can paint the territory of any view from it.
This run tests drawing, not projecting.
Needs only numpy.
"""
import argparse
import json
import os
import time

import numpy as np

C = 10
D = 4
RES = 256


def centres(epoch, epochs):
    """Class centres on a circle whose radius grows over the epochs."""
    f = epoch / max(1, epochs)
    ang = np.arange(C) * 2 * np.pi / C + 0.15 * f
    rad = 2.0 + 4.0 * f
    return np.stack([rad * np.cos(ang), rad * np.sin(ang)], 1).astype(np.float32)


def head(mu):
    w = np.zeros((C, D), np.float32)
    w[:, :2] = 2 * mu
    b = -(mu * mu).sum(1).astype(np.float32)
    return w, b


def logits_of(p, w, b):
    return (p @ w[:, :2].T + b).astype(np.float32)


def write_epoch(out, e, epochs, cls, base, noise, labels, ntr):
    mu = centres(e, epochs)
    spread = 1.6 - 0.8 * e / max(1, epochs)
    pos = mu[cls] + spread * base  # [N+M, 2]
    w, b = head(mu)
    rep = np.concatenate([pos, noise], 1).astype(np.float32)
    lg = logits_of(pos, w, b)
    pred = lg.argmax(1)
    d = os.path.join(out, 'epochs', '%04d' % e)
    os.makedirs(d)
    np.save(os.path.join(d, 'train_repr.npy'), rep[:ntr])
    np.save(os.path.join(d, 'train_logits.npy'), lg[:ntr])
    if len(cls) > ntr:
        np.save(os.path.join(d, 'test_repr.npy'), rep[ntr:])
        np.save(os.path.join(d, 'test_logits.npy'), lg[ntr:])
    np.save(os.path.join(d, 'head_0_w.npy'), w)
    np.save(os.path.join(d, 'head_0_b.npy'), b)
    with open(os.path.join(d, 'head.json'), 'w') as f:
        json.dump([{'type': 'dense', 'weight': 'head_0_w.npy', 'bias': 'head_0_b.npy',
                    'activation': 'none'}], f)
    acc = float((pred[:ntr] == labels).mean())
    z = lg[:ntr] - lg[:ntr].max(1, keepdims=True)
    lse = np.log(np.exp(z).sum(1))
    loss = float((lse - z[np.arange(ntr), labels]).mean())
    with open(os.path.join(d, 'epoch.json'), 'w') as f:
        json.dump({'epoch': e, 'train_loss': loss, 'train_acc': acc, 'lr': 0.01}, f)
    write_vis(out, e, pos, len(cls) > ntr, ntr, w, b)


def write_vis(out, e, pos, has_test, ntr, w, b):
    v = os.path.join(out, 'vis', 'pca', 'epoch_%04d' % e)
    os.makedirs(v)
    np.save(os.path.join(v, 'train_embedding.npy'), pos[:ntr])
    if has_test:
        np.save(os.path.join(v, 'test_embedding.npy'), pos[ntr:])
    lin = np.zeros((3, D), np.float32)
    lin[1, 0] = lin[2, 1] = 1  # mean 0, axes x and y
    np.save(os.path.join(v, 'pca.npy'), lin)
    np.save(os.path.join(v, 'boundary_repr.npy'), np.zeros((0, D), np.float32))
    np.save(os.path.join(v, 'boundary_pairs.npy'), np.zeros((0, 2), np.int32))
    np.save(os.path.join(v, 'boundary_embedding.npy'), np.zeros((0, 2), np.float32))
    lo, hi = np.percentile(pos, 0.5, 0), np.percentile(pos, 99.5, 0)
    cx, cy = (lo + hi) / 2
    half = 0.6 * float((hi - lo).max())
    ext = [float(cx - half), float(cy - half), float(cx + half), float(cy + half)]
    # Cell centres, row 0 = top.
    xs = ext[0] + (np.arange(RES) + 0.5) * (ext[2] - ext[0]) / RES
    ys = ext[3] - (np.arange(RES) + 0.5) * (ext[3] - ext[1]) / RES
    g = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).astype(np.float32)
    lg = np.sort(logits_of(g, w, b), 1)
    cls = logits_of(g, w, b).argmax(1).astype(np.uint8).reshape(RES, RES)
    l1, l2, lmin = lg[:, -1], lg[:, -2], lg[:, 0]
    conf = ((l1 - l2) / np.maximum(1e-9, l1 - lmin)).astype(np.float32).reshape(RES, RES)
    np.save(os.path.join(v, 'territory_class.npy'), cls)
    np.save(os.path.join(v, 'territory_conf.npy'), conf)
    with open(os.path.join(v, 'territory.json'), 'w') as f:
        json.dump({'res': RES, 'extent': ext}, f)
    with open(os.path.join(v, 'projection.json'), 'w') as f:
        json.dump({'epoch': e, 'method': 'pca', 'seconds': 0, 'knn_seconds': 0,
                   'fit_seconds': 0, 'generator': 'bench/ui_bigrun.py'}, f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('out')
    ap.add_argument('n', type=int)
    ap.add_argument('--epochs', type=int, default=4)
    ap.add_argument('--test', type=int, default=0)
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    n, m = a.n, a.test
    os.makedirs(a.out)
    cls = rng.integers(0, C, n + m)
    base = rng.standard_normal((n + m, 2)).astype(np.float32)
    noise = (0.1 * rng.standard_normal((n + m, D - 2))).astype(np.float32)
    labels = cls[:n].copy()
    flip = rng.random(n) < 0.05
    labels[flip] = (labels[flip] + rng.integers(1, C, flip.sum())) % C
    meta = {'format': 'tardis-run', 'version': 1, 'name': 'ui-bigrun-%d' % n,
            'classes': ['class %d' % c for c in range(C)], 'n_train': n, 'n_test': m,
            'repr_dim': D, 'input_shape': None, 'producer': 'bench/ui_bigrun.py',
            'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
    with open(os.path.join(a.out, 'run.json'), 'w') as f:
        json.dump(meta, f, indent=1)
    np.save(os.path.join(a.out, 'train_labels.npy'), labels.astype(np.int32))
    np.save(os.path.join(a.out, 'train_truth.npy'), cls[:n].astype(np.int32))
    if m:
        np.save(os.path.join(a.out, 'test_labels.npy'), cls[n:].astype(np.int32))
    os.makedirs(os.path.join(a.out, 'vis', 'pca'))
    with open(os.path.join(a.out, 'vis', 'pca', 'vis.json'), 'w') as f:
        json.dump({'method': 'pca', 'repr_dim': D, 'params': {'generator': 'bench/ui_bigrun.py'}}, f)
    for e in range(1, a.epochs + 1):
        write_epoch(a.out, e, a.epochs, cls, base, noise, labels, n)
    with open(os.path.join(a.out, 'finished'), 'w') as f:
        f.write('')
    print('wrote %s: %d train + %d test samples, %d epochs' % (a.out, n, m, a.epochs))


if __name__ == '__main__':
    main()
