"""DistributedRecorder: recording from torch.distributed (DDP) training.

Two ranks on the gloo backend over loopback (tests/python/ddp_worker.py):
the committed epochs must equal, byte for byte, a single-process recording
of the same model, `tardis info` and `tardis project` must read the run,
and a rank that dies before the barrier must leave no visible epoch.  One
rank in this process checks the error paths.

Run from the repository root:
    TD_BIN=build/tardis /usr/bin/python3 -m unittest discover -s tests/python -v
"""

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYDIR = os.path.join(ROOT, "python")
if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from tardis_recorder import Recorder, verify_run  # noqa: E402
from test_recorder import require_td_bin  # noqa: E402

import torch.distributed as dist  # noqa: E402  (Debian's python3-torch is a test dependency)
from tardis_recorder.distributed import DistributedRecorder  # noqa: E402

# A loaded 2-core CI machine (under the sanitizer build, too) can take long
# to start two torch processes: wait minutes, never assume an order.
DEADLINE_S = 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(mode, out, world=2):
    """Start ``world`` ranks of ddp_worker.py; return [(rc, output)] per rank."""
    for attempt in range(3):
        env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()),
                   OMP_NUM_THREADS="1")
        logs = [open(os.path.join(out, "rank%d.log" % r), "w+") for r in range(world)]
        procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "ddp_worker.py"), mode,
                                   str(r), str(world), out], env=env, stdout=logs[r],
                                  stderr=subprocess.STDOUT) for r in range(world)]
        deadline = time.monotonic() + DEADLINE_S
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.2)
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        results = []
        for p, f in zip(procs, logs):
            f.seek(0)
            results.append((p.returncode, f.read()))
            f.close()
        # Another program may take the port between free_port() and the
        # rendezvous; that is the one failure worth a new try.
        if not any("Address already in use" in text for _, text in results):
            return results
        shutil.rmtree(os.path.join(out, "ddp"), ignore_errors=True)
        shutil.rmtree(os.path.join(out, "single"), ignore_errors=True)
    return results


def describe(results):
    return "\n".join("--- rank %d (exit %r):\n%s" % (r, rc, text)
                     for r, (rc, text) in enumerate(results))


def files_under(root):
    out = []
    for dirpath, _, filenames in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, n), root) for n in filenames]
    return sorted(out)


class TwoRanks(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="tardis-ddp-test-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def run_ok(self, mode):
        results = run_ranks(mode, self.tmp)
        self.assertEqual([rc for rc, _ in results], [0, 0], describe(results))
        return results

    def assert_same_as_single(self):
        """Every committed file of the DDP run equals the single-process one
        (run.json apart from its creation time)."""
        ddp, single = os.path.join(self.tmp, "ddp"), os.path.join(self.tmp, "single")
        names = files_under(ddp)
        self.assertEqual(names, files_under(single))
        self.assertEqual([n for n in names if "/." in "/" + n], [], "temporaries left")
        for name in names:
            a, b = os.path.join(ddp, name), os.path.join(single, name)
            if name == "run.json":
                with open(a) as fa, open(b) as fb:
                    ja, jb = json.load(fa), json.load(fb)
                ja.pop("created"), jb.pop("created")
                self.assertEqual(ja, jb)
                continue
            with open(a, "rb") as fa, open(b, "rb") as fb:
                self.assertEqual(fa.read(), fb.read(), "%s differs from the single-process "
                                 "recording" % name)
        self.assertEqual(verify_run(ddp)["epochs"], [0, 1, 2])
        return ddp

    def tardis(self, *args):
        out = subprocess.run([require_td_bin(self)] + list(args), capture_output=True,
                             text=True, timeout=DEADLINE_S)
        return out.returncode, out.stdout + out.stderr

    def test_two_ranks_commit_what_one_process_records(self):
        results = self.run_ok("full")
        ddp = self.assert_same_as_single()
        self.assertTrue(os.path.exists(os.path.join(ddp, "finished")))
        self.assertEqual(np.load(os.path.join(ddp, "epochs", "0002", "train_repr.npy")).shape,
                         (61, 8))
        rc, text = self.tardis("info", ddp)
        self.assertEqual(rc, 0, text + describe(results))
        self.assertIn("run is valid", text)
        rc, text = self.tardis("project", ddp)
        self.assertEqual(rc, 0, text)
        self.assertIn("projected 3 epochs", text)

    def test_subset_float16_run(self):
        self.run_ok("subset")
        ddp = self.assert_same_as_single()
        sub = np.load(os.path.join(ddp, "subset.npy"))
        self.assertEqual(len(sub), 23)
        r = np.load(os.path.join(ddp, "epochs", "0001", "train_repr.npy"))
        self.assertEqual((r.dtype, r.shape), (np.float16, (23, 8)))
        np.testing.assert_array_equal(np.load(os.path.join(ddp, "epochs", "0001",
                                                           "subset.npy")), sub)
        rc, text = self.tardis("info", ddp)  # the C reader takes it too
        self.assertEqual(rc, 0, text)

    def test_a_rank_dying_before_the_barrier_leaves_no_epoch(self):
        results = run_ranks("crash", self.tmp)
        self.assertEqual(results[1][0], 3, describe(results))  # died as planned
        self.assertEqual(results[0][0], 0, describe(results))
        with open(os.path.join(self.tmp, "rank0.json")) as f:
            report = json.load(f)
        self.assertEqual(report["epochs"], [0, 1])
        self.assertIsNotNone(report["error"], "rank 0 did not notice that rank 1 died")
        ddp = os.path.join(self.tmp, "ddp")
        # epoch 2 is nowhere, not even as a temporary: rank 0 removed its shards
        self.assertEqual(sorted(os.listdir(os.path.join(ddp, "epochs"))), ["0000", "0001"])
        self.assertEqual(verify_run(ddp)["epochs"], [0, 1])
        rc, text = self.tardis("info", ddp)
        self.assertEqual(rc, 0, text)
        self.assertRegex(text, r"epochs\s+2 \(0 to 1\)")


class Example(unittest.TestCase):
    """python/examples/record_ddp.py on 2 spawned ranks, read back by tardis."""

    def test_example_records_a_run_tardis_reads(self):
        tmp = tempfile.mkdtemp(prefix="tardis-ddp-example-")
        self.addCleanup(shutil.rmtree, tmp, True)
        run = os.path.join(tmp, "run")
        cmd = [sys.executable, os.path.join(PYDIR, "examples", "record_ddp.py"), "--spawn", "2",
               "--out", run, "--epochs", "2", "--limit", "600", "--repr-dtype", "float16"]
        env = dict(os.environ, MASTER_PORT=str(free_port()), OMP_NUM_THREADS="1")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE_S, env=env)
        text = proc.stdout + proc.stderr
        self.assertEqual(proc.returncode, 0, text)
        self.assertRegex(proc.stdout, r"epoch +2 +train acc")
        self.assertEqual(verify_run(run)["epochs"], [1, 2])
        out = subprocess.run([require_td_bin(self), "info", run], capture_output=True,
                             text=True, timeout=DEADLINE_S)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr + text)
        self.assertIn("600 samples", out.stdout)


