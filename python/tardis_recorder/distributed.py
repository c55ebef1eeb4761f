"""Recording from ``torch.distributed`` (DDP) training: :class:`DistributedRecorder`.

Every rank evaluates its own share of the samples and writes it; the epoch
appears in the run only once every rank has written, and its files are
byte for byte those a single-process :class:`~tardis_recorder.Recorder`
writes from the same per-sample values, whatever the number of ranks and
however the samples are split among them.

How an epoch is committed
-------------------------
1. Each rank validates its rows and writes them as *shard files*
   (``shard-RRRRR-<array>.npy`` plus the sample indices) into the epoch's
   hidden temporary directory ``epochs/.tmp-NNNN-<pid of rank 0>``.
2. All ranks exchange a status (``all_gather_object``): this is the
   barrier.  If any rank failed -- or died, which makes the collective fail
   on the others -- rank 0 removes the temporary directory and every rank
   raises.  Nothing was visible, so no partial epoch ever is.
3. Rank 0 assembles each array in sample order into its final ``.npy``
   (memory-mapped, one shard at a time), then finishes the epoch with the
   single-process code path (loss, metrics, head check, head, epoch.json,
   fsync) and renames the directory to ``epochs/NNNN``.
4. Rank 0 broadcasts the outcome, so every rank returns the epoch's path or
   raises the same error.

Why shard files and not one shared memory-mapped file that all ranks fill:
every file has exactly one writer, which is safe on any shared file system
(several hosts writing disjoint rows of one mapped file over NFS can lose each
other's pages, since the kernel writes back whole pages), and the committed
arrays are produced by one process from whole shards, so the output cannot
depend on timing.  The price is one extra read and write of the arrays by
rank 0 (measured in python/README.md).

torch is imported when a DistributedRecorder is created, never by
``import tardis_recorder``.
"""

import os
import shutil

import numpy as np

from . import _io
from ._arrays import as_float_matrix, as_float_vector, as_index_vector, to_numpy
from .head import normalize_head
from .recorder import Recorder, epoch_dirname

__all__ = ["DistributedRecorder"]

_ARRAYS = ("train_repr", "train_logits", "train_loss", "test_repr", "test_logits")


