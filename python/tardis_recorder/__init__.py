"""tardis_recorder -- write tardis runs (format v1) from a PyTorch or any training loop.

    from tardis_recorder import Recorder
    rec = Recorder("runs/my-run", classes=names, train_labels=y, test_labels=yt)
    for epoch in range(1, E + 1):
        ...train...
        rec.record_epoch(epoch, train_repr=R, train_logits=Z, head=model.fc,
                         test_repr=Rt, test_logits=Zt, metrics={"lr": lr})

Pure Python + numpy; torch is only touched when you pass torch objects.
From torch.distributed (DDP) training, use
``tardis_recorder.distributed.DistributedRecorder`` on every rank.
"""

from .recorder import (FORMAT, FORMAT_VERSION, Recorder, __version__, epoch_dirname,
                       make_subset, producer_string)
from .head import normalize_head, head_forward
from ._arrays import per_sample_loss


def __getattr__(name):
    # Imported lazily so that ``python3 -m tardis_recorder.verify`` runs cleanly.
    if name in ("verify_run", "RunFormatError"):
        from . import verify
        return getattr(verify, name)
    raise AttributeError("module 'tardis_recorder' has no attribute %r" % name)

__all__ = ["Recorder", "FORMAT", "FORMAT_VERSION", "__version__", "epoch_dirname",
           "producer_string", "make_subset", "normalize_head", "head_forward",
           "per_sample_loss", "verify_run", "RunFormatError"]
