#!/usr/bin/env python3
"""Tests of the `ckpt` command, run by CTest (tools/CMakeLists.txt), one suite per subcommand:

    test_tool.py --ckpt PATH/TO/ckpt --fixtures DIR --suite inspect|verify|ls|diff|export|cli

DIR holds what tests/tool/make_fixtures.cpp wrote; its comment says what each file holds, and the
values asserted here come from there. Python's standard library only: the .npy files are read by
the reader below, so NumPy stays out of the test path.
"""

import argparse
import ast
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

CKPT = ""
FIXTURES = ""


def fx(*parts):
    return os.path.join(FIXTURES, *parts)


def run(*args, env=None):
    """Runs ckpt with `args`; returns (exit status, stdout, stderr)."""
    p = subprocess.run([CKPT, *args], capture_output=True, text=True, env=env, timeout=60)
    return p.returncode, p.stdout, p.stderr


def run_json(*args):
    status, out, err = run(*args, "--json")
    return status, json.loads(out), err


def read_npy(path):
    """NumPy's .npy format 1.0: (descr, fortran_order, shape, data bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    assert raw[:6] == b"\x93NUMPY", raw[:6]
    assert raw[6:8] == b"\x01\x00", raw[6:8]
    (length,) = struct.unpack("<H", raw[8:10])
    assert (10 + length) % 64 == 0, "the data starts 64-byte aligned"
    header = ast.literal_eval(raw[10 : 10 + length].decode("latin1"))
    return header["descr"], header["fortran_order"], header["shape"], raw[10 + length :]


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


# What make_fixtures.cpp writes into a.ckpt.
W = [[i * 10 + j + 0.5 for j in range(5)] for i in range(3)]  # 3x5, column-major
R = [[i - j / 4 for j in range(3)] for i in range(2)]  # 2x3, row-major
BIAS = [0.25 * (k + 1) for k in range(4)]
IDS = [-1, 0, 70000]
H = [1.5, -2.0]


class Inspect(unittest.TestCase):
    def test_json_of_a_file(self):
        status, d, err = run_json("inspect", fx("a.ckpt"))
        self.assertEqual(status, 0, err)
        self.assertEqual(d["path"], fx("a.ckpt"))
        self.assertFalse(d["distributed"])
        self.assertEqual(d["format_version"], 3)
        self.assertRegex(d["library_version"], r"^\d+\.\d+\.\d+$")
        self.assertRegex(d["checksum"], r"^xxh3-64:[0-9a-f]{16}$")
        self.assertFalse(d["checksum_verified"])
        self.assertEqual(d["step"], 20)
        self.assertEqual(d["epoch"], 2)
        self.assertEqual(d["time"], "2027-01-15T08:00:00.000000000Z")
        self.assertEqual(d["metrics"], {"loss": 0.25, "acc": 0.75})
        self.assertEqual(d["tags"], {"run": "fixture"})
        self.assertEqual(d["file_bytes"], os.path.getsize(fx("a.ckpt")))
        tensors = {t["name"]: t for t in d["tensors"]}
        self.assertEqual(sorted(tensors), ["bias", "h", "ids", "r", "w"])
        w = tensors["w"]
        self.assertEqual((w["dtype"], w["shape"], w["eigen_shape"], w["order"], w["bytes"]),
                         ("F32", [5, 3], "3x5 column-major", "column-major", 60))
        r = tensors["r"]
        self.assertEqual((r["dtype"], r["shape"], r["eigen_shape"], r["bytes"]),
                         ("F64", [2, 3], "2x3 row-major", 48))
        self.assertEqual((tensors["bias"]["dtype"], tensors["bias"]["shape"]), ("F64", [4]))
        self.assertEqual((tensors["ids"]["dtype"], tensors["ids"]["bytes"]), ("I32", 12))
        self.assertEqual((tensors["h"]["dtype"], tensors["h"]["bytes"]), ("F16", 4))
        self.assertTrue(all(t["placement"] == "replicated" for t in d["tensors"]))
        # The value stream (counter and name) is what the file holds besides header and tensors.
        self.assertEqual(d["value_bytes"],
                         d["file_bytes"] - 8 - d["header_bytes"] - sum(t["bytes"] for t in d["tensors"]))
        self.assertGreater(d["value_bytes"], 0)
        self.assertEqual(d["metadata"]["ckpt.step"], "20")

    def test_text_of_a_file(self):
        status, out, err = run("inspect", fx("a.ckpt"))
        self.assertEqual(status, 0, err)
        self.assertIn("ckpt format 3", out)
        self.assertIn("step        20", out)
        self.assertIn("loss = 0.25", out)
        self.assertIn("not verified", out)
        self.assertRegex(out, r"w\s+F32\s+3x5 column-major\s+\[5, 3\]\s+60")
        self.assertNotIn("\x1b", out, "no colours when stdout is not a terminal")

    def test_verify_flag(self):
        status, d, err = run_json("inspect", "--verify", fx("a.ckpt"))
        self.assertEqual(status, 0, err)
        self.assertTrue(d["checksum_verified"])
        # A damaged data section: the header reads, the checksum does not match.
        status, out, err = run("inspect", fx("damaged.ckpt"))
        self.assertEqual(status, 0, err)
        status, out, err = run("inspect", "--verify", fx("damaged.ckpt"))
        self.assertEqual(status, 2)
        self.assertEqual(out, "")
        self.assertEqual(err.count("[ckpt.corrupt.204]"), 1, err)
        self.assertIn("damaged.ckpt", err)

    def test_distributed(self):
        status, d, err = run_json("inspect", fx("dist"))
        self.assertEqual(status, 0, err)
        self.assertTrue(d["distributed"])
        self.assertEqual(d["ranks"], 2)
        self.assertEqual(d["step"], 5)
        names = [(t["name"], t.get("rank"), t["placement"], t["shape"]) for t in d["tensors"]]
        self.assertEqual(names, [("m", None, "sharded", [4, 3]), ("v", None, "replicated", [3]),
                                 ("mine", 0, "rank_local", [2]), ("mine", 1, "rank_local", [2])])
        self.assertEqual(d["file_bytes"], sum(os.path.getsize(fx("dist", f))
                                              for f in os.listdir(fx("dist"))))

    def test_errors(self):
        status, out, err = run("inspect", fx("text.ckpt"))
        self.assertEqual(status, 2)
        self.assertEqual(err.count("[ckpt.limit.501]"), 1, err)
        status, out, err = run("inspect", fx("missing.ckpt"))
        self.assertEqual(status, 2)
        self.assertIn("[ckpt.io.101]", err)
        self.assertIn("missing.ckpt", err)
        with tempfile.TemporaryDirectory() as tmp:
            status, out, err = run("inspect", tmp)
            self.assertEqual(status, 2)
            self.assertIn("[ckpt.io.101]", err)
            self.assertIn("without manifest.json", err)


class Verify(unittest.TestCase):
    def test_good_files(self):
        status, out, err = run("verify", fx("a.ckpt"), fx("b.ckpt"), fx("dist"))
        self.assertEqual(status, 0, out + err)
        lines = out.splitlines()
        self.assertEqual(len(lines), 3, out)
        self.assertTrue(lines[0].startswith("ok") and lines[0].find(fx("a.ckpt")) > 0, lines[0])
        self.assertIn("distributed", lines[2])
        self.assertEqual(err, "", "no progress bar when stderr is not a terminal")

    def test_a_damaged_file(self):
        status, out, err = run("verify", fx("a.ckpt"), fx("damaged.ckpt"))
        self.assertEqual(status, 1)
        lines = out.splitlines()
        self.assertTrue(lines[0].startswith("ok"), out)
        self.assertTrue(lines[1].startswith("FAILED"), out)
        self.assertIn("[ckpt.corrupt.204]", lines[1])

    def test_a_directory(self):
        status, d, err = run_json("verify", fx("run"))
        self.assertEqual(status, 1)
        self.assertFalse(d["ok"])
        by_name = {os.path.basename(r["path"]): r for r in d["results"]}
        self.assertEqual(sorted(by_name), ["ckpt-000000000003.ckpt", "ckpt-000000000010.ckpt",
                                           "ckpt-000000000020.ckpt", "ckpt-000000000030.ckpt",
                                           "ckpt-000000000040.ckpt"])
        self.assertEqual(by_name["ckpt-000000000020.ckpt"]["ok"], True)
        self.assertEqual(by_name["ckpt-000000000020.ckpt"]["step"], 20)
        self.assertEqual(by_name["ckpt-000000000040.ckpt"]["error_id"], 202)
        self.assertEqual(by_name["ckpt-000000000003.ckpt"]["ok"], False)

    def test_a_damaged_rank_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "dist")
            shutil.copytree(fx("dist"), copy)
            rank1 = os.path.join(copy, "rank-00001-of-00002.ckpt")
            with open(rank1, "r+b") as f:
                f.seek(os.path.getsize(rank1) - 2)
                b = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([b[0] ^ 1]))
            status, out, err = run("verify", copy)
            self.assertEqual(status, 1)
            self.assertIn("[ckpt.corrupt.204]", out)
            self.assertIn("rank-00001-of-00002.ckpt", out)

    def test_progress(self):
        status, out, err = run("verify", "--progress", "always", fx("a.ckpt"))
        self.assertEqual(status, 0)
        self.assertIn("verifying a.ckpt", err)
        self.assertIn("100%", err)
        status, out, err = run("verify", "--progress", "never", fx("a.ckpt"))
        self.assertEqual(err, "")

    def test_nothing_to_verify(self):
        with tempfile.TemporaryDirectory() as tmp:
            status, out, err = run("verify", tmp)
            self.assertEqual(status, 1)
            self.assertIn("no checkpoints", out)


class Ls(unittest.TestCase):
    def test_json(self):
        before = sorted(os.listdir(fx("run")))
        status, d, err = run_json("ls", fx("run"))
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(os.listdir(fx("run"))), before, "ls changes nothing")
        self.assertEqual([p["prefix"] for p in d["prefixes"]], ["ckpt"])
        p = d["prefixes"][0]
        self.assertEqual([c["step"] for c in p["checkpoints"]], [10, 20, 30])
        self.assertEqual([c["metrics"]["loss"] for c in p["checkpoints"]], [0.5, 0.25, 0.375])
        self.assertEqual([c["latest"] for c in p["checkpoints"]], [False, False, True])
        self.assertEqual([c["best"] for c in p["checkpoints"]], [False, True, False])
        self.assertEqual(p["best_metric"], {"name": "loss", "goal": "min", "from": "policy"})
        self.assertEqual(p["checkpoints"][1]["bytes"],
                         os.path.getsize(fx("run", "ckpt-000000000020.ckpt")))
        self.assertEqual([(x["name"], x["error_id"]) for x in p["damaged"]],
                         [("ckpt-000000000040.ckpt", 202)])
        self.assertEqual(p["foreign"], ["ckpt-000000000003.ckpt"])
        self.assertEqual(p["temporaries"], ["ckpt-000000000050.ckpt.tmp-99999-0"])
        self.assertEqual(p["incomplete"], [])
        self.assertIsNone(p["lock"])
        self.assertEqual(d["others"], ["extra", "notes.txt"])

    def test_best_by_another_metric(self):
        status, d, err = run_json("ls", fx("run"), "--best", "loss:max")
        self.assertEqual(status, 0, err)
        p = d["prefixes"][0]
        self.assertEqual([c["best"] for c in p["checkpoints"]], [True, False, False])
        self.assertEqual(p["best_metric"], {"name": "loss", "goal": "max", "from": "--best"})
        status, out, err = run("ls", fx("run"), "--best", "loss:up")
        self.assertEqual(status, 2)
        self.assertIn("min or max", err)

    def test_text(self):
        status, out, err = run("ls", fx("run"))
        self.assertEqual(status, 0, err)
        self.assertRegex(out, r"ckpt-000000000020\.ckpt\s+20\s+2\s.*0\.25\s+best")
        self.assertRegex(out, r"ckpt-000000000030\.ckpt\s+30\s.*latest")
        self.assertIn("foreign   ckpt-000000000003.ckpt", out)
        self.assertIn("damaged   ckpt-000000000040.ckpt: [ckpt.corrupt.202]", out)
        self.assertIn("temporary ckpt-000000000050.ckpt.tmp-99999-0", out)
        self.assertIn("lock: not held", out)
        self.assertIn("not the manager's:\n  extra\n  notes.txt\n", out)

    def test_a_held_lock(self):
        import fcntl

        with tempfile.TemporaryDirectory() as tmp:
            copy = os.path.join(tmp, "run")
            shutil.copytree(fx("run"), copy)
            with open(os.path.join(copy, "ckpt.lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                lock.write(str(os.getpid()))
                lock.flush()
                status, d, err = run_json("ls", copy)
                self.assertEqual(status, 0, err)
                self.assertEqual(d["prefixes"][0]["lock"], {"pid": os.getpid(), "running": True})
                status, out, err = run("ls", copy)
                self.assertIn("lock: held by pid %d (running)" % os.getpid(), out)

    def test_other_prefixes_and_distributed(self):
        status, d, err = run_json("ls", FIXTURES)
        self.assertEqual(status, 0, err)
        self.assertEqual(d["prefixes"], [])
        self.assertIn("a.ckpt", d["others"])
        status, d, err = run_json("ls", fx("run"), "--prefix", "other")
        self.assertEqual([c for c in d["prefixes"][0]["checkpoints"]], [])
        self.assertIn("ckpt-000000000010.ckpt", d["others"])
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copytree(fx("dist"), os.path.join(tmp, "job-000000000005"))
            os.makedirs(os.path.join(tmp, "job-000000000006"))
            status, d, err = run_json("ls", tmp)
            self.assertEqual(status, 0, err)
            p = d["prefixes"][0]
            self.assertEqual(p["prefix"], "job")
            self.assertEqual([(c["name"], c["step"], c["distributed"]) for c in p["checkpoints"]],
                             [("job-000000000005", 5, True)])
            self.assertEqual(p["incomplete"], ["job-000000000006"])

    def test_not_a_directory(self):
        status, out, err = run("ls", fx("a.ckpt"))
        self.assertEqual(status, 2)
        self.assertIn("is not a directory", err)


class Diff(unittest.TestCase):
    def test_one_element(self):
        status, d, err = run_json("diff", fx("a.ckpt"), fx("b.ckpt"))
        self.assertEqual(status, 1, err)
        self.assertEqual(d["result"], "differ")
        tensors = {t["name"]: t for t in d["tensors"]}
        self.assertEqual([t["status"] for t in d["tensors"] if t["name"] != "w"], ["identical"] * 4)
        w = tensors["w"]
        self.assertEqual(w["status"], "differ")
        self.assertEqual((w["elements"], w["differing"]), (15, 1))
        self.assertEqual(w["first_index"], [2, 4], "(row, column) as Eigen indexes it")
        self.assertEqual(w["first_flat_index"], 14, "column-major: 4 * 3 + 2")
        self.assertEqual(w["max_ulps"], 1)
        self.assertEqual(w["first_a"], 24.5)
        self.assertEqual(w["first_b"], 24.500001907348633)
        self.assertEqual(w["max_abs"], 1.9073486328125e-06)
        self.assertEqual(w["nan_mismatches"], 0)
        self.assertEqual([v["identical"] for v in d["values"]], [True])
        status, out, err = run("diff", fx("a.ckpt"), fx("b.ckpt"))
        self.assertIn("w (F32 3x5 column-major): 1 of 15 elements differ", out)
        self.assertIn("max 1 ULP; first at [2, 4]: 24.5 vs 24.500001907348633", out)
        self.assertTrue(out.endswith("result: differ\n"), out)

    def test_tolerance(self):
        for args, expected in [(["--ulps", "1"], 0), (["--ulps", "0"], 1),
                               (["--atol", "1e-5"], 0), (["--atol", "1e-7"], 1),
                               (["--rtol", "1e-7"], 0), (["--rtol", "1e-8"], 1)]:
            status, d, err = run_json("diff", fx("a.ckpt"), fx("b.ckpt"), *args)
            self.assertEqual(status, expected, (args, err))
            self.assertEqual(d["result"], "close" if expected == 0 else "differ", args)
        status, out, err = run("diff", fx("a.ckpt"), fx("b.ckpt"), "--atol", "-1")
        self.assertEqual(status, 2)

    def test_identical_but_for_time(self):
        status, d, err = run_json("diff", fx("a.ckpt"), fx("a-again.ckpt"))
        self.assertEqual(status, 0, err)
        self.assertEqual(d["result"], "identical")
        self.assertEqual(d["metadata"], [{"field": "time", "a": "2027-01-15T08:00:00.000000000Z",
                                          "b": "2027-01-15T08:00:01.000000000Z"}])
        self.assertFalse(d["metadata_counted"])
        status, out, err = run("diff", "--metadata", fx("a.ckpt"), fx("a-again.ckpt"))
        self.assertEqual(status, 1)

    def test_structure(self):
        status, d, err = run_json("diff", fx("a.ckpt"), fx("c.ckpt"))
        self.assertEqual(status, 1, err)
        by = {t["name"]: t for t in d["tensors"]}
        self.assertEqual(by["bias"]["status"], "only_in_a")
        self.assertEqual(by["bias2"]["status"], "only_in_b")
        self.assertEqual(by["w"]["status"], "changed")
        self.assertEqual((by["w"]["in_a"]["shape"], by["w"]["in_b"]["shape"]), ([5, 3], [6, 3]))
        self.assertEqual(by["r"]["status"], "identical")
        self.assertEqual(d["values"][0]["identical"], False)
        self.assertEqual(d["values"][0]["first_byte"], 1)

    def test_damaged_and_unreadable(self):
        status, out, err = run("diff", fx("a.ckpt"), fx("damaged.ckpt"))
        self.assertEqual(status, 2)
        self.assertEqual(err.count("[ckpt.corrupt.204]"), 1, err)
        status, d, err = run_json("diff", "--no-verify", fx("a.ckpt"), fx("damaged.ckpt"))
        self.assertEqual(status, 1, err)
        w = [t for t in d["tensors"] if t["name"] == "w"][0]
        self.assertEqual(w["differing"], 1)
        status, out, err = run("diff", fx("a.ckpt"), fx("missing.ckpt"))
        self.assertEqual(status, 2)

    def test_directories(self):
        status, d, err = run_json("diff", fx("dist"), fx("dist"))
        self.assertEqual(status, 0, err)
        self.assertEqual(len(d["tensors"]), 4)
        self.assertEqual(len(d["values"]), 2)
        # A manager's directory stands for its newest checkpoint.
        status, d, err = run_json("diff", fx("run"), fx("run", "ckpt-000000000030.ckpt"))
        self.assertEqual(status, 0, err)
        self.assertEqual(d["a"], fx("run", "ckpt-000000000030.ckpt"))


class Export(unittest.TestCase):
    def test_npy(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "npy")
            status, text, err = run("export", fx("a.ckpt"), "--to", out, "--npy")
            self.assertEqual(status, 0, err)
            self.assertEqual(sorted(os.listdir(out)),
                             ["bias.npy", "h.npy", "ids.npy", "r.npy", "w.npy"])
            descr, fortran, shape, data = read_npy(os.path.join(out, "w.npy"))
            self.assertEqual((descr, fortran, shape), ("<f4", True, (3, 5)))
            # Fortran order: column by column.
            self.assertEqual(list(struct.unpack("<15f", data)),
                             [W[i][j] for j in range(5) for i in range(3)])
            descr, fortran, shape, data = read_npy(os.path.join(out, "r.npy"))
            self.assertEqual((descr, fortran, shape), ("<f8", False, (2, 3)))
            self.assertEqual(list(struct.unpack("<6d", data)), [x for row in R for x in row])
            descr, fortran, shape, data = read_npy(os.path.join(out, "bias.npy"))
            self.assertEqual((descr, shape, list(struct.unpack("<4d", data))), ("<f8", (4,), BIAS))
            descr, fortran, shape, data = read_npy(os.path.join(out, "ids.npy"))
            self.assertEqual((descr, list(struct.unpack("<3i", data))), ("<i4", IDS))
            descr, fortran, shape, data = read_npy(os.path.join(out, "h.npy"))
            self.assertEqual((descr, list(struct.unpack("<2e", data))), ("<f2", H))

    def test_bf16_and_f8(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "npy")
            status, text, err = run("export", fx("bf16.ckpt"), "--to", out, "--npy")
            self.assertEqual(status, 2)
            self.assertIn("tensor 'b' is BF16", err)
            self.assertIn("--upcast", err)
            self.assertFalse(os.path.exists(out), "nothing is written")
            status, text, err = run("export", fx("bf16.ckpt"), "--to", out, "--npy", "--upcast")
            self.assertEqual(status, 0, err)
            descr, fortran, shape, data = read_npy(os.path.join(out, "b.npy"))
            self.assertEqual((descr, shape, list(struct.unpack("<3f", data))),
                             ("<f4", (3,), [1.5, -0.25, 3.0]))

    def test_plain_safetensors(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "a.safetensors")
            status, text, err = run("export", fx("a.ckpt"), "--to", out, "--plain")
            self.assertEqual(status, 0, err)
            header, data = read_safetensors(out)
            self.assertEqual(sorted(header), ["bias", "h", "ids", "r", "w"])
            b = header["bias"]
            self.assertEqual((b["dtype"], b["shape"]), ("F64", [4]))
            lo, hi = b["data_offsets"]
            self.assertEqual(list(struct.unpack("<4d", data[lo:hi])), BIAS)
            self.assertEqual(sum(e["data_offsets"][1] - e["data_offsets"][0]
                                 for e in header.values()), len(data))
            # A distributed checkpoint becomes one file: its shards joined, its rank-local
            # tensors named by rank.
            out = os.path.join(tmp, "dist.safetensors")
            status, text, err = run("export", fx("dist"), "--to", out, "--plain")
            self.assertEqual(status, 0, err)
            header, data = read_safetensors(out)
            self.assertEqual(sorted(header), ["m", "mine@rank0", "mine@rank1", "v"])
            lo, hi = header["m"]["data_offsets"]
            self.assertEqual(header["m"]["shape"], [4, 3])
            self.assertEqual(list(struct.unpack("<12f", data[lo:hi])),
                             [100 * i + j for i in range(4) for j in range(3)])
            lo, hi = header["mine@rank1"]["data_offsets"]
            self.assertEqual(list(struct.unpack("<2d", data[lo:hi])), [1, 1.5])
            # ckpt reads it back as a plain safetensors file.
            status, d, err = run_json("inspect", out)
            self.assertEqual((status, d["format_version"]), (0, 0))

    def test_usage(self):
        status, text, err = run("export", fx("a.ckpt"), "--to", "x.safetensors")
        self.assertEqual(status, 2)
        self.assertIn("--plain", err)
        status, text, err = run("export", fx("a.ckpt"), "--to", "somewhere")
        self.assertEqual(status, 2)
        status, text, err = run("export", fx("damaged.ckpt"), "--to", "x.safetensors", "--plain")
        self.assertEqual(status, 2)
        self.assertIn("[ckpt.corrupt.204]", err)


class Cli(unittest.TestCase):
    def test_help(self):
        for command in ["inspect", "verify", "ls", "diff", "export"]:
            status, out, err = run(command, "--help")
            self.assertEqual(status, 0, command)
            self.assertIn("--json" if command != "export" else "--npy", out)
        status, out, err = run("--help")
        self.assertEqual(status, 0)
        for command in ["inspect", "verify", "ls", "diff", "export"]:
            self.assertIn(command, out)

    def test_usage_errors(self):
        self.assertEqual(run()[0], 2)
        self.assertEqual(run("frobnicate")[0], 2)
        self.assertEqual(run("inspect")[0], 2)
        self.assertEqual(run("diff", fx("a.ckpt"))[0], 2)
        self.assertEqual(run("verify", "--progress", "sometimes", fx("a.ckpt"))[0], 2)

    def test_version(self):
        status, out, err = run("--version")
        self.assertEqual(status, 0)
        self.assertRegex(out, r"^ckpt \d+\.\d+\.\d+")

    def _on_a_terminal(self, args, env):
        """Runs ckpt with stdout on a pseudo-terminal; returns what it printed."""
        pid, fd = pty.fork()
        if pid == 0:
            os.execve(CKPT, [CKPT, *args], env)
        out = b""
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.waitpid(pid, 0)
        return out.decode()

    def test_colours_only_on_a_terminal(self):
        env = dict(os.environ)
        env.pop("NO_COLOR", None)
        try:
            out = self._on_a_terminal(["verify", fx("a.ckpt")], env)
        except OSError as e:
            self.skipTest("no pseudo-terminal: %s" % e)
        self.assertIn("\x1b[32mok\x1b[0m", out)
        env["NO_COLOR"] = "1"
        out = self._on_a_terminal(["verify", fx("a.ckpt")], env)
        self.assertNotIn("\x1b[", out)
        self.assertIn("ok", out)


def main():
    global CKPT, FIXTURES
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--fixtures", required=True)
    parser.add_argument("--suite", required=True,
                        choices=["inspect", "verify", "ls", "diff", "export", "cli"])
    args = parser.parse_args()
    CKPT = args.ckpt
    FIXTURES = args.fixtures
    suite = {"inspect": Inspect, "verify": Verify, "ls": Ls, "diff": Diff, "export": Export,
             "cli": Cli}[args.suite]
    result = unittest.TextTestRunner(verbosity=2).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(suite))
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
