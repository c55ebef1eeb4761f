"""The :class:`Recorder`: writes a tardis run (format v1) one epoch at a time."""

import datetime
import json
import os
import platform
import re
import shutil
import time
import warnings

import numpy as np

from . import _io
from ._arrays import (as_float_matrix, as_float_vector, as_index_vector, as_labels,
                      check_finite, per_sample_loss, to_number, to_numpy)
from .head import head_forward, normalize_head

__all__ = ["Recorder", "FORMAT", "FORMAT_VERSION", "epoch_dirname", "make_subset"]

__version__ = "1.0.0"
FORMAT = "tardis-run"
FORMAT_VERSION = 1

# Keys of epoch.json with a fixed meaning (all optional numbers).
STANDARD_METRICS = ("train_loss", "train_acc", "test_loss", "test_acc", "seconds", "lr")

_TMP_RE = re.compile(r"^\.tmp-(\d+)-(\d+)$")
_METRIC_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


def epoch_dirname(epoch):
    """``epochs/`` sub-directory name of ``epoch``: 4 digits, wider past 9999."""
    return "%04d" % epoch


def producer_string():
    return "tardis_recorder %s (python %s, numpy %s)" % (
        __version__, platform.python_version(), np.__version__)


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but not ours
    return True


class Recorder(object):
    """Writes a tardis run directory (run format v1) from any training loop.

    Creating a Recorder writes the run's static files (labels, optional
    inputs, and ``run.json``); each :meth:`record_epoch` call then adds one
    complete epoch directory atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The run directory.  It must not exist yet or be empty, unless
        ``overwrite`` or ``resume`` is set.
    classes : sequence of str
        Class names; C = len(classes) >= 2.  Label values lie in [0, C).
    train_labels : int array [N]
        Labels used for training (possibly noisy).
    test_labels : int array [M], optional
        Test-set labels; required to record test representations/logits.
    train_truth : int array [N], optional
        Clean training labels, when known (used only for evaluation).
    train_inputs, test_inputs : array [N, c, h, w], optional
        Raw inputs (uint8 kept as uint8, floats stored as float32).  Arrays
        with the right number of elements per sample are reshaped to
        ``input_shape``.
    input_shape : (c, h, w), optional
        Shape of one input; inferred from 4-D ``train_inputs`` when omitted.
    name : str, optional
        Human-readable run name (default: the directory's base name).
    repr_dim : int, optional
        Representation width D.  When omitted, it is taken from the first
        recorded epoch and ``run.json`` appears together with that epoch
        (until then the directory is not yet a readable run).
    repr_dtype : "float32" or "float16"
        Storage type of ``train_repr``/``test_repr``.
    logits_dtype : "float32" or "float16"
        Storage type of ``train_logits``/``test_logits``/``train_loss``.
    overwrite : bool
        Replace an existing tardis run at ``path``.  Directories that do not
        look like a tardis run are never deleted.
    resume : bool
        Append epochs to an existing run (e.g. after a crash).  The classes
        and labels must match what the run holds.
    head_check : "error", "warn" or "off"
        Compare ``head(train_repr)`` with ``train_logits`` on a few hundred
        rows (including the first 64, which tardis itself checks) and raise
        (or only warn) when they disagree: a sign of a wrong head, logits
        taken in training mode (dropout), or rows in a different order.
        tardis refuses epochs that fail this check, so keep "error" unless
        you know what you are doing.
    auto_metrics : bool
        Fill train_loss/train_acc (and test_loss/test_acc) in ``epoch.json``
        from the recorded logits when the caller does not give them.
    tasks : list of lists of int, optional
        Continual learning: the tasks (sets of classes) trained in sequence,
        e.g. ``[[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]``; no class in two tasks.
        Stored in ``run.json``; each epoch then also gets the accuracy per
        task (``task_acc``) in ``epoch.json`` (with ``auto_metrics``).
    epochs_per_task : int, optional
        How many epochs each task trains (stored in ``run.json``).
    subset : int or int array [K], optional
        Record only K training samples, the same ones every epoch: an int
        draws K of the N indices at random (from ``subset_seed``), an array
        names them.  ``rec.subset`` holds them, ascending; every epoch then
        stores ``subset.npy`` and K rows of train_repr/train_logits/
        train_loss in that order (test arrays stay whole).
    subset_seed : int
        Seed of the random subset (numpy's default_rng); the same seed and
        sizes always give the same samples.
    """

    def __init__(self, path, classes, train_labels, test_labels=None, train_truth=None,
                 train_inputs=None, test_inputs=None, input_shape=None, name=None,
                 repr_dim=None, repr_dtype="float32", logits_dtype="float32",
                 overwrite=False, resume=False,
                 head_check="error", auto_metrics=True, tasks=None, epochs_per_task=None,
                 subset=None, subset_seed=0):
        self.path = os.path.abspath(os.fspath(path))
        self.epochs_dir = os.path.join(self.path, "epochs")

        if overwrite and resume:
            raise ValueError("overwrite=True and resume=True contradict each other; pick one")
        if head_check not in ("warn", "error", "off"):
            raise ValueError("head_check must be 'warn', 'error' or 'off', found %r"
                             % (head_check,))
        self.head_check = head_check
        self.auto_metrics = bool(auto_metrics)

        self.repr_dtype = _storage_dtype(repr_dtype, "repr_dtype")
        self.logits_dtype = _storage_dtype(logits_dtype, "logits_dtype")

        # -- classes -------------------------------------------------------
        if isinstance(classes, str) or not hasattr(classes, "__iter__"):
            raise ValueError("classes: expected a list of class names, found %s"
                             % type(classes).__name__)
        classes = list(classes)
        if len(classes) < 2:
            raise ValueError("classes: a classifier needs at least 2 classes, found %d"
                             % len(classes))
        for i, c in enumerate(classes):
            if not isinstance(c, str) or not c:
                raise ValueError("classes[%d]: expected a non-empty string, found %r" % (i, c))
        if len(set(classes)) != len(classes):
            dup = next(c for c in classes if classes.count(c) > 1)
            raise ValueError("classes: duplicate class name %r" % dup)
        self.classes = classes
        C = len(classes)
        self.tasks = _check_tasks(tasks, C)
        if epochs_per_task is not None:
            if self.tasks is None:
                raise ValueError("epochs_per_task given without tasks")
            if (isinstance(epochs_per_task, bool) or int(epochs_per_task) != epochs_per_task
                    or int(epochs_per_task) < 1):
                raise ValueError("epochs_per_task: expected a positive integer, found %r"
                                 % (epochs_per_task,))
            epochs_per_task = int(epochs_per_task)
        self.epochs_per_task = epochs_per_task

        # -- labels --------------------------------------------------------
        self.train_labels = as_labels(train_labels, "train_labels", n_classes=C)
        self.n_train = int(self.train_labels.shape[0])
        if self.n_train == 0:
            raise ValueError("train_labels: the training set is empty")
        self.train_truth = None
        if train_truth is not None:
            self.train_truth = as_labels(train_truth, "train_truth", n=self.n_train,
                                         n_classes=C)
        self.subset = make_subset(subset, self.n_train, subset_seed)
        self.test_labels = None
        if test_labels is not None:
            self.test_labels = as_labels(test_labels, "test_labels", n_classes=C)
        self.n_test = 0 if self.test_labels is None else int(self.test_labels.shape[0])

        # -- inputs --------------------------------------------------------
        if input_shape is not None:
            input_shape = self._check_input_shape(input_shape)
        self.train_inputs = None
        self.test_inputs = None
        if train_inputs is not None:
            arr = to_numpy(train_inputs, "train_inputs")
            if input_shape is None:
                if arr.ndim != 4:
                    raise ValueError("train_inputs: shape %s is not [N, c, h, w]; pass "
                                     "input_shape=(c, h, w)" % list(arr.shape))
                input_shape = self._check_input_shape(arr.shape[1:])
            self.train_inputs = self._inputs(arr, "train_inputs", self.n_train, input_shape)
        if test_inputs is not None:
            if self.test_labels is None:
                raise ValueError("test_inputs given without test_labels")
            arr = to_numpy(test_inputs, "test_inputs")
            if input_shape is None:
                if arr.ndim != 4:
                    raise ValueError("test_inputs: shape %s is not [M, c, h, w]; pass "
                                     "input_shape=(c, h, w)" % list(arr.shape))
                input_shape = self._check_input_shape(arr.shape[1:])
            self.test_inputs = self._inputs(arr, "test_inputs", self.n_test, input_shape)
        self.input_shape = input_shape

        self.name = os.path.basename(self.path) if name is None else str(name)
        if not self.name:
            raise ValueError("name: must not be empty")
        if len(self.name.encode("utf-8")) > 255:
            raise ValueError("name: at most 255 bytes (UTF-8) allowed, found %d"
                             % len(self.name.encode("utf-8")))

        if repr_dim is not None:
            if isinstance(repr_dim, bool) or int(repr_dim) != repr_dim or int(repr_dim) < 1:
                raise ValueError("repr_dim: expected a positive integer, found %r" % (repr_dim,))
            repr_dim = int(repr_dim)
        self.repr_dim = repr_dim
        self._run_json_written = False
        self.last_epoch_info = None
        self.last_record_seconds = None

        # -- the directory -------------------------------------------------
        if resume and os.path.isfile(os.path.join(self.path, "run.json")):
            self._resume()
        else:
            # resume=True on a run whose run.json was never written (no epoch
            # recorded yet) simply starts it again.
            self._create(overwrite or resume)

    # ------------------------------------------------------------------ setup

    @staticmethod
    def _check_input_shape(shape):
        try:
            shape = [int(s) for s in shape]
        except (TypeError, ValueError):
            raise ValueError("input_shape: expected (c, h, w), found %r" % (shape,))
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError("input_shape: expected 3 positive sizes (c, h, w), found %r"
                             % (shape,))
        return shape

    @staticmethod
    def _inputs(arr, what, n, input_shape):
        if arr.ndim == 0 or arr.shape[0] != n:
            raise ValueError("%s: expected %d samples (one per label), found shape %s"
                             % (what, n, list(arr.shape)))
        per = int(np.prod(input_shape))
        if tuple(arr.shape[1:]) != tuple(input_shape):
            if int(np.prod(arr.shape[1:], dtype=np.int64)) != per:
                raise ValueError("%s: expected shape [%d, %s], found %s"
                                 % (what, n, ", ".join(map(str, input_shape)),
                                    list(arr.shape)))
            arr = arr.reshape([n] + list(input_shape))
        if arr.dtype == np.uint8:
            return np.ascontiguousarray(arr)
        if np.issubdtype(arr.dtype, np.floating):
            check_finite(arr, what)
            return np.ascontiguousarray(arr, dtype=np.float32)
        if np.issubdtype(arr.dtype, np.integer) and arr.dtype != np.bool_:
            if arr.size and (arr.min() < 0 or arr.max() > 255):
                raise ValueError("%s: integer inputs must fit uint8 (0..255); convert them "
                                 "to float32 instead" % what)
            return np.ascontiguousarray(arr, dtype=np.uint8)
        raise ValueError("%s: expected uint8 or float values, found dtype %s"
                         % (what, arr.dtype))

    def _looks_like_run(self):
        return any(os.path.exists(os.path.join(self.path, f))
                   for f in ("run.json", "train_labels.npy"))

    def _create(self, overwrite):
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise FileExistsError("%s exists and is not a directory" % self.path)
        if os.path.isdir(self.path) and os.listdir(self.path):
            is_run = self._looks_like_run()
            if not overwrite:
                raise FileExistsError(
                    "%s already exists and is not empty%s; pass overwrite=True to replace "
                    "it%s" % (self.path, " (it holds a tardis run)" if is_run else "",
                              " or resume=True to add epochs to it" if is_run else ""))
            if not is_run:
                raise FileExistsError("%s is not empty and does not look like a tardis run "
                                      "(no run.json / train_labels.npy); refusing to delete "
                                      "it even with overwrite=True" % self.path)
            shutil.rmtree(self.path)
        os.makedirs(self.epochs_dir, exist_ok=True)

        self._save("train_labels.npy", self.train_labels)
        if self.test_labels is not None:
            self._save("test_labels.npy", self.test_labels)
        if self.train_truth is not None:
            self._save("train_truth.npy", self.train_truth)
        if self.subset is not None:
            self._save("subset.npy", self.subset)
        if self.train_inputs is not None:
            self._save("train_inputs.npy", self.train_inputs)
        if self.test_inputs is not None:
            self._save("test_inputs.npy", self.test_inputs)
        # Large inputs are not needed after writing.
        self.train_inputs = self.test_inputs = None
        if self.repr_dim is not None:
            self._write_run_json()
        _io.fsync_dir(self.path)
        parent = os.path.dirname(self.path)
        if parent:
            _io.fsync_dir(parent)

    def _resume(self):
        with open(os.path.join(self.path, "run.json"), encoding="utf-8") as f:
            meta = json.load(f)
        finished = os.path.join(self.path, "finished")
        if os.path.exists(finished):
            os.remove(finished)  # epochs are coming again
        if meta.get("format") != FORMAT:
            raise ValueError("%s/run.json: not a tardis run (format %r)"
                             % (self.path, meta.get("format")))
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError("%s/run.json: format version %r, this recorder writes version %d"
                             % (self.path, meta.get("version"), FORMAT_VERSION))
        if meta.get("classes") != self.classes:
            raise ValueError("resume: classes differ from the run's: run has %r, given %r"
                             % (meta.get("classes"), self.classes))
        for key, mine in (("n_train", self.n_train), ("n_test", self.n_test)):
            if meta.get(key) != mine:
                raise ValueError("resume: %s differs: run has %r, given %d"
                                 % (key, meta.get(key), mine))
        stored = np.load(os.path.join(self.path, "train_labels.npy"))
        if not np.array_equal(stored, self.train_labels):
            raise ValueError("resume: train_labels differ from the run's train_labels.npy "
                             "(first difference at index %d)"
                             % int(np.argmax(stored != self.train_labels)))
        if self.test_labels is not None:
            stored = np.load(os.path.join(self.path, "test_labels.npy"))
            if not np.array_equal(stored, self.test_labels):
                raise ValueError("resume: test_labels differ from the run's test_labels.npy")
        if self.tasks is not None and meta.get("tasks") != self.tasks:
            raise ValueError("resume: tasks differ: run has %r, given %r"
                             % (meta.get("tasks"), self.tasks))
        sub_path = os.path.join(self.path, "subset.npy")
        stored = np.load(sub_path).astype(np.int32) if os.path.exists(sub_path) else None
        if self.subset is None:
            self.subset = stored
        elif stored is None or not np.array_equal(stored, self.subset):
            raise ValueError("resume: the subset differs from the run's subset.npy (%s); the "
                             "subset is fixed for the whole run"
                             % ("none" if stored is None else "%d samples" % len(stored)))
        if self.repr_dim is not None and self.repr_dim != meta.get("repr_dim"):
            raise ValueError("resume: repr_dim %d differs from the run's %r"
                             % (self.repr_dim, meta.get("repr_dim")))
        self.repr_dim = int(meta["repr_dim"])
        self.input_shape = meta.get("input_shape")
        self.name = meta.get("name", self.name)
        self.train_inputs = self.test_inputs = None
        self._run_json_written = True
        os.makedirs(self.epochs_dir, exist_ok=True)
        # Clear temporaries left by writers that died mid-epoch.
        for entry in os.listdir(self.epochs_dir):
            m = _TMP_RE.match(entry)
            if m and not _pid_alive(int(m.group(2))):
                shutil.rmtree(os.path.join(self.epochs_dir, entry), ignore_errors=True)

    def _save(self, rel, array):
        _io.save_npy(os.path.join(self.path, rel), array)

    def _write_run_json(self):
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "name": self.name,
            "classes": list(self.classes),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "repr_dim": self.repr_dim,
            "input_shape": list(self.input_shape) if self.input_shape is not None else None,
            "producer": producer_string(),
            "created": _utc_now(),
        }
        if self.tasks is not None:
            meta["tasks"] = self.tasks
            if self.epochs_per_task is not None:
                meta["epochs_per_task"] = self.epochs_per_task
        _io.write_json(os.path.join(self.path, "run.json"), meta)
        _io.fsync_dir(self.path)
        self._run_json_written = True

    def close(self):
        """Marks the run finished (``RUN/finished``, written atomically), so
        that ``tardis watch`` and ``tardis serve --follow`` stop by
        themselves once every epoch is projected.  Call it after the last
        :meth:`record_epoch`; using the Recorder as a context manager calls
        it when the ``with`` block ends without an exception."""
        if not getattr(self, "_run_json_written", False):
            return  # nothing recorded: not a readable run yet
        _io.write_json(os.path.join(self.path, "finished"), {"finished": _utc_now()})
        _io.fsync_dir(self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        return False

    # --------------------------------------------------------------- queries

    def epoch_path(self, epoch):
        return os.path.join(self.epochs_dir, epoch_dirname(epoch))

    def recorded_epochs(self):
        """Sorted epoch numbers already present in the run."""
        out = []
        if os.path.isdir(self.epochs_dir):
            for entry in os.listdir(self.epochs_dir):
                if entry.isdigit() and os.path.isdir(os.path.join(self.epochs_dir, entry)):
                    out.append(int(entry))
        return sorted(out)

    # ------------------------------------------------------------- recording

    def record_epoch(self, epoch, train_repr, train_logits, head, test_repr=None,
                     test_logits=None, train_loss=None, subset=None, metrics=None,
                     trained=None, task=None):
        """Write epoch ``epoch`` atomically; return the epoch directory's path.

        ``train_repr`` [N, D] and ``train_logits`` [N, C] must list the
        training samples in the order of ``train_labels``.  In a subset run
        (``Recorder(subset=...)``) they may also hold just the K rows of the
        subset, ascending (what ``rec.subset`` lists); full [N, ...] arrays
        are cut down to those rows.  ``head`` maps the representation to
        logits (see :mod:`tardis_recorder.head`).  ``train_loss`` ([N] or
        [K]) is computed from the logits when omitted.  ``subset``, when
        given, must equal the Recorder's subset (it is fixed for the run).
        ``trained`` (continual learning) is the set of training samples this
        epoch trained on: indices [K] in any order, or a boolean mask [N];
        stored as ``trained.npy``, sorted and unique.  ``task`` is the index
        of the task this epoch trained (needs ``tasks``).
        ``metrics`` is a dict of numbers (or strings) for ``epoch.json``;
        standard keys are train_loss, train_acc, test_loss, test_acc,
        seconds, lr.  Arrays may be numpy arrays or torch tensors.
        """
        t0 = time.time()
        epoch = self._check_epoch_number(epoch)
        ep = self._prepare(train_repr, train_logits, head, test_repr, test_logits,
                           train_loss, subset, trained, task)
        self._check_head(ep["layers"], ep["train_repr"], ep["train_logits"])
        final = self._commit(epoch, ep, metrics)
        self.last_record_seconds = time.time() - t0
        return final

    def _check_epoch_number(self, epoch):
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise ValueError("epoch: expected a non-negative integer, found %r" % (epoch,))
        epoch = int(epoch)
        if epoch < 0:
            raise ValueError("epoch: expected a non-negative integer, found %d" % epoch)
        final = self.epoch_path(epoch)
        if os.path.exists(final):
            raise FileExistsError("epoch %d is already recorded (%s); epochs are never "
                                  "overwritten" % (epoch, final))
        return epoch

    def _rows(self, arr, n_rows):
        """``arr`` cut to the subset's rows when it holds all N (subset runs)."""
        if self.subset is not None and n_rows == self.n_train != len(self.subset):
            return arr[self.subset]
        return arr

    def _prepare(self, train_repr, train_logits, head, test_repr, test_logits, train_loss,
                 subset, trained, task):
        """Validate one epoch's arguments (nothing touches the disk); return the
        arrays to store as a dict, plus the head's layers under "layers"."""
        N, C, D = self.n_train, len(self.classes), self.repr_dim
        K = N if self.subset is None else len(self.subset)
        d_from = "repr_dim in run.json" if D is not None else None
        rows, rows_from = K, "n_train in run.json"
        if self.subset is not None:
            rows_from = "the subset's size; %d (n_train) also accepted" % N
            rows = N if to_numpy(train_repr, "train_repr").shape[:1] == (N,) else K
        tr = as_float_matrix(train_repr, "train_repr", rows=rows, cols=D, dtype=self.repr_dtype,
                             rows_from=rows_from, cols_from=d_from)
        if D is None:
            D = int(tr.shape[1])
            if D < 1:
                raise ValueError("train_repr: the representation has no columns")
        tl = as_float_matrix(train_logits, "train_logits", rows=rows, cols=C,
                             dtype=self.logits_dtype, rows_from="as train_repr",
                             cols_from="number of classes")
        tr, tl = self._rows(tr, rows), self._rows(tl, rows)
        layers = normalize_head(head, in_dim=D, out_dim=C)

        te_r = te_l = None
        if test_repr is not None or test_logits is not None:
            if self.n_test == 0:
                raise ValueError("test_repr/test_logits given but the run has no test set; "
                                 "pass test_labels when creating the Recorder")
        if test_repr is not None:
            te_r = as_float_matrix(test_repr, "test_repr", rows=self.n_test, cols=D,
                                   dtype=self.repr_dtype, rows_from="n_test in run.json",
                                   cols_from="repr_dim")
        if test_logits is not None:
            te_l = as_float_matrix(test_logits, "test_logits", rows=self.n_test, cols=C,
                                   dtype=self.logits_dtype, rows_from="n_test in run.json",
                                   cols_from="number of classes")
        loss = None
        if train_loss is not None:
            loss = self._rows(as_float_vector(train_loss, "train_loss", n=rows,
                                              n_from="as train_repr",
                                              dtype=self.logits_dtype), rows)
        if subset is not None:
            given = np.unique(as_index_vector(subset, "subset", N))
            if self.subset is None or not np.array_equal(given, self.subset):
                raise ValueError("subset: the recorded subset is fixed for the whole run; "
                                 "pass it (or its size) as Recorder(subset=...) and leave "
                                 "record_epoch's subset out")
        ep = self._prepare_shell(layers, D, trained, task)
        ep.update(train_repr=tr, train_logits=tl, train_loss=loss, test_repr=te_r,
                  test_logits=te_l)
        return ep

    def _prepare_shell(self, layers, D, trained, task):
        """The epoch's parts other than the sample arrays (those stay None;
        ``in_place`` names the files already written into the epoch)."""
        trained_idx = None
        if trained is not None:
            trained_idx = _as_trained(trained, self.n_train)
        if task is not None:
            if self.tasks is None:
                raise ValueError("task given but the Recorder has no tasks; pass tasks= "
                                 "when creating it")
            if (isinstance(task, bool) or not isinstance(task, (int, np.integer))
                    or not 0 <= int(task) < len(self.tasks)):
                raise ValueError("task: expected a task index in [0, %d), found %r"
                                 % (len(self.tasks), task))
        return dict(D=D, layers=layers, train_repr=None, train_logits=None, train_loss=None,
                    test_repr=None, test_logits=None, trained=trained_idx, task=task,
                    in_place=set())

    def _commit(self, epoch, ep, metrics, tmp=None):
        """Write the prepared epoch ``ep`` into ``epochs/.tmp-NNNN-<pid>`` (or
        ``tmp``, where arrays given as None in ``ep`` already lie) and rename
        it to ``epochs/NNNN``.  Every figure of epoch.json comes from the
        stored arrays, so the same arrays always give the same bytes."""
        final = self.epoch_path(epoch)
        tl = ep["train_logits"]
        labels = self.train_labels if self.subset is None else self.train_labels[self.subset]
        loss = ep["train_loss"]
        if loss is None:
            loss = as_float_vector(per_sample_loss(tl, labels), "train_loss",
                                   dtype=self.logits_dtype)
        info = self._epoch_json(epoch, metrics, tl, labels, loss, ep["test_logits"])
        if ep["task"] is not None:
            info["task"] = int(ep["task"])
        if self.tasks is not None and self.auto_metrics:
            info.setdefault("task_acc", self._task_acc(tl, labels, ep["test_logits"]))

        own_tmp = tmp is None
        if own_tmp:
            tmp = os.path.join(self.epochs_dir,
                               ".tmp-%s-%d" % (epoch_dirname(epoch), os.getpid()))
            if os.path.exists(tmp):
                shutil.rmtree(tmp)
            os.makedirs(tmp)
        try:
            def save(rel, arr):
                if arr is not None and os.path.basename(rel) not in ep.get("in_place", ()):
                    _io.save_npy(os.path.join(tmp, rel), arr)

            save("train_repr.npy", ep["train_repr"])
            save("train_logits.npy", tl)
            save("train_loss.npy", loss)
            save("test_repr.npy", ep["test_repr"])
            save("test_logits.npy", ep["test_logits"])
            save("subset.npy", self.subset)
            save("trained.npy", ep["trained"])
            head_json = []
            for i, layer in enumerate(ep["layers"]):
                wname, bname = "head_%d_w.npy" % i, "head_%d_b.npy" % i
                save(wname, layer.weight)
                save(bname, layer.bias)
                head_json.append({"type": "dense", "weight": wname, "bias": bname,
                                  "activation": layer.activation})
            _io.write_json(os.path.join(tmp, "head.json"), head_json)
            _io.write_json(os.path.join(tmp, "epoch.json"), info)
            _io.fsync_dir(tmp)

            if not self._run_json_written:
                self.repr_dim = ep["D"]
                self._write_run_json()

            if os.path.exists(final):
                raise FileExistsError("epoch %d appeared while it was being written (%s); "
                                      "is another process recording this run?" % (epoch, final))
            try:
                os.rename(tmp, final)
            except OSError as e:
                if os.path.exists(final):
                    raise FileExistsError("epoch %d is already recorded (%s)" % (epoch, final))
                raise OSError("cannot move %s into place as %s: %s" % (tmp, final, e))
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _io.fsync_dir(self.epochs_dir)
        self.last_epoch_info = info
        return final

    def _epoch_json(self, epoch, metrics, train_logits, train_labels, train_loss,
                    test_logits):
        info = {"epoch": epoch}
        if metrics is not None:
            if not isinstance(metrics, dict):
                raise ValueError("metrics: expected a dict, found %s" % type(metrics).__name__)
            for key, value in metrics.items():
                if not isinstance(key, str) or not _METRIC_RE.match(key):
                    raise ValueError("metrics: invalid key %r (use letters, digits, _ . - /)"
                                     % (key,))
                if key == "epoch":
                    raise ValueError("metrics: 'epoch' is set by the recorder; pass the "
                                     "epoch number as record_epoch's first argument")
                if isinstance(value, str) and key not in STANDARD_METRICS:
                    info[key] = value
                else:
                    info[key] = to_number(value, "metrics[%r]" % key)
        if self.auto_metrics:
            pred = train_logits.argmax(axis=1)
            info.setdefault("train_loss", float(np.mean(train_loss, dtype=np.float64)))
            info.setdefault("train_acc", float(np.mean(pred == train_labels)))
            if test_logits is not None:
                tl = per_sample_loss(test_logits, self.test_labels)
                info.setdefault("test_loss", float(np.mean(tl, dtype=np.float64)))
                info.setdefault("test_acc",
                                float(np.mean(test_logits.argmax(axis=1) == self.test_labels)))
        return info

    def _task_acc(self, train_logits, train_labels, test_logits):
        """Accuracy per task of each split (None for a task without samples)."""
        def per_task(logits, labels):
            pred = logits.argmax(axis=1)
            out = []
            for classes in self.tasks:
                mask = np.isin(labels, classes)
                out.append(float(np.mean(pred[mask] == labels[mask])) if mask.any() else None)
            return out
        acc = {"train": per_task(train_logits, train_labels)}
        if test_logits is not None:
            acc["test"] = per_task(test_logits, self.test_labels)
        return acc

    def _check_head(self, layers, train_repr, train_logits):
        # tardis rejects a run whose head does not reproduce the logits (it checks
        # the first rows, per row: |head - logits| <= rel * (1 + max|row|)); check
        # the same rows with the same rule, plus a spread of later rows.
        if self.head_check == "off":
            return
        n = train_repr.shape[0]
        rows = np.unique(np.concatenate([np.arange(min(n, 64)),
                                         np.linspace(0, n - 1, min(n, 192)).astype(np.int64)]))
        got = head_forward(layers, train_repr[rows].astype(np.float32))
        want = train_logits[rows].astype(np.float64)
        f16 = np.dtype(np.float16)
        rel = 5e-2 if f16 in (self.repr_dtype, self.logits_dtype) else 1e-2
        allowed = rel * (1.0 + np.abs(want).max(axis=1))
        excess = (np.abs(got - want) - allowed[:, None]).max(axis=1)
        if (excess > 0).any():
            worst = int(np.argmax(excess > 0))  # the first failing row, as tardis reports
            i = int(rows[worst])
            j = int(np.argmax(np.abs(got[worst] - want[worst])))
            msg = ("head(train_repr) does not reproduce train_logits: row %d, class %d: the "
                   "head gives %.6g, train_logits has %.6g. tardis rejects such an epoch. "
                   "Was the model in eval mode (dropout, batch norm) when the logits were "
                   "taken, is the head the layer(s) right after the representation, from the "
                   "same epoch, and are the rows in train_labels order?"
                   % (i, j, got[worst, j], want[worst, j]))
            if self.head_check == "error":
                raise ValueError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _check_tasks(tasks, n_classes):
    """The tasks as a list of lists of class indices, or None; no class twice."""
    if tasks is None:
        return None
    if isinstance(tasks, (str, bytes)) or not hasattr(tasks, "__iter__"):
        raise ValueError("tasks: expected a list of class lists such as [[0, 1], [2, 3]], "
                         "found %s" % type(tasks).__name__)
    out, seen = [], {}
    for t, task in enumerate(tasks):
        if isinstance(task, (str, bytes)) or not hasattr(task, "__iter__"):
            raise ValueError("tasks[%d]: expected a list of class indices, found %r" % (t, task))
        classes = []
        for c in task:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) \
                    or not 0 <= int(c) < n_classes:
                raise ValueError("tasks[%d]: %r is not a class index in [0, %d)"
                                 % (t, c, n_classes))
            if int(c) in seen:
                raise ValueError("tasks: class %d is in task %d and again in task %d"
                                 % (int(c), seen[int(c)], t))
            seen[int(c)] = t
            classes.append(int(c))
        if not classes:
            raise ValueError("tasks[%d]: a task needs at least one class" % t)
        out.append(classes)
    if not out:
        raise ValueError("tasks: expected at least one task")
    return out