class DistributedRecorder(object):
    """A :class:`~tardis_recorder.Recorder` shared by all ranks of a process group.

    Create it on every rank after ``torch.distributed.init_process_group``,
    with the same arguments as a :class:`Recorder`; rank 0's arguments are
    the ones used (rank 0 writes the run's static files, the other ranks only
    their shards).  ``group`` is the process group (default: the world).

    Attributes: ``rank``, ``world_size``, ``subset`` (the recorded training
    indices, or None when all are recorded), ``n_train``, ``n_test``,
    ``last_epoch_info`` (the last epoch's epoch.json, on every rank).
    """

    def __init__(self, path, *args, group=None, **kwargs):
        import torch.distributed as dist
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("DistributedRecorder: torch.distributed is not initialised; "
                               "call torch.distributed.init_process_group first")
        self._dist = dist
        self.group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self.path = os.path.abspath(os.fspath(path))
        self.epochs_dir = os.path.join(self.path, "epochs")
        self._rec = None
        self.last_epoch_info = None  # epoch.json of the last epoch, on every rank
        err, cfg = None, None
        if self.rank == 0:
            try:
                self._rec = Recorder(path, *args, **kwargs)
                cfg = self._config()
            except Exception as e:  # every rank must hear of it, not only rank 0
                err = "%s: %s" % (type(e).__name__, e)
        # The barrier after rank 0 created the run (other ranks write into it).
        got = self._gather((os.getpid(), err, cfg))
        if got[0][1] is not None:
            raise ValueError("DistributedRecorder: rank 0 could not create the run: %s"
                             % got[0][1])
        self._pid0, _, cfg = got[0]
        (self.n_train, self.n_test, self.n_classes, self.repr_dim, self.repr_dtype,
         self.logits_dtype, self.subset) = cfg

    def _config(self):
        r = self._rec
        return (r.n_train, r.n_test, len(r.classes), r.repr_dim, r.repr_dtype.name,
                r.logits_dtype.name, r.subset)

    # ------------------------------------------------------------ collectives

    def _gather(self, obj):
        out = [None] * self.world_size
        self._dist.all_gather_object(out, obj, group=self.group)
        return out

    def _broadcast_from_0(self, obj):
        box = [obj]
        self._dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    # ---------------------------------------------------------------- shards

    def shard_indices(self):
        """The training indices this rank should evaluate: every
        ``world_size``-th recorded sample from ``rank`` on (the recorded
        samples are the subset, or all N).  Any split works as long as the
        ranks together cover every recorded sample; this one is
        ``DistributedSampler(shuffle=False)``'s without its padding."""
        rows = self.subset if self.subset is not None else np.arange(self.n_train)
        return np.asarray(rows[self.rank::self.world_size], dtype=np.int64)

    def test_shard_indices(self):
        """The test indices this rank should evaluate (every world_size-th)."""
        return np.arange(self.rank, self.n_test, self.world_size, dtype=np.int64)

    def _positions(self, idx, what):
        """Row of each training index in the stored arrays."""
        if self.subset is None:
            return idx
        pos = np.searchsorted(self.subset, idx)
        pos_c = np.minimum(pos, len(self.subset) - 1)
        bad = self.subset[pos_c] != idx
        if bad.any():
            raise ValueError("%s: training index %d is not in the recorded subset"
                             % (what, int(idx[np.argmax(bad)])))
        return pos

    def _shard(self, indices, train_repr, train_logits, train_loss, test_indices, test_repr,
               test_logits):
        """This rank's validated rows as {name: array}, plus the row positions."""
        C, D = self.n_classes, self.repr_dim
        idx = as_index_vector(indices, "indices", self.n_train).astype(np.int64)
        out = {"train_pos": self._positions(idx, "indices").astype(np.int64)}
        n = len(idx)
        out["train_repr"] = as_float_matrix(train_repr, "train_repr", rows=n, cols=D,
                                            dtype=self.repr_dtype, rows_from="len(indices)")
        out["train_logits"] = as_float_matrix(train_logits, "train_logits", rows=n, cols=C,
                                              dtype=self.logits_dtype,
                                              rows_from="len(indices)")
        if train_loss is not None:
            out["train_loss"] = as_float_vector(train_loss, "train_loss", n=n,
                                                n_from="len(indices)",
                                                dtype=self.logits_dtype)
        if test_repr is not None or test_logits is not None:
            if test_indices is None:
                raise ValueError("test_repr/test_logits given without test_indices")
            if self.n_test == 0:
                raise ValueError("test_repr/test_logits given but the run has no test set")
            tidx = as_index_vector(test_indices, "test_indices", self.n_test)
            out["test_pos"] = tidx.astype(np.int64)
            m, d = len(tidx), out["train_repr"].shape[1]
            if test_repr is not None:
                out["test_repr"] = as_float_matrix(test_repr, "test_repr", rows=m, cols=d,
                                                   dtype=self.repr_dtype,
                                                   rows_from="len(test_indices)")
            if test_logits is not None:
                out["test_logits"] = as_float_matrix(test_logits, "test_logits", rows=m,
                                                     cols=C, dtype=self.logits_dtype,
                                                     rows_from="len(test_indices)")
        return out

    def _tmp_dir(self, epoch):
        return os.path.join(self.epochs_dir, ".tmp-%s-%d" % (epoch_dirname(epoch), self._pid0))

    # ------------------------------------------------------------- recording

    def record_epoch(self, epoch, indices, train_repr, train_logits, head=None,
                     test_indices=None, test_repr=None, test_logits=None, train_loss=None,
                     metrics=None, trained=None, task=None):
        """Record this rank's share of epoch ``epoch``; call it on every rank.

        ``indices`` [n] are the training indices of this rank's rows of
        ``train_repr`` [n, D] and ``train_logits`` [n, C] (and of
        ``train_loss`` [n], when given); ``test_indices`` likewise for the
        test arrays.  Together the ranks must cover every recorded sample;
        a sample given by several ranks (``DistributedSampler`` pads its
        shards with repeats) is taken from the lowest rank.  ``head``,
        ``metrics``, ``trained`` and ``task`` are read on rank 0 only, as in
        :meth:`Recorder.record_epoch`.  Returns the epoch directory on every
        rank once it is committed; raises on every rank when any rank failed.
        """
        tmp, err, ep, shard_names = None, None, None, []
        try:
            if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) \
                    or int(epoch) < 0:
                raise ValueError("epoch: expected a non-negative integer, found %r" % (epoch,))
            epoch = int(epoch)
            tmp = self._tmp_dir(epoch)
            if self.repr_dim is None:  # the first epoch of a run without repr_dim
                self.repr_dim = int(to_numpy(train_repr, "train_repr").shape[-1])
            if self.rank == 0:  # what only rank 0 passes, checked before any write
                self._rec._check_epoch_number(epoch)
                if head is None:
                    raise ValueError("head: rank 0 must pass the classifier head")
                layers = normalize_head(head, in_dim=self.repr_dim, out_dim=self.n_classes)
                ep = self._rec._prepare_shell(layers, self.repr_dim, trained, task)
            shard = self._shard(indices, train_repr, train_logits, train_loss, test_indices,
                                test_repr, test_logits)
            os.makedirs(tmp, exist_ok=True)
            for name, arr in shard.items():
                _io.save_npy(os.path.join(tmp, "shard-%05d-%s.npy" % (self.rank, name)), arr)
            shard_names = sorted(shard)
        except Exception as e:
            err = "%s: %s" % (type(e).__name__, e)

        # The barrier: no rank goes on before every rank has written (or failed).
        try:
            status = self._gather((err, shard_names, self.repr_dim))
        except BaseException:
            self._discard(tmp)
            raise
        errors = ["rank %d: %s" % (r, s[0]) for r, s in enumerate(status) if s[0]]
        dims = {s[2] for s in status if s[0] is None}
        if not errors and len(dims) != 1:
            errors = ["the ranks' representations differ in width: %s"
                      % sorted(s[2] for s in status)]
        if errors:
            self._discard(tmp)
            raise ValueError("epoch %r not recorded: %s" % (epoch, "; ".join(errors)))

        result = None
        if self.rank == 0:
            try:
                path = self._assemble_and_commit(epoch, tmp, status, ep, metrics)
                result = ("ok", path, self._rec.last_epoch_info)
            except Exception as e:
                self._discard(tmp)
                result = ("error", "%s: %s" % (type(e).__name__, e))
        result = self._broadcast_from_0(result)
        if result[0] != "ok":
            raise ValueError("epoch %d not recorded: rank 0: %s" % (epoch, result[1]))
        self.last_epoch_info = result[2]
        return result[1]

    def _discard(self, tmp):
        if self.rank == 0 and tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def _assemble_and_commit(self, epoch, tmp, status, ep, metrics):
        names = [set(s[1]) for s in status]
        with_loss = [r for r, s in enumerate(names) if "train_loss" in s]
        if with_loss and len(with_loss) != len(names):
            raise ValueError("train_loss given on ranks %s but not on the others" % with_loss)
        K = self.n_train if self.subset is None else len(self.subset)
        for name in _ARRAYS:
            ranks = [r for r, s in enumerate(names) if name in s]
            if ranks:
                split = "train" if name.startswith("train") else "test"
                ep[name] = self._assemble(tmp, name, split, ranks,
                                          K if split == "train" else self.n_test)
                ep["in_place"].add(name + ".npy")
        for r, shard in enumerate(names):
            for name in shard:
                os.remove(os.path.join(tmp, "shard-%05d-%s.npy" % (r, name)))
        self._rec._check_head(ep["layers"], ep["train_repr"], ep["train_logits"])
        return self._rec._commit(epoch, ep, metrics, tmp=tmp)

    def _assemble(self, tmp, name, split, ranks, rows):
        """Rows of ``name`` from the shards of ``ranks`` into ``tmp/name.npy``,
        each row from the lowest rank that has it; every row must be covered."""
        first = np.load(os.path.join(tmp, "shard-%05d-%s.npy" % (ranks[0], name)),
                        mmap_mode="r")
        path = os.path.join(tmp, name + ".npy")
        out = np.lib.format.open_memmap(path, mode="w+", dtype=first.dtype,
                                        shape=(rows,) + first.shape[1:])
        del first
        filled = np.zeros(rows, dtype=bool)
        for r in ranks:
            pos = np.load(os.path.join(tmp, "shard-%05d-%s_pos.npy" % (r, split)))
            data = np.load(os.path.join(tmp, "shard-%05d-%s.npy" % (r, name)), mmap_mode="r")
            if data.dtype != out.dtype:
                raise ValueError("%s: rank %d wrote %s, rank %d %s"
                                 % (name, ranks[0], out.dtype, r, data.dtype))
            pos, at = np.unique(pos, return_index=True)  # first occurrence in the rank
            new = ~filled[pos]
            out[pos[new]] = data[at[new]]
            filled[pos[new]] = True
            del data
        if not filled.all():
            missing = np.flatnonzero(~filled)
            what = ("training index %d" % (missing[0] if self.subset is None
                                           else self.subset[missing[0]])
                    if split == "train" else "test index %d" % missing[0])
            raise ValueError("%s: %d of %d rows were given by no rank (the first: %s)"
                             % (name, len(missing), rows, what))
        out.flush()
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        return out

    def close(self):
        """Marks the run finished (rank 0 writes ``RUN/finished``); call it on
        every rank after the last epoch.  Returns once the mark is written."""
        err = None
        if self.rank == 0:
            try:
                self._rec.close()
            except Exception as e:
                err = "%s: %s" % (type(e).__name__, e)
        err = self._broadcast_from_0(err)
        if err is not None:
            raise OSError("DistributedRecorder.close: rank 0: %s" % err)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        return False
