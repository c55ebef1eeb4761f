"""Writes tests/fixtures/nn_torch/: small CNNs run through PyTorch, so that
tests/test_nn_torch.c can check tardis's layers against PyTorch without
needing torch at test time.

Run from the repository root (needs Debian's python3-torch):
    /usr/bin/python3 tests/python/gen_nn_torch_fixture.py

For each net (its layers are repeated in test_nn_torch.c) it writes, all
float32 and flat in tardis's buffer order (per layer the weight, then the
bias; batchnorm's gamma and beta; state: running mean then running
variance of each batchnorm layer):
    params.npy     the parameters
    state.npy      the running statistics before the step
    x.npy          the input [N, C, H, W]
    r.npy          dLoss/dOutput for the backward pass
    y_eval.npy     the output in eval mode (running statistics)
    y_train.npy    the output in training mode (batch statistics)
    grads.npy      the parameter gradients of training mode, from r
    dx.npy         dLoss/dx of training mode
    state_after.npy the running statistics after the training forward
"""

import os

import numpy as np
import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "nn_torch")


def net_a():
    # input 2x8x8; every kind but dropout (whose masks come from another
    # generator) and global average pooling (net b)
    return (2, 8, 8), nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.BatchNorm2d(4), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(),
        nn.Linear(24, 5), nn.ReLU(),
        nn.BatchNorm1d(5),
        nn.Linear(5, 3))


def net_b():
    # input 3x7x6: a strided, padded max pool and global average pooling
    return (3, 7, 6), nn.Sequential(
        nn.Conv2d(3, 5, 2, stride=1, padding=0), nn.ReLU(),
        nn.MaxPool2d(3, stride=2, padding=1),
        nn.Conv2d(5, 4, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2))


def flat(tensors):
    return np.concatenate([t.detach().numpy().ravel() for t in tensors]).astype(np.float32)


def write(name, shape, model, n=5, seed=0):
    torch.manual_seed(seed)
    bns = [m for m in model if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    with torch.no_grad():
        for bn in bns:  # non-trivial affine parameters and running statistics
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.5, 2.0)
    params = [p for p in model.parameters()]
    state = flat([t for bn in bns for t in (bn.running_mean, bn.running_var)]) if bns else np.zeros(0, np.float32)
    x = torch.rand(n, *shape) * 2 - 1
    model.eval()
    y_eval = model(x)
    model.train()
    xg = x.clone().requires_grad_(True)
    y_train = model(xg)
    r = torch.rand_like(y_train) * 2 - 1
    (y_train * r).sum().backward()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    arrays = {
        "params": flat(params), "state": state, "x": x.numpy(), "r": r.numpy(),
        "y_eval": y_eval.detach().numpy(), "y_train": y_train.detach().numpy(),
        "grads": flat([p.grad for p in params]), "dx": xg.grad.numpy(),
        "state_after": flat([t for bn in bns for t in (bn.running_mean, bn.running_var)])
        if bns else np.zeros(0, np.float32),
    }
    for k, v in arrays.items():
        np.save(os.path.join(d, k + ".npy"), np.ascontiguousarray(v, dtype=np.float32))
    print(name, {k: v.shape for k, v in arrays.items()}, "torch", torch.__version__)


if __name__ == "__main__":
    torch.set_num_threads(1)
    write("a", *net_a())
    write("b", *net_b(), seed=1)
