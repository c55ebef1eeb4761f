"""Conveniences for PyTorch models.  torch is imported only when called."""

import numpy as np

__all__ = ["collect"]


def _first(batch):
    """The inputs of a batch: ``x`` from ``x``, ``(x, y, ...)`` or ``{"input": x}``."""
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("input", "inputs", "x", "image", "images"):
            if key in batch:
                return batch[key]
        raise ValueError("collect: cannot find the inputs in a dict batch with keys %s"
                         % sorted(batch))
    return batch


def collect(features, head, loader, device=None):
    """Run ``features`` then ``head`` over ``loader``; return ``(repr, logits)``.

    ``features`` maps a batch of inputs to representations [B, D] and
    ``head`` maps those to logits [B, C] (both torch modules or callables).
    Modules are switched to eval mode under ``torch.no_grad()`` and put back
    in their previous mode afterwards.  The loader must not shuffle: rows
    come back in loader order, which must match the labels given to the
    Recorder.  Results are float32 numpy arrays.
    """
    import torch

    sampler = getattr(loader, "sampler", None)
    if sampler is not None and type(sampler).__name__ == "RandomSampler":
        raise ValueError("collect: the loader shuffles (RandomSampler); use a loader with "
                         "shuffle=False so rows match the labels' order")
    if device is None:
        params = []
        for m in (features, head):
            if hasattr(m, "parameters"):
                params.extend(list(m.parameters())[:1])
        device = params[0].device if params else torch.device("cpu")

    modules = [m for m in (features, head) if isinstance(m, torch.nn.Module)]
    was_training = [m.training for m in modules]
    reprs, logits = [], []
    try:
        for m in modules:
            m.eval()
        with torch.no_grad():
            for batch in loader:
                x = _first(batch)
                if hasattr(x, "to"):
                    x = x.to(device)
                r = features(x)
                if r.dim() != 2:
                    r = r.flatten(1)
                z = head(r)
                reprs.append(r.float().cpu().numpy())
                logits.append(z.float().cpu().numpy())
    finally:
        for m, t in zip(modules, was_training):
            m.train(t)
    if not reprs:
        raise ValueError("collect: the loader yielded no batches")
    return np.concatenate(reprs), np.concatenate(logits)
