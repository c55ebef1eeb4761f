#!/usr/bin/env python3
"""Train an MLP on Fashion-MNIST with DistributedDataParallel and record it for tardis.

    PYTHONPATH=python /usr/bin/python3 python/examples/record_ddp.py --spawn 2 \
        --out runs/fmnist-ddp --epochs 5 --limit 12000
    build/tardis info runs/fmnist-ddp

--spawn N starts N ranks on this machine (torch.multiprocessing); without it
the script is one rank of a job started by a launcher that sets RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT (torchrun, or by hand; Debian
bookworm's torchrun 1.13 fails on Python 3.11, hence --spawn).

Every rank trains on its DistributedSampler shard, then evaluates its share
of the recorded samples (rec.shard_indices()) and hands them to
DistributedRecorder.record_epoch; the epoch appears in the run once every
rank has written.  Runs on the gloo backend (CPU) unless CUDA is available
(then nccl, one GPU per rank).  The model is record_fashion_mnist.py's:
784-256-128-10, representation = the 128-d output of the second ReLU, head =
the last Linear.
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # python/, for tardis_recorder
sys.path.insert(0, HERE)  # the Fashion-MNIST reader of the single-process example

from record_fashion_mnist import CLASSES, DATA_DIR, load_split  # noqa: E402
from tardis_recorder.distributed import DistributedRecorder  # noqa: E402
from tardis_recorder.torch_utils import collect  # noqa: E402


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spawn", type=int, default=0, metavar="N",
                    help="start N ranks here (MASTER_PORT from the environment or 29500)")
    ap.add_argument("--out", required=True, help="run directory to create")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--limit", type=int, default=0,
                    help="use the first N training samples and N//6 test samples")
    ap.add_argument("--record-subset", type=int, default=0,
                    help="record only K random training samples (the same every epoch)")
    ap.add_argument("--repr-dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--batch-size", type=int, default=128, help="per rank")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data-dir", default=DATA_DIR)
    ap.add_argument("--overwrite", action="store_true")
    return ap.parse_args(argv)


# DDP's reducer is kept until os._exit: torch 1.13 can deadlock when it
# frees its gloo process group (at a function's return as well as at exit).
_ALIVE = []


def spawned(rank, args):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(args.spawn))
    rc = train(args)
    sys.stdout.flush()
    os._exit(rc)  # see the end of the file


def train(args):
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")  # RANK etc. from torchrun
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)  # all_gather_object on nccl needs it
    else:
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // dist.get_world_size()))

    x_train, y_train = load_split(args.data_dir, "train")
    x_test, y_test = load_split(args.data_dir, "test")
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        x_test, y_test = x_test[:max(1, args.limit // 6)], y_test[:max(1, args.limit // 6)]
    train = TensorDataset(torch.from_numpy(x_train.reshape(-1, 784) / np.float32(255)),
                          torch.from_numpy(y_train))
    test = TensorDataset(torch.from_numpy(x_test.reshape(-1, 784) / np.float32(255)),
                         torch.from_numpy(y_test))

    torch.manual_seed(args.seed)  # the same initial weights on every rank
    features = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU())
    head = nn.Linear(128, len(CLASSES))
    net = nn.Sequential(features, head).to(device)
    model = nn.parallel.DistributedDataParallel(net)
    _ALIVE.append(model)  # never freed: see the end of the file
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    sampler = DistributedSampler(train, shuffle=True, seed=args.seed)
    loader = DataLoader(train, batch_size=args.batch_size, sampler=sampler)

    # 1. Create the recorder on every rank (rank 0 writes the run's files).
    rec = DistributedRecorder(
        args.out, classes=CLASSES, train_labels=y_train, test_labels=y_test,
        train_inputs=x_train.reshape(-1, 1, 28, 28) if rank == 0 else None,
        input_shape=(1, 28, 28), repr_dim=128, repr_dtype=args.repr_dtype,
        subset=args.record_subset or None, subset_seed=args.seed, overwrite=args.overwrite)
    # 2. Each rank evaluates its share of the recorded samples, in a fixed order.
    idx, tidx = rec.shard_indices(), rec.test_shard_indices()
    eval_train = DataLoader(Subset(train, idx.tolist()), batch_size=1024)
    eval_test = DataLoader(Subset(test, tidx.tolist()), batch_size=1024)

    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        t0 = time.time()
        model.train()
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x.to(device)), y.to(device)).backward()
            opt.step()
        seconds = time.time() - t0
        # 3. Record: every rank passes its rows and their sample indices.
        r, z = collect(features, head, eval_train, device=device)
        rt, zt = collect(features, head, eval_test, device=device)
        t1 = time.time()
        rec.record_epoch(epoch, idx, r, z, head, test_indices=tidx, test_repr=rt,
                         test_logits=zt, metrics={"seconds": seconds, "lr": args.lr})
        if rank == 0:
            info = rec.last_epoch_info
            print("epoch %3d  train acc %.4f  test acc %.4f  (train %.2fs, record %.2fs)"
                  % (epoch, info["train_acc"], info["test_acc"], seconds, time.time() - t1),
                  flush=True)
    rec.close()  # 4. RUN/finished, written by rank 0
    if rank == 0:
        print("wrote %s" % rec.path)
    dist.destroy_process_group()
    return 0


def main(argv=None):
    args = parse(argv)
    if not args.spawn:
        return train(args)
    import torch.multiprocessing as mp
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    mp.spawn(spawned, args=(args,), nprocs=args.spawn)
    return 0


if __name__ == "__main__":
    rc = main()
    # torch 1.13 can deadlock at exit while DDP frees its gloo process group;
    # everything is written, so skip the interpreter's teardown.
    sys.stdout.flush()
    os._exit(rc)
