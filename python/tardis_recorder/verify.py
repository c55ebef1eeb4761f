"""Check a run directory against run format v1 using only numpy.

    python3 -m tardis_recorder.verify RUN [--quiet]

Exit status 0 when the run is valid; otherwise each problem is printed.
"""

import json
import os
import re
import sys

import numpy as np

__all__ = ["verify_run", "RunFormatError"]

_RUN_KEYS = ("format", "version", "name", "classes", "n_train", "n_test", "repr_dim",
             "input_shape", "producer", "created")
_CREATED_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class RunFormatError(ValueError):
    def __init__(self, problems):
        self.problems = list(problems)
        ValueError.__init__(self, "invalid tardis run:\n  " + "\n  ".join(self.problems))


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Checker(object):
    def __init__(self, path):
        self.path = path
        self.problems = []

    def bad(self, msg):
        self.problems.append(msg)

    def load(self, rel, shape, dtypes, finite=False, required=True):
        """Load rel (relative to the run) and check shape (None = any) and dtype."""
        full = os.path.join(self.path, rel)
        if not os.path.isfile(full):
            if required:
                self.bad("%s: missing" % rel)
            return None
        try:
            with open(full, "rb") as f:
                version = np.lib.format.read_magic(f)
                if version[0] == 1:
                    hdr = np.lib.format.read_array_header_1_0(f)
                else:
                    hdr = np.lib.format.read_array_header_2_0(f)
            arr = np.load(full, allow_pickle=False)
        except Exception as e:
            self.bad("%s: not a readable .npy file (%s)" % (rel, e))
            return None
        if hdr[1]:
            self.bad("%s: stored in Fortran order, expected C order" % rel)
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
            self.bad("%s: big-endian data, expected little-endian" % rel)
        names = [np.dtype(d).name for d in dtypes]
        if arr.dtype.name not in names:
            self.bad("%s: dtype %s, expected %s" % (rel, arr.dtype.name, " or ".join(names)))
        if shape is not None and list(arr.shape) != list(shape):
            self.bad("%s: shape %s, expected %s" % (rel, list(arr.shape), list(shape)))
        if finite and np.issubdtype(arr.dtype, np.floating) and arr.size:
            ok = np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
            if not ok.all():
                self.bad("%s: NaN/Inf in row %d" % (rel, int(np.argmin(ok))))
        return arr

    def labels(self, rel, n, C, required):
        arr = self.load(rel, [n] if n is not None else None, [np.int32], required=required)
        if arr is not None and arr.dtype == np.int32 and arr.size and C:
            if arr.min() < 0 or arr.max() >= C:
                self.bad("%s: values outside [0, %d)" % (rel, C))
        return arr


