"""One rank of the DDP recording test (test_distributed.py starts two of them).

    ddp_worker.py MODE RANK WORLD OUT_DIR
    (MASTER_ADDR / MASTER_PORT in the environment)

Trains a tiny MLP with DistributedDataParallel on the gloo backend and
records it with DistributedRecorder into OUT_DIR/ddp; rank 0 also records
the same model with a single-process Recorder into OUT_DIR/single (values
per sample, batch size 1 on both sides, so both see identical numbers).

MODE
  full    every sample, shards from DistributedSampler(shuffle=False)
          (padded: one sample is given by both ranks), epochs 0..2
  subset  Recorder(subset=23), float16 representations, shards from
          rec.shard_indices(), epochs 0..2
  crash   epoch 1 normally; at epoch 2 rank 1 writes its shard and dies at
          the barrier; rank 0 must raise and leave no epoch 2
Rank 0 writes OUT_DIR/rank0.json with what happened.
"""

import datetime
import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "python"))
from tardis_recorder import Recorder  # noqa: E402
from tardis_recorder.distributed import DistributedRecorder  # noqa: E402
from tardis_recorder.torch_utils import collect  # noqa: E402

N, M, C = 61, 17, 3  # odd N: DistributedSampler pads one shard with a repeat
CLASSES = ["a", "b", "c"]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(),
                                            torch.nn.Linear(16, 8), torch.nn.ReLU())
        self.fc = torch.nn.Linear(8, C)

    def forward(self, x):
        return self.fc(self.features(x))


def data():
    g = np.random.default_rng(5)
    centers = g.standard_normal((C, 6)) * 2
    y = g.integers(0, C, N + M)
    x = (centers[y] + g.standard_normal((N + M, 6))).astype(np.float32)
    return x[:N], y[:N], x[N:], y[N:]


def per_sample(net, ds, idx):
    """(repr, logits) of the samples ``idx`` of ``ds``, one at a time."""
    loader = DataLoader(Subset(ds, [int(i) for i in idx]), batch_size=1, shuffle=False)
    return collect(net.features, net.fc, loader)


# DDP's reducer is kept until os._exit (below): freeing it can deadlock,
# at main()'s return as well as at exit.
_ALIVE = []


def main():
    mode, rank, world, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=240))
    x, y, xt, yt = data()
    train_ds = TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
    test_ds = TensorDataset(torch.from_numpy(xt), torch.from_numpy(yt))
    torch.manual_seed(0)  # the same initial weights on every rank
    net = Net()
    model = torch.nn.parallel.DistributedDataParallel(net)
    _ALIVE.append(model)  # never freed: see the end of the file
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sampler = DistributedSampler(train_ds, num_replicas=world, rank=rank, shuffle=True, seed=3)
    loader = DataLoader(train_ds, batch_size=8, sampler=sampler)

    kw = dict(classes=CLASSES, train_labels=y, test_labels=yt, repr_dim=8, name="tiny")
    if mode == "subset":
        kw.update(subset=23, subset_seed=4, repr_dtype="float16")
    rec = DistributedRecorder(os.path.join(out, "ddp"), **kw)
    single = Recorder(os.path.join(out, "single"), **kw) if rank == 0 else None
    report = {"epochs": [], "error": None}

    if mode == "full":  # the padded, strided shards of a non-shuffling sampler
        idx = np.array(list(DistributedSampler(train_ds, num_replicas=world, rank=rank,
                                               shuffle=False)))
    else:
        idx = rec.shard_indices()
    tidx = rec.test_shard_indices()

    for epoch in range(0, 3):
        if epoch > 0:
            sampler.set_epoch(epoch)
            model.train()
            for xb, yb in loader:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xb), yb).backward()
                opt.step()
        r, z = per_sample(net, train_ds, idx)
        rt, zt = per_sample(net, test_ds, tidx)
        metrics = {"lr": 0.1}
        if mode == "crash" and epoch == 2:
            if rank == 1:  # wrote its shard; dies where it would wait for the others
                rec._gather = lambda obj: os._exit(3)
            try:
                rec.record_epoch(epoch, idx, r, z, net.fc, test_indices=tidx, test_repr=rt,
                                 test_logits=zt, metrics=metrics)
            except Exception as e:
                report["error"] = "%s: %s" % (type(e).__name__, e)
            break
        rec.record_epoch(epoch, idx, r, z, net.fc, test_indices=tidx, test_repr=rt,
                         test_logits=zt, metrics=metrics)
        report["epochs"].append(epoch)
        if rank == 0:
            rows = single.subset if single.subset is not None else np.arange(N)
            r_all, z_all = per_sample(net, train_ds, rows)
            rt_all, zt_all = per_sample(net, test_ds, np.arange(M))
            single.record_epoch(epoch, r_all, z_all, net.fc, test_repr=rt_all,
                                test_logits=zt_all, metrics=metrics)
    if mode != "crash":
        rec.close()
        if rank == 0:
            single.close()
    if rank == 0:
        with open(os.path.join(out, "rank0.json"), "w") as f:
            json.dump(report, f)


if __name__ == "__main__":
    main()
    # torch 1.13 can deadlock at interpreter exit when DDP's reducer frees the
    # gloo process group (its worker thread waits for the GIL the destructor
    # holds); the work is done and flushed, so leave without the destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
