#!/usr/bin/env python3
"""Train an MLP on Fashion-MNIST with PyTorch and record every epoch for tardis.

    PYTHONPATH=python /usr/bin/python3 python/examples/record_fashion_mnist.py \
        --out runs/fmnist-torch --epochs 10 --noise 0.1 --seed 1
    build/tardis info runs/fmnist-torch

Model: 784-256-128-10 MLP with ReLU.  The representation is the 128-d output
of the second ReLU; the head is the last Linear layer.  Data comes from
Debian's dataset-fashion-mnist package (gzip IDX files).
"""

import argparse
import gzip
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # python/, for tardis_recorder

from tardis_recorder import Recorder  # noqa: E402

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]
DATA_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    """Read a gzip-compressed IDX file (big-endian header) into a numpy array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("%s: not an IDX file (bad magic)" % path)
    type_code, ndim = data[2], data[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4",
              0x0E: ">f8"}
    if type_code not in dtypes:
        raise ValueError("%s: unknown IDX element type 0x%02x" % (path, type_code))
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    offset = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=dtypes[type_code], offset=offset)
    if arr.size != int(np.prod(dims)):
        raise ValueError("%s: header says %s elements, file holds %d"
                         % (path, list(dims), arr.size))
    return arr.reshape(dims).astype(np.dtype(dtypes[type_code]).newbyteorder("="))


def load_split(data_dir, split):
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(os.path.join(data_dir, "%s-images-idx3-ubyte.gz" % prefix))
    labels = read_idx(os.path.join(data_dir, "%s-labels-idx1-ubyte.gz" % prefix))
    if images.shape[0] != labels.shape[0]:
        raise ValueError("%s: %d images but %d labels" % (split, images.shape[0],
                                                          labels.shape[0]))
    return images, labels.astype(np.int64)


def symmetric_noise(labels, rate, n_classes, rng):
    """Give exactly round(rate * N) samples a uniformly random *other* class."""
    noisy = labels.copy()
    k = int(round(rate * labels.shape[0]))
    idx = rng.choice(labels.shape[0], size=k, replace=False)
    noisy[idx] = (labels[idx] + rng.integers(1, n_classes, size=k)) % n_classes
    return noisy


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="run directory to create")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--limit", type=int, default=0,
                    help="use the first N training samples and N//6 test samples")
    ap.add_argument("--noise", type=float, default=0.0,
                    help="symmetric label-noise rate in [0, 1)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--overwrite", action="store_true", help="replace an existing run")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args(argv)
    if not 0.0 <= args.noise < 1.0:
        ap.error("--noise must lie in [0, 1)")
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")

    import torch
    from torch import nn

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    x_train, y_train = load_split(args.data_dir, "train")
    x_test, y_test = load_split(args.data_dir, "test")
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        n_test = max(1, args.limit // 6)
        x_test, y_test = x_test[:n_test], y_test[:n_test]
    C = len(CLASSES)
    y_noisy = symmetric_noise(y_train, args.noise, C, rng) if args.noise > 0 else y_train

    inputs_u8 = x_train.reshape(-1, 1, 28, 28)
    test_u8 = x_test.reshape(-1, 1, 28, 28)
    xt = torch.from_numpy(x_train.reshape(-1, 784).astype(np.float32) / 255.0)
    xv = torch.from_numpy(x_test.reshape(-1, 784).astype(np.float32) / 255.0)
    yt = torch.from_numpy(y_noisy)

    features = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())
    head = nn.Linear(128, C)
    model = nn.Sequential(features, head)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    rec = Recorder(args.out, classes=CLASSES, train_labels=y_noisy, test_labels=y_test,
                   train_truth=y_train if args.noise > 0 else None,
                   train_inputs=inputs_u8, test_inputs=test_u8, input_shape=(1, 28, 28),
                   repr_dim=128, name=os.path.basename(os.path.normpath(args.out)),
                   overwrite=args.overwrite)

    def evaluate(x):
        model.eval()
        reprs, logits = [], []
        with torch.no_grad():
            for i in range(0, x.shape[0], 4096):
                r = features(x[i:i + 4096])
                reprs.append(r)
                logits.append(head(r))
        return torch.cat(reprs), torch.cat(logits)

    n = xt.shape[0]
    for epoch in range(1, args.epochs + 1):
        t0 = time.time()
        model.train()
        perm = torch.randperm(n)
        total, seen = 0.0, 0
        for i in range(0, n, args.batch_size):
            idx = perm[i:i + args.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
            seen += idx.shape[0]
        train_seconds = time.time() - t0

        tr_repr, tr_logits = evaluate(xt)
        te_repr, te_logits = evaluate(xv)
        rec.record_epoch(epoch, train_repr=tr_repr, train_logits=tr_logits, head=head,
                         test_repr=te_repr, test_logits=te_logits,
                         metrics={"seconds": train_seconds, "lr": args.lr,
                                  "running_loss": total / seen})
        info = rec.last_epoch_info
        print("epoch %3d  train loss %.4f acc %.4f  test loss %.4f acc %.4f  "
              "(train %.2fs, record %.2fs)"
              % (epoch, info["train_loss"], info["train_acc"], info["test_loss"],
                 info["test_acc"], train_seconds, rec.last_record_seconds), flush=True)
    rec.close()  # marks the run finished: `tardis serve --follow` stops projecting
    print("wrote %s" % rec.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