def verify_run(path):
    """Validate the run at ``path``; return a summary dict or raise RunFormatError.

    Checks run.json, every array's dtype/shape/byte order/finiteness against
    it, each epoch's epoch.json, and that each head chains D -> ... -> C.
    """
    ck = _Checker(path)
    meta_path = os.path.join(path, "run.json")
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise RunFormatError(["run.json: cannot read (%s)" % e])
    if not isinstance(meta, dict):
        raise RunFormatError(["run.json: expected a JSON object"])
    for k in _RUN_KEYS:
        if k not in meta:
            ck.bad("run.json: missing key %r" % k)
    if ck.problems:
        raise RunFormatError(ck.problems)
    if meta["format"] != "tardis-run":
        ck.bad("run.json: format is %r, expected 'tardis-run'" % meta["format"])
    if meta["version"] != 1:
        ck.bad("run.json: version is %r, expected 1" % meta["version"])
    classes = meta["classes"]
    if (not isinstance(classes, list) or len(classes) < 2
            or not all(isinstance(c, str) and c for c in classes)):
        ck.bad("run.json: classes must be a list of >= 2 non-empty strings")
        classes = []
    C = len(classes)
    N, M, D = meta["n_train"], meta["n_test"], meta["repr_dim"]
    for k, v, lo in (("n_train", N, 1), ("n_test", M, 0), ("repr_dim", D, 1)):
        if not _is_int(v) or v < lo:
            ck.bad("run.json: %s must be an integer >= %d, found %r" % (k, lo, v))
    if not isinstance(meta["name"], str):
        ck.bad("run.json: name must be a string")
    if not isinstance(meta["producer"], str):
        ck.bad("run.json: producer must be a string")
    if not isinstance(meta["created"], str) or not _CREATED_RE.match(meta["created"]):
        ck.bad("run.json: created must be an ISO-8601 time, found %r" % meta["created"])
    shp = meta["input_shape"]
    if shp is not None and (not isinstance(shp, list) or len(shp) != 3
                            or not all(_is_int(s) and s > 0 for s in shp)):
        ck.bad("run.json: input_shape must be null or [c, h, w], found %r" % (shp,))
        shp = None
    n_tasks = _check_tasks(ck, meta, C)
    if ck.problems:
        raise RunFormatError(ck.problems)

    ck.labels("train_labels.npy", N, C, required=True)
    ck.labels("test_labels.npy", M, C, required=False)
    if M == 0 and os.path.exists(os.path.join(path, "test_labels.npy")):
        ck.bad("test_labels.npy: present but n_test is 0")
    ck.labels("train_truth.npy", N, C, required=False)
    for rel, n in (("train_inputs.npy", N), ("test_inputs.npy", M)):
        if os.path.exists(os.path.join(path, rel)):
            if shp is None:
                ck.bad("%s: present but run.json has no input_shape" % rel)
            else:
                ck.load(rel, [n] + shp, [np.uint8, np.float32], finite=True)
    subset = _check_subset(ck, "subset.npy", N, None)

    epochs = []
    edir = os.path.join(path, "epochs")
    if not os.path.isdir(edir):
        ck.bad("epochs/: missing")
        raise RunFormatError(ck.problems)
    for entry in sorted(os.listdir(edir)):
        if entry.startswith("."):
            continue  # writer temporaries are invisible to readers
        full = os.path.join(edir, entry)
        if not entry.isdigit() or not os.path.isdir(full):
            ck.bad("epochs/%s: unexpected entry" % entry)
            continue
        num = int(entry)
        if entry != "%04d" % num:
            ck.bad("epochs/%s: name must be the epoch number zero-padded to 4 digits" % entry)
        _check_epoch(ck, "epochs/%s" % entry, num, N, M, D, C, n_tasks, subset)
        epochs.append(num)
    if ck.problems:
        raise RunFormatError(ck.problems)
    return {"name": meta["name"], "n_train": N, "n_test": M, "repr_dim": D,
            "classes": classes, "epochs": sorted(epochs)}


def _check_tasks(ck, meta, C):
    """run.json's optional "tasks" (disjoint class lists); returns their count."""
    tasks = meta.get("tasks")
    ept = meta.get("epochs_per_task")
    if tasks is None:
        if ept is not None:
            ck.bad("run.json: epochs_per_task given without tasks")
        return 0
    if not isinstance(tasks, list) or not tasks:
        ck.bad("run.json: tasks must be a non-empty list of class lists, found %r" % (tasks,))
        return 0
    seen = {}
    for t, task in enumerate(tasks):
        if not isinstance(task, list) or not task:
            ck.bad("run.json: tasks[%d] must be a non-empty list of class indices" % t)
            continue
        for c in task:
            if not _is_int(c) or not 0 <= c < C:
                ck.bad("run.json: tasks[%d] holds %r, expected a class in [0, %d)" % (t, c, C))
            elif c in seen:
                ck.bad("run.json: class %d is in task %d and again in task %d" % (c, seen[c], t))
            else:
                seen[c] = t
    if ept is not None and (not _is_int(ept) or ept < 1):
        ck.bad("run.json: epochs_per_task must be a positive integer, found %r" % (ept,))
    return len(tasks)