class OneRank(unittest.TestCase):
    """A process group of one, in this process: the error paths."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="tardis-ddp1-test-")
        dist.init_process_group("gloo", init_method="file://" + os.path.join(cls.tmp, "store"),
                                rank=0, world_size=1, timeout=datetime.timedelta(seconds=300))

    @classmethod
    def tearDownClass(cls):
        dist.destroy_process_group()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        type(self).n += 1
        self.run_dir = os.path.join(self.tmp, "run%d" % self.n)
        g = np.random.default_rng(self.n)
        self.y = g.integers(0, 3, 40)
        self.w = g.standard_normal((3, 5)).astype(np.float32)
        self.r = g.standard_normal((40, 5)).astype(np.float32)
        self.z = self.r @ self.w.T

    n = 0

    def head(self):
        return [(self.w, np.zeros(3, np.float32), "none")]

    def test_shards_in_any_order_and_overlap(self):
        rec = DistributedRecorder(self.run_dir, ["a", "b", "c"], self.y, repr_dim=5)
        self.assertEqual((rec.rank, rec.world_size), (0, 1))
        np.testing.assert_array_equal(rec.shard_indices(), np.arange(40))
        idx = np.concatenate([np.arange(39, -1, -1), [3, 7]])  # reversed, two repeats
        rec.record_epoch(1, idx, self.r[idx], self.z[idx], self.head())
        single = Recorder(self.run_dir + "-single", ["a", "b", "c"], self.y, repr_dim=5)
        single.record_epoch(1, self.r, self.z, self.head())
        for name in os.listdir(os.path.join(self.run_dir, "epochs", "0001")):
            with open(os.path.join(self.run_dir, "epochs", "0001", name), "rb") as a, \
                    open(os.path.join(self.run_dir + "-single", "epochs", "0001", name),
                         "rb") as b:
                self.assertEqual(a.read(), b.read(), name)

    def test_missing_rows_and_bad_input_commit_nothing(self):
        rec = DistributedRecorder(self.run_dir, ["a", "b", "c"], self.y, repr_dim=5,
                                  subset=10)
        sub = rec.subset
        with self.assertRaisesRegex(ValueError, r"rows were given by no rank \(the first: "
                                    r"training index %d\)" % sub[9]):
            rec.record_epoch(1, sub[:9], self.r[sub[:9]], self.z[sub[:9]], self.head())
        others = np.setdiff1d(np.arange(40), sub)
        with self.assertRaisesRegex(ValueError, "rank 0: ValueError: indices: training index "
                                    "%d is not in the recorded subset" % others[0]):
            rec.record_epoch(1, others[:10], self.r[:10], self.z[:10], self.head())
        with self.assertRaisesRegex(ValueError, "train_repr: expected 10 rows"):
            rec.record_epoch(1, sub, self.r[:9], self.z[sub], self.head())
        with self.assertRaisesRegex(ValueError, "head.*does not reproduce"):
            rec.record_epoch(1, sub, self.r[sub], self.z[sub] + 5, self.head())
        self.assertEqual(os.listdir(os.path.join(self.run_dir, "epochs")), [])
        rec.record_epoch(1, sub, self.r[sub], self.z[sub], self.head())
        with self.assertRaisesRegex(ValueError, "epoch 1 is already recorded"):
            rec.record_epoch(1, sub, self.r[sub], self.z[sub], self.head())
        self.assertEqual(os.listdir(os.path.join(self.run_dir, "epochs")), ["0001"])
        self.assertEqual(verify_run(self.run_dir)["epochs"], [1])

    def test_rank0_errors_reach_every_rank(self):
        os.makedirs(os.path.join(self.run_dir, "x"))
        with self.assertRaisesRegex(ValueError, "rank 0 could not create the run: "
                                    "FileExistsError"):
            DistributedRecorder(self.run_dir, ["a", "b", "c"], self.y)


if __name__ == "__main__":
    unittest.main()