def _storage_dtype(name, what):
    dt = np.dtype(name) if name is not None else np.dtype(np.float32)
    if dt not in (np.dtype(np.float32), np.dtype(np.float16)):
        raise ValueError("%s must be float32 or float16, found %r" % (what, name))
    return dt


def make_subset(subset, n, seed=0):
    """The fixed subset of a run as ascending int32 indices, or None.

    ``subset`` is None, a size K (K distinct indices of [0, n) drawn with
    ``numpy.random.default_rng(seed)``) or the indices themselves."""
    if subset is None:
        return None
    if isinstance(subset, (int, np.integer)) and not isinstance(subset, bool):
        k = int(subset)
        if not 1 <= k <= n:
            raise ValueError("subset: a size must lie in [1, %d] (n_train), found %d" % (n, k))
        idx = np.random.default_rng(seed).choice(n, size=k, replace=False)
        return np.sort(idx).astype(np.int32)
    idx = as_index_vector(subset, "subset", n)
    if idx.size == 0:
        raise ValueError("subset: expected at least one training index")
    out = np.unique(idx)
    if out.size != idx.size:
        raise ValueError("subset: index %d is listed twice"
                         % int(out[np.argmax(np.bincount(idx)[out] > 1)]))
    return out.astype(np.int32)


def _as_trained(trained, n):
    """trained= as sorted unique int32 indices: from indices or a bool mask [N]."""
    arr = to_numpy(trained, "trained")
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise ValueError("trained: a boolean mask must have shape [%d] (n_train), found %s"
                             % (n, list(arr.shape)))
        return np.flatnonzero(arr).astype(np.int32)
    return np.unique(as_index_vector(arr, "trained", n)).astype(np.int32)