def _check_epoch_tasks(ck, rel, info, n_tasks):
    task, acc = info.get("task"), info.get("task_acc")
    if (task is not None or acc is not None) and n_tasks == 0:
        ck.bad("%s/epoch.json: has task/task_acc but run.json has no tasks" % rel)
        return
    if task is not None and (not _is_int(task) or not 0 <= task < n_tasks):
        ck.bad("%s/epoch.json: task must be a task index in [0, %d), found %r"
               % (rel, n_tasks, task))
    if acc is None:
        return
    if not isinstance(acc, dict):
        ck.bad("%s/epoch.json: task_acc must be an object {train: [..], test: [..]}" % rel)
        return
    for split in ("train", "test"):
        v = acc.get(split)
        if v is not None and (not isinstance(v, list) or len(v) != n_tasks
                              or not all(x is None or _is_num(x) for x in v)):
            ck.bad("%s/epoch.json: task_acc.%s must list %d numbers (one per task)"
                   % (rel, split, n_tasks))


def _check_subset(ck, rel, N, run_subset):
    """RUN/subset.npy (run_subset None) or an epoch's copy of it: K >= 1
    indices in [0, N), strictly ascending; the copy equal to the run's."""
    present = os.path.exists(os.path.join(ck.path, rel))
    if rel != "subset.npy" and present != (run_subset is not None):
        ck.bad("%s: %s" % (rel, "present but the run has no subset.npy" if present
                           else "missing in a subset run (RUN/subset.npy exists)"))
        return None
    if not present:
        return None
    sub = ck.load(rel, None, [np.int32, np.int64])
    if sub is None:
        return None
    if (sub.ndim != 1 or sub.size == 0 or sub.min() < 0 or sub.max() >= N
            or (sub.size > 1 and not (np.diff(sub) > 0).all())):
        ck.bad("%s: must be a non-empty 1-D vector of indices in [0, %d), strictly ascending"
               % (rel, N))
        return None
    if run_subset is not None and not np.array_equal(sub, run_subset):
        ck.bad("%s: differs from RUN/subset.npy (the subset is fixed for the run)" % rel)
    return sub


