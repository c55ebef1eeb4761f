"""Tests for python/tardis_recorder (run format v1 writer) and its example.

Run from the repository root:
    TD_BIN=build/tardis /usr/bin/python3 -m unittest discover -s tests/python -v
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import warnings

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYDIR = os.path.join(ROOT, "python")
if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)

import tardis_recorder  # noqa: E402
from tardis_recorder import Recorder, verify_run, RunFormatError  # noqa: E402
from tardis_recorder import _io  # noqa: E402

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - Debian's python3-torch is a test dependency
    torch = None

N, M, D, C = 50, 20, 8, 3
CLASSES = ["cat", "dog", "bird"]
RUN_KEYS = {"format", "version", "name", "classes", "n_train", "n_test", "repr_dim",
            "input_shape", "producer", "created"}


def npy_header(path):
    """(shape, fortran_order, dtype) straight from a .npy header."""
    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        if major == 1:
            return np.lib.format.read_array_header_1_0(f)
        return np.lib.format.read_array_header_2_0(f)


def hidden_entries(root):
    """Every path under root whose name starts with '.' (temporaries)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out += [os.path.join(dirpath, n) for n in dirnames + filenames if n.startswith(".")]
    return out


class Synthetic(object):
    """A small, consistent run: linear head, logits = head(repr)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.y = rng.integers(0, C, N)
        self.yt = rng.integers(0, C, M)
        self.truth = self.y.copy()
        self.truth[:5] = (self.truth[:5] + 1) % C
        self.x = rng.integers(0, 256, (N, 1, 4, 4)).astype(np.uint8)
        self.xt = rng.random((M, 1, 4, 4)).astype(np.float32)

    def epoch(self, seed):
        rng = np.random.default_rng(100 + seed)
        w = rng.standard_normal((C, D)).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32)
        r = rng.standard_normal((N, D)).astype(np.float32)
        rt = rng.standard_normal((M, D)).astype(np.float32)
        return dict(train_repr=r, train_logits=r @ w.T + b, head=[(w, b, "none")],
                    test_repr=rt, test_logits=rt @ w.T + b)


class RecorderTestCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tardis-rec-test-")
        self.run_dir = os.path.join(self.tmp, "run")
        self.s = Synthetic()

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def recorder(self, **kw):
        args = dict(classes=CLASSES, train_labels=self.s.y, test_labels=self.s.yt, repr_dim=D)
        args.update(kw)
        return Recorder(self.run_dir, **args)

    def path(self, *parts):
        return os.path.join(self.run_dir, *parts)


class TestRunFiles(RecorderTestCase):
    def test_complete_run_every_file(self):
        rec = self.recorder(train_truth=self.s.truth, train_inputs=self.s.x,
                            test_inputs=self.s.xt, name="synthetic")
        epochs = {}
        for e in (0, 1, 2):
            epochs[e] = self.s.epoch(e)
            kw = dict(epochs[e])
            if e == 2:
                kw["subset"] = np.arange(0, N, 2)
            out = rec.record_epoch(e, metrics={"lr": 0.1 * (e + 1), "seconds": 1.5,
                                               "note": "hello"}, **kw)
            self.assertEqual(out, self.path("epochs", "%04d" % e))

        # run.json
        with open(self.path("run.json"), encoding="utf-8") as f:
            meta = json.load(f)
        self.assertEqual(set(meta), RUN_KEYS)
        self.assertEqual(meta["format"], "tardis-run")
        self.assertEqual(meta["version"], 1)
        self.assertEqual(meta["name"], "synthetic")
        self.assertEqual(meta["classes"], CLASSES)
        self.assertEqual((meta["n_train"], meta["n_test"], meta["repr_dim"]), (N, M, D))
        self.assertEqual(meta["input_shape"], [1, 4, 4])
        self.assertRegex(meta["producer"],
                         r"^tardis_recorder \S+ \(python \d+\.\d+\.\d+, numpy \S+\)$")
        created = datetime.datetime.strptime(meta["created"], "%Y-%m-%dT%H:%M:%SZ")
        self.assertLess(abs((datetime.datetime.utcnow() - created).total_seconds()), 300)

        # static arrays
        def load(rel, dtype, shape):
            full = self.path(*rel.split("/"))
            shp, fortran, dt = npy_header(full)
            self.assertFalse(fortran, rel)
            self.assertEqual(dt, np.dtype(dtype).newbyteorder("<"), rel)
            self.assertEqual(list(shp), list(shape), rel)
            return np.load(full)

        np.testing.assert_array_equal(load("train_labels.npy", np.int32, [N]), self.s.y)
        np.testing.assert_array_equal(load("test_labels.npy", np.int32, [M]), self.s.yt)
        np.testing.assert_array_equal(load("train_truth.npy", np.int32, [N]), self.s.truth)
        np.testing.assert_array_equal(load("train_inputs.npy", np.uint8, [N, 1, 4, 4]),
                                      self.s.x)
        np.testing.assert_array_equal(load("test_inputs.npy", np.float32, [M, 1, 4, 4]),
                                      self.s.xt)

        self.assertEqual(sorted(os.listdir(self.path("epochs"))), ["0000", "0001", "0002"])
        for e, ep in epochs.items():
            d = "epochs/%04d/" % e
            with open(self.path("epochs", "%04d" % e, "epoch.json")) as f:
                info = json.load(f)
            self.assertIs(type(info["epoch"]), int)
            self.assertEqual(info["epoch"], e)
            self.assertAlmostEqual(info["lr"], 0.1 * (e + 1))
            self.assertEqual(info["seconds"], 1.5)
            self.assertEqual(info["note"], "hello")
            z = ep["train_logits"]
            self.assertAlmostEqual(info["train_acc"], float(np.mean(z.argmax(1) == self.s.y)))
            self.assertAlmostEqual(info["test_acc"],
                                   float(np.mean(ep["test_logits"].argmax(1) == self.s.yt)))
            np.testing.assert_array_equal(load(d + "train_repr.npy", np.float32, [N, D]),
                                          ep["train_repr"])
            np.testing.assert_array_equal(load(d + "test_repr.npy", np.float32, [M, D]),
                                          ep["test_repr"])
            np.testing.assert_allclose(load(d + "train_logits.npy", np.float32, [N, C]), z)
            np.testing.assert_allclose(load(d + "test_logits.npy", np.float32, [M, C]),
                                       ep["test_logits"])
            loss = load(d + "train_loss.npy", np.float32, [N])
            self.assertAlmostEqual(info["train_loss"], float(loss.mean()), places=5)
            with open(self.path("epochs", "%04d" % e, "head.json")) as f:
                head = json.load(f)
            self.assertEqual(head, [{"type": "dense", "weight": "head_0_w.npy",
                                     "bias": "head_0_b.npy", "activation": "none"}])
            w, b, _ = ep["head"][0]
            np.testing.assert_array_equal(load(d + "head_0_w.npy", np.float32, [C, D]), w)
            np.testing.assert_array_equal(load(d + "head_0_b.npy", np.float32, [C]), b)
            has_subset = os.path.exists(self.path("epochs", "%04d" % e, "subset.npy"))
            self.assertEqual(has_subset, e == 2)
        np.testing.assert_array_equal(load("epochs/0002/subset.npy", np.int32, [N // 2]),
                                      np.arange(0, N, 2))

        self.assertEqual(hidden_entries(self.run_dir), [])
        self.assertEqual(verify_run(self.run_dir)["epochs"], [0, 1, 2])
        self.assertEqual(rec.recorded_epochs(), [0, 1, 2])

    def test_minimal_run_no_test_set(self):
        rec = Recorder(self.run_dir, CLASSES, self.s.y)
        ep = self.s.epoch(1)
        rec.record_epoch(1, ep["train_repr"], ep["train_logits"], ep["head"])
        with open(self.path("run.json")) as f:
            meta = json.load(f)
        self.assertEqual(meta["n_test"], 0)
        self.assertIsNone(meta["input_shape"])
        self.assertEqual(meta["name"], "run")
        self.assertEqual(meta["repr_dim"], D)  # inferred from the first epoch
        self.assertEqual(sorted(os.listdir(self.run_dir)),
                         ["epochs", "run.json", "train_labels.npy"])
        self.assertEqual(sorted(os.listdir(self.path("epochs", "0001"))),
                         ["epoch.json", "head.json", "head_0_b.npy", "head_0_w.npy",
                          "train_logits.npy", "train_loss.npy", "train_repr.npy"])
        verify_run(self.run_dir)

    def test_run_json_waits_for_first_epoch_without_repr_dim(self):
        rec = Recorder(self.run_dir, CLASSES, self.s.y)
        self.assertFalse(os.path.exists(self.path("run.json")))
        rec.record_epoch(1, **{k: v for k, v in self.s.epoch(1).items()
                               if not k.startswith("test")})
        self.assertTrue(os.path.exists(self.path("run.json")))

    def test_epoch_directory_names(self):
        self.assertEqual(tardis_recorder.epoch_dirname(7), "0007")
        self.assertEqual(tardis_recorder.epoch_dirname(9999), "9999")
        self.assertEqual(tardis_recorder.epoch_dirname(12345), "12345")
        rec = self.recorder()
        rec.record_epoch(10000, **self.s.epoch(1))
        self.assertTrue(os.path.isdir(self.path("epochs", "10000")))
        verify_run(self.run_dir)

    def test_inputs_reshaped_to_input_shape(self):
        flat = self.s.x.reshape(N, 16)
        self.recorder(train_inputs=flat, input_shape=(1, 4, 4))
        self.assertEqual(np.load(self.path("train_inputs.npy")).shape, (N, 1, 4, 4))
        with self.assertRaisesRegex(ValueError, "input_shape"):
            Recorder(os.path.join(self.tmp, "r2"), CLASSES, self.s.y, train_inputs=flat)

    def test_torch_not_imported_by_package(self):
        code = ("import sys; sys.path.insert(0, %r); import tardis_recorder; "
                "import tardis_recorder.torch_utils; "
                "print('torch' in sys.modules)" % PYDIR)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True)
        self.assertEqual(out.stdout.strip(), "False")


class TestAtomicity(RecorderTestCase):
    def test_refuses_to_overwrite_an_epoch(self):
        rec = self.recorder()
        ep1 = self.s.epoch(1)
        rec.record_epoch(1, **ep1)
        with self.assertRaisesRegex(FileExistsError, "epoch 1 is already recorded"):
            rec.record_epoch(1, **self.s.epoch(2))
        np.testing.assert_array_equal(np.load(self.path("epochs", "0001", "train_repr.npy")),
                                      ep1["train_repr"])
        self.assertEqual(hidden_entries(self.run_dir), [])

    def test_existing_run_refused_without_overwrite(self):
        self.recorder().record_epoch(1, **self.s.epoch(1))
        with self.assertRaisesRegex(FileExistsError, "overwrite=True"):
            self.recorder()
        self.assertTrue(os.path.isdir(self.path("epochs", "0001")))
        rec = self.recorder(overwrite=True)
        self.assertEqual(rec.recorded_epochs(), [])
        self.assertFalse(os.path.exists(self.path("epochs", "0001")))

    def test_overwrite_never_deletes_a_foreign_directory(self):
        os.makedirs(self.run_dir)
        with open(self.path("precious.txt"), "w") as f:
            f.write("keep me")
        with self.assertRaisesRegex(FileExistsError, "does not look like a tardis run"):
            self.recorder(overwrite=True)
        self.assertTrue(os.path.exists(self.path("precious.txt")))

    def test_empty_existing_directory_is_fine(self):
        os.makedirs(self.run_dir)
        self.recorder().record_epoch(1, **self.s.epoch(1))
        verify_run(self.run_dir)

    def test_failure_mid_epoch_leaves_nothing(self):
        rec = self.recorder()
        real = _io.save_npy
        calls = []

        def flaky(path, arr):
            calls.append(path)
            if len(calls) == 3:
                raise OSError("disk full (simulated)")
            real(path, arr)

        _io.save_npy = flaky
        try:
            with self.assertRaisesRegex(OSError, "simulated"):
                rec.record_epoch(1, **self.s.epoch(1))
        finally:
            _io.save_npy = real
        self.assertEqual(os.listdir(self.path("epochs")), [])
        self.assertEqual(hidden_entries(self.run_dir), [])
        rec.record_epoch(1, **self.s.epoch(1))  # the epoch can be recorded afterwards
        verify_run(self.run_dir)

    def test_resume_after_a_killed_writer(self):
        self.recorder().record_epoch(1, **self.s.epoch(1))
        stale = self.path("epochs", ".tmp-0002-999999999")
        os.makedirs(stale)
        with open(os.path.join(stale, "train_repr.npy"), "wb") as f:
            f.write(b"half")
        verify_run(self.run_dir)  # readers ignore temporaries
        rec = self.recorder(resume=True)
        self.assertFalse(os.path.exists(stale))
        rec.record_epoch(2, **self.s.epoch(2))
        self.assertEqual(verify_run(self.run_dir)["epochs"], [1, 2])
        with self.assertRaisesRegex(ValueError, "train_labels differ"):
            self.recorder(resume=True, train_labels=(self.s.y + 1) % C)
        with self.assertRaisesRegex(ValueError, "classes differ"):
            self.recorder(resume=True, classes=["a", "b", "c"])


class TestValidation(RecorderTestCase):
    def test_nan_and_inf_rejected_with_row(self):
        rec = self.recorder()
        for key, bad_value, kind in (("train_repr", np.nan, "NaN"),
                                     ("train_logits", np.inf, "Inf"),
                                     ("test_repr", -np.inf, "Inf"),
                                     ("test_logits", np.nan, "NaN")):
            ep = self.s.epoch(1)
            arr = ep[key].copy()
            arr[7, 1] = bad_value
            ep[key] = arr
            with self.assertRaises(ValueError) as cm:
                rec.record_epoch(1, **ep)
            msg = str(cm.exception)
            self.assertIn(key, msg)
            self.assertIn(kind, msg)
            self.assertIn("row is 7", msg)
        self.assertEqual(os.listdir(self.path("epochs")), [])
        ep = self.s.epoch(1)
        ep["head"] = [(ep["head"][0][0], np.array([0, np.nan, 0], np.float32), "none")]
        with self.assertRaisesRegex(ValueError, "head layer 0 bias"):
            rec.record_epoch(1, **ep)
        with self.assertRaisesRegex(ValueError, r"metrics\['lr'\]: must be finite"):
            rec.record_epoch(1, metrics={"lr": float("nan")}, **self.s.epoch(1))

    def test_shape_mismatches_say_expected_and_found(self):
        rec = self.recorder()
        cases = [
            ("train_repr", lambda ep: ep["train_repr"][:-1],
             r"train_repr: expected 50 rows \(n_train in run.json\), found 49"),
            ("train_repr", lambda ep: ep["train_repr"][:, :-1],
             r"train_repr: expected 8 columns \(repr_dim in run.json\), found 7"),
            ("train_repr", lambda ep: ep["train_repr"][0],
             r"train_repr: expected a 2-D array"),
            ("train_logits", lambda ep: np.zeros((N, C + 1), np.float32),
             r"train_logits: expected 3 columns \(number of classes\), found 4"),
            ("test_repr", lambda ep: ep["test_repr"][:5],
             r"test_repr: expected 20 rows \(n_test in run.json\), found 5"),
            ("head", lambda ep: [(ep["head"][0][0].T, ep["head"][0][1])],
             r"head: the first layer takes 3 inputs but the representation has D = 8 "
             r"\(is the weight transposed"),
            ("head", lambda ep: [(np.zeros((4, D), np.float32), np.zeros(4, np.float32))],
             r"last layer produces 4 outputs but there are C = 3"),
            ("head", lambda ep: [(np.zeros((5, D), np.float32), None, "relu"),
                                 (np.zeros((C, 6), np.float32), None)],
             r"head layer 1: takes 6 inputs but layer 0 produces 5"),
            ("head", lambda ep: [(ep["head"][0][0], np.zeros(2, np.float32))],
             r"head layer 0 bias: expected shape \[3\]"),
            ("head", lambda ep: [(ep["head"][0][0], ep["head"][0][1], "tanh")],
             r"activation must be one of"),
            ("train_loss", lambda ep: np.zeros(N + 1, np.float32),
             r"train_loss: expected 50 values"),
            ("subset", lambda ep: np.array([0, N]), r"subset: indices must lie in \[0, 50\)"),
        ]
        for key, make, pattern in cases:
            ep = self.s.epoch(1)
            ep[key] = make(ep)
            with self.assertRaisesRegex(ValueError, pattern, msg=key):
                rec.record_epoch(1, **ep)
        self.assertEqual(os.listdir(self.path("epochs")), [])

    def test_constructor_validation(self):
        other = os.path.join(self.tmp, "other")
        with self.assertRaisesRegex(ValueError, r"train_labels: labels must lie in \[0, 3\), "
                                                r"found 3 at index 4"):
            y = self.s.y.copy()
            y[4] = 3
            Recorder(other, CLASSES, y)
        with self.assertRaisesRegex(ValueError, "labels must be integers"):
            Recorder(other, CLASSES, self.s.y.astype(np.float32))
        with self.assertRaisesRegex(ValueError, "train_truth: expected 50 labels, found 49"):
            Recorder(other, CLASSES, self.s.y, train_truth=self.s.y[:-1])
        with self.assertRaisesRegex(ValueError, "duplicate class name"):
            Recorder(other, ["a", "a", "b"], self.s.y)
        with self.assertRaisesRegex(ValueError, "at least 2 classes"):
            Recorder(other, ["a"], np.zeros(3, np.int64))
        with self.assertRaisesRegex(ValueError, "train_inputs: expected 50 samples"):
            Recorder(other, CLASSES, self.s.y, train_inputs=self.s.x[:10])
        with self.assertRaisesRegex(ValueError, "repr_dtype"):
            Recorder(other, CLASSES, self.s.y, repr_dtype="float64")
        self.assertFalse(os.path.exists(other))

    def test_test_arrays_need_a_test_set(self):
        rec = Recorder(self.run_dir, CLASSES, self.s.y, repr_dim=D)
        with self.assertRaisesRegex(ValueError, "no test set"):
            rec.record_epoch(1, **self.s.epoch(1))

    def test_head_mismatch_raises_or_warns(self):
        ep = self.s.epoch(1)
        ep["train_logits"] = ep["train_logits"] + 5 * np.random.default_rng(1).standard_normal(
            (N, C)).astype(np.float32)
        rec = self.recorder()
        with self.assertRaisesRegex(ValueError, "does not reproduce train_logits: row 0"):
            rec.record_epoch(1, **ep)
        self.assertEqual(os.listdir(self.path("epochs")), [])
        lax = Recorder(os.path.join(self.tmp, "lax"), CLASSES, self.s.y,
                       test_labels=self.s.yt, head_check="warn")
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            lax.record_epoch(1, **ep)
        self.assertTrue(any("does not reproduce train_logits" in str(w.message) for w in got))
        # ... and the format checker flags what the lax recorder let through
        with self.assertRaisesRegex(RunFormatError, "head does not reproduce"):
            verify_run(lax.path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a consistent epoch must not warn
            lax.record_epoch(2, **self.s.epoch(2))
        # a mismatch beyond the first rows is caught too
        ep = self.s.epoch(3)
        z = ep["train_logits"].copy()
        z[N - 1] += 10
        ep["train_logits"] = z
        with self.assertRaisesRegex(ValueError, "row %d" % (N - 1)):
            rec.record_epoch(3, **ep)


class TestDtypesAndLoss(RecorderTestCase):
    def test_float16_representation(self):
        rec = self.recorder(repr_dtype="float16")
        ep = self.s.epoch(1)
        rec.record_epoch(1, **ep)
        r = np.load(self.path("epochs", "0001", "train_repr.npy"))
        rt = np.load(self.path("epochs", "0001", "test_repr.npy"))
        self.assertEqual((r.dtype, rt.dtype), (np.float16, np.float16))
        self.assertEqual(np.load(self.path("epochs", "0001", "train_logits.npy")).dtype,
                         np.float32)
        np.testing.assert_allclose(r.astype(np.float32), ep["train_repr"], rtol=1e-3,
                                   atol=1e-3)
        verify_run(self.run_dir)
        ep = self.s.epoch(2)
        ep["train_repr"] = ep["train_repr"] * 1e6
        with self.assertRaisesRegex(ValueError, "train_repr: values overflow float16 at row"):
            rec.record_epoch(2, **ep)

    def test_float64_inputs_are_stored_as_float32(self):
        ep = {k: (np.asarray(v, np.float64) if k != "head" else v)
              for k, v in self.s.epoch(1).items()}
        self.recorder().record_epoch(1, **ep)
        for f in ("train_repr", "train_logits", "test_repr", "test_logits", "train_loss"):
            self.assertEqual(np.load(self.path("epochs", "0001", f + ".npy")).dtype,
                             np.float32, f)

    @unittest.skipIf(torch is None, "python3-torch is not installed")
    def test_train_loss_matches_torch_cross_entropy(self):
        rng = np.random.default_rng(5)
        r = rng.standard_normal((N, D)).astype(np.float32)
        w = (30 * rng.standard_normal((C, D))).astype(np.float32)  # large logits
        b = rng.standard_normal(C).astype(np.float32)
        z = r @ w.T + b
        self.assertGreater(np.abs(z).max(), 100)
        rec = self.recorder()
        rec.record_epoch(1, r, z, [(w, b)])
        got = np.load(self.path("epochs", "0001", "train_loss.npy"))
        want = F.cross_entropy(torch.from_numpy(z).double(), torch.from_numpy(self.s.y),
                               reduction="none").numpy()
        self.assertTrue(np.isfinite(got).all())
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        with open(self.path("epochs", "0001", "epoch.json")) as f:
            self.assertAlmostEqual(json.load(f)["train_loss"], float(want.mean()), places=3)

    def test_given_train_loss_is_stored(self):
        loss = np.linspace(0, 1, N).astype(np.float32)
        self.recorder().record_epoch(1, train_loss=loss, **self.s.epoch(1))
        np.testing.assert_array_equal(np.load(self.path("epochs", "0001", "train_loss.npy")),
                                      loss)


@unittest.skipIf(torch is None, "python3-torch is not installed")
class TestTorch(RecorderTestCase):
    def test_head_from_linear_and_sequential(self):
        torch.manual_seed(0)
        lin = torch.nn.Linear(D, C)
        seq = torch.nn.Sequential(torch.nn.Linear(D, 6), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                                  torch.nn.Linear(6, C))
        r = torch.randn(N, D, requires_grad=True)
        rt = torch.randn(M, D)
        rec = self.recorder()
        seq.eval()
        for e, head in ((1, lin), (2, seq)):
            rec.record_epoch(e, train_repr=r, train_logits=head(r), head=head,
                             test_repr=rt, test_logits=head(rt),
                             metrics={"train_loss": torch.tensor(0.5)})
        d1, d2 = self.path("epochs", "0001"), self.path("epochs", "0002")
        with open(os.path.join(d1, "head.json")) as f:
            self.assertEqual([l["activation"] for l in json.load(f)], ["none"])
        np.testing.assert_array_equal(np.load(os.path.join(d1, "head_0_w.npy")),
                                      lin.weight.detach().numpy())
        with open(os.path.join(d2, "head.json")) as f:
            layers = json.load(f)
        self.assertEqual([(l["type"], l["activation"]) for l in layers],
                         [("dense", "relu"), ("dense", "none")])
        self.assertEqual(np.load(os.path.join(d2, layers[0]["weight"])).shape, (6, D))
        np.testing.assert_array_equal(np.load(os.path.join(d2, layers[1]["bias"])),
                                      seq[3].bias.detach().numpy())
        with open(os.path.join(d2, "epoch.json")) as f:
            self.assertEqual(json.load(f)["train_loss"], 0.5)
        verify_run(self.run_dir)

        with self.assertRaisesRegex(ValueError, "unsupported layer Tanh at position 1"):
            rec.record_epoch(3, train_repr=r, train_logits=lin(r), test_repr=rt,
                             test_logits=lin(rt),
                             head=torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Tanh(),
                                                      torch.nn.Linear(4, C)))

    def test_collect(self):
        from tardis_recorder.torch_utils import collect
        torch.manual_seed(0)
        x = torch.randn(N, 5)
        y = torch.from_numpy(self.s.y)
        feats = torch.nn.Sequential(torch.nn.Linear(5, D), torch.nn.ReLU(),
                                    torch.nn.Dropout(0.9))
        head = torch.nn.Linear(D, C)
        ds = torch.utils.data.TensorDataset(x, y)
        feats.train()
        r, z = collect(feats, head, torch.utils.data.DataLoader(ds, batch_size=16))
        self.assertTrue(feats.training)  # mode restored
        self.assertEqual((r.shape, z.shape, r.dtype), ((N, D), (N, C), np.float32))
        feats.eval()
        with torch.no_grad():
            np.testing.assert_allclose(r, feats(x).numpy(), rtol=1e-6)
            np.testing.assert_allclose(z, head(feats(x)).numpy(), rtol=1e-5, atol=1e-6)
        with self.assertRaisesRegex(ValueError, "shuffle"):
            collect(feats, head, torch.utils.data.DataLoader(ds, batch_size=16, shuffle=True))


class TestFormatChecker(RecorderTestCase):
    """verify_run must catch broken runs, or its passing means nothing."""

    def test_detects_corruption(self):
        self.recorder().record_epoch(1, **self.s.epoch(1))
        verify_run(self.run_dir)
        ed = self.path("epochs", "0001")
        np.save(os.path.join(ed, "train_logits.npy"), np.zeros((N, C), np.float64))
        np.save(os.path.join(ed, "head_0_b.npy"), np.zeros(C + 1, np.float32))
        np.save(os.path.join(ed, "train_repr.npy"), np.asfortranarray(np.zeros((N, D), np.float32)))
        with open(os.path.join(ed, "epoch.json"), "w") as f:
            json.dump({"epoch": 2}, f)
        with self.assertRaises(RunFormatError) as cm:
            verify_run(self.run_dir)
        text = "\n".join(cm.exception.problems)
        for needle in ("train_logits.npy: dtype float64", "bias shape [4], expected [3]",
                       "train_repr.npy: stored in Fortran order", "'epoch' must be 1"):
            self.assertIn(needle, text)


def require_td_bin(test):
    """The tardis binary from $TD_BIN; fails the test (never skips) when unusable."""
    td_bin = os.environ.get("TD_BIN")
    if not td_bin:
        test.fail("TD_BIN is not set: point it at the built tardis binary "
                  "(e.g. TD_BIN=build/tardis, as `make test-python` does) so runs written by "
                  "the Python recorder are read back by `tardis info`")
    if not (os.path.isfile(td_bin) and os.access(td_bin, os.X_OK)):
        test.fail("TD_BIN=%s is not an executable file; build tardis first" % td_bin)
    return td_bin


def tardis_info(test, run_dir):
    out = subprocess.run([require_td_bin(test), "info", run_dir], capture_output=True,
                         text=True, timeout=120)
    return out.returncode, out.stdout + out.stderr


@unittest.skipIf(torch is None, "python3-torch is not installed")
class TestTardisReadsRecorderRuns(RecorderTestCase):
    """The C reader (`tardis info`) and the recorder agree on the format."""

    def test_varied_run_is_valid_for_tardis(self):
        torch.manual_seed(1)
        rng = np.random.default_rng(2)
        rec = self.recorder(train_truth=self.s.truth,
                            train_inputs=rng.random((N, 3, 2, 2)).astype(np.float32),
                            repr_dtype="float16", name="varied run é")
        head = torch.nn.Sequential(torch.nn.Linear(D, 9), torch.nn.ReLU(), torch.nn.Linear(9, C))
        for e in (0, 5, 10000):
            r, rt = torch.randn(N, D), torch.randn(M, D)
            with torch.no_grad():  # logits from the float16-rounded representation
                z, zt = head(r.half().float()), head(rt.half().float())
            rec.record_epoch(e, r, z, head, test_repr=rt, test_logits=zt,
                             metrics={"lr": 0.1, "note": "text"})
        verify_run(self.run_dir)
        rc, text = tardis_info(self, self.run_dir)
        self.assertEqual(rc, 0, text)

    def test_tardis_rejects_what_the_recorder_rejects(self):
        ep = self.s.epoch(1)
        ep["train_logits"] = ep["train_logits"] * 3 + 1  # logits the head cannot produce
        rec = self.recorder(head_check="warn")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rec.record_epoch(1, **ep)
        rc, text = tardis_info(self, self.run_dir)
        self.assertNotEqual(rc, 0, "tardis info accepted a head that does not reproduce the "
                                   "logits:\n" + text)


class TestContinualLearning(RecorderTestCase):
    """tasks= in the constructor, trained= and task= per epoch (run format:
    "tasks" in run.json, trained.npy, task/task_acc in epoch.json)."""

    TASKS = [[0], [1, 2]]

    def record_two_tasks(self):
        rec = self.recorder(tasks=self.TASKS, epochs_per_task=1)
        first = np.flatnonzero(self.s.y == 0)
        second = np.flatnonzero(self.s.y != 0)
        # epoch 1 trains task 0 (a boolean mask), epoch 2 task 1 plus two
        # replayed samples of task 0 (indices in any order, one repeated)
        rec.record_epoch(1, trained=self.s.y == 0, task=0, **self.s.epoch(1))
        replayed = [first[1], first[0], first[0]]
        rec.record_epoch(2, trained=np.concatenate([second[::-1], replayed]), task=1,
                         **self.s.epoch(2))
        return first, second

    def test_tasks_and_trained_are_recorded(self):
        first, second = self.record_two_tasks()
        with open(self.path("run.json"), encoding="utf-8") as f:
            meta = json.load(f)
        self.assertEqual(meta["tasks"], self.TASKS)
        self.assertEqual(meta["epochs_per_task"], 1)
        t1 = np.load(self.path("epochs", "0001", "trained.npy"))
        t2 = np.load(self.path("epochs", "0002", "trained.npy"))
        self.assertEqual(t1.dtype, np.int32)
        np.testing.assert_array_equal(t1, first)
        np.testing.assert_array_equal(t2, np.sort(np.concatenate([second, first[:2]])))
        with open(self.path("epochs", "0002", "epoch.json"), encoding="utf-8") as f:
            info = json.load(f)
        self.assertEqual(info["task"], 1)
        ep = self.s.epoch(2)
        pred = ep["train_logits"].argmax(axis=1)
        want = [float(np.mean(pred[m] == self.s.y[m]))
                for m in (self.s.y == 0, self.s.y != 0)]
        self.assertEqual(info["task_acc"]["train"], want)
        self.assertEqual(len(info["task_acc"]["test"]), 2)
        verify_run(self.run_dir)
        rc, text = tardis_info(self, self.run_dir)
        self.assertEqual(rc, 0, text)

    def test_bad_tasks_and_trained_are_refused(self):
        cases = [
            (dict(tasks=[[0, 1], [1, 2]]), r"class 1 is in task 0 and again in task 1"),
            (dict(tasks=[[0, 3]]), r"tasks\[0\]: 3 is not a class index in \[0, 3\)"),
            (dict(tasks=[[0], []]), r"tasks\[1\]: a task needs at least one class"),
            (dict(tasks="0-1"), r"tasks: expected a list of class lists"),
            (dict(epochs_per_task=2), r"epochs_per_task given without tasks"),
        ]
        for kw, pattern in cases:
            with self.assertRaisesRegex(ValueError, pattern, msg=str(kw)):
                self.recorder(**kw)
        rec = self.recorder(tasks=self.TASKS)
        for kw, pattern in [
                (dict(trained=np.array([0, N])), r"trained: indices must lie in \[0, 50\)"),
                (dict(trained=np.ones(N - 1, bool)), r"trained: a boolean mask must have "
                                                     r"shape \[50\]"),
                (dict(task=2), r"task: expected a task index in \[0, 2\)")]:
            with self.assertRaisesRegex(ValueError, pattern, msg=str(kw)):
                rec.record_epoch(1, **kw, **self.s.epoch(1))
        plain = Recorder(os.path.join(self.tmp, "plain"), classes=CLASSES,
                         train_labels=self.s.y, repr_dim=D)
        with self.assertRaisesRegex(ValueError, r"task given but the Recorder has no tasks"):
            plain.record_epoch(1, task=0, train_repr=self.s.epoch(1)["train_repr"],
                               train_logits=self.s.epoch(1)["train_logits"],
                               head=self.s.epoch(1)["head"])

    def test_checkers_catch_bad_trained_and_tasks(self):
        self.record_two_tasks()
        np.save(self.path("epochs", "0002", "trained.npy"), np.array([3, 1], np.int32))
        with self.assertRaises(RunFormatError) as cm:
            verify_run(self.run_dir)
        self.assertIn("trained.npy: must be a 1-D vector of indices in [0, 50), sorted",
                      "\n".join(cm.exception.problems))
        rc, text = tardis_info(self, self.run_dir)
        self.assertNotEqual(rc, 0, text)
        self.assertIn("not above entry 0", text)
        np.save(self.path("epochs", "0002", "trained.npy"), np.array([1, 3], np.int32))
        with open(self.path("run.json"), encoding="utf-8") as f:
            meta = json.load(f)
        meta["tasks"] = [[0], [0, 2]]
        with open(self.path("run.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f)
        with self.assertRaises(RunFormatError) as cm:
            verify_run(self.run_dir)
        self.assertIn("class 0 is in task 0 and again in task 1",
                      "\n".join(cm.exception.problems))
        rc, text = tardis_info(self, self.run_dir)
        self.assertNotEqual(rc, 0, text)
        self.assertIn("class 0 is in task 0 and again in task 1", text)


class TestFashionMnistExample(unittest.TestCase):
    """Runs python/examples/record_fashion_mnist.py on a small subset (once)."""

    run_dir = None
    proc = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tardis-example-test-")
        cls.run_dir = os.path.join(cls.tmp, "fmnist")
        cmd = [sys.executable, os.path.join(PYDIR, "examples", "record_fashion_mnist.py"),
               "--out", cls.run_dir, "--limit", "2000", "--epochs", "2", "--noise", "0.1",
               "--seed", "3"]
        cls.proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def check_example_ran(self):
        self.assertEqual(self.proc.returncode, 0,
                         "example failed:\n%s\n%s" % (self.proc.stdout, self.proc.stderr))

    def test_example_writes_a_valid_run(self):
        self.check_example_ran()
        summary = verify_run(self.run_dir)
        self.assertEqual(summary["epochs"], [1, 2])
        self.assertEqual((summary["n_train"], summary["n_test"], summary["repr_dim"]),
                         (2000, 333, 128))
        self.assertEqual(summary["classes"][0], "T-shirt/top")
        self.assertEqual(summary["classes"][9], "Ankle boot")
        y = np.load(os.path.join(self.run_dir, "train_labels.npy"))
        truth = np.load(os.path.join(self.run_dir, "train_truth.npy"))
        self.assertEqual(int((y != truth).sum()), 200)  # exactly round(0.1 * 2000)
        x = np.load(os.path.join(self.run_dir, "train_inputs.npy"), mmap_mode="r")
        self.assertEqual((x.dtype, x.shape), (np.uint8, (2000, 1, 28, 28)))
        self.assertGreater(int(x.max()), 200)  # real images, not zeros
        with open(os.path.join(self.run_dir, "epochs", "0002", "epoch.json")) as f:
            info = json.load(f)
        self.assertGreater(info["test_acc"], 0.3)  # it learns something in 2 epochs

    def test_tardis_info_reads_the_run(self):
        require_td_bin(self)
        self.check_example_ran()
        rc, text = tardis_info(self, self.run_dir)
        self.assertEqual(rc, 0, "`tardis info %s` exited %d:\n%s" % (self.run_dir, rc, text))
        self.assertIn("run is valid", text)

if __name__ == "__main__":
    unittest.main()