def _check_epoch(ck, rel, num, N, M, D, C, n_tasks=0, subset=None):
    try:
        with open(os.path.join(ck.path, rel, "epoch.json"), encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError) as e:
        ck.bad("%s/epoch.json: cannot read (%s)" % (rel, e))
        info = None
    if info is not None:
        if not isinstance(info, dict) or info.get("epoch") != num or not _is_int(info["epoch"]):
            ck.bad("%s/epoch.json: 'epoch' must be %d" % (rel, num))
        else:
            for k in ("train_loss", "train_acc", "test_loss", "test_acc", "seconds", "lr"):
                if k in info and not _is_num(info[k]):
                    ck.bad("%s/epoch.json: %s must be a number, found %r" % (rel, k, info[k]))
            _check_epoch_tasks(ck, rel, info, n_tasks)
    K = N if subset is None else len(subset)  # rows of the train arrays
    floats = [np.float32, np.float16]
    ck.load(rel + "/train_repr.npy", [K, D], floats, finite=True)
    ck.load(rel + "/train_logits.npy", [K, C], floats, finite=True)
    ck.load(rel + "/train_loss.npy", [K], floats, finite=True, required=False)
    ck.load(rel + "/test_repr.npy", [M, D], floats, finite=True, required=False)
    ck.load(rel + "/test_logits.npy", [M, C], floats, finite=True, required=False)
    _check_subset(ck, rel + "/subset.npy", N, subset)
    tr = ck.load(rel + "/trained.npy", None, [np.int32], required=False)
    if tr is not None and (tr.ndim != 1 or (tr.size and (tr.min() < 0 or tr.max() >= N))
                           or (tr.size > 1 and not (np.diff(tr) > 0).all())):
        ck.bad("%s/trained.npy: must be a 1-D vector of indices in [0, %d), sorted and "
               "unique" % (rel, N))
    try:
        with open(os.path.join(ck.path, rel, "head.json"), encoding="utf-8") as f:
            head = json.load(f)
    except (OSError, ValueError) as e:
        ck.bad("%s/head.json: cannot read (%s)" % (rel, e))
        return
    if not isinstance(head, list) or not head:
        ck.bad("%s/head.json: expected a non-empty JSON array of layers" % rel)
        return
    width = D
    n_problems = len(ck.problems)
    for i, layer in enumerate(head):
        where = "%s/head.json layer %d" % (rel, i)
        if not isinstance(layer, dict) or layer.get("type") != "dense":
            ck.bad("%s: expected {\"type\": \"dense\", ...}" % where)
            return
        if layer.get("activation", "none") not in ("none", "relu"):
            ck.bad("%s: activation must be 'none' or 'relu'" % where)
        wf, bf = layer.get("weight"), layer.get("bias")
        if not isinstance(wf, str) or not isinstance(bf, str) or "/" in wf + bf:
            ck.bad("%s: weight/bias must be file names in the epoch directory" % where)
            return
        w = ck.load(rel + "/" + wf, None, [np.float32], finite=True)
        b = ck.load(rel + "/" + bf, None, [np.float32], finite=True)
        if w is None or b is None:
            return
        if w.ndim != 2 or w.shape[1] != width:
            ck.bad("%s: weight shape %s, expected [out, %d]" % (where, list(w.shape), width))
            return
        if list(b.shape) != [w.shape[0]]:
            ck.bad("%s: bias shape %s, expected [%d]" % (where, list(b.shape), w.shape[0]))
        width = w.shape[0]
    if width != C:
        ck.bad("%s/head.json: the head produces %d outputs, expected C = %d" % (rel, width, C))
        return
    if len(ck.problems) != n_problems:
        return  # the head is broken already; do not run it
    # The head must reproduce the recorded logits (checked on the first rows).
    try:
        x = np.load(os.path.join(ck.path, rel, "train_repr.npy"))[:64].astype(np.float64)
        z = np.load(os.path.join(ck.path, rel, "train_logits.npy"))[:64].astype(np.float64)
    except Exception:
        return  # already reported
    if x.ndim != 2 or z.ndim != 2 or x.shape[1] != D or z.shape[1] != C:
        return
    for layer in head:
        w = np.load(os.path.join(ck.path, rel, layer["weight"])).astype(np.float64)
        b = np.load(os.path.join(ck.path, rel, layer["bias"])).astype(np.float64)
        x = x @ w.T + b
        if layer.get("activation", "none") == "relu":
            x = np.maximum(x, 0)
    rel_tol = 5e-2 if np.load(os.path.join(ck.path, rel, "train_repr.npy"),
                              mmap_mode="r").dtype == np.float16 else 1e-2
    bad = np.abs(x - z) > rel_tol * (1 + np.abs(z).max(axis=1, keepdims=True))
    if bad.any():
        i, j = np.argwhere(bad)[0]
        ck.bad("%s/head.json: the head does not reproduce train_logits.npy (row %d, class %d: "
               "head gives %.6g, file has %.6g)" % (rel, i, j, x[i, j], z[i, j]))


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(prog="python3 -m tardis_recorder.verify",
                                 description="Check a tardis run directory (format v1).")
    ap.add_argument("run")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    try:
        s = verify_run(args.run)
    except RunFormatError as e:
        print("%s: %s" % (args.run, e), file=sys.stderr)
        return 1
    if not args.quiet:
        print("%s: valid tardis run %r: %d classes, n_train=%d, n_test=%d, repr_dim=%d, "
              "%d epoch(s)" % (args.run, s["name"], len(s["classes"]), s["n_train"],
                               s["n_test"], s["repr_dim"], len(s["epochs"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
